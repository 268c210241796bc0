import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Packet } from 'mqtt-packet'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { admission } from '../../src/broker/admission.js'
import { createBroker, type Broker } from '../../src/broker/broker.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { HookChain, type BrokerHook } from '../../src/broker/hooks.js'
import { startListeners, type Listener } from '../../src/broker/listeners.js'
import { DEFAULTS, loadConfig } from '../../src/config/index.js'
import { Gateway } from '../../src/gateway.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { DLQ_HEADERS, SharedGroups, type SharedRecord } from '../../src/log/shared/shared-groups.js'
import { LogAdmission } from '../../src/routing/log-admission.js'
import { LogShareDispatch, deliveryTopic } from '../../src/routing/log-shares.js'
import { Router } from '../../src/routing/router.js'
import type { RouteConfig } from '../../src/routing/routes.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-mqtt.js'
import { stream } from '../log/abstract-log.js'

// MQTT consumers of the log: `$share/<group>/<filter>` over a routed filter is served from the
// log's shared group <group>, on a broker composed as the gateway composes it (routes, the log
// admission hook, SharedGroups, LogShareDispatch), with real MQTT clients on 127.0.0.1.

const ROUTES: RouteConfig[] = [{ filter: 'orders/#', stream: 'orders', key: { kind: 'topic-level', level: 2 } }]

interface Stack {
  broker: Broker
  log: RocksLog
  shared: SharedGroups
  dispatch: LogShareDispatch
  counters: BrokerCounters
  port: number
  url: string
  /** Every record the dispatch fetched from the group (with its delivery count). */
  fetched: Array<SharedRecord & { consumer: string }>
  close(): Promise<void>
}

const open: Stack[] = []
afterEach(async () => {
  for (const s of open.splice(0)) await s.close()
})

async function startStack(options: { hooks?: BrokerHook[]; window?: number; groups?: Record<string, unknown> } = {}): Promise<Stack> {
  const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
  const store = await Store.open({ dataDir: tempDataDir('mqtt-share'), durability: 'none' })
  const log = await RocksLog.open(store, [stream('orders', 2)], { retentionIntervalMs: 0 })
  const shared = await SharedGroups.open(log)
  for (const [name, config] of Object.entries(options.groups ?? {})) await shared.put(name, config)
  const fetched: Stack['fetched'] = []
  const fetch = shared.fetch.bind(shared)
  shared.fetch = async (name, o) => {
    const records = await fetch(name, o)
    fetched.push(...records.map((r) => ({ ...r, consumer: o.consumer })))
    return records
  }
  const dispatch = new LogShareDispatch(ROUTES, shared, { window: options.window ?? 32, pollMs: 500 })
  const counters = new BrokerCounters(logger)
  const hooks = new HookChain([
    { name: 'anyone', stage: 'authenticate', authenticate: () => ({ allow: true }) },
    ...(options.hooks ?? []),
    new LogAdmission(new Router(ROUTES), log, logger)
  ])
  const broker = await createBroker({ store, logger, hooks, counters, maxClientIdLength: 64, limits: DEFAULTS, brokerId: null, logShares: dispatch })
  const config = { ...DEFAULTS, mqttPort: 0, wsPort: null }
  const listeners: Listener[] = await startListeners(
    config,
    admission(config, counters, (s, r) => broker.aedes.handle(s, r))
  )
  const port = listeners[0]?.port ?? 0
  const stack: Stack = {
    broker,
    log,
    shared,
    dispatch,
    counters,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    fetched,
    close: async () => {
      await Promise.all(listeners.map((l) => l.close()))
      await broker.close()
      await dispatch.close()
      shared.close()
      await log.close()
      await store.close()
    }
  }
  open.push(stack)
  return stack
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `check` until it holds (at most timeoutMs). */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not met in ${timeoutMs} ms`)
    await sleep(20)
  }
}

async function publishAll(url: string, topics: string[], prefix = 'm'): Promise<string[]> {
  const publisher = await connect(url, { clientId: `pub-${Math.random().toString(36).slice(2)}` })
  const payloads: string[] = []
  try {
    for (const [i, topic] of topics.entries()) {
      const payload = `${prefix}${i}`
      await publisher.publishAsync(topic, payload, { qos: 1 })
      payloads.push(payload)
    }
  } finally {
    await closeAll(publisher)
  }
  return payloads
}

async function rawSubscribe(c: RawClient, topic: string, qos: 0 | 1 | 2 = 1, messageId = 1): Promise<number[]> {
  c.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
  const suback = await c.next((p) => p.cmd === 'suback' && p.messageId === messageId)
  return suback.cmd === 'suback' ? suback.granted.map((g) => (typeof g === 'number' ? g : (g as { qos: number }).qos)) : []
}

const publishes = (c: RawClient): Array<Packet & { cmd: 'publish' }> => c.received.filter((p): p is Packet & { cmd: 'publish' } => p.cmd === 'publish')
const text = (p: { payload: string | Buffer }): string => p.payload.toString()

describe('$share/<group>/<filter> over routed topics, served from the log', () => {
  it('splits the records between the members: each exactly once, none lost', async () => {
    const s = await startStack()
    const [a, inboxA] = await connectWithInbox(s.url, { clientId: 'worker-a' })
    const [b, inboxB] = await connectWithInbox(s.url, { clientId: 'worker-b' })
    try {
      // QoS 2 asked, 1 granted: the group redelivers at least once
      const [grantA] = await a.subscribeAsync('$share/workers/orders/#', { qos: 2 })
      const [grantB] = await b.subscribeAsync('$share/workers/orders/#', { qos: 1 })
      expect([grantA?.qos, grantB?.qos]).toEqual([1, 1])
      // the subscription made the group, on the stream of the route its filter overlaps, with the defaults
      expect(s.shared.config('workers')).toMatchObject({ streams: ['orders'], ackWaitMs: 30_000, maxDeliveries: 16 })

      const sent = await publishAll(
        s.url,
        Array.from({ length: 60 }, (_, i) => `orders/c${i % 7}/created`)
      )
      await eventually(() => inboxA.messages.length + inboxB.messages.length >= sent.length, 10_000, 'all records delivered')
      await sleep(300) // nothing more comes
      const got = [...inboxA.messages, ...inboxB.messages]
      expect(got.map((m) => m.payload).sort()).toEqual([...sent].sort())
      expect(inboxA.messages.length).toBeGreaterThan(0)
      expect(inboxB.messages.length).toBeGreaterThan(0)
      for (const m of got) {
        expect(m.topic).toMatch(/^orders\/c\d\/created$/)
        expect(m.qos).toBe(1)
        expect(m.retain).toBe(false)
      }
      // every PUBACK reached the group: nothing left to deliver
      await eventually(async () => (await s.shared.describe('workers')).lag === 0, 5000, 'lag 0')
      expect(s.fetched.every((r) => r.deliveryCount === 1)).toBe(true)
    } finally {
      await closeAll(a, b)
    }
  })

  it('gives a member at most `window` unacknowledged records; a member that disconnects mid-batch has them go to another', async () => {
    const s = await startStack({ window: 4 })
    const slow = await RawClient.connected(s.port, 'slow')
    expect(await rawSubscribe(slow, '$share/workers/orders/#')).toEqual([1])
    // the slow member alone: it gets its window and no more, since it never acknowledges
    const sent = await publishAll(
      s.url,
      Array.from({ length: 10 }, (_, i) => `orders/k${i}`)
    )
    // it is refilled once half its window is free, so it holds from 3 to 4 records, never more
    await eventually(() => publishes(slow).length >= 3, 5000, 'window filled')
    await sleep(300)
    const held = publishes(slow)
    expect(held.length).toBeGreaterThanOrEqual(3)
    expect(held.length).toBeLessThanOrEqual(4)
    expect(new Set(held.map((p) => p.messageId)).size).toBe(held.length)

    const [other, inbox] = await connectWithInbox(s.url, { clientId: 'other' })
    try {
      await other.subscribeAsync('$share/workers/orders/#', { qos: 1 })
      // the other member takes the rest, but not what the slow one holds
      await eventually(() => inbox.messages.length >= 10 - held.length, 5000, 'the rest delivered')
      await sleep(200)
      expect(inbox.messages).toHaveLength(10 - held.length)
      expect(inbox.messages.map((m) => m.payload).filter((p) => held.some((h) => text(h) === p))).toEqual([])

      slow.end() // disconnects without a PUBACK: what it held is released at once
      await eventually(() => inbox.messages.length >= 10, 5000, 'released records redelivered')
      await sleep(200)
      expect(inbox.messages.map((m) => m.payload).sort()).toEqual([...sent].sort())
      // the second delivery of each record the slow member held (visible to the group only)
      const again = s.fetched.filter((r) => r.deliveryCount === 2)
      expect(again.map((r) => r.value.toString()).sort()).toEqual(held.map(text).sort())
      expect(again.every((r) => r.consumer.startsWith('mqtt:other:'))).toBe(true)
      await eventually(async () => (await s.shared.describe('workers')).lag === 0, 5000, 'lag 0')
    } finally {
      await closeAll(other)
    }
  })

  it('keeps records published while no member is connected, and delivers them when one subscribes', async () => {
    const s = await startStack()
    const first = await connect(s.url, { clientId: 'first' })
    await first.subscribeAsync('$share/workers/orders/#', { qos: 1 })
    await first.endAsync()
    // a plain MQTT shared subscription would lose these: nobody is subscribed now
    const sent = await publishAll(s.url, ['orders/a', 'orders/b', 'orders/c'], 'offline')
    const [late, inbox] = await connectWithInbox(s.url, { clientId: 'late' })
    try {
      await late.subscribeAsync('$share/workers/orders/#', { qos: 1 })
      await inbox.waitFor(3)
      expect(inbox.messages.map((m) => m.payload).sort()).toEqual(sent)
    } finally {
      await closeAll(late)
    }
  })

  it('redelivers to a member that never acknowledges after ackWaitMs, then dead-letters the record after maxDeliveries', async () => {
    const s = await startStack({ groups: { slow: { streams: ['orders'], ackWaitMs: 300, maxDeliveries: 3, backoff: [0] } } })
    const c = await RawClient.connected(s.port, 'never-acks')
    try {
      await rawSubscribe(c, '$share/slow/orders/#')
      const started = Date.now()
      await publishAll(s.url, ['orders/x/1'], 'poison')
      await eventually(() => publishes(c).length >= 3, 5000, 'three deliveries')
      const seen = publishes(c)
      expect(seen.map(text)).toEqual(['poison0', 'poison0', 'poison0'])
      expect(new Set(seen.map((p) => p.messageId)).size).toBe(3)
      expect(Date.now() - started).toBeGreaterThanOrEqual(600) // two lock expiries
      // then the dead-letter stream, once the third lock expired; no fourth delivery
      await eventually(
        async () => {
          try {
            return (await s.log.read('orders.dlq', (await dlqPartition(s.log)) ?? 0, 0, { limit: 1 })).length === 1
          } catch {
            return false
          }
        },
        5000,
        'dead letter'
      )
      const partition = (await dlqPartition(s.log)) ?? 0
      const [dead] = await s.log.read('orders.dlq', partition, 0, { limit: 1 })
      expect(dead?.value.toString()).toBe('poison0')
      expect(dead?.topic).toBe('orders/x/1')
      expect(dead?.headers[DLQ_HEADERS.deliveries]).toBe('3')
      expect(dead?.headers[DLQ_HEADERS.reason]).toBe('max-deliveries')
      await sleep(500)
      expect(publishes(c)).toHaveLength(3)
      expect((await s.shared.describe('slow')).deadLettered).toBe(1)
    } finally {
      c.end()
    }
  })

  it('leaves a $share filter that overlaps no route to aedes, as before', async () => {
    const s = await startStack()
    const c = await RawClient.connected(s.port, 'plain')
    try {
      // granted as asked (a log-backed one would get 1), and no group is made
      expect(await rawSubscribe(c, '$share/g/unrouted/#', 2)).toEqual([2])
      expect(s.shared.list()).not.toContain('g')
      // aedes 1.2 has no shared subscriptions: the filter is an ordinary one, in aedes's topic tree
      await publishAll(s.url, ['$share/g/unrouted/x'], 'literal')
      const p = await c.next((x) => x.cmd === 'publish')
      expect(p.cmd === 'publish' && p.topic).toBe('$share/g/unrouted/x')
    } finally {
      c.end()
    }
  })

  it('never hands a log-backed subscription a live copy from aedes', async () => {
    const s = await startStack()
    const c = await RawClient.connected(s.port, 'member')
    try {
      await rawSubscribe(c, '$share/workers/orders/#')
      // a publish on the subscription's literal filter topic is aedes's business, not the log's:
      // the log-backed subscription is not in aedes's topic tree, so it gets nothing
      await publishAll(s.url, ['$share/workers/orders/x'], 'literal')
      await publishAll(s.url, ['orders/1'], 'routed')
      await eventually(() => publishes(c).length >= 1, 5000, 'the routed record')
      await sleep(300)
      expect(publishes(c).map((p) => [p.topic, text(p)])).toEqual([['orders/1', 'routed0']])
    } finally {
      c.end()
    }
  })

  it('a persistent session gets what it did not acknowledge again from the group only, after a reconnect', async () => {
    const s = await startStack()
    const first = await RawClient.connected(s.port, 'durable', { clean: false })
    await rawSubscribe(first, '$share/workers/orders/#')
    const sent = await publishAll(s.url, ['orders/a', 'orders/b', 'orders/c'], 'd')
    await eventually(() => publishes(first).length >= 3, 5000, 'first deliveries')
    // PUBACK one of them, keep the others
    const [acked, ...kept] = publishes(first)
    first.send({ cmd: 'puback', messageId: acked?.messageId ?? 0 })
    await eventually(async () => (await s.shared.describe('workers')).lag === 2, 5000, 'one ack applied')
    first.end()

    // the session is restored (no new SUBSCRIBE); its subscription is served from the log again
    const again = await RawClient.connected(s.port, 'durable', { clean: false })
    try {
      await eventually(() => publishes(again).length >= 2, 5000, 'redeliveries')
      await sleep(500)
      const redelivered = publishes(again)
      expect(redelivered.map(text).sort()).toEqual(kept.map(text).sort())
      for (const p of redelivered) again.send({ cmd: 'puback', messageId: p.messageId ?? 0 })
      await eventually(async () => (await s.shared.describe('workers')).lag === 0, 5000, 'all acked')
      // nothing of it was in the session's offline queue
      expect(await queued(s.broker, 'durable')).toEqual([])
      expect(sent).toHaveLength(3)
    } finally {
      again.end()
    }
  })

  it('acknowledges a QoS 0 member\u2019s records once written', async () => {
    const s = await startStack()
    const c = await RawClient.connected(s.port, 'qos0')
    try {
      expect(await rawSubscribe(c, '$share/workers/orders/#', 0)).toEqual([0])
      await publishAll(s.url, ['orders/a', 'orders/b'], 'q')
      await eventually(() => publishes(c).length >= 2, 5000, 'deliveries')
      expect(publishes(c).map((p) => p.qos)).toEqual([0, 0])
      await eventually(async () => (await s.shared.describe('workers')).lag === 0, 5000, 'acked when written')
    } finally {
      c.end()
    }
  })

  it('UNSUBSCRIBE releases what the member held', async () => {
    const s = await startStack({ window: 2 })
    const c = await RawClient.connected(s.port, 'leaver')
    const [other, inbox] = await connectWithInbox(s.url, { clientId: 'stayer' })
    try {
      await rawSubscribe(c, '$share/workers/orders/#')
      const sent = await publishAll(s.url, ['orders/a', 'orders/b'], 'u')
      await eventually(() => publishes(c).length >= 2, 5000, 'deliveries')
      await other.subscribeAsync('$share/workers/orders/#', { qos: 1 })
      c.send({ cmd: 'unsubscribe', messageId: 7, unsubscriptions: ['$share/workers/orders/#'] })
      await c.next((p) => p.cmd === 'unsuback')
      await inbox.waitFor(2)
      expect(inbox.messages.map((m) => m.payload).sort()).toEqual(sent)
      await publishAll(s.url, ['orders/c'], 'after')
      await inbox.waitFor(3)
      expect(publishes(c)).toHaveLength(2)
    } finally {
      c.end()
      await closeAll(other)
    }
  })

  it('sends a record only to members the ACL lets read it, and dead-letters what none may read', async () => {
    // bob may not read orders/+/secret
    const acl: BrokerHook = {
      name: 'test-acl',
      stage: 'authorize',
      authorizeDelivery: (principal, topic) => !(principal.clientId === 'bob' && topic.endsWith('/secret'))
    }
    const s = await startStack({ hooks: [acl] })
    const bob = await RawClient.connected(s.port, 'bob')
    const alice = await RawClient.connected(s.port, 'alice')
    try {
      await rawSubscribe(bob, '$share/workers/orders/#')
      await rawSubscribe(alice, '$share/workers/orders/#')
      await publishAll(
        s.url,
        Array.from({ length: 6 }, (_, i) => `orders/k${i}/secret`), // one key each: per-key order holds none back
        's'
      )
      await eventually(() => publishes(alice).length >= 6, 5000, 'alice gets every secret record')
      for (const p of publishes(alice)) alice.send({ cmd: 'puback', messageId: p.messageId ?? 0 })
      expect(publishes(bob)).toEqual([])
      alice.end()
      await sleep(100)
      // bob alone: a record he may not read is rejected to the dead-letter stream
      await publishAll(s.url, ['orders/x/secret'], 'only-bob')
      await eventually(async () => (await s.shared.describe('workers')).deadLettered === 1, 5000, 'dead-lettered')
      const info = await s.log.describeStream('orders.dlq')
      const p = info.partitions.find((x) => x.endOffset > 0)
      const [dead] = await s.log.read('orders.dlq', p?.partition ?? 0, 0, { limit: 1 })
      expect(dead?.value.toString()).toBe('only-bob0')
      expect(dead?.headers[DLQ_HEADERS.reason]).toBe('rejected')
      expect(publishes(bob)).toEqual([])
      expect(s.counters.get('delivery-denied')).toBe(0) // decided before sending, never sent
    } finally {
      bob.end()
      alice.end()
    }
  })

  it('uses a group made beforehand as it is (its config, its streams)', async () => {
    const s = await startStack()
    await publishAll(s.url, ['orders/old'], 'before')
    // as PUT /api/v1/shared-groups/billing makes it; it starts at the partitions' ends as they are now
    await s.shared.put('billing', { streams: ['orders'], maxDeliveries: 5, startAt: 'latest' })
    const [c, inbox] = await connectWithInbox(s.url, { clientId: 'biller' })
    try {
      await c.subscribeAsync('$share/billing/orders/#', { qos: 1 })
      await publishAll(s.url, ['orders/new'], 'after')
      await inbox.waitFor(1)
      await inbox.settle(300)
      // startAt latest: only the new one
      expect(inbox.messages.map((m) => m.payload)).toEqual(['after0'])
      expect(s.shared.config('billing')).toMatchObject({ maxDeliveries: 5, startAt: 'latest' })
    } finally {
      await closeAll(c)
    }
  })

  it('refuses a ShareName that is no valid group name with SUBACK 0x80', async () => {
    const s = await startStack()
    const c = await RawClient.connected(s.port, 'bad-name')
    try {
      expect(await rawSubscribe(c, '$share/bad:name/orders/#')).toEqual([0x80])
      expect(s.shared.list()).toEqual([])
    } finally {
      c.end()
    }
  })

  it('delivers only what the member filter matches; records of the group streams no member wants are acknowledged', async () => {
    const s = await startStack()
    const c = await RawClient.connected(s.port, 'eu-only')
    try {
      await rawSubscribe(c, '$share/eu/orders/+/eu')
      expect(s.shared.config('eu').streams).toEqual(['orders'])
      await publishAll(s.url, ['orders/1/us', 'orders/2/eu', 'orders/3/us', 'orders/4/eu'], 'r')
      await eventually(() => publishes(c).length >= 2, 5000, 'eu records')
      for (const p of publishes(c)) c.send({ cmd: 'puback', messageId: p.messageId ?? 0 })
      await eventually(async () => (await s.shared.describe('eu')).lag === 0, 5000, 'all finished')
      expect(
        publishes(c)
          .map((p) => p.topic)
          .sort()
      ).toEqual(['orders/2/eu', 'orders/4/eu'])
    } finally {
      c.end()
    }
  })
})

describe('in the gateway', () => {
  it('takes the window of each member from share-max-inflight', async () => {
    const dir = tempDataDir('mqtt-share-window')
    const file = join(dir, 'culex.yaml')
    writeFileSync(file, 'streams:\n  orders:\n    partitions: 1\nroutes:\n  - filter: orders/#\n    stream: orders\n')
    const flags = {
      'config': file,
      'data-dir': join(dir, 'data'),
      'mqtt-port': 0,
      'ws-port': 0,
      'tls-port': 0,
      'wss-port': 0,
      'admin-port': 0,
      'share-max-inflight': '2'
    }
    const gateway = await Gateway.start(loadConfig({ env: {}, flags }), pino({ level: 'silent' }))
    const mqttPort = gateway.addresses().find((a) => a.kind === 'mqtt')?.port ?? 0
    const slow = await RawClient.connected(mqttPort, 'never-acks')
    try {
      await rawSubscribe(slow, '$share/w/orders/#')
      await publishAll(
        `mqtt://127.0.0.1:${mqttPort}`,
        Array.from({ length: 10 }, (_, i) => `orders/k${i}`)
      )
      await eventually(() => publishes(slow).length >= 1, 5000, 'a delivery')
      await sleep(400)
      // the default window is 32: with 2 it holds at most 2 of the 10
      expect(publishes(slow).length).toBeLessThanOrEqual(2)
    } finally {
      slow.end()
      await gateway.stop()
    }
  })

  it('composes the broker with the shared groups: the HTTP API sees the group MQTT members consume', async () => {
    const dir = tempDataDir('mqtt-share-gw')
    const file = join(dir, 'culex.yaml')
    writeFileSync(file, 'streams:\n  orders:\n    partitions: 2\nroutes:\n  - filter: orders/#\n    stream: orders\n    key: topic-level:2\n')
    const flags = { 'config': file, 'data-dir': join(dir, 'data'), 'mqtt-port': 0, 'ws-port': 0, 'tls-port': 0, 'wss-port': 0, 'admin-port': 0 }
    const gateway = await Gateway.start(loadConfig({ env: {}, flags }), pino({ level: 'silent' }))
    const mqttPort = gateway.addresses().find((a) => a.kind === 'mqtt')?.port ?? 0
    const api = `http://127.0.0.1:${gateway.addresses().find((a) => a.kind === 'admin')?.port ?? 0}`
    const describeGroup = async (): Promise<{ config: { streams: string[] }; lag: number }> =>
      (await (await fetch(`${api}/api/v1/shared-groups/workers`)).json()) as { config: { streams: string[] }; lag: number }
    const slow = await RawClient.connected(mqttPort, 'slow')
    try {
      await rawSubscribe(slow, '$share/workers/orders/#')
      expect((await describeGroup()).config.streams).toEqual(['orders'])
      const sent = await publishAll(`mqtt://127.0.0.1:${mqttPort}`, ['orders/a', 'orders/b'], 'g')
      await eventually(() => publishes(slow).length >= 2, 5000, 'deliveries')
      expect((await describeGroup()).lag).toBe(2) // held, not acknowledged
      slow.end()
      const [c, inbox] = await connectWithInbox(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'fast' })
      try {
        await c.subscribeAsync('$share/workers/orders/#', { qos: 1 })
        await inbox.waitFor(2)
        expect(inbox.messages.map((m) => m.payload).sort()).toEqual(sent)
        await eventually(async () => (await describeGroup()).lag === 0, 5000, 'lag 0 over HTTP')
      } finally {
        await closeAll(c)
      }
    } finally {
      slow.end()
      await gateway.stop()
    }
  })
})

describe('deliveryTopic', () => {
  it('is the record topic, else <stream>/<key>, else <stream>', () => {
    expect(deliveryTopic({ topic: 'a/b', stream: 's', key: 'k' })).toBe('a/b')
    expect(deliveryTopic({ topic: null, stream: 's', key: 'k' })).toBe('s/k')
    expect(deliveryTopic({ topic: null, stream: 's', key: null })).toBe('s')
    expect(deliveryTopic({ topic: null, stream: 's', key: 'a/#' })).toBe('s')
  })
})

async function dlqPartition(log: RocksLog): Promise<number | undefined> {
  try {
    return (await log.describeStream('orders.dlq')).partitions.find((p) => p.endOffset > 0)?.partition
  } catch {
    return undefined
  }
}

/** The packets in a client's offline queue. */
async function queued(broker: Broker, clientId: string): Promise<unknown[]> {
  const out: unknown[] = []
  for await (const p of broker.persistence.outgoingStream({ id: clientId })) out.push(p)
  return out
}
