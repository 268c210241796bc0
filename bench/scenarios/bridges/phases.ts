// The measured phases of the `bridges` scenario, for one kind and one batch size:
//   direct:  the target's own client writes the log's records, one lane per partition, a batch at a
//            time per lane, each batch awaited until the target acknowledged all of it (the ceiling);
//   bridge:  an OutboundBridge (src/bridges/outbound.ts) over the same records in the real RocksLog,
//            with the kind's real sink, from offset 0 until everything is delivered;
//   outage:  a new bridge on a stream that an appender fills at a fixed rate; the target is killed
//            with -9, kept down 2 s, started again; the time until the lag is 0 again, and what
//            the target then holds (lost, duplicates).
import { pino } from 'pino'
import { BRIDGE_DEFAULTS, type OutboundBridgeConfig } from '../../../src/bridges/config.js'
import { OutboundBridge } from '../../../src/bridges/outbound.js'
import type { BridgeDriver, Sink } from '../../../src/bridges/types.js'
import { SectionContext } from '../../../src/config/values.js'
import { RocksLog } from '../../../src/log/rocks/rocks-log.js'
import type { LogRecord, RecordInput, StreamConfig } from '../../../src/log/types.js'
import { Store } from '../../../src/store/store.js'
import { nowMs, procCpuMs, sleep } from '../../lib/procs.js'
import type { Stored, Target } from './targets.js'

export const STREAM = 'bench'
/** A small stream of its own for the unmeasured warm-up of the client and the bridge code (JIT). */
export const WARMUP_STREAM = 'warmup'
export const PAYLOAD_BYTES = 256
const KEYS = 1000
/** Records per append while prefilling, and appends in flight. */
const FILL_BATCH = 1000
const FILL_IN_FLIGHT = 8
/** Before the kill, and after the target is back, the appender keeps going this long. */
const BEFORE_KILL_MS = 1000
const AFTER_READY_MS = 1000
/** How long the target stays down (from its death to the start of its new process). */
export const DOWN_MS = 2000
/** The longest drain waited for after the target is back. */
const DRAIN_LIMIT_MS = 180_000

const logger = pino({ level: 'silent' })
const never = new AbortController().signal

function streamConfig(name: string, partitions: number): StreamConfig {
  return { name, partitions, retention: { maxAgeMs: null, maxBytes: null, maxRecords: null } }
}

/** A 256-byte JSON-ish text value (valid UTF-8: the webhook sends it as text). */
function payload(i: number, key: string): Buffer {
  const head = `{"device":"${key}","seq":${i},"temp":21.5,"pad":"`
  return Buffer.from(head + 'x'.repeat(Math.max(0, PAYLOAD_BYTES - head.length - 2)) + '"}')
}

function inputs(from: number, n: number): RecordInput[] {
  const out: RecordInput[] = []
  for (let i = from; i < from + n; i++) {
    const key = `dev-${i % KEYS}`
    out.push({ key, value: payload(i, key), topic: `bench/${key}`, qos: 1, clientId: key })
  }
  return out
}

export async function openLog(dataDir: string, durability: 'fsync' | 'none', partitions: number): Promise<{ log: RocksLog; close: () => Promise<void> }> {
  const store = await Store.open({ dataDir, durability })
  const log = await RocksLog.open(store, [streamConfig(STREAM, partitions)], { retentionIntervalMs: 0 })
  return {
    log,
    close: async () => {
      await log.close()
      await store.close()
    }
  }
}

/** Appends `total` keyed records (the key picks the partition) to `stream` and returns them, per partition, as stored. */
export async function prefill(log: RocksLog, stream: string, partitions: number, total: number, deadline: number): Promise<LogRecord[][]> {
  await log.ensureStream(streamConfig(stream, partitions))
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < total) {
      if (nowMs() > deadline) throw new Error('deadline reached while writing the records')
      const from = next
      next = Math.min(total, next + FILL_BATCH)
      await log.append(stream, inputs(from, next - from))
    }
  }
  await Promise.all(Array.from({ length: FILL_IN_FLIGHT }, worker))
  const lanes: LogRecord[][] = []
  for (let p = 0; p < partitions; p++) {
    const lane: LogRecord[] = []
    for (;;) {
      const page = await log.read(stream, p, lane.length, { limit: FILL_BATCH })
      if (page.length === 0) break
      lane.push(...page)
    }
    lanes.push(lane)
  }
  const stored = lanes.reduce((n, l) => n + l.length, 0)
  if (stored !== total) throw new Error(`${stored} records stored, ${total} written`)
  return lanes
}

export interface Measured {
  records: number
  wallMs: number
  /** this process (client or bridge + log), all threads */
  benchCpuMs: number
  /** the target server's process */
  targetCpuMs: number
}

function meter(pid: number): (records: number) => Measured {
  const t0 = nowMs()
  const c0 = process.cpuUsage()
  const s0 = pid > 0 ? procCpuMs(pid) : 0
  return (records) => {
    const c = process.cpuUsage(c0)
    return { records, wallMs: nowMs() - t0, benchCpuMs: (c.user + c.system) / 1000, targetCpuMs: pid > 0 ? procCpuMs(pid) - s0 : 0 }
  }
}

/** What every phase of one kind and batch size shares. */
export interface Setup {
  driver: BridgeDriver
  target: Target
  log: RocksLog
  partitions: number
  /** records per delivery (bridge) and per awaited batch (direct client) */
  batch: number
  /** records in flight at most: partitions x batch (the MQTT sink's max-inflight, the direct MQTT client's cap) */
  window: number
  deadline: number
}

export async function directPhase(s: Setup, ns: string, lanes: LogRecord[][]): Promise<Measured> {
  const { target, batch } = s
  await target.prepare(ns)
  const writer = await target.direct(ns, lanes.length, s.window)
  try {
    const measure = meter(target.pid())
    await Promise.all(
      lanes.map(async (records, lane) => {
        for (let i = 0; i < records.length; i += batch) {
          if (nowMs() > s.deadline) throw new Error(`direct ${target.kind}: deadline reached`)
          await writer.write(lane, records.slice(i, i + batch))
        }
      })
    )
    return measure(lanes.reduce((n, l) => n + l.length, 0))
  } finally {
    await writer.close().catch(() => undefined)
  }
}

/**
 * What a bridge delivered and when, from its counters and its sink's answers: exact end times
 * without polling, and per partition the first delivery after `watchFrom` (each partition loop of
 * the runner backs off on its own).
 */
class Deliveries {
  /** delivered + dead-lettered */
  done = 0
  deadLettered = 0
  watchFrom = Infinity
  /** nowMs() of each partition's first delivery after `watchFrom` */
  readonly resumed = new Map<number, number>()
  lastAt = 0
  #waiters: Array<() => void> = []

  constructor(bridge: OutboundBridge, sink: Sink) {
    const counters = bridge.counters
    const delivered = counters.delivered.bind(counters)
    counters.delivered = (n: number, buried?: number): void => {
      delivered(n, buried)
      this.done += n + (buried ?? 0)
      this.deadLettered += buried ?? 0
      this.lastAt = nowMs()
      for (const w of this.#waiters.splice(0)) w()
    }
    const deliver = sink.deliver.bind(sink)
    sink.deliver = async (records, signal) => {
      const outcomes = await deliver(records, signal)
      const t = nowMs()
      const partition = records[0]?.partition
      if (t >= this.watchFrom && partition !== undefined && !this.resumed.has(partition) && outcomes.some((o) => o.status === 'delivered')) {
        this.resumed.set(partition, t)
      }
      return outcomes
    }
  }

  /** Resolves with nowMs() of the delivery that brought the count to `count`. */
  async until(count: number, deadline: number, what: string): Promise<number> {
    while (this.done < count) {
      const left = deadline - nowMs()
      if (left <= 0) throw new Error(`${what}: ${this.done} of ${count} records delivered when the time was up`)
      await new Promise<void>((res) => {
        const timer = setTimeout(res, Math.min(left, 1000))
        this.#waiters.push(() => {
          clearTimeout(timer)
          res()
        })
      })
    }
    return this.lastAt
  }
}

interface Built {
  bridge: OutboundBridge
  deliveries: Deliveries
}

async function buildBridge(s: Setup, name: string, stream: string, ns: string): Promise<Built> {
  const { driver } = s
  if (!driver.parseTarget || !driver.createSink) throw new Error(`the ${driver.kind} driver has no outbound direction`)
  const parsed = driver.parseTarget(s.target.targetConfig(ns, s.window), new SectionContext('the bench'), 'target')
  const sink = await driver.createSink(parsed, { logger, bridge: name })
  const config: OutboundBridgeConfig = {
    name,
    kind: driver.kind,
    direction: 'out',
    streams: [stream],
    startAt: 'earliest',
    batchSize: s.batch,
    retry: structuredClone(BRIDGE_DEFAULTS.retry),
    deadLetter: null,
    target: parsed
  }
  const bridge = new OutboundBridge(config, sink, s.log, logger)
  // connected before the clock starts, as the direct client is
  await sink.connect(never)
  return { bridge, deliveries: new Deliveries(bridge, sink) }
}

/** A bridge over `stream` (holding `total` records) from offset 0 until all are delivered. */
export async function bridgePhase(s: Setup, ns: string, stream: string, total: number): Promise<Measured & { retries: number }> {
  const { target, driver } = s
  await target.prepare(ns)
  const { bridge, deliveries } = await buildBridge(s, `bench-${ns}`, stream, ns)
  try {
    const measure = meter(target.pid())
    bridge.start()
    await deliveries.until(total, s.deadline, `bridge ${driver.kind}`)
    const m = measure(total)
    const status = await bridge.status()
    if (status.lag !== 0) throw new Error(`bridge ${driver.kind}: lag ${status.lag} after all ${total} records were delivered`)
    if (deliveries.deadLettered > 0) throw new Error(`bridge ${driver.kind}: ${deliveries.deadLettered} records dead-lettered (${status.lastError ?? ''})`)
    return { ...m, retries: status.retries }
  } finally {
    await bridge.stop()
  }
}

export interface OutageResult {
  /** records appended to the outage stream (all must reach the target) */
  appended: number
  /** offered rate of the appender, records/s */
  offeredPerS: number
  /** from the kill -9 until the new process answered */
  downMs: number
  /** records appended and not delivered when the target was back */
  backlog: number
  /** from the target back to the bridge's first delivery */
  firstDeliveryMs: number | null
  /** from the target back until every partition delivered again (each partition loop backs off on its own) */
  allResumedMs: number | null
  /** from the target back until every appended record was delivered (lag 0) */
  drainMs: number
  /** records delivered from the target back to lag 0, per second of that time */
  drainPerS: number | null
  retries: number
  stored: Stored
  lost: number
  duplicates: number
  /** the appender stopped at its cap before the target was back */
  capped: boolean
}

/**
 * A new bridge over an empty stream that an appender fills at `offeredPerS`: after 1 s the target
 * is killed with -9, started again 2 s later, the appender stops 1 s after it is back, and the
 * bridge must then deliver every record (lag 0); the target must hold each at least once.
 */
export async function outagePhase(s: Setup, ns: string, offeredPerS: number, cap: number): Promise<OutageResult> {
  const { target, driver, log } = s
  const stream = `outage-${ns}`
  await log.ensureStream(streamConfig(stream, s.partitions))
  await target.prepare(ns)
  await target.watch(ns)
  const { bridge, deliveries } = await buildBridge(s, `bench-${ns}`, stream, ns)
  let appended = 0
  let appending = true
  const appender = (async () => {
    const t0 = nowMs()
    while (appending && appended < cap) {
      const due = Math.min(cap, Math.floor((offeredPerS * (nowMs() - t0)) / 1000))
      if (due <= appended) {
        await sleep(5)
        continue
      }
      const n = Math.min(due - appended, FILL_BATCH)
      await log.append(stream, inputs(appended, n))
      appended += n
    }
  })()
  try {
    bridge.start()
    await sleep(BEFORE_KILL_MS)
    const killAt = nowMs()
    await target.kill9()
    await sleep(DOWN_MS)
    await target.start()
    const readyAt = nowMs()
    deliveries.watchFrom = readyAt
    const doneAtReady = deliveries.done
    const backlog = appended - doneAtReady
    const capped = appended >= cap
    await sleep(AFTER_READY_MS)
    appending = false
    await appender
    const drainedAt = await deliveries.until(appended, Math.min(s.deadline, readyAt + DRAIN_LIMIT_MS), `outage ${driver.kind}: draining the lag`)
    const status = await bridge.status()
    if (status.lag !== 0) throw new Error(`outage ${driver.kind}: lag ${status.lag} after all ${appended} records were delivered`)
    const stored = await target.stored(ns, appended, Math.min(s.deadline, nowMs() + 60_000))
    const resumed = [...deliveries.resumed.values()]
    return {
      appended,
      offeredPerS,
      downMs: readyAt - killAt,
      backlog,
      firstDeliveryMs: resumed.length > 0 ? Math.min(...resumed) - readyAt : null,
      allResumedMs: resumed.length === s.partitions ? Math.max(...resumed) - readyAt : null,
      drainMs: Math.max(0, drainedAt - readyAt),
      drainPerS: drainedAt > readyAt ? (appended - doneAtReady) / ((drainedAt - readyAt) / 1000) : null,
      retries: status.retries,
      stored,
      lost: Math.max(0, appended - stored.distinct),
      duplicates: stored.count - stored.distinct,
      capped
    }
  } finally {
    appending = false
    await appender.catch(() => undefined)
    await bridge.stop()
  }
}
