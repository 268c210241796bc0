import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqttPacket from 'mqtt-packet'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Authentication } from '../../src/auth/authentication.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { HookChain, type BrokerHook } from '../../src/broker/hooks.js'
import { reservedTopics } from '../../src/broker/reserved-topics.js'
import { DEFAULTS, type CulexConfig, type LimitsSection } from '../../src/config/index.js'
import { DelayedPublishHook } from '../../src/delayed/hook.js'
import { DelayedQueue } from '../../src/delayed/queue.js'
import { Store } from '../../src/store/store.js'
import { brokersClosedAfterEach, type InProcessBroker } from '../helpers/broker.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'
import { RawClient, connackCode } from '../helpers/raw-mqtt.js'

// `$delayed/<seconds>/<topic>` against real MQTT clients on an in-process broker: the message
// reaches subscribers of <topic> at its due time and not before, acknowledged once stored;
// malformed ones and those past delayed-max-messages are refused (the connection closes, nothing
// is acknowledged) and counted; the ACL judges <topic>; a will cannot be delayed.

const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
const start = brokersClosedAfterEach()
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const allowAll: BrokerHook = { name: 'allow-all', stage: 'authenticate', authenticate: () => ({ allow: true }) }

interface Setup {
  b: InProcessBroker
  queue: DelayedQueue
  /** The counters the delayed hook counts on. */
  counters: BrokerCounters
}

async function setup(options: { maxMessages?: number; maxDelayMs?: number; limits?: Partial<LimitsSection>; auth?: BrokerHook[] } = {}): Promise<Setup> {
  const store = await Store.open({ dataDir: tempDataDir('delayed-mqtt'), durability: 'none' })
  const queue = await DelayedQueue.open(store, { maxMessages: options.maxMessages ?? 0, maxDelayMs: options.maxDelayMs ?? 3_600_000, logger })
  cleanups.push(async () => {
    await queue.stop()
    await store.close()
  })
  const counters = new BrokerCounters(logger)
  const auth = options.auth ?? [allowAll]
  const b = await start(new HookChain([...auth, reservedTopics, new DelayedPublishHook(queue, counters)]), options.limits)
  queue.start({ publish: b.broker.publishDelayed, append: () => Promise.reject(new Error('no log here')), appendSharesBatch: false })
  return { b, queue, counters }
}

/** Receipt times, ms after `t0`, of what an inbox holds. */
function timed(client: Awaited<ReturnType<typeof connect>>): Array<{ topic: string; payload: string; qos: number; retain: boolean; at: number }> {
  const got: Array<{ topic: string; payload: string; qos: number; retain: boolean; at: number }> = []
  client.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, at: Date.now() }))
  return got
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Publishes at QoS 1 on a raw connection: whether a PUBACK came, and whether the connection was closed. */
async function publishRaw(b: InProcessBroker, topic: string): Promise<{ acked: boolean; closed: boolean }> {
  const c = await RawClient.connected(b.port, `raw-${Math.random().toString(36).slice(2, 8)}`)
  c.send({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false })
  let acked = true
  try {
    await c.next((p) => p.cmd === 'puback', 1500)
  } catch {
    acked = false
  }
  const closed = await c.closedWithin(1000)
  c.end()
  return { acked, closed }
}

describe('$delayed/<seconds>/<topic> over MQTT', () => {
  it('acknowledges at once and delivers to subscribers of <topic> at the due time, not before', async () => {
    const { b, queue } = await setup()
    const sub = await connect(b.url)
    const got = timed(sub)
    await sub.subscribeAsync('a/#', { qos: 1 })
    const delayedWatcher = await connect(b.url)
    const watched = timed(delayedWatcher)
    await delayedWatcher.subscribeAsync('$delayed/#', { qos: 1 })
    const pub = await connect(b.url, { clientId: 'publisher' })
    const t0 = Date.now()
    await pub.publishAsync('$delayed/1/a/x', 'one second', { qos: 1 })
    expect(Date.now() - t0).toBeLessThan(500) // the PUBACK does not wait for the due time
    expect(queue.pending).toBe(1)
    await new Promise((r) => setTimeout(r, 800))
    expect(got).toEqual([])
    await until('delivered', () => got.length === 1, 3000)
    expect(got[0]).toMatchObject({ topic: 'a/x', payload: 'one second', qos: 1, retain: false })
    expect(got[0]!.at - t0).toBeGreaterThanOrEqual(1000)
    expect(got[0]!.at - t0).toBeLessThan(2000)
    // never published under $delayed/
    expect(watched).toEqual([])
    await until('deleted', () => queue.pending === 0)
    await closeAll(sub, pub, delayedWatcher)
  })

  it('takes QoS 0, 1 and 2 (PUBCOMP for 2, delivered once) and $delayed/0 (due at once)', async () => {
    const { b } = await setup()
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('q/#', { qos: 2 })
    const pub = await connect(b.url)
    await pub.publishAsync('$delayed/1/q/0', 'zero', { qos: 0 })
    await pub.publishAsync('$delayed/1/q/1', 'one', { qos: 1 })
    await pub.publishAsync('$delayed/1/q/2', 'two', { qos: 2 })
    await pub.publishAsync('$delayed/0/q/now', 'now', { qos: 1 })
    await inbox.waitFor(4, 4000)
    const got = await inbox.settle(300)
    expect(got.map((m) => `${m.topic} ${m.payload} ${m.qos}`).sort()).toEqual(['q/0 zero 0', 'q/1 one 1', 'q/2 two 2', 'q/now now 1'])
    expect(got[0]?.topic).toBe('q/now')
    await closeAll(sub, pub)
  })

  it('stores a QoS 2 publish and its resend in the same socket read once (both answered with PUBREC)', async () => {
    const { b, queue } = await setup()
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('q2/#', { qos: 2 })
    const raw = await RawClient.connected(b.port, 'q2-delayed')
    const publish = (dup: boolean): Buffer =>
      mqttPacket.generate({ cmd: 'publish', topic: '$delayed/1/q2/x', payload: Buffer.from('once'), qos: 2, messageId: 9, retain: false, dup })
    raw.write(Buffer.concat([publish(false), publish(true)]))
    await raw.next((p) => p.cmd === 'pubrec')
    await raw.next((p) => p.cmd === 'pubrec')
    raw.send({ cmd: 'pubrel', messageId: 9 })
    await raw.next((p) => p.cmd === 'pubcomp')
    raw.end()
    expect(queue.pending).toBe(1)
    await inbox.waitFor(1, 3000)
    expect((await inbox.settle(300)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['q2/x once'])
    await closeAll(sub)
  })

  it('stores a QoS 2 publish once when it is resent on a later read, and after a reconnect, before PUBREL', async () => {
    const { b, queue } = await setup()
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('q2later/#', { qos: 2 })
    const publish = { cmd: 'publish' as const, topic: '$delayed/1/q2later/x', payload: Buffer.from('once'), qos: 2 as const, messageId: 11, retain: false }
    const raw = await RawClient.connected(b.port, 'q2-later', { clean: false })
    raw.send({ ...publish, dup: false })
    await raw.next((p) => p.cmd === 'pubrec')
    raw.send({ ...publish, dup: true })
    await raw.next((p) => p.cmd === 'pubrec')
    raw.end()
    await raw.closedWithin(1000)
    const again = await RawClient.connected(b.port, 'q2-later', { clean: false })
    again.send({ ...publish, dup: true })
    await again.next((p) => p.cmd === 'pubrec')
    again.send({ cmd: 'pubrel', messageId: 11 })
    await again.next((p) => p.cmd === 'pubcomp')
    again.end()
    expect(queue.pending).toBe(1)
    await inbox.waitFor(1, 3000)
    expect((await inbox.settle(300)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['q2later/x once'])
    await closeAll(sub)
  })

  it('keeps the retain flag: the message is retained on <topic> once it is due', async () => {
    const { b } = await setup()
    const pub = await connect(b.url)
    await pub.publishAsync('$delayed/1/r/x', 'kept', { qos: 1, retain: true })
    const early = await connect(b.url)
    const earlyInbox = new Inbox(early)
    await early.subscribeAsync('r/x', { qos: 1 })
    expect(await earlyInbox.settle(300)).toEqual([])
    await earlyInbox.waitFor(1, 3000)
    const late = await connect(b.url)
    const lateInbox = new Inbox(late)
    await late.subscribeAsync('r/x', { qos: 1 })
    const [retained] = await lateInbox.waitFor(1)
    expect(retained).toMatchObject({ topic: 'r/x', payload: 'kept', retain: true })
    await closeAll(pub, early, late)
  })

  it.each([
    ['$delayed/abc/x', 'delayed-invalid'],
    ['$delayed/-1/x', 'delayed-invalid'],
    ['$delayed/1.5/x', 'delayed-invalid'],
    ['$delayed/5', 'delayed-invalid'],
    ['$delayed/5/', 'delayed-invalid'],
    ['$delayed/', 'delayed-invalid'],
    ['$delayed/3601/x', 'delayed-invalid'], // past delayed-max-delay (1 h here)
    ['$delayed/4294968/x', 'delayed-invalid'], // past EMQX's limit
    ['$delayed/1/$delayed/1/x', 'delayed-invalid']
  ])('refuses %s: no PUBACK, the connection is closed, counted as %s, nothing stored', async (topic, reason) => {
    const { b, queue, counters } = await setup()
    expect(await publishRaw(b, topic)).toEqual({ acked: false, closed: true })
    expect(counters.get(reason as 'delayed-invalid')).toBe(1)
    expect(queue.pending).toBe(0)
  })

  it('refuses a target topic with a wildcard before the hook (the wire checks), and a delayed $SYS publish (reserved topics)', async () => {
    const { b, queue, counters } = await setup()
    expect(await publishRaw(b, '$delayed/1/a/+')).toEqual({ acked: false, closed: true })
    expect(await publishRaw(b, '$delayed/1/a/#')).toEqual({ acked: false, closed: true })
    expect(await publishRaw(b, '$delayed/1/$SYS/x')).toEqual({ acked: false, closed: true })
    expect(counters.get('delayed-invalid')).toBe(0)
    expect(queue.pending).toBe(0)
  })

  it('refuses a publish past delayed-max-messages (no PUBACK, connection closed, counted); the pending ones are still delivered', async () => {
    const { b, queue, counters } = await setup({ maxMessages: 2 })
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('full/#', { qos: 1 })
    const pub = await connect(b.url)
    await pub.publishAsync('$delayed/1/full/1', 'a', { qos: 1 })
    await pub.publishAsync('$delayed/1/full/2', 'b', { qos: 1 })
    expect(await publishRaw(b, '$delayed/1/full/3')).toEqual({ acked: false, closed: true })
    expect(counters.get('delayed-full')).toBe(1)
    expect(queue.pending).toBe(2)
    const got = await inbox.waitFor(2, 3000)
    expect(got.map((m) => m.topic).sort()).toEqual(['full/1', 'full/2'])
    // delivered: room again
    await until('room', () => queue.pending === 0)
    await pub.publishAsync('$delayed/1/full/4', 'd', { qos: 1 })
    await closeAll(sub, pub)
  })

  it('holds $delayed publishes over publish-rate like any other (no way around the rate with $delayed/0)', async () => {
    const { b } = await setup({ limits: { publishRate: 2 } })
    const pub = await connect(b.url)
    const t0 = Date.now()
    for (let i = 0; i < 5; i++) await pub.publishAsync(`$delayed/0/rate/${i}`, 'x', { qos: 1 })
    // a bucket of 2, refilled at 2/s: the 5th is acknowledged no earlier than 1.5 s in
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400)
    expect(b.counters.get('publish-throttled')).toBeGreaterThanOrEqual(3)
    await closeAll(pub)
  })

  it('refuses a will to a $delayed/ topic at CONNECT (CONNACK 5)', async () => {
    const { b } = await setup()
    expect(await connackCode(b.port, { clientId: 'will-delayed', will: '$delayed/5/wills/x', willQos: 1 })).toBe(5)
    expect(b.counters.get('will-denied')).toBe(1)
  })
})

describe('$delayed and the ACL', () => {
  it('judges <topic>, not $delayed/...: an ACL that allows a/# accepts $delayed/1/a/x and denies $delayed/1/b/x', async () => {
    const dir = tempDataDir('delayed-acl')
    const aclFile = join(dir, 'acl')
    // anonymous clients (before any user line): read and write a/#, read b/# (to watch that nothing arrives)
    writeFileSync(aclFile, 'topic readwrite a/#\ntopic read b/#\n')
    const config: CulexConfig = { ...DEFAULTS, aclFile }
    const auth = await Authentication.load(config, logger, new BrokerCounters(logger))
    const { b, queue } = await setup({ auth: auth.hooks() })
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('a/#', { qos: 1 })
    await sub.subscribeAsync('b/#', { qos: 1 })
    const pub = await connect(b.url)
    // both acknowledged (a denied publish is acknowledged and dropped, as mosquitto does)
    await pub.publishAsync('$delayed/1/a/x', 'allowed', { qos: 1 })
    await pub.publishAsync('$delayed/1/b/x', 'denied', { qos: 1 })
    expect(b.counters.get('publish-denied')).toBe(1)
    expect(queue.pending).toBe(1)
    await inbox.waitFor(1, 3000)
    const got = await inbox.settle(1000)
    expect(got.map((m) => `${m.topic} ${m.payload}`)).toEqual(['a/x allowed'])
    expect(pub.connected).toBe(true)
    await closeAll(sub, pub)
  })
})
