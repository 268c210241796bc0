// Scenario 4: one publisher, 100 subscribers on one topic: deliveries per second.
import { brokerCpuPerDelivery, loadNotes, runLoad } from '../lib/load.js'
import type { Scenario } from '../lib/scenario.js'
import { durationMs, maxMessages } from './throughput.js'

const SUBSCRIBER_WORKERS = 2
const SUBSCRIBERS_PER_WORKER = 50

export const fanout: Scenario = {
  id: 'fanout',
  title: `Fan-out: 1 publisher (QoS 0) -> ${SUBSCRIBER_WORKERS * SUBSCRIBERS_PER_WORKER} subscribers of one topic`,
  deadlineMs: (mode) => durationMs(mode) + 45_000,
  async run(ctx) {
    const subscribers = SUBSCRIBER_WORKERS * SUBSCRIBERS_PER_WORKER
    const s = await runLoad(ctx, {
      pub: {
        workers: 1,
        clientsPerWorker: 1,
        qos: 0,
        window: 64,
        durationMs: durationMs(ctx.mode),
        maxTotal: Math.ceil(maxMessages(ctx.mode) / subscribers),
        ratePerClient: 0,
        payloadBytes: 64,
        topic: 'bench/fanout'
      },
      sub: { workers: SUBSCRIBER_WORKERS, clientsPerWorker: SUBSCRIBERS_PER_WORKER, filter: 'bench/fanout', qos: 0, latency: false, warmupMs: 0 },
      // the publisher may be 200 messages (20,000 deliveries) ahead of the average subscriber
      creditWindow: 200,
      drainIdleMs: 500,
      drainMaxMs: 10_000
    })
    return {
      metrics: [
        { key: 'deliveries_per_s', label: 'deliveries/s', value: s.deliveredPerSec, unit: 'deliveries/s', better: 'higher', show: true },
        brokerCpuPerDelivery(s, 'broker CPU µs/delivery'),
        {
          key: 'published_per_s',
          label: 'published msg/s',
          value: s.deliveredPerSec === null ? null : s.deliveredPerSec / subscribers,
          unit: 'msg/s',
          better: 'higher',
          show: false
        }
      ],
      cpu: s.cpu,
      notes: loadNotes(s),
      details: { sent: s.sent, received: s.received, expected: s.expected, windowMs: s.publishWindowMs, workers: s.workers }
    }
  }
}
