// The runner's side of the raw-socket load (bench/raw/worker.ts): publisher and subscriber
// processes, go, publish (bounded by count, time, window and credit), drain, stop, and the numbers,
// including the loss check from the sequence numbers in the payloads.
import { drain, stopWorkers, sum, timeline, withDeadline, workerSummaries } from '../lib/load.js'
import { nowMs, procCpuMs, sleep } from '../lib/procs.js'
import type { RawPubTask, RawSubPublisher, RawSubTask, WorkerResult } from '../lib/protocol.js'
import { brokerOf, type CpuReport, type ScenarioContext } from '../lib/scenario.js'
import type { WorkerHandle } from '../lib/workers.js'

export interface RawLoadSpec {
  qos: 0 | 1
  /** publisher connections in all, spread over `pubProcesses` */
  publishers: number
  pubProcesses: number
  /** subscriber processes */
  subProcesses: number
  /** subscriber connections per subscriber process; with more than one in all, each takes a share of the topics */
  subConnections: number
  /** QoS 1: unacknowledged publishes per connection; both: packets per socket write, at most */
  window: number
  durationMs: number
  /** all publishers together send at most this many messages */
  maxTotal: number
  payloadBytes: number
  /**
   * Publishers may be at most this many messages ahead of what the subscribers received (credit
   * through the runner), so a broker's backlog stays bounded; null = no such limit.
   */
  creditWindow: number | null
  /** the drain ends when nothing arrived for this long */
  drainIdleMs: number
  drainMaxMs: number
  /** every socket stops reading this long after a read that did not fill its buffer, to batch (0 = never) */
  readPauseMs: number
}

export interface RawLoadStats {
  publishers: number
  /** subscriber connections */
  subscribers: number
  sent: number
  acked: number
  /** PUBLISH packets the subscribers got (duplicates included) */
  received: number
  /** distinct (publisher, sequence number) pairs the subscribers got */
  distinct: number
  /**
   * QoS 1: publishes the broker acknowledged (sequence numbers below each connection's ack prefix)
   * that no subscriber got after the drain. QoS 0: publishes sent that no subscriber got.
   */
  lost: number
  /** more were missing than the workers listed: `lost` is a lower bound */
  lostAtLeast: boolean
  duplicates: number
  reordered: number
  protocolErrors: number
  errors: number
  errorSamples: string[]
  /** from the first publish to the last ack / the last delivery */
  ackedPerSec: number | null
  deliveredPerSec: number | null
  windowMs: number | null
  cpu: CpuReport
  notes: string[]
  workers: { kind: string; result: Omit<WorkerResult, 'latencies'> }[]
}

const STALL_MS = 5000
const POLL_MS = 5

/** `total` split into `parts` sizes that differ by at most one, larger first. */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0))
}

export async function runRawLoad(ctx: ScenarioContext, spec: RawLoadSpec): Promise<RawLoadStats> {
  const broker = brokerOf(ctx)
  const notes: string[] = []
  const publishers = Math.max(1, spec.publishers)
  const pubProcesses = Math.min(Math.max(1, spec.pubProcesses), publishers)
  const subProcesses = Math.min(Math.max(1, spec.subProcesses), publishers)
  const subscribers = Math.min(subProcesses * Math.max(1, spec.subConnections), publishers)
  if (subscribers < spec.subProcesses * spec.subConnections) notes.push(`${subscribers} subscriber connections: no more than there are publishers`)
  const maxPerConnection = Math.max(1, Math.ceil(spec.maxTotal / publishers))
  const connections = split(publishers, pubProcesses)
  // each process's share of the credit follows its share of the connections
  const creditFor = (delivered: number, conns: number): number => Math.floor(((delivered + (spec.creditWindow ?? 0)) * conns) / publishers)

  // one subscriber: 'bench/#'; S of them: subscriber s takes the topics of publishers s, s+S, s+2S, ...
  const filters: string[][] =
    subscribers === 1
      ? [['bench/#']]
      : Array.from({ length: subscribers }, (_, s) =>
          Array.from({ length: Math.ceil((publishers - s) / subscribers) }, (_, k) => `bench/${s + k * subscribers}/t`)
        )
  const reportEvery = Math.max(256, Math.floor((spec.creditWindow ?? 65_536) / 8))
  let firstSub = 0
  const subs: WorkerHandle<RawSubTask>[] = split(subscribers, subProcesses).map((n) =>
    ctx.workers.spawnRaw<RawSubTask>({
      kind: 'raw-sub',
      port: broker.port,
      filters: filters.slice(firstSub, (firstSub += n)),
      qos: spec.qos,
      reportEvery,
      readPauseMs: spec.readPauseMs
    })
  )
  let first = 0
  const pubs: WorkerHandle<RawPubTask>[] = connections.map((conns) => {
    const task: RawPubTask = {
      kind: 'raw-pub',
      port: broker.port,
      connections: conns,
      firstPublisher: first,
      qos: spec.qos,
      window: spec.window,
      maxPerConnection,
      durationMs: spec.durationMs,
      payloadBytes: spec.payloadBytes,
      initialCredit: spec.creditWindow === null ? null : creditFor(0, conns),
      readPauseMs: spec.readPauseMs
    }
    first += conns
    return ctx.workers.spawnRaw(task)
  })
  // subscribers first, so nothing published is missed
  await withDeadline(Promise.all(subs.map((w) => w.init())), ctx.deadline, 'subscribing')
  await withDeadline(Promise.all(pubs.map((w) => w.init())), ctx.deadline, 'connecting publishers')

  const received = (): number => sum(subs, (w) => w.progress.received)
  if (spec.creditWindow !== null) {
    const last = pubs.map((p) => creditFor(0, p.task.connections))
    const onProgress = (): void => {
      const delivered = received()
      pubs.forEach((p, i) => {
        const credit = creditFor(delivered, p.task.connections)
        if (credit <= (last[i] ?? 0)) return
        last[i] = credit
        p.send({ type: 'credit', upTo: credit })
      })
    }
    for (const s of subs) s.onProgress = onProgress
  }

  const cpu0 = procCpuMs(broker.pid)
  const t0 = nowMs()
  for (const w of subs) w.send({ type: 'go' })
  for (const w of pubs) w.send({ type: 'go' })

  // publishing: bounded by count and time in the workers, here by the deadline and a stall detector
  // (QoS 1: no ack for STALL_MS; QoS 0: neither sent nor received moved for STALL_MS)
  const pubDeadline = Math.min(ctx.deadline, t0 + spec.durationMs + 30_000)
  const movement = (): number => sum(pubs, (w) => (spec.qos === 1 ? w.progress.acked : w.progress.sent)) + (spec.qos === 0 ? received() : 0)
  let lastMoved = -1
  let lastMoveAt = nowMs()
  for (;;) {
    if (pubs.every((p) => p.progress.pubDone || p.error !== null)) break
    for (const w of [...pubs, ...subs]) if (w.error !== null) throw new Error(`raw ${w.task.kind} worker ${w.index}: ${w.error}`)
    if (nowMs() > pubDeadline) throw new Error('deadline reached while waiting for the publishers to finish')
    const m = movement()
    if (m !== lastMoved) {
      lastMoved = m
      lastMoveAt = nowMs()
    } else if (nowMs() - lastMoveAt > STALL_MS) {
      const open = sum(pubs, (w) => w.progress.sent - w.progress.acked)
      notes.push(
        spec.qos === 1
          ? `stalled: no ack for ${STALL_MS / 1000} s with ${open} publishes unacknowledged; publishing stopped there`
          : `stalled: nothing sent or delivered for ${STALL_MS / 1000} s; publishing stopped there`
      )
      break
    }
    await sleep(POLL_MS)
  }
  for (const p of pubs) if (p.error !== null) throw new Error(`raw publisher worker ${p.index}: ${p.error}`)

  // drain: until every expected delivery arrived, nothing arrived for drainIdleMs, or drainMaxMs
  const expected = (): number => sum(pubs, (w) => (spec.qos === 0 ? w.progress.sent : w.progress.acked))
  await drain(received, expected, spec, ctx.deadline, POLL_MS)
  const t1 = nowMs()
  const cpu1 = procCpuMs(broker.pid)

  const { results, pubResults, subResults } = await stopWorkers(subs, pubs, 'raw-pub', 'raw-sub')

  // the loss check: per publisher, what it got acknowledged (or sent, at QoS 0) against what arrived
  const seenBy = new Map<number, RawSubPublisher>()
  for (const r of subResults) {
    for (const s of r.raw?.subscribed ?? []) {
      if (seenBy.has(s.publisher)) notes.push(`publisher ${s.publisher} reached more than one subscriber process`)
      seenBy.set(s.publisher, s)
    }
  }
  let lost = 0
  let lostAtLeast = false
  let outOfOrderAcks = 0
  const conns = pubResults.flatMap((r) => r.raw?.publishers ?? [])
  for (const c of conns) {
    const upTo = spec.qos === 1 ? c.ackedPrefix : c.sent
    outOfOrderAcks += spec.qos === 1 ? c.acked - c.ackedPrefix : 0
    const s = seenBy.get(c.publisher)
    if (s === undefined) lost += upTo
    else if (upTo >= s.maxSeq + 1) lost += upTo - s.distinct
    else {
      // some deliveries are beyond what was acknowledged: count only the gaps below it
      const below = s.missing.filter((seq) => seq < upTo).length
      lost += below
      if (s.missingTruncated && below === s.missing.length) lostAtLeast = true
    }
  }
  if (conns.length !== publishers) notes.push(`${conns.length} of ${publishers} publisher connections reported`)
  const pubacks = sum(subResults, (r) => r.raw?.pubacksSent ?? 0)
  const deliveries = sum(subResults, (r) => r.received)
  if (spec.qos === 1 && pubacks !== deliveries) notes.push(`${deliveries - pubacks} of ${deliveries} deliveries came at QoS 0 (no PUBACK)`)
  if (spec.qos === 0 && pubacks > 0) notes.push(`${pubacks} deliveries came at QoS 1 to a QoS 0 subscription`)
  if (outOfOrderAcks > 0) notes.push(`${outOfOrderAcks} publishes acknowledged after a gap of unacknowledged ones (not in the loss check)`)

  const { lastAck, lastRecv, rate, windowMs } = timeline(pubResults, subResults)
  const sent = sum(pubResults, (r) => r.sent)
  const acked = sum(pubResults, (r) => r.acked)
  const recv = sum(subResults, (r) => r.received)
  const seen = [...seenBy.values()]

  return {
    publishers,
    subscribers,
    sent,
    acked,
    received: recv,
    distinct: sum(seen, (s) => s.distinct),
    lost,
    lostAtLeast,
    duplicates: sum(seen, (s) => s.duplicates),
    reordered: sum(seen, (s) => s.reordered),
    protocolErrors: sum(results, (r) => r.result.raw?.protocolErrors ?? 0),
    errors: sum(results, (r) => r.result.errors),
    errorSamples: results.flatMap((r) => r.result.errorSamples).slice(0, 5),
    ackedPerSec: spec.qos === 0 ? null : rate(acked, lastAck),
    deliveredPerSec: rate(recv, lastRecv),
    windowMs,
    cpu: { wallMs: t1 - t0, brokerMs: cpu1 - cpu0, clientMs: sum(results, (r) => r.result.cpuUserMs + r.result.cpuSystemMs) },
    notes,
    workers: workerSummaries(results)
  }
}

/** Notes every raw scenario adds: losses, duplicates, reordering, protocol and client errors. */
export function rawLoadNotes(s: RawLoadStats, qos: 0 | 1): string[] {
  const notes = [...s.notes]
  if (s.lost > 0) {
    notes.push(
      qos === 1
        ? `LOST: ${s.lostAtLeast ? 'at least ' : ''}${s.lost} of ${s.acked} acknowledged publishes never reached the subscriber`
        : `${s.lostAtLeast ? 'at least ' : ''}${s.lost} of ${s.sent} QoS 0 publishes never reached the subscriber`
    )
  }
  if (s.duplicates > 0) notes.push(`${s.duplicates} duplicate deliveries`)
  if (s.reordered > 0) notes.push(`${s.reordered} deliveries out of order within a publisher`)
  if (s.protocolErrors > 0) notes.push(`${s.protocolErrors} unexpected packets (see the errors)`)
  if (s.errors > 0) notes.push(`${s.errors} client errors, e.g. ${s.errorSamples.join('; ')}`)
  return notes
}
