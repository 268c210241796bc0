// The one load driver every MQTT scenario uses: subscriber workers, publisher workers, go, publish
// (bounded by count, time and credit), drain, stop, and the numbers.
import { nowMs, procCpuMs, sleep } from './procs.js'
import { brokerOf, type CpuReport, type ScenarioContext } from './scenario.js'
import type { AnyTask, WorkerResult } from './protocol.js'
import type { WorkerHandle } from './workers.js'

export interface LoadSpec {
  pub: {
    workers: number
    clientsPerWorker: number
    qos: 0 | 1 | 2
    /** outstanding publishes per client */
    window: number
    durationMs: number
    /** all publishers together send at most this many messages */
    maxTotal: number
    /** per client; 0 = unpaced */
    ratePerClient: number
    payloadBytes: number
    topic: string
  }
  sub: {
    workers: number
    clientsPerWorker: number
    filter: string
    qos: 0 | 1 | 2
    latency: boolean
    warmupMs: number
  }
  /**
   * Publishers may be at most this many messages ahead of what the subscribers received (credit
   * flow control through the runner), so a broker's backlog stays bounded; null = no such limit.
   */
  creditWindow: number | null
  /** the drain ends when nothing arrived for this long */
  drainIdleMs: number
  drainMaxMs: number
}

export interface LoadStats {
  sent: number
  acked: number
  /** deliveries counted by all subscribers */
  received: number
  /** deliveries expected: acked (QoS 1/2) or sent (QoS 0) times the subscriber count */
  expected: number
  subscribers: number
  errors: number
  errorSamples: string[]
  /** from the first publish to the last ack / last delivery */
  ackedPerSec: number | null
  deliveredPerSec: number | null
  /** messages per second as sent (deliveries / subscribers) */
  publishWindowMs: number | null
  cpu: CpuReport
  latencies: number[]
  /** anything that went wrong in the run (stalls) */
  notes: string[]
  workers: { kind: string; result: Omit<WorkerResult, 'latencies'> }[]
}

const STALL_MS = 5000

/** `promise`, or an error once `deadline` (nowMs) has passed; the timer never outlives it. */
export async function withDeadline<T>(promise: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`deadline reached while ${what}`)), Math.max(0, deadline - nowMs()))
      })
    ])
  } finally {
    clearTimeout(timer)
  }
}

async function waitUntil(cond: () => boolean, deadline: number, what: string): Promise<void> {
  while (!cond()) {
    if (nowMs() > deadline) throw new Error(`deadline reached while waiting for ${what}`)
    await sleep(10)
  }
}

export function sum<T>(xs: T[], f: (x: T) => number): number {
  return xs.reduce((a, x) => a + f(x), 0)
}

/** The drain: until `expected` deliveries arrived, nothing arrived for drainIdleMs, drainMaxMs passed, or the deadline. */
export async function drain(
  received: () => number,
  expected: () => number,
  spec: { drainIdleMs: number; drainMaxMs: number },
  deadline: number,
  pollMs: number
): Promise<void> {
  const drainEnd = Math.min(deadline, nowMs() + spec.drainMaxMs)
  let last = received()
  let lastChange = nowMs()
  while (received() < expected() && nowMs() < drainEnd) {
    await sleep(pollMs)
    const r = received()
    if (r !== last) {
      last = r
      lastChange = nowMs()
    } else if (nowMs() - lastChange > spec.drainIdleMs) break
  }
}

export interface StoppedWorkers {
  results: { kind: string; result: WorkerResult }[]
  pubResults: WorkerResult[]
  subResults: WorkerResult[]
}

/** Stops every worker (subscribers first) and sorts their results by kind. */
export async function stopWorkers<S extends AnyTask, P extends AnyTask>(
  subs: WorkerHandle<S>[],
  pubs: WorkerHandle<P>[],
  pubKind: string,
  subKind: string
): Promise<StoppedWorkers> {
  const results: { kind: string; result: WorkerResult }[] = []
  for (const w of [...subs, ...pubs]) results.push({ kind: w.task.kind, result: await w.stop() })
  return {
    results,
    pubResults: results.filter((r) => r.kind === pubKind).map((r) => r.result),
    subResults: results.filter((r) => r.kind === subKind).map((r) => r.result)
  }
}

function extreme(xs: (number | null)[], f: (...v: number[]) => number): number | null {
  const v = xs.filter((x): x is number => x !== null)
  return v.length ? f(...v) : null
}

/** From the first publish to the last ack and the last delivery, and the rates over those windows. */
export function timeline(pubResults: WorkerResult[], subResults: WorkerResult[]) {
  const firstSend = extreme(
    pubResults.map((r) => r.firstSendAt),
    Math.min
  )
  const lastAck = extreme(
    pubResults.map((r) => r.lastAckAt),
    Math.max
  )
  const lastRecv = extreme(
    subResults.map((r) => r.lastRecvAt),
    Math.max
  )
  const rate = (n: number, end: number | null): number | null => (firstSend !== null && end !== null && end > firstSend ? (n * 1000) / (end - firstSend) : null)
  return { firstSend, lastAck, lastRecv, rate, windowMs: firstSend !== null && lastRecv !== null ? lastRecv - firstSend : null }
}

/** What the runner keeps of each worker's result in the report (latencies go elsewhere). */
export function workerSummaries(results: StoppedWorkers['results']) {
  return results.map(({ kind, result: { latencies: _l, ...rest } }) => ({ kind, result: rest }))
}

export async function runLoad(ctx: ScenarioContext, spec: LoadSpec): Promise<LoadStats> {
  const { workers } = ctx
  const broker = brokerOf(ctx)
  const subscribers = spec.sub.workers * spec.sub.clientsPerWorker
  const pubClients = spec.pub.workers * spec.pub.clientsPerWorker
  const maxPerClient = Math.max(1, Math.ceil(spec.pub.maxTotal / pubClients))
  const perWorkerCredit = (delivered: number): number => Math.floor((delivered + (spec.creditWindow ?? 0)) / spec.pub.workers)

  const subs: WorkerHandle[] = []
  for (let i = 0; i < spec.sub.workers; i++) {
    subs.push(
      workers.spawn({
        kind: 'sub',
        port: broker.port,
        clients: spec.sub.clientsPerWorker,
        clientIdPrefix: 'bench-sub',
        filter: spec.sub.filter,
        qos: spec.sub.qos,
        latency: spec.sub.latency,
        warmupMs: spec.sub.warmupMs
      })
    )
  }
  const pubs: WorkerHandle[] = []
  for (let i = 0; i < spec.pub.workers; i++) {
    pubs.push(
      workers.spawn({
        kind: 'pub',
        port: broker.port,
        clients: spec.pub.clientsPerWorker,
        clientIdPrefix: 'bench-pub',
        topic: spec.pub.topic,
        qos: spec.pub.qos,
        window: spec.pub.window,
        maxPerClient,
        durationMs: spec.pub.durationMs,
        ratePerClient: spec.pub.ratePerClient,
        payloadBytes: Math.max(8, spec.pub.payloadBytes),
        initialCredit: spec.creditWindow === null ? null : perWorkerCredit(0)
      })
    )
  }
  // subscribers first, so nothing published is missed
  await withDeadline(Promise.all(subs.map((w) => w.init())), ctx.deadline, 'subscribing')
  await withDeadline(Promise.all(pubs.map((w) => w.init())), ctx.deadline, 'connecting publishers')

  const received = (): number => sum(subs, (w) => w.progress.received)
  if (spec.creditWindow !== null) {
    let lastCredit = perWorkerCredit(0)
    const onProgress = (): void => {
      const credit = perWorkerCredit(received() / subscribers)
      if (credit <= lastCredit) return
      lastCredit = credit
      for (const p of pubs) p.send({ type: 'credit', upTo: credit })
    }
    for (const s of subs) s.onProgress = onProgress
  }

  const cpu0 = procCpuMs(broker.pid)
  const t0 = nowMs()
  for (const w of [...subs, ...pubs]) w.send({ type: 'go' })

  // publishing: bounded by count and time in the workers; by the scenario deadline here
  const pubDeadline = Math.min(ctx.deadline, t0 + spec.pub.durationMs + 30_000)
  // A broker that stops acknowledging (a stalled QoS flow) ends the phase after STALL_MS without acks.
  const notes: string[] = []
  let lastAcked = -1
  let lastAckChange = nowMs()
  await waitUntil(
    () => {
      if (pubs.every((p) => p.progress.pubDone || p.error !== null)) return true
      const acked = sum(pubs, (w) => w.progress.acked)
      if (acked !== lastAcked) {
        lastAcked = acked
        lastAckChange = nowMs()
      } else if (nowMs() - lastAckChange > STALL_MS) {
        const open = sum(pubs, (w) => w.progress.sent - w.progress.acked)
        notes.push(`stalled: no ack for ${STALL_MS / 1000} s with ${open} publishes unacknowledged; publishing stopped there`)
        return true
      }
      return false
    },
    pubDeadline,
    'the publishers to finish'
  )
  for (const p of pubs) if (p.error) throw new Error(`publisher worker ${p.index}: ${p.error}`)

  // drain: until every expected delivery arrived, nothing arrived for drainIdleMs, or drainMaxMs
  const expected = (): number => (spec.pub.qos === 0 ? sum(pubs, (w) => w.progress.sent) : sum(pubs, (w) => w.progress.acked)) * subscribers
  await drain(received, expected, spec, ctx.deadline, 10)
  const t1 = nowMs()
  const cpu1 = procCpuMs(broker.pid)

  const { results, pubResults, subResults } = await stopWorkers(subs, pubs, 'pub', 'sub')
  const { lastAck, lastRecv, rate, windowMs } = timeline(pubResults, subResults)
  const sent = sum(pubResults, (r) => r.sent)
  const acked = sum(pubResults, (r) => r.acked)
  const recv = sum(subResults, (r) => r.received)

  const latencies: number[] = []
  for (const r of subResults) if (r.latencies) for (const l of r.latencies) latencies.push(l)

  return {
    sent,
    acked,
    received: recv,
    expected: (spec.pub.qos === 0 ? sent : acked) * subscribers,
    subscribers,
    errors: results.reduce((a, r) => a + r.result.errors, 0),
    errorSamples: results.flatMap((r) => r.result.errorSamples).slice(0, 5),
    ackedPerSec: spec.pub.qos === 0 ? null : rate(acked, lastAck),
    deliveredPerSec: rate(recv, lastRecv),
    publishWindowMs: windowMs,
    cpu: {
      wallMs: t1 - t0,
      brokerMs: cpu1 - cpu0,
      clientMs: results.reduce((a, r) => a + r.result.cpuUserMs + r.result.cpuSystemMs, 0)
    },
    latencies,
    notes,
    workers: workerSummaries(results)
  }
}

/** Broker CPU time per delivered message (or delivery): robust where the clients limit the rate. */
export function brokerCpuPerDelivery(s: LoadStats, label = 'broker CPU µs/msg') {
  return {
    key: 'broker_cpu_us_per_msg',
    label,
    value: s.received > 0 ? (s.cpu.brokerMs * 1000) / s.received : null,
    unit: 'µs',
    better: 'lower' as const,
    show: true
  }
}

/** Notes every scenario adds: losses and client errors. */
export function loadNotes(s: LoadStats): string[] {
  const notes: string[] = [...s.notes]
  if (s.received < s.expected) {
    notes.push(
      `${s.expected - s.received} of ${s.expected} expected deliveries missing (${((100 * (s.expected - s.received)) / Math.max(1, s.expected)).toFixed(2)}%)`
    )
  }
  if (s.errors > 0) notes.push(`${s.errors} client errors, e.g. ${s.errorSamples.join('; ')}`)
  return notes
}
