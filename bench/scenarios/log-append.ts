// Scenario 7a: the QoS 1 fan-in of scenario 2 with a route on '#': Culex appends every publish to a
// stream of its log (4 partitions, keyed by client id) before it acknowledges it. mosquitto and aedes
// have no log; they run the same load as plain QoS 1, so the ratios answer "what does durable
// logging cost against a broker that stores nothing".
import { brokerCpuPerDelivery, loadNotes, runLoad } from '../lib/load.js'
import { brokerOf, type Metric, type Scenario } from '../lib/scenario.js'
import { durationMs, maxMessages, PUBLISHER_WORKERS, PUBLISHERS_PER_WORKER } from './throughput.js'

export const LOG_STREAM = 'bench'
export const LOG_PARTITIONS = 4

/** Culex with a stream and a route on '#' (every publish is appended), and the admin API on. */
export const LOG_CULEX_START = {
  admin: true,
  culexConfig: {
    streams: { [LOG_STREAM]: { partitions: LOG_PARTITIONS } },
    routes: [{ filter: '#', stream: LOG_STREAM, key: 'client-id' }]
  }
}

export const logAppend: Scenario = {
  id: 'log-append',
  title: `Log append: QoS 1, ${PUBLISHER_WORKERS * PUBLISHERS_PER_WORKER} publishers x 16 in flight, Culex routes '#' to a ${LOG_PARTITIONS}-partition stream (others: plain QoS 1)`,
  setup: 'fresh',
  culexStart: LOG_CULEX_START,
  deadlineMs: (mode) => durationMs(mode) + 45_000,
  async run(ctx) {
    const broker = brokerOf(ctx)
    const publishers = ctx.tuning.publishers ?? PUBLISHER_WORKERS * PUBLISHERS_PER_WORKER
    const workers = Math.min(PUBLISHER_WORKERS, publishers)
    const window = ctx.tuning.window ?? 16
    const s = await runLoad(ctx, {
      pub: {
        workers,
        clientsPerWorker: Math.ceil(publishers / workers),
        qos: 1,
        window,
        durationMs: durationMs(ctx.mode),
        maxTotal: maxMessages(ctx.mode),
        ratePerClient: 0,
        payloadBytes: 64,
        topic: `bench/log/{w}/{c}`
      },
      sub: { workers: 1, clientsPerWorker: 1, filter: '#', qos: 1, latency: false, warmupMs: 0 },
      creditWindow: 4_000,
      drainIdleMs: 500,
      drainMaxMs: 10_000
    })
    const notes = loadNotes(s)
    let records: number | null = null
    if (broker.adminPort !== null) {
      const res = await fetch(`http://127.0.0.1:${broker.adminPort}/api/v1/streams/${LOG_STREAM}`)
      if (!res.ok) throw new Error(`GET /api/v1/streams/${LOG_STREAM}: ${res.status} ${await res.text()}`)
      records = ((await res.json()) as { records: number }).records
      // every acknowledged publish must be in the log (some sent but unacked ones may be too)
      if (records < s.acked) notes.push(`only ${records} records in the log for ${s.acked} acknowledged publishes`)
    }
    const metrics: Metric[] = [
      { key: 'acked_per_s', label: 'acked msg/s', value: s.ackedPerSec, unit: 'msg/s', better: 'higher', show: true },
      { key: 'delivered_per_s', label: 'delivered msg/s', value: s.deliveredPerSec, unit: 'msg/s', better: 'higher', show: true },
      brokerCpuPerDelivery(s),
      { key: 'log_records', label: 'records in the log', value: records, unit: 'records', better: 'higher', show: false }
    ]
    return {
      metrics,
      cpu: s.cpu,
      notes,
      details: {
        publishers: workers * Math.ceil(publishers / workers),
        window,
        sent: s.sent,
        acked: s.acked,
        received: s.received,
        records,
        workers: s.workers
      }
    }
  }
}
