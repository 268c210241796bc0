import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { makeTestPki, type TestPki } from '../helpers/certs.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect, subackCode } from '../helpers/mqtt.js'

// use-identity-as-username (src/auth/certificates.ts) in a gateway process: on the mqtts listener
// the verified client certificate's subject CN is the user, whatever the CONNECT says, with no
// password; the ACL file's `user` sections and %u apply to that name. On the plain listener of the
// same gateway there is no certificate, and nothing else accepts a client.

const ACL = `
pattern readwrite devices/%u/#

user device-7
topic read commands/device-7

user watcher
topic read #
topic write commands/#
`

let ids = 0

/** The CONNACK code of a refused CONNECT, or 0 if it was accepted. */
async function connackCode(url: string, options: IClientOptions): Promise<number> {
  try {
    await closeAll(await connect(url, options))
    return 0
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'number') return code
    throw err
  }
}

describe('use-identity-as-username (gateway process)', () => {
  let pki: TestPki
  let gw: GatewayProcess
  /** Connects over mqtts with the certificate of this CN. */
  let asCn: (cn: string, more?: IClientOptions) => Promise<MqttClient>
  /** The clients a test opened, closed after it whether it passed or not. */
  const clients: MqttClient[] = []
  afterEach(async () => closeAll(...clients.splice(0)))

  beforeAll(async () => {
    const dir = tempDataDir('identity')
    pki = makeTestPki(dir)
    const aclFile = join(dir, 'acl')
    writeFileSync(aclFile, ACL)
    gw = await GatewayProcess.start(join(dir, 'data'), [
      ...['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey, '--tls-ca', pki.caCert],
      ...['--use-identity-as-username', 'true', '--acl-file', aclFile]
    ])
    const ca = readFileSync(pki.caCert)
    asCn = async (cn, more = {}) => {
      const c = pki.client(cn)
      const client = await connect(gw.url('mqtts'), {
        ca,
        cert: readFileSync(c.cert),
        key: readFileSync(c.key),
        rejectUnauthorized: true,
        clientId: `${cn}-${++ids}`,
        ...more
      })
      clients.push(client)
      return client
    }
  })
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0)
  })

  it('lets CN=device-7 in without a user name or password, to publish and subscribe as device-7', async () => {
    const watcher = await asCn('watcher')
    const seen = new Inbox(watcher)
    expect(await subackCode(watcher, '#')).toBe(1)
    const device = await asCn('device-7')
    const commands = new Inbox(device)
    // %u is the CN: its own devices/ tree; acknowledged and dropped elsewhere
    await device.publishAsync('devices/device-8/x', 'denied', { qos: 1 })
    await device.publishAsync('devices/device-7/x', 'allowed', { qos: 1 })
    expect((await seen.settle(300)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['devices/device-7/x allowed'])
    expect(device.connected).toBe(true)
    // its user section: commands/device-7 only
    expect(await subackCode(device, 'commands/device-8')).toBe(128)
    expect(await subackCode(device, 'commands/device-7')).toBe(1)
    await watcher.publishAsync('commands/device-8', 'not for device-7', { qos: 1 })
    await watcher.publishAsync('commands/device-7', 'for device-7', { qos: 1 })
    expect((await commands.waitFor(1)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['commands/device-7 for device-7'])
    expect((await commands.settle(200)).length).toBe(1)
    await closeAll(watcher, device)
  })

  it('ignores the CONNECT user name and password: CN=device-7 sending device-8 is still device-7', async () => {
    const watcher = await asCn('watcher')
    const seen = new Inbox(watcher)
    expect(await subackCode(watcher, 'devices/#')).toBe(1)
    const device = await asCn('device-7', { username: 'device-8', password: 'not checked' })
    await device.publishAsync('devices/device-8/x', 'denied', { qos: 1 })
    await device.publishAsync('devices/device-7/x', 'allowed', { qos: 1 })
    expect((await seen.settle(300)).map((m) => m.topic)).toEqual(['devices/device-7/x'])
    expect(await subackCode(device, 'commands/device-8')).toBe(128)
    expect(await subackCode(device, 'commands/device-7')).toBe(1)
    await closeAll(watcher, device)
  })

  it('refuses a plain MQTT client without a certificate with CONNACK 5, with or without a user name', async () => {
    expect(await connackCode(gw.url('mqtt'), {})).toBe(5)
    // a user name is no identity here: only a certificate is
    expect(await connackCode(gw.url('mqtt'), { username: 'device-7' })).toBe(5)
    expect(await connackCode(gw.url('mqtt'), { username: 'device-7', password: 'anything' })).toBe(5)
    // the gateway still serves certificate clients
    await closeAll(await asCn('device-7'))
  })
})
