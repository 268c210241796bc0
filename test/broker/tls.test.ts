import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'

let gw: GatewayProcess
let ca: Buffer
beforeAll(async () => {
  const dir = tempDataDir('tls')
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost'
    ],
    { stdio: 'ignore' }
  )
  ca = readFileSync(cert)
  gw = await GatewayProcess.start(join(dir, 'data'), ['--tls-port', '0', '--wss-port', '0', '--tls-cert', cert, '--tls-key', key])
})
afterAll(async () => {
  expect(await gw.stop()).toBe(0)
})

describe('TLS listeners', () => {
  it.each(['mqtts', 'wss'] as const)('carries QoS 1 traffic over %s with a verified server certificate', async (kind) => {
    const sub = await connect(gw.url(kind), { ca, rejectUnauthorized: true })
    const pub = await connect(gw.url('mqtt'))
    try {
      const inbox = new Inbox(sub)
      await sub.subscribeAsync(`secure/${kind}`, { qos: 1 })
      await pub.publishAsync(`secure/${kind}`, 'over tls', { qos: 1 })
      const [m] = await inbox.waitFor(1)
      expect(m).toMatchObject({ topic: `secure/${kind}`, payload: 'over tls' })
    } finally {
      await closeAll(sub, pub)
    }
  })

  it('refuses a client that does not trust the server certificate', async () => {
    await expect(connect(gw.url('mqtts'), { rejectUnauthorized: true })).rejects.toThrow(/self[- ]signed|certificate/i)
  })
})
