// Scenario 5: QoS 1 at a fixed rate (2,000 msg/s): publish-to-deliver latency, from a timestamp in the
// payload (CLOCK_MONOTONIC, the same clock in every process of the machine).
import { brokerCpuPerDelivery, loadNotes, runLoad } from '../lib/load.js'
import { percentile, pick, type Scenario } from '../lib/scenario.js'
import { LOG_CULEX_START } from './log-append.js'

export const RATE = 2000

function latencyScenario(withLog: boolean): Scenario {
  return {
    id: withLog ? 'latency-log' : 'latency',
    title: withLog
      ? `Latency with the log: as latency, Culex appending every publish to a stream before the PUBACK (others: plain)`
      : `Latency: QoS 1 at ${RATE} msg/s, 1 publisher -> 1 subscriber (QoS 1)`,
    ...(withLog ? { setup: 'fresh' as const, culexStart: LOG_CULEX_START } : {}),
    deadlineMs: (mode) => pick(mode, { quick: 2000, default: 10_000, full: 30_000 }) + 45_000,
    async run(ctx) {
      const durationMs = pick(ctx.mode, { quick: 2000, default: 10_000, full: 30_000 })
      const warmupMs = pick(ctx.mode, { quick: 400, default: 1000, full: 2000 })
      const s = await runLoad(ctx, {
        pub: {
          workers: 1,
          clientsPerWorker: 1,
          qos: 1,
          // large enough never to hold the rate back; if acks lag, latency shows it
          window: 1000,
          durationMs,
          maxTotal: Math.ceil((RATE * durationMs) / 1000),
          ratePerClient: RATE,
          payloadBytes: 64,
          topic: 'bench/latency'
        },
        sub: { workers: 1, clientsPerWorker: 1, filter: 'bench/latency', qos: 1, latency: true, warmupMs },
        creditWindow: null,
        drainIdleMs: 500,
        drainMaxMs: 10_000
      })
      const sorted = Float64Array.from(s.latencies).sort()
      const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : null
      const notes = loadNotes(s)
      const achieved = s.publishWindowMs ? (s.sent * 1000) / s.publishWindowMs : null
      if (achieved !== null && achieved < RATE * 0.9) notes.push(`publisher reached only ${achieved.toFixed(0)} msg/s of ${RATE}`)
      return {
        metrics: [
          { key: 'p50_ms', label: 'p50 ms', value: percentile(sorted, 50), unit: 'ms', better: 'lower', show: true },
          { key: 'p99_ms', label: 'p99 ms', value: percentile(sorted, 99), unit: 'ms', better: 'lower', show: true },
          { key: 'max_ms', label: 'max ms', value: sorted[sorted.length - 1] ?? null, unit: 'ms', better: 'lower', show: true },
          { ...brokerCpuPerDelivery(s), show: false },
          { key: 'mean_ms', label: 'mean ms', value: mean, unit: 'ms', better: 'lower', show: false },
          { key: 'samples', label: 'samples', value: sorted.length, unit: 'msg', better: 'higher', show: false },
          { key: 'rate', label: 'achieved msg/s', value: achieved, unit: 'msg/s', better: 'higher', show: false }
        ],
        cpu: s.cpu,
        notes,
        details: {
          sent: s.sent,
          acked: s.acked,
          received: s.received,
          p90: percentile(sorted, 90),
          p999: percentile(sorted, 99.9),
          workers: s.workers
        }
      }
    }
  }
}

export const latency = latencyScenario(false)
export const latencyLog = latencyScenario(true)
