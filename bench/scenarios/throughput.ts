// Scenarios 1-3: N publishers, one '#' subscriber, at QoS 0, 1 or 2.
import { brokerCpuPerDelivery, loadNotes, runLoad } from '../lib/load.js'
import { pick, type Metric, type Mode, type Scenario } from '../lib/scenario.js'

export const PUBLISHER_WORKERS = 2
export const PUBLISHERS_PER_WORKER = 4

export function durationMs(mode: Mode): number {
  return pick(mode, { quick: 1000, default: 8000, full: 20_000 })
}

export function maxMessages(mode: Mode): number {
  return pick(mode, { quick: 1_000_000, default: 5_000_000, full: 20_000_000 })
}

function fanIn(qos: 0 | 1 | 2): Scenario {
  // 16: mosquitto's default max_inflight_messages (20) also caps the QoS 2 flows a v3.1.1 client may
  // have open towards it; a publisher that goes beyond it stalls (measured: 21 and 32 hang).
  const defaultWindow = qos === 0 ? 64 : 16
  return {
    id: `qos${qos}`,
    title:
      qos === 0
        ? `QoS 0 fan-in: ${PUBLISHER_WORKERS * PUBLISHERS_PER_WORKER} publishers -> one '#' subscriber`
        : `QoS ${qos} end to end: ${PUBLISHER_WORKERS * PUBLISHERS_PER_WORKER} publishers x ${defaultWindow} in flight -> one '#' subscriber (QoS ${qos})`,
    deadlineMs: (mode) => durationMs(mode) + 45_000,
    async run(ctx) {
      const publishers = ctx.tuning.publishers ?? PUBLISHER_WORKERS * PUBLISHERS_PER_WORKER
      const workers = Math.min(PUBLISHER_WORKERS, publishers)
      const window = qos === 0 ? defaultWindow : (ctx.tuning.window ?? defaultWindow)
      const s = await runLoad(ctx, {
        pub: {
          workers,
          clientsPerWorker: Math.ceil(publishers / workers),
          qos,
          window,
          durationMs: durationMs(ctx.mode),
          maxTotal: maxMessages(ctx.mode),
          ratePerClient: 0,
          payloadBytes: 64,
          topic: `bench/fanin/{w}/{c}`
        },
        sub: { workers: 1, clientsPerWorker: 1, filter: '#', qos, latency: false, warmupMs: 0 },
        // QoS 0 needs a wide window (credit comes every ~50 ms); for QoS 1/2 a narrow one keeps the
        // broker's queue towards the subscriber short (a long one costs mosquitto dearly, see README)
        creditWindow: qos === 0 ? 20_000 : 4_000,
        drainIdleMs: 500,
        drainMaxMs: 10_000
      })
      const metrics: Metric[] =
        qos === 0
          ? [{ key: 'delivered_per_s', label: 'delivered msg/s', value: s.deliveredPerSec, unit: 'msg/s', better: 'higher' as const, show: true }]
          : [
              { key: 'acked_per_s', label: 'acked msg/s', value: s.ackedPerSec, unit: 'msg/s', better: 'higher' as const, show: true },
              { key: 'delivered_per_s', label: 'delivered msg/s', value: s.deliveredPerSec, unit: 'msg/s', better: 'higher' as const, show: true }
            ]
      metrics.push(brokerCpuPerDelivery(s))
      metrics.push({ key: 'messages', label: 'messages delivered', value: s.received, unit: 'msg', better: 'higher', show: false })
      return {
        metrics,
        cpu: s.cpu,
        notes: loadNotes(s),
        details: {
          publishers: workers * Math.ceil(publishers / workers),
          window,
          sent: s.sent,
          acked: s.acked,
          received: s.received,
          expected: s.expected,
          windowMs: s.publishWindowMs,
          workers: s.workers
        }
      }
    }
  }
}

export const qos0 = fanIn(0)
export const qos1 = fanIn(1)
export const qos2 = fanIn(2)
