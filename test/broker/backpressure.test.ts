import { once } from 'node:events'
import mqttPacket from 'mqtt-packet'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { admission } from '../../src/broker/admission.js'
import { createBroker, type Broker } from '../../src/broker/broker.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { HookChain, type BrokerHook } from '../../src/broker/hooks.js'
import { startListeners, type Listener } from '../../src/broker/listeners.js'
import { DEFAULTS, type LimitsSection } from '../../src/config/index.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { LogAdmission } from '../../src/routing/log-admission.js'
import { Router } from '../../src/routing/router.js'
import type { Watermarks } from '../../src/store/backlog.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { pipelinedPublisher } from '../helpers/load.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-mqtt.js'

// store-high-water / store-low-water against a flood: a broker in the test process whose store
// writes through a slow disk (the writer's test-only commit delay, proportional to the batch), with
// the log admission hook routing flood/# to the log. Publishes are held while the store's backlog
// is over the high-water mark, so the backlog (what memory holds for the store) stays bounded, and
// nothing acknowledged is lost.

const anyone: BrokerHook = { name: 'anyone', stage: 'authenticate', authenticate: () => ({ allow: true }) }
const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })

interface Node {
  store: Store
  log: RocksLog
  broker: Broker
  counters: BrokerCounters
  port: number
  url: string
}

const open: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close()
})

/** A broker routing flood/bulk/# to stream bulk and flood/acked/# to stream acked, on a store with these watermarks and this disk. */
async function start(watermarks: Watermarks | undefined, commitDelayMs?: (bytes: number) => number, limits: Partial<LimitsSection> = {}): Promise<Node> {
  const store = await Store.open({ dataDir: tempDataDir('backpressure'), durability: 'none', watermarks, testOnlyCommitDelayMs: commitDelayMs })
  open.push(() => store.close())
  const streams = ['bulk', 'acked'].map((name) => ({ name, partitions: 2, retention: { maxAgeMs: null, maxBytes: null, maxRecords: null } }))
  const log = await RocksLog.open(store, streams, { retentionIntervalMs: 0 })
  open.push(() => log.close())
  const router = new Router([
    { filter: 'flood/bulk/#', stream: 'bulk', key: { kind: 'none' } },
    { filter: 'flood/acked/#', stream: 'acked', key: { kind: 'none' } }
  ])
  const counters = new BrokerCounters(logger)
  const hooks = new HookChain([anyone, new LogAdmission(router, log, logger)])
  const broker = await createBroker({ store, logger, hooks, counters, maxClientIdLength: 64, limits: { ...DEFAULTS, ...limits }, brokerId: null })
  const config = { ...DEFAULTS, mqttPort: 0, wsPort: null }
  let listeners: Listener[] = []
  // as the gateway shuts down: the broker closes the connections (a held client's socket is not
  // read, so it would not see its peer leave), then the listeners have closed
  open.push(async () => {
    const closed = Promise.all(listeners.map((l) => l.close()))
    await broker.close()
    await closed
  })
  listeners = await startListeners(
    config,
    admission(config, counters, (s, r) => broker.aedes.handle(s, r))
  )
  const port = listeners[0]?.port ?? 0
  return { store, log, broker, counters, port, url: `mqtt://127.0.0.1:${port}` }
}

async function recordCount(log: RocksLog, stream: string): Promise<number> {
  const info = await log.describeStream(stream)
  return info.partitions.reduce((n, p) => n + (p.endOffset - p.startOffset), 0)
}

async function values(log: RocksLog, stream: string): Promise<Set<string>> {
  const out = new Set<string>()
  for (const p of (await log.describeStream(stream)).partitions) {
    for (let at = p.startOffset; at < p.endOffset;) {
      const page = await log.read(stream, p.partition, at, { limit: 1000, maxBytes: 16 * 1024 * 1024 })
      const last = page[page.length - 1]
      if (!last) break
      for (const r of page) out.add(r.value.toString())
      at = last.offset + 1
    }
  }
  return out
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Samples the store's backlog every ms until stopped; returns the largest seen. */
function sampleBacklog(store: Store): { stop: () => number } {
  let peak = 0
  const timer = setInterval(() => (peak = Math.max(peak, store.backlog.bytes)), 1)
  return {
    stop: () => {
      clearInterval(timer)
      return Math.max(peak, store.backlog.bytes)
    }
  }
}

/**
 * A QoS 0 flood on a raw socket: `count` publishes of `size` bytes to flood/bulk/<n>, written as
 * fast as the socket takes them (bounded by count and deadline). Resolves with how many were written.
 */
async function floodQos0(port: number, clientId: string, count: number, size: number, deadline: number): Promise<{ client: RawClient; sent: number }> {
  const client = await RawClient.connected(port, clientId)
  open.push(async () => client.end())
  const payload = Buffer.alloc(size, 0x61)
  let sent = 0
  while (sent < count && Date.now() < deadline && !client.closed) {
    const packet = mqttPacket.generate({ cmd: 'publish', topic: `flood/bulk/${clientId}`, payload, qos: 0, retain: false, dup: false })
    sent++
    if (!client.socket.write(packet)) {
      const drained = once(client.socket, 'drain').then(() => true)
      const late = new Promise<boolean>((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now()), false))
      if (!(await Promise.race([drained, late]))) break
    }
  }
  return { client, sent }
}

// the slow disk: 8 MB/s plus 2 ms a commit
const SLOW_DISK = (bytes: number): number => 2 + bytes / 8000
const KiB = 1024
const MiB = 1024 * KiB
const HIGH = 256 * KiB
const LOW = 128 * KiB
/** What the store may hold over the high-water mark: one socket read per publishing client (3 here), and their parse. */
const BOUND = HIGH + MiB

describe('store backpressure (store-high-water)', () => {
  it('bounds the backlog under a QoS 0 and QoS 1 flood, loses nothing acknowledged, and lets publishing go on after the drain', async () => {
    const node = await start({ high: HIGH, low: LOW }, SLOW_DISK)
    const sampler = sampleBacklog(node.store)
    const deadline = Date.now() + 20_000
    // two QoS 0 floods (300 x 64 KiB: one packet a socket read; 600 x 16 KiB: a few), 28 MiB in
    // all, 3.5 s of this disk, and a pipelined QoS 1 publisher
    let flooding = true
    const [a, b, acked] = await Promise.all([
      floodQos0(node.port, 'flood-a', 300, 64 * KiB, deadline),
      floodQos0(node.port, 'flood-b', 600, 16 * KiB, deadline),
      pipelinedPublisher(node.port, 'acked', (seq) => `flood/acked/${seq % 7}`, { window: 200, max: 3000, until: () => !flooding || Date.now() > deadline })
    ]).finally(() => (flooding = false))
    const sent = a.sent + b.sent
    expect(sent).toBe(900)
    // nothing the floods sent is dropped: every QoS 0 publish reaches the log
    await until(async () => (await recordCount(node.log, 'bulk')) === sent, 20_000, `${sent} records in the log`)
    const peak = sampler.stop()
    process.stdout.write(
      `backpressure: ${sent} QoS 0 (28 MiB) + ${acked.acked.length} QoS 1; backlog peak ${(peak / MiB).toFixed(2)} MiB ` +
        `(high-water ${HIGH / KiB} KiB, bound ${(BOUND / MiB).toFixed(2)} MiB); held ${JSON.stringify(node.broker.storeBackpressure())}\n`
    )
    expect(peak).toBeGreaterThanOrEqual(HIGH) // the flood did reach the mark
    expect(peak).toBeLessThan(BOUND)
    expect(node.store.backlog.peakBytes).toBeLessThan(BOUND)
    expect(node.counters.get('store-backpressure')).toBeGreaterThan(0)
    const stats = node.broker.storeBackpressure()
    expect(stats.episodes).toBeGreaterThan(0)
    expect(stats.heldMs).toBeGreaterThan(0)

    // every PUBACKed message is in the log
    expect(acked.acked.length).toBeGreaterThan(0)
    const logged = await values(node.log, 'acked')
    expect(acked.acked.filter((p) => !logged.has(p))).toEqual([])

    // drained: nothing held, and a publisher goes on at once
    await until(() => !node.store.backlog.over, 10_000, 'the store drained')
    expect(node.broker.storeBackpressure().waiting).toBe(0)
    const later = await connect(node.url, { clientId: 'later' })
    const t = Date.now()
    await later.publishAsync('flood/acked/later', 'after', { qos: 1 })
    expect(Date.now() - t).toBeLessThan(1000)
    expect((await values(node.log, 'acked')).has('after')).toBe(true)
    // the floods' connections were never closed: held, not refused
    expect(a.client.closed || b.client.closed).toBe(false)
    await closeAll(later)
  }, 60_000)

  it('(control) without a high-water mark the same QoS 0 flood builds a backlog far over that bound', async () => {
    const node = await start(undefined, SLOW_DISK)
    const sampler = sampleBacklog(node.store)
    const deadline = Date.now() + 20_000
    const a = await floodQos0(node.port, 'flood-a', 1000, 16 * KiB, deadline)
    await until(async () => (await recordCount(node.log, 'bulk')) === a.sent, 20_000, 'the flood in the log')
    const peak = sampler.stop()
    process.stdout.write(`backpressure control (no high-water mark): backlog peak ${(peak / MiB).toFixed(2)} MiB\n`)
    expect(node.counters.get('store-backpressure')).toBe(0)
    expect(peak).toBeGreaterThan(4 * BOUND)
  }, 60_000)

  it('holds a publish that writes while the store is over, reads nothing more from its client, releases in order, and lets unrouted QoS 0 through', async () => {
    // a disk so slow that one commit keeps the store over for a second and a half
    const node = await start({ high: 64 * KiB, low: 16 * KiB }, (bytes) => (bytes > 64 * KiB ? 1500 : 0))
    const sub = await connect(node.url, { clientId: 'sub' })
    open.push(() => closeAll(sub))
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('plain/#', { qos: 0 })
    const pub = await RawClient.connected(node.port, 'held')
    open.push(async () => pub.end())
    const plain = await connect(node.url, { clientId: 'plain' })
    open.push(() => closeAll(plain))

    // the store goes over: a 100 KiB write on its way to the (slow) disk
    const big = node.store.write([{ type: 'put', key: Buffer.from('m\0big'), value: Buffer.alloc(100 * KiB) }])
    expect(node.store.backlog.over).toBe(true)
    // three publishes, each in its own socket read
    for (let id = 1; id <= 3; id++) {
      pub.send({ cmd: 'publish', topic: 'flood/acked/x', payload: Buffer.from(`m${id}`), qos: 1, messageId: id, retain: false, dup: false })
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    // held: no PUBACK while the store is over
    await expect(pub.next((p) => p.cmd === 'puback', 300)).rejects.toThrow(/no matching packet/)
    expect(node.store.backlog.over).toBe(true)
    // the first is held, and the broker has read nothing more from that client (the other two wait in its socket)
    expect(node.broker.storeBackpressure()).toMatchObject({ held: 1, waiting: 1 })
    // a QoS 0 publish that writes nothing (no route, not retained) is not held
    await plain.publishAsync('plain/t', 'through', { qos: 0 })
    await inbox.waitFor(1, 500)
    expect(node.store.backlog.over).toBe(true)
    // the store drains: the three go on, acknowledged in order
    await big
    const acks: number[] = []
    for (let i = 0; i < 3; i++) {
      const ack = await pub.next((p) => p.cmd === 'puback', 3000)
      if (ack.cmd === 'puback' && ack.messageId !== undefined) acks.push(ack.messageId)
    }
    expect(acks).toEqual([1, 2, 3])
    // the other two were read once the first went on, with the store back under: not held
    expect(node.counters.get('store-backpressure')).toBe(1)
    const stats = node.broker.storeBackpressure()
    expect(stats).toMatchObject({ episodes: 1, held: 1, waiting: 0 })
    expect(stats.heldMs).toBeGreaterThan(500)
    // in the log, in the order they were sent
    const records = await node.log.read('acked', 0, 0, { limit: 10, maxBytes: MiB })
    const other = await node.log.read('acked', 1, 0, { limit: 10, maxBytes: MiB })
    expect([...records, ...other].map((r) => r.value.toString()).sort()).toEqual(['m1', 'm2', 'm3'])
  }, 30_000)
})

describe('a held publish stops the reads from its client (source patch 6 of aedes)', () => {
  it('publish-rate holds a client whose every socket read is one large publish', async () => {
    // before the patch, each 'readable' event of the socket counted as a packet done, and aedes read
    // on at full speed: 3,000 publishes of 64 KiB went through in 3 s at a publish-rate of 2/s
    const node = await start(undefined, undefined, { publishRate: 2 })
    const deadline = Date.now() + 3000
    const a = await floodQos0(node.port, 'rated', 5000, 64 * KiB, deadline)
    const admitted = await recordCount(node.log, 'bulk')
    process.stdout.write(`publish-rate 2/s: ${a.sent} publishes of 64 KiB written in 3 s, ${admitted} admitted\n`)
    // a bucket of 2, then 2 a second, plus one socket read
    expect(admitted).toBeLessThan(20)
    expect(node.counters.get('publish-throttled')).toBeGreaterThan(0)
  }, 30_000)
})
