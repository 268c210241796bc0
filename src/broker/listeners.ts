import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net'
import { Server as TlsServer, TLSSocket, createSecureContext, createServer as createTlsServer, type TlsOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import { WebSocketServer, createWebSocketStream } from 'ws'
import { tlsEnabled, type ListenerSection } from '../config/sections/listeners.js'

export type ListenerKind = 'mqtt' | 'mqtts' | 'ws' | 'wss'

export interface Listener {
  kind: ListenerKind
  host: string
  port: number
  close(): Promise<void>
}

/** Hands an accepted connection (a socket or a WebSocket stream) to the broker. */
export type ConnectionHandler = (stream: Duplex, request?: IncomingMessage) => void

// MQTT over WebSocket negotiates the "mqtt" subprotocol (MQTT 3.1.1 §6); "mqttv3.1" is the 3.1 name.
const MQTT_SUBPROTOCOLS = ['mqtt', 'mqttv3.1']

function listen(server: NetServer | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

function closeServer(server: NetServer | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

function attachWebSocket(server: HttpServer, path: string, handle: ConnectionHandler): WebSocketServer {
  const wss = new WebSocketServer({
    server,
    path,
    handleProtocols: (offered) => MQTT_SUBPROTOCOLS.find((p) => offered.has(p)) ?? false
  })
  wss.on('connection', (socket, request) => {
    const stream = createWebSocketStream(socket)
    stream.on('error', () => socket.terminate())
    handle(stream, request)
  })
  return wss
}

/** The config key of a TLS file, for messages. */
export type TlsFileKey = 'tls-cert' | 'tls-key' | 'tls-ca' | 'tls-crl'

/** A TLS file that cannot be read or parsed; the message names the key and the path. */
export class TlsFileError extends Error {
  override name = 'TlsFileError'
  constructor(
    readonly key: TlsFileKey,
    readonly path: string,
    problem: string,
    cause?: unknown
  ) {
    super(`${key} ${path}: ${problem}`, { cause })
  }
}

type TlsConfig = ListenerSection & { tlsCert: string; tlsKey: string }

async function readTlsFile(key: TlsFileKey, path: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    // "ENOENT: no such file or directory, open '<path>'": the path is in the message already
    throw new TlsFileError(key, path, `cannot be read (${reason(err).replace(/, \w+ '.*'$/, '')})`, err)
  }
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The PEM blocks of one type in a file (a bundle may hold several). */
function pemBlocks(pem: Buffer, label: string): string[] {
  return pem.toString('latin1').match(new RegExp(`-----BEGIN ${label}-----[^-]+-----END ${label}-----`, 'g')) ?? []
}

function parsed<T>(key: TlsFileKey, path: string, what: string, parse: () => T): T {
  try {
    return parse()
  } catch (err) {
    throw new TlsFileError(key, path, `not ${what} (${reason(err)})`, err)
  }
}

/**
 * Reads and checks the TLS files, naming the file that is wrong: Node says only "Failed to parse
 * CRL" or nothing at all (a CA file without certificates is taken silently).
 */
async function loadTls(config: TlsConfig): Promise<TlsOptions> {
  const [cert, key, ca, crl] = await Promise.all([
    readTlsFile('tls-cert', config.tlsCert),
    readTlsFile('tls-key', config.tlsKey),
    config.tlsCa === null ? null : readTlsFile('tls-ca', config.tlsCa),
    config.tlsCrl === null ? null : readTlsFile('tls-crl', config.tlsCrl)
  ])
  const certificate = parsed('tls-cert', config.tlsCert, 'a PEM certificate', () => new X509Certificate(cert))
  const privateKey: KeyObject = parsed('tls-key', config.tlsKey, 'a PEM private key', () => createPrivateKey(key))
  if (!certificate.checkPrivateKey(privateKey)) throw new TlsFileError('tls-key', config.tlsKey, `does not match the certificate in ${config.tlsCert}`)
  const options: TlsOptions = { cert, key }
  if (config.tlsCa !== null && ca !== null) {
    const cas = pemBlocks(ca, 'CERTIFICATE')
    if (cas.length === 0) throw new TlsFileError('tls-ca', config.tlsCa, 'holds no PEM certificate')
    for (const c of cas) parsed('tls-ca', config.tlsCa, 'a PEM certificate bundle', () => new X509Certificate(c))
    // A CA means mutual TLS: clients must present a certificate it signed.
    options.ca = ca
    options.requestCert = true
    options.rejectUnauthorized = true
  }
  if (config.tlsCrl !== null && crl !== null) {
    // Node reads one CRL per entry, so a file of several (one per CA) is split
    const crls = pemBlocks(crl, 'X509 CRL')
    if (crls.length === 0) throw new TlsFileError('tls-crl', config.tlsCrl, 'holds no PEM CRL')
    for (const c of crls) parsed('tls-crl', config.tlsCrl, 'a PEM CRL', () => createSecureContext({ crl: c }))
    options.crl = crls
  }
  // what the checks above cannot see (an unsupported key type, say) still names the files
  parsed('tls-cert', config.tlsCert, `usable with ${config.tlsKey}`, () => createSecureContext(options))
  return options
}

interface SecuredServer {
  server: TlsServer
  /** Whether client certificates are requested; fixed when the server is made. */
  mutual: boolean
}

// The TLS server behind each mqtts / wss listener, for reloadTls.
const secured = new WeakMap<Listener, SecuredServer>()

/**
 * Re-reads the TLS files (cert, key, CA, CRL) of the mqtts and wss listeners. Connected clients
 * stay; new handshakes use the new files. Throws a TlsFileError (and changes nothing) when a file
 * cannot be read or parsed. The new context has new session-ticket keys, so a client whose
 * certificate was just revoked cannot resume a session from before.
 */
export async function reloadTls(listeners: Listener[], config: ListenerSection): Promise<void> {
  const servers = listeners.flatMap((l) => secured.get(l) ?? [])
  if (servers.length === 0) return
  if (!tlsEnabled(config)) throw new Error('tls-cert and tls-key are no longer set: turning TLS off needs a restart')
  const mutual = config.tlsCa !== null
  // requestCert is fixed per server in Node, so mutual TLS cannot be switched by a reload
  if (servers.some((s) => s.mutual !== mutual))
    throw new Error(`tls-ca was ${mutual ? 'not ' : ''}set at start: turning client certificates on or off needs a restart`)
  const options = await loadTls(config)
  // loadTls built a context from these same options, so none of these throws halfway
  for (const { server } of servers) server.setSecureContext(options)
}

/**
 * The subject CN of the client certificate verified at this connection's TLS handshake, or null (no
 * TLS, no certificate, or not exactly one CN). For mqtts the stream is the TLSSocket; for wss the
 * request's socket is.
 */
export function clientCertificateCn(stream: Duplex, request?: IncomingMessage): string | null {
  const socket = request?.socket ?? stream
  if (!(socket instanceof TLSSocket) || !socket.authorized) return null
  // {} when there is no certificate; a repeated CN comes as an array
  const subject = socket.getPeerCertificate().subject as Partial<Record<string, string | string[]>> | undefined
  const cn = subject?.CN
  return typeof cn === 'string' && cn.length > 0 ? cn : null
}

/** Starts every listener the config asks for; on failure closes the ones already started. */
export async function startListeners(config: ListenerSection, handle: ConnectionHandler): Promise<Listener[]> {
  const started: Listener[] = []
  const tls = tlsEnabled(config) ? await loadTls(config) : null
  const add = async (kind: ListenerKind, port: number, server: NetServer | HttpServer, extra?: () => void) => {
    server.maxConnections = config.maxConnections
    const bound = await listen(server, port, config.host)
    const listener: Listener = {
      kind,
      host: config.host,
      port: bound,
      close: async () => {
        extra?.()
        await closeServer(server)
      }
    }
    // https.Server is a tls.Server too
    if (server instanceof TlsServer) secured.set(listener, { server, mutual: config.tlsCa !== null })
    started.push(listener)
  }
  const onSocket = (socket: Socket): void => handle(coalesceWrites(socket))
  try {
    if (config.mqttPort !== null) await add('mqtt', config.mqttPort, createNetServer(onSocket))
    if (tls && config.tlsPort !== null) await add('mqtts', config.tlsPort, createTlsServer(tls, onSocket))
    if (config.wsPort !== null) {
      const server = createHttpServer()
      const wss = attachWebSocket(server, config.wsPath, handle)
      await add('ws', config.wsPort, server, () => closeWebSockets(wss))
    }
    if (tls && config.wssPort !== null) {
      const server = createHttpsServer(tls)
      const wss = attachWebSocket(server, config.wsPath, handle)
      await add('wss', config.wssPort, server, () => closeWebSockets(wss))
    }
  } catch (err) {
    await Promise.all(started.map((l) => l.close()))
    throw err
  }
  return started
}

/**
 * aedes writes every packet (each ack, each delivery) to the socket on its own, one writev per
 * packet. Corking the socket at its first write in an event-loop turn and uncorking in setImmediate
 * sends in one writev everything written in that turn, across all the reads of its poll phase
 * (measured: QoS 0 fan-in and fan-out need 15-23% less broker CPU per message; bench/RESULTS.md).
 * Immediates run in order, so the flush comes before any group commit scheduled later, and an ack
 * never waits for another fsync. write()'s backpressure signal is unchanged.
 */
function coalesceWrites<S extends Socket>(socket: S): S {
  // the original method, applied to this socket below
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const write = socket.write
  let corked = false
  const uncork = (): void => {
    corked = false
    socket.uncork()
  }
  socket.write = function coalescedWrite(this: S, ...args: Parameters<S['write']>) {
    if (!corked) {
      corked = true
      socket.cork()
      setImmediate(uncork)
    }
    return write.apply(this, args)
  } as S['write']
  return socket
}

function closeWebSockets(wss: WebSocketServer): void {
  for (const client of wss.clients) client.terminate()
  wss.close()
}
