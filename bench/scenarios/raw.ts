// Raw-socket fan-in (bench/raw/): the same shape as qos0/qos1 (N publishers -> one subscriber), but
// the load is pre-encoded MQTT 3.1.1 written straight to TCP sockets, pipelined, many packets per
// write, so the broker rather than the clients is the bottleneck. The -log variants start Culex with
// a route 'bench/#' -> a 4-partition stream keyed by the publisher's topic level; mosquitto and aedes
// have no log and run the same load, so Culex-with-log / mosquitto is a row of the table.
import { nowMs, sleep } from '../lib/procs.js'
import { brokerOf, pick, type Metric, type Mode, type Scenario, type ScenarioContext } from '../lib/scenario.js'
import { rawLoadNotes, runRawLoad, type RawLoadStats } from '../raw/load.js'
import { durationMs } from './throughput.js'

export const RAW_PUB_PROCESSES = 2
export const RAW_SUB_PROCESSES = 1
export const RAW_SUB_CONNECTIONS = 1
export const RAW_PUBLISHERS = 8
/** unacknowledged QoS 1 publishes per connection, and packets per socket write */
export const RAW_WINDOW = 64
/**
 * How far the publishers may be ahead of what the subscriber received. QoS 0 has nothing else to
 * hold it back; for QoS 1 it keeps the broker's queue towards the subscriber short (mosquitto sends
 * at most 20 unacknowledged QoS 1 messages to a subscriber and queues the rest).
 */
const CREDIT = { 0: 40_000, 1: 10_000 } as const

/**
 * Every load socket reads at most about once per this many ms (see raw/worker.ts): the packets the
 * broker wrote meanwhile come in one read, and the acks or the next publishes go out in one write.
 * It caps QoS 1 at publishers x window per pause (8 x 64 / 2 ms = 256,000 msg/s); --read-pause and
 * --window move that cap.
 */
export const RAW_READ_PAUSE_MS = 2

const RAW_STREAM = 'bench'
const RAW_PARTITIONS = 4

/** Culex with one stream and a route on the raw publishers' topics, keyed by publisher; the admin API on. */
export const RAW_LOG_CULEX_START = {
  admin: true,
  culexConfig: {
    streams: { [RAW_STREAM]: { partitions: RAW_PARTITIONS } },
    routes: [{ filter: 'bench/#', stream: RAW_STREAM, key: 'topic-level:2' }]
  }
}

function maxMessages(mode: Mode): number {
  return pick(mode, { quick: 5_000_000, default: 50_000_000, full: 200_000_000 })
}

/** Records in the stream, once QoS 0 appends (not awaited by the broker) have settled: at most 2 s. */
async function logRecords(adminPort: number, atLeast: number): Promise<number> {
  const until = nowMs() + 2000
  for (;;) {
    const res = await fetch(`http://127.0.0.1:${adminPort}/api/v1/streams/${RAW_STREAM}`)
    if (!res.ok) throw new Error(`GET /api/v1/streams/${RAW_STREAM}: ${res.status} ${await res.text()}`)
    const records = ((await res.json()) as { records: number }).records
    if (records >= atLeast || nowMs() > until) return records
    await sleep(100)
  }
}

function metricsOf(s: RawLoadStats, qos: 0 | 1): Metric[] {
  const perMsg = (ms: number): number | null => (s.received > 0 ? (ms * 1000) / s.received : null)
  const metrics: Metric[] = [{ key: 'delivered_per_s', label: 'delivered msg/s', value: s.deliveredPerSec, unit: 'msg/s', better: 'higher', show: true }]
  if (qos === 1) metrics.push({ key: 'acked_per_s', label: 'acked msg/s', value: s.ackedPerSec, unit: 'msg/s', better: 'higher', show: true })
  metrics.push(
    { key: 'broker_cpu_us_per_msg', label: 'broker CPU µs/msg', value: perMsg(s.cpu.brokerMs), unit: 'µs', better: 'lower', show: true },
    { key: 'client_cpu_us_per_msg', label: 'client CPU µs/msg', value: perMsg(s.cpu.clientMs), unit: 'µs', better: 'lower', show: true, ratio: false },
    qos === 1
      ? { key: 'lost', label: 'lost (acked, not delivered)', value: s.lost, unit: 'msg', better: 'lower', show: true }
      : { key: 'lost', label: 'not delivered (QoS 0)', value: s.lost, unit: 'msg', better: 'lower', show: true },
    { key: 'messages', label: 'messages delivered', value: s.received, unit: 'msg', better: 'higher', show: false }
  )
  return metrics
}

function rawFanIn(qos: 0 | 1, withLog: boolean): Scenario {
  const id = `raw-qos${qos}${withLog ? '-log' : ''}`
  const load = `${RAW_PUBLISHERS} raw publishers in ${RAW_PUB_PROCESSES} processes${qos === 1 ? ` x ${RAW_WINDOW} in flight` : ''} -> 1 raw subscriber (QoS ${qos})`
  return {
    id,
    title: withLog
      ? `Raw QoS ${qos} with the log: ${load}; Culex routes bench/# to a ${RAW_PARTITIONS}-partition stream (others: no log)`
      : `Raw QoS ${qos}: ${load}`,
    ...(withLog ? { setup: 'fresh' as const, culexStart: RAW_LOG_CULEX_START } : {}),
    deadlineMs: (mode) => durationMs(mode) + 45_000,
    async run(ctx: ScenarioContext) {
      const broker = brokerOf(ctx)
      const window = ctx.tuning.window ?? RAW_WINDOW
      const s = await runRawLoad(ctx, {
        qos,
        publishers: ctx.tuning.publishers ?? RAW_PUBLISHERS,
        pubProcesses: ctx.tuning.pubProcesses ?? RAW_PUB_PROCESSES,
        subProcesses: ctx.tuning.subProcesses ?? RAW_SUB_PROCESSES,
        subConnections: ctx.tuning.subConnections ?? RAW_SUB_CONNECTIONS,
        window,
        durationMs: durationMs(ctx.mode),
        maxTotal: maxMessages(ctx.mode),
        payloadBytes: 64,
        creditWindow: CREDIT[qos],
        drainIdleMs: 500,
        drainMaxMs: 10_000,
        readPauseMs: ctx.tuning.readPauseMs ?? RAW_READ_PAUSE_MS
      })
      const notes = rawLoadNotes(s, qos)
      const metrics = metricsOf(s, qos)
      let records: number | null = null
      if (withLog && broker.adminPort !== null) {
        // every acknowledged QoS 1 publish must be in the log; QoS 0 ones are appended without an ack
        const atLeast = qos === 1 ? s.acked : s.sent
        records = await logRecords(broker.adminPort, atLeast)
        if (records < atLeast) notes.push(`only ${records} records in the log for ${atLeast} ${qos === 1 ? 'acknowledged' : 'sent'} publishes`)
        metrics.push({ key: 'log_records', label: 'records in the log', value: records, unit: 'records', better: 'higher', show: false })
      }
      return {
        metrics,
        cpu: s.cpu,
        notes,
        details: {
          publishers: s.publishers,
          subscribers: s.subscribers,
          window,
          credit: CREDIT[qos],
          sent: s.sent,
          acked: s.acked,
          received: s.received,
          distinct: s.distinct,
          lost: s.lost,
          duplicates: s.duplicates,
          reordered: s.reordered,
          records,
          windowMs: s.windowMs,
          workers: s.workers
        }
      }
    }
  }
}

export const rawQos0 = rawFanIn(0, false)
export const rawQos1 = rawFanIn(1, false)
export const rawQos0Log = rawFanIn(0, true)
export const rawQos1Log = rawFanIn(1, true)
