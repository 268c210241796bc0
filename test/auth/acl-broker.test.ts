import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { Authentication } from '../../src/auth/authentication.js'
import { hashPassword, writePasswordFile } from '../../src/auth/password-file.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { HookChain } from '../../src/broker/hooks.js'
import { reservedTopics } from '../../src/broker/reserved-topics.js'
import { DEFAULTS, type CulexConfig } from '../../src/config/index.js'
import { brokersClosedAfterEach, type InProcessBroker } from '../helpers/broker.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'
import { connackCode } from '../helpers/raw-mqtt.js'

// The password file and the ACL file enforced by a broker: CONNACK codes, PUBLISH (acknowledged
// and dropped when denied), SUBSCRIBE (0x80), each delivery, retained messages, wills at CONNECT,
// $SYS, %c / %u patterns, and a reload that adds and removes users and rules.

const ACL = `
# anonymous clients (none can connect here: the password file is on)
topic read public/#

user alice
topic readwrite sensors/#
topic read commands/#
topic deny sensors/secret
topic write wills/alice

user bob
topic read sensors/public/#
topic read $SYS/#

user watcher
topic read #
topic read $SYS/#

pattern readwrite devices/%u/#
pattern write clients/%c/status
`

const PASSWORDS: Record<string, string> = { alice: 'alice-secret', bob: 'bob-secret', watcher: 'watcher-secret' }

const start = brokersClosedAfterEach()

interface Setup {
  b: InProcessBroker
  auth: Authentication
  dir: string
  passwordFile: string
  aclFile: string
}

async function writeUsers(path: string, users: Record<string, string>): Promise<void> {
  const entries = new Map<string, string>()
  for (const [user, password] of Object.entries(users)) entries.set(user, await hashPassword(password, { ln: 10, r: 8, p: 1 }))
  await writePasswordFile(path, entries)
}

async function setup(more: Partial<CulexConfig> = {}): Promise<Setup> {
  const dir = tempDataDir('acl-broker')
  const passwordFile = join(dir, 'passwords')
  const aclFile = join(dir, 'acl')
  await writeUsers(passwordFile, PASSWORDS)
  writeFileSync(aclFile, ACL)
  const logger = pino({ level: 'silent' })
  const config: CulexConfig = { ...DEFAULTS, passwordFile, aclFile, ...more }
  const auth = await Authentication.load(config, logger, new BrokerCounters(logger))
  const [authenticators, authorizers] = [auth.hooks().filter((h) => h.stage === 'authenticate'), auth.hooks().filter((h) => h.stage !== 'authenticate')]
  const b = await start(new HookChain([...authenticators, reservedTopics, ...authorizers]))
  return { b, auth, dir, passwordFile, aclFile }
}

function as(b: InProcessBroker, user: string, more: Parameters<typeof connect>[1] = {}): Promise<MqttClient> {
  return connect(b.url, { username: user, password: PASSWORDS[user], clientId: `${user}-${Math.random().toString(36).slice(2, 8)}`, ...more })
}

/** The SUBACK return code for one filter (MQTT.js rejects a SUBACK with 0x80, carrying the packet). */
async function grantedQos(client: MqttClient, filter: string): Promise<number> {
  try {
    const [grant] = await client.subscribeAsync(filter, { qos: 1 })
    return grant?.qos ?? -1
  } catch (err) {
    const granted = (err as { packet?: { granted?: Array<number | { qos: number }> } }).packet?.granted?.[0]
    if (granted === undefined) throw err
    return typeof granted === 'number' ? granted : granted.qos
  }
}

describe('the password file', () => {
  it('accepts the right password (CONNACK 0); a wrong password and an unknown user get 4; no credentials get 5', async () => {
    const { b } = await setup()
    expect(await connackCode(b.port, { username: 'alice', password: 'alice-secret' })).toBe(0)
    expect(await connackCode(b.port, { username: 'alice', password: 'bob-secret' })).toBe(4)
    expect(await connackCode(b.port, { username: 'mallory', password: 'alice-secret' })).toBe(4)
    expect(await connackCode(b.port, { username: 'alice' })).toBe(4)
    // anonymous access is off by default once a password file is configured, even on loopback
    expect(await connackCode(b.port, {})).toBe(5)
  })

  it('refuses every attempt from an address over login-failures-per-minute, even with the right password, before checking it', async () => {
    const { b } = await setup({ loginFailuresPerMinute: 3 })
    for (let i = 0; i < 3; i++) expect(await connackCode(b.port, { username: 'alice', password: `guess-${i}` })).toBe(4)
    expect(await connackCode(b.port, { username: 'alice', password: 'alice-secret' })).toBe(5)
  })
})

describe('the ACL file', () => {
  it('acknowledges a denied PUBLISH at QoS 0, 1 and 2 and delivers it to nobody; allowed ones go through', async () => {
    const { b } = await setup()
    const watcher = await as(b, 'watcher')
    const seen = new Inbox(watcher)
    await watcher.subscribeAsync('#', { qos: 1 })
    const alice = await as(b, 'alice')
    // read-only, explicitly denied, and not in any rule: each acknowledged (publishAsync resolves on PUBACK / PUBCOMP)
    for (const qos of [0, 1, 2] as const) {
      await alice.publishAsync('commands/x', `denied ${qos}`, { qos })
      await alice.publishAsync('sensors/secret', `denied ${qos}`, { qos })
      await alice.publishAsync('elsewhere/x', `denied ${qos}`, { qos })
    }
    await alice.publishAsync('sensors/a', 'allowed', { qos: 1 })
    const got = await seen.settle(300)
    expect(got.map((m) => `${m.topic} ${m.payload}`)).toEqual(['sensors/a allowed'])
    expect(b.counters.get('publish-denied')).toBe(9)
    // the connection stayed up through all of it
    expect(alice.connected).toBe(true)
    await closeAll(alice, watcher)
  })

  it('refuses a subscription that can reach nothing readable (0x80), grants one that reaches some, and filters each delivery', async () => {
    const { b } = await setup()
    const bob = await as(b, 'bob')
    expect(await grantedQos(bob, 'commands/#')).toBe(128)
    expect(await grantedQos(bob, 'sensors/private/#')).toBe(128)
    // overlaps sensors/public/#: granted, and only what bob may read arrives
    expect(await grantedQos(bob, 'sensors/#')).toBe(1)
    const inbox = new Inbox(bob)
    const alice = await as(b, 'alice')
    await alice.publishAsync('sensors/private/x', 'no', { qos: 1 })
    await alice.publishAsync('sensors/public/x', 'yes', { qos: 1 })
    expect((await inbox.settle(300)).map((m) => m.topic)).toEqual(['sensors/public/x'])
    expect(b.counters.get('delivery-denied')).toBe(1)
    expect(b.counters.get('subscribe-denied')).toBe(2)
    // a refused filter is not stored with the session
    await closeAll(alice, bob)
  })

  it('delivers retained messages only where the subscriber may read', async () => {
    const { b } = await setup()
    const alice = await as(b, 'alice')
    await alice.publishAsync('sensors/private/r', 'hidden', { qos: 1, retain: true })
    await alice.publishAsync('sensors/public/r', 'shown', { qos: 1, retain: true })
    const bob = await as(b, 'bob')
    const inbox = new Inbox(bob)
    await bob.subscribeAsync('sensors/#', { qos: 1 })
    expect((await inbox.settle(300)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['sensors/public/r shown'])
    await closeAll(alice, bob)
  })

  it('filters the offline queue of a persistent session when it is delivered', async () => {
    const { b } = await setup()
    const bob = await as(b, 'bob', { clientId: 'bob-persistent', clean: false })
    expect(await grantedQos(bob, 'sensors/#')).toBe(1)
    await bob.endAsync()
    const alice = await as(b, 'alice')
    await alice.publishAsync('sensors/private/q', 'hidden', { qos: 1 })
    await alice.publishAsync('sensors/public/q', 'shown', { qos: 1 })
    const again = await as(b, 'bob', { clientId: 'bob-persistent', clean: false })
    const inbox = new Inbox(again)
    expect((await inbox.settle(500)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['sensors/public/q shown'])
    await closeAll(alice, again)
  })

  it('refuses at CONNECT (CONNACK 5) a will to a topic the user may not publish to, and accepts an allowed one', async () => {
    const { b } = await setup()
    expect(await connackCode(b.port, { username: 'alice', password: 'alice-secret', will: 'commands/x' })).toBe(5)
    expect(await connackCode(b.port, { username: 'alice', password: 'alice-secret', will: 'wills/bob' })).toBe(5)
    expect(await connackCode(b.port, { username: 'alice', password: 'alice-secret', will: 'wills/alice' })).toBe(0)
    expect(b.counters.get('will-denied')).toBe(2)
  })

  it('needs an explicit rule for $SYS: # does not reach it [MQTT-4.7.2-1]', async () => {
    const { b } = await setup()
    const alice = await as(b, 'alice')
    const bob = await as(b, 'bob')
    expect(await grantedQos(alice, '$SYS/#')).toBe(128)
    expect(await grantedQos(bob, '$SYS/#')).toBe(1)
    await closeAll(alice, bob)
  })

  it('substitutes %u and %c in patterns per client', async () => {
    const { b } = await setup()
    const watcher = await as(b, 'watcher')
    const seen = new Inbox(watcher)
    await watcher.subscribeAsync('#', { qos: 1 })
    const bob = await as(b, 'bob', { clientId: 'bob-phone' })
    await bob.publishAsync('devices/bob/t', 'own', { qos: 1 })
    await bob.publishAsync('devices/alice/t', 'other', { qos: 1 })
    await bob.publishAsync('clients/bob-phone/status', 'own client', { qos: 1 })
    await bob.publishAsync('clients/bob-laptop/status', 'other client', { qos: 1 })
    expect((await seen.settle(300)).map((m) => m.topic)).toEqual(['devices/bob/t', 'clients/bob-phone/status'])
    await closeAll(watcher, bob)
  })
})

describe('reload (SIGHUP)', () => {
  it('adds and removes users: a removed user is disconnected, everyone else stays connected', async () => {
    const { b, auth, passwordFile } = await setup()
    const alice = await as(b, 'alice')
    const bob = await as(b, 'bob')
    let bobClosed = false
    bob.on('close', () => (bobClosed = true))
    expect(await connackCode(b.port, { username: 'carol', password: 'carol-secret' })).toBe(4)

    const { bob: _removed, ...rest } = PASSWORDS
    await writeUsers(passwordFile, { ...rest, carol: 'carol-secret' })
    const report = await auth.reload((match, reason) => b.broker.disconnect(match, reason))
    expect(report).toMatchObject({ reloaded: ['password-file', 'acl-file'], failed: [], disconnected: 1 })

    expect(await connackCode(b.port, { username: 'carol', password: 'carol-secret' })).toBe(0)
    expect(await connackCode(b.port, { username: 'bob', password: 'bob-secret' })).toBe(4)
    await expect.poll(() => bobClosed, { timeout: 2000 }).toBe(true)
    expect(alice.connected).toBe(true)
    await closeAll(alice, bob)
  })

  it('applies new rules to clients already connected, and keeps the old rules when the new file is broken', async () => {
    const { b, auth, aclFile } = await setup()
    const watcher = await as(b, 'watcher')
    const seen = new Inbox(watcher)
    await watcher.subscribeAsync('#', { qos: 1 })
    const alice = await as(b, 'alice')
    await alice.publishAsync('elsewhere/x', 'before', { qos: 1 })

    writeFileSync(aclFile, ACL.replace('user alice\n', 'user alice\ntopic write elsewhere/#\n'))
    await auth.reload((match, reason) => b.broker.disconnect(match, reason))
    await alice.publishAsync('elsewhere/x', 'after', { qos: 1 })
    expect((await seen.settle(300)).map((m) => m.payload)).toEqual(['after'])

    writeFileSync(aclFile, 'user alice\ntopic wirte #\n')
    const report = await auth.reload((match, reason) => b.broker.disconnect(match, reason))
    expect(report.failed).toEqual([{ what: 'acl-file', error: expect.stringMatching(/line 2: unknown access "wirte"/) as unknown }])
    await alice.publishAsync('elsewhere/x', 'still', { qos: 1 })
    expect((await seen.settle(300)).map((m) => m.payload)).toEqual(['after', 'still'])
    await closeAll(alice, watcher)
  })
})
