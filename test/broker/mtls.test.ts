import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import mqtt, { type IClientOptions } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { clientCertificateCn, reloadTls, startListeners, type Listener } from '../../src/broker/listeners.js'
import { DEFAULTS } from '../../src/config/index.js'
import type { ListenerSection } from '../../src/config/sections/listeners.js'
import { makeTestPki, type ClientCert, type TestPki } from '../helpers/certs.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'

const KINDS = ['mqtts', 'wss'] as const

function clientTls(pki: TestPki, c: ClientCert | null): IClientOptions {
  return { ca: readFileSync(pki.caCert), rejectUnauthorized: true, ...(c ? { cert: readFileSync(c.cert), key: readFileSync(c.key) } : {}) }
}

/**
 * How an MQTT connection attempt ends. With TLS 1.3 the client's handshake is done before the
 * server has checked its certificate, so a refusal is a TLS alert or a bare close, never a CONNACK.
 */
function attempt(url: string, options: IClientOptions): Promise<{ connected: boolean; error?: string }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  return new Promise((resolve) => {
    client.once('connect', () => {
      client.end(true)
      resolve({ connected: true })
    })
    client.once('error', (err) => {
      client.end(true)
      resolve({ connected: false, error: err.message })
    })
    client.once('close', () => resolve({ connected: false }))
  })
}

describe('mutual TLS with a CRL (gateway process)', () => {
  let pki: TestPki
  let gw: GatewayProcess
  beforeAll(async () => {
    const dir = tempDataDir('mtls')
    pki = makeTestPki(dir)
    for (const cn of ['alice', 'bob', 'mallory']) pki.client(cn)
    pki.revoke('mallory')
    pki.otherCa().client('eve')
    gw = await GatewayProcess.start(join(dir, 'data'), [
      ...['--tls-port', '0', '--wss-port', '0'],
      ...['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-ca', pki.caCert, '--tls-crl', pki.crl]
    ])
  })
  afterAll(async () => {
    expect(await gw.stop()).toBe(0)
  })

  it.each(KINDS)('carries QoS 1 traffic over %s for a client with a valid certificate', async (kind) => {
    const options = clientTls(pki, pki.client('alice'))
    const sub = await connect(gw.url(kind), options)
    const pub = await connect(gw.url(kind), options)
    try {
      const inbox = new Inbox(sub)
      await sub.subscribeAsync(`mtls/${kind}`, { qos: 1 })
      await pub.publishAsync(`mtls/${kind}`, 'with a client certificate', { qos: 1 })
      const [m] = await inbox.waitFor(1)
      expect(m).toMatchObject({ topic: `mtls/${kind}`, payload: 'with a client certificate', qos: 1 })
    } finally {
      await closeAll(sub, pub)
    }
  })

  it.each(KINDS)('refuses a client without a certificate over %s', async (kind) => {
    // OpenSSL itself refuses an empty certificate message, with an alert (the others are a bare close)
    const r = await attempt(gw.url(kind), clientTls(pki, null))
    expect(r.connected).toBe(false)
    expect(r.error).toMatch(/certificate required/)
  })

  it.each(KINDS)('refuses a certificate from another CA over %s', async (kind) => {
    expect(await attempt(gw.url(kind), clientTls(pki, pki.otherCa().client('eve')))).toMatchObject({ connected: false })
  })

  it.each(KINDS)('refuses a revoked certificate over %s', async (kind) => {
    expect(await attempt(gw.url(kind), clientTls(pki, pki.client('mallory')))).toMatchObject({ connected: false })
    // the same CA's other clients still pass: the CRL, not the CA, refused it
    expect(await attempt(gw.url(kind), clientTls(pki, pki.client('alice')))).toMatchObject({ connected: true })
  })

  it('keeps the CRL it started with until it is reloaded', async () => {
    pki.revoke('bob')
    for (const kind of KINDS) expect(await attempt(gw.url(kind), clientTls(pki, pki.client('bob')))).toMatchObject({ connected: true })
  })
})

/** One open connection to the echo listener below. */
interface EchoConnection {
  /** Sends a line and resolves with the answer: `<CN seen by the handler>:<line>`. */
  ask(line: string): Promise<string>
  close(): void
  /** The TLS session, for a resumption attempt (mqtts only). */
  session?: Buffer
}

/** Connects and does one round trip; rejects when the server refuses the certificate. */
async function openEcho(kind: 'mqtts' | 'wss', port: number, pki: TestPki, c: ClientCert, session?: Buffer): Promise<EchoConnection> {
  const tls = { ca: readFileSync(pki.caCert), cert: readFileSync(c.cert), key: readFileSync(c.key) }
  let ended: Error | undefined
  let answer: ((line: string) => void) | undefined
  let fail: ((err: Error) => void) | undefined
  const end = (err: Error): void => {
    ended ??= err
    fail?.(err)
  }
  const asker =
    (send: (line: string) => void) =>
    (line: string): Promise<string> =>
      new Promise((resolve, reject) => {
        if (ended) return reject(ended)
        answer = resolve
        fail = reject
        send(line)
      })
  let connection: EchoConnection
  if (kind === 'mqtts') {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...tls, session })
    socket.on('session', (s: Buffer) => (connection.session = s))
    socket.on('data', (d: Buffer) => answer?.(d.toString()))
    socket.on('error', end)
    socket.on('close', () => end(new Error('closed by the server')))
    connection = { ask: asker((line) => socket.write(line)), close: () => socket.destroy() }
  } else {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/mqtt`, 'mqtt', tls)
    ws.on('message', (d: Buffer) => answer?.(d.toString()))
    ws.on('error', end)
    ws.on('close', () => end(new Error('closed by the server')))
    // ws closes after any error, before or after the handshake
    const opened = new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('close', () => reject(ended ?? new Error('closed by the server')))
    })
    const ask = asker((line) => ws.send(line))
    connection = { ask: (line) => opened.then(() => ask(line)), close: () => ws.terminate() }
  }
  const reply = await connection.ask('hello')
  if (!reply.endsWith(':hello')) throw new Error(`unexpected answer ${reply}`)
  return connection
}

describe('reloadTls (listeners in-process)', () => {
  let pki: TestPki
  let config: ListenerSection
  let listeners: Listener[]
  const port = (kind: 'mqtts' | 'wss'): number => listeners.find((l) => l.kind === kind)?.port ?? 0
  const open: EchoConnection[] = []
  const echo = async (kind: 'mqtts' | 'wss', c: ClientCert, session?: Buffer): Promise<EchoConnection> => {
    const conn = await openEcho(kind, port(kind), pki, c, session)
    open.push(conn)
    return conn
  }

  beforeAll(async () => {
    pki = makeTestPki(tempDataDir('mtls-reload'))
    config = {
      ...DEFAULTS,
      mqttPort: null,
      wsPort: null,
      tlsPort: 0,
      wssPort: 0,
      tlsCert: pki.serverCert,
      tlsKey: pki.serverKey,
      tlsCa: pki.caCert,
      tlsCrl: pki.crl
    }
    // an echo that answers with the CN the broker would see
    listeners = await startListeners(config, (stream, request) => {
      const cn = clientCertificateCn(stream, request) ?? '-'
      stream.on('data', (d: Buffer) => stream.write(`${cn}:${d.toString()}`))
      stream.on('error', () => stream.destroy())
    })
  })
  afterAll(async () => {
    for (const c of open) c.close()
    await Promise.all(listeners.map((l) => l.close()))
  })

  it.each(KINDS)('hands the connection handler a stream whose verified client CN is readable over %s', async (kind) => {
    const carol = await echo(kind, pki.client('carol ü/x'))
    expect(await carol.ask('ping')).toBe('carol ü/x:ping')
  })

  it('refuses a revoked certificate once the CRL is reloaded, and keeps the clients already connected', async () => {
    const dave = pki.client('dave')
    const before = { mqtts: await echo('mqtts', dave), wss: await echo('wss', dave) }
    const session = before.mqtts.session
    expect(session).toBeDefined()
    pki.revoke('dave')
    await echo('mqtts', dave) // the old CRL is still in use
    await reloadTls(listeners, config)
    for (const kind of KINDS) {
      await expect(echo(kind, dave)).rejects.toThrow()
      // a connection from before the reload is not dropped
      expect(await before[kind].ask('still here')).toBe('dave:still here')
      expect(await (await echo(kind, pki.client('carol'))).ask('ping')).toBe('carol:ping')
    }
    // nor can the revoked client resume a TLS session from before the reload (it skips verification)
    await expect(echo('mqtts', dave, session)).rejects.toThrow()
  })

  it('throws naming the file that cannot be read or parsed, and keeps the old context', async () => {
    const erin = pki.client('erin')
    await echo('mqtts', erin)
    pki.revoke('erin')
    const garbage = join(pki.dir, 'garbage.pem')
    writeFileSync(garbage, '-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n')
    await expect(reloadTls(listeners, { ...config, tlsCrl: garbage })).rejects.toThrow(`tls-crl ${garbage}: not a PEM CRL`)
    await expect(reloadTls(listeners, { ...config, tlsCrl: join(pki.dir, 'missing.pem') })).rejects.toThrow(/^tls-crl \S+missing\.pem: cannot be read \(ENOENT/)
    await expect(reloadTls(listeners, { ...config, tlsCa: pki.crl })).rejects.toThrow(`tls-ca ${pki.crl}: holds no PEM certificate`)
    // the CRL revoking erin is fine, the key is not: nothing of the new files is used
    await expect(reloadTls(listeners, { ...config, tlsKey: erin.key })).rejects.toThrow(
      `tls-key ${erin.key}: does not match the certificate in ${pki.serverCert}`
    )
    for (const kind of KINDS) expect(await (await echo(kind, erin)).ask('ping')).toBe('erin:ping')
    await reloadTls(listeners, config)
    for (const kind of KINDS) await expect(echo(kind, erin)).rejects.toThrow()
  })

  it('refuses to turn client certificates off by a reload (Node fixes requestCert per server)', async () => {
    await expect(reloadTls(listeners, { ...config, tlsCa: null, tlsCrl: null })).rejects.toThrow(/tls-ca was set at start/)
  })
})
