// Scenario 6: many idle clients: how long they take to connect, and the broker's RSS per connection.
import { nowMs, procCpuMs, procRssKb, sleep, WANTED_NOFILE } from '../lib/procs.js'
import { withDeadline } from '../lib/load.js'
import { brokerOf, pick, type Mode, type Scenario } from '../lib/scenario.js'
import type { WorkerResult } from '../lib/protocol.js'

export function connectionCount(mode: Mode): number {
  return pick(mode, { quick: 2000, default: 10_000, full: 50_000 })
}

const PER_WORKER = 12_500
/** each source address has ~28k ephemeral ports (net.ipv4.ip_local_port_range) */
const PER_SOURCE_ADDRESS = 20_000
const CONCURRENCY_PER_WORKER = 100
const SETTLE_MS = 500
const FD_HEADROOM = 200

export const connections: Scenario = {
  id: 'connections',
  title: 'Connections: idle clients (keepalive 0), connect time and broker RSS per connection',
  setup: 'fresh',
  deadlineMs: (mode) => pick(mode, { quick: 60_000, default: 120_000, full: 300_000 }),
  async run(ctx) {
    const { workers } = ctx
    const broker = brokerOf(ctx)
    const wanted = connectionCount(ctx.mode)
    const notes: string[] = []
    // Past its fd limit a broker fails accept() with EMFILE (and a Node server may die of it), so the
    // scenario stays below the limit and says so.
    const total = Math.min(wanted, broker.nofile - FD_HEADROOM)
    if (total < wanted) {
      notes.push(
        `broker fd limit is ${broker.nofile} and could not be raised to ${WANTED_NOFILE} (ulimit -n / prlimit refused): ` +
          `measured ${total} connections instead of ${wanted}`
      )
    }
    const nWorkers = Math.max(2, Math.ceil(total / PER_WORKER))
    const sources = Array.from({ length: Math.ceil(total / PER_SOURCE_ADDRESS) }, (_, i) => `127.0.0.${i + 1}`)
    const handles = Array.from({ length: nWorkers }, (_, i) => {
      const share = Math.floor(total / nWorkers) + (i < total % nWorkers ? 1 : 0)
      return workers.spawn({
        kind: 'idle',
        port: broker.port,
        clients: share,
        clientIdPrefix: 'bench-idle',
        concurrency: CONCURRENCY_PER_WORKER,
        localAddresses: sources
      })
    })
    await withDeadline(Promise.all(handles.map((w) => w.init())), ctx.deadline, 'starting the connection workers')
    await sleep(200)
    const rss0 = procRssKb(broker.pid)
    const cpu0 = procCpuMs(broker.pid)
    const t0 = nowMs()
    for (const w of handles) w.send({ type: 'go' })
    const settled = (): number => handles.reduce((a, w) => a + w.progress.connected + w.progress.failed, 0)
    while (settled() < total) {
      if (handles.some((w) => w.error !== null))
        throw new Error(
          handles
            .map((w) => w.error)
            .filter(Boolean)
            .join('; ')
        )
      if (nowMs() > ctx.deadline - 5000) {
        notes.push(`deadline: only ${settled()} of ${total} connections settled`)
        break
      }
      await sleep(20)
    }
    const connectedAt = nowMs()
    await sleep(SETTLE_MS)
    const rss1 = procRssKb(broker.pid)
    const cpu1 = procCpuMs(broker.pid)
    const t1 = nowMs()
    const results: WorkerResult[] = []
    for (const w of handles) results.push(await w.stop())
    const connected = results.reduce((a, r) => a + r.connected, 0)
    const failed = results.reduce((a, r) => a + r.failed, 0)
    const starts = results.map((r) => r.connectStartAt).filter((x): x is number => x !== null)
    const ends = results.map((r) => r.connectEndAt).filter((x): x is number => x !== null)
    const connectMs = starts.length && ends.length ? Math.max(...ends) - Math.min(...starts) : null
    if (failed > 0) {
      const samples = results.flatMap((r) => r.errorSamples).slice(0, 3)
      notes.push(`${failed} of ${total} connections failed, e.g. ${samples.join('; ')}`)
    }
    return {
      metrics: [
        { key: 'connections', label: 'connected', value: connected, unit: 'clients', better: 'higher', show: false },
        { key: 'connect_s', label: `connect ${total} (s)`, value: connectMs === null ? null : connectMs / 1000, unit: 's', better: 'lower', show: true },
        { key: 'connects_per_s', label: 'connects/s', value: connectMs ? (connected * 1000) / connectMs : null, unit: 'conn/s', better: 'higher', show: true },
        {
          key: 'rss_per_conn_kib',
          label: 'broker RSS KiB/conn',
          value: connected ? (rss1 - rss0) / connected : null,
          unit: 'KiB',
          better: 'lower',
          show: true
        },
        { key: 'rss_after_mib', label: 'broker RSS MiB (after)', value: rss1 / 1024, unit: 'MiB', better: 'lower', show: false }
      ],
      cpu: { wallMs: t1 - t0, brokerMs: cpu1 - cpu0, clientMs: results.reduce((a, r) => a + r.cpuUserMs + r.cpuSystemMs, 0) },
      notes,
      details: {
        wanted,
        total,
        connected,
        failed,
        workers: nWorkers,
        sourceAddresses: sources,
        rssBeforeKiB: rss0,
        rssAfterKiB: rss1,
        connectPhaseMs: connectedAt - t0,
        brokerNofile: broker.nofile
      }
    }
  }
}
