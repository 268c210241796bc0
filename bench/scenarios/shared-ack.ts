// Scenario (Culex only): per-record acks (shared groups) against offset commits (ordered consumer
// groups), over the HTTP API, on the same stored records. N records (200,000; --quick 20,000;
// 4 partitions, 16 keys) are written in-process through Culex's Store and RocksLog, as log-replay
// does; then `culex start` on that data dir, and one after the other, each with a new group:
//   - ordered group: join, then fetch 500 / commit (last offset + 1 per partition) until all are
//     consumed; with 1 member, then with 4 (one partition each);
//   - shared group (ordering 'none', maxAckPending 10,000): fetch 500 / ack each record until all
//     are acknowledged; with 1, 2 and 4 concurrent consumers;
//   - the same with ordering 'per-key' (a record waits while an earlier one with its key is
//     unfinished: with 16 keys, at most 16 records are out at once), 1 and 4 consumers.
// Each phase checks that every record was consumed / acknowledged exactly once (per-partition
// offset bitmaps; ordered groups: in offset order; per-key: in offset order per key), that no
// shared record was delivered twice and that the group's lag is 0 at the end; else it fails.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { StreamConfig } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import type { RunningBroker } from '../lib/brokers.js'
import { nowMs, procCpuMs } from '../lib/procs.js'
import { pick, type CpuReport, type Metric, type Mode, type Scenario, type ScenarioContext } from '../lib/scenario.js'
import { LOG_PARTITIONS, LOG_STREAM } from './log-append.js'
import { prefill } from './log-replay.js'

export function sharedAckRecords(mode: Mode): number {
  return pick(mode, { quick: 20_000, default: 200_000, full: 200_000 })
}

const KEYS = 16
/** Records per fetch, and so per commit / ack request. */
const BATCH = 500
const MAX_ACK_PENDING = 10_000
/** Long-poll of a shared fetch that finds nothing (the last records are out with other consumers). */
const SHARED_WAIT_MS = 1000
/**
 * Time box of a per-key phase: there each fetch hands out at most one record per key (16), and its
 * cost grows with the records pending (up to maxAckPending per partition), so 200,000 records
 * would take many minutes. A phase stopped by it reports the rate up to then, and a note.
 */
const perKeyBudgetMs = (mode: Mode): number => pick(mode, { quick: 60_000, default: 60_000, full: 120_000 })

const streamConfig: StreamConfig = {
  name: LOG_STREAM,
  partitions: LOG_PARTITIONS,
  retention: { maxAgeMs: null, maxBytes: null, maxRecords: null }
}
const culexConfig = { streams: { [LOG_STREAM]: { partitions: LOG_PARTITIONS } } }

export interface Range {
  partition: number
  start: number
  end: number
}

interface WireRecord {
  stream: string
  partition: number
  offset: number
  key: string | null
}
interface SharedWireRecord extends WireRecord {
  deliveryCount: number
}

/** One bit (a byte) per stored record: each (partition, offset) may be marked once. */
class Seen {
  readonly #bits: Uint8Array[] = []
  readonly #start: number[] = []
  count = 0

  constructor(
    ranges: Range[],
    private readonly what: string
  ) {
    for (const r of ranges) {
      this.#bits[r.partition] = new Uint8Array(r.end - r.start)
      this.#start[r.partition] = r.start
    }
  }

  mark(partition: number, offset: number): void {
    const bits = this.#bits[partition]
    const i = offset - (this.#start[partition] ?? 0)
    if (!bits || i < 0 || i >= bits.length) throw new Error(`${this.what} ${LOG_STREAM}/${partition}@${offset}: not a stored record`)
    if (bits[i]) throw new Error(`${this.what} ${LOG_STREAM}/${partition}@${offset} twice`)
    bits[i] = 1
    this.count++
  }
}

export class Api {
  readonly base: string
  requests = 0

  constructor(port: number) {
    this.base = `http://127.0.0.1:${port}/api/v1`
  }

  async call(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    this.requests++
    const res = await fetch(this.base + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal
    })
    const text = await res.text()
    if (!res.ok) throw new ApiFailure(res.status, `${method} ${path}: ${res.status} ${text.slice(0, 300)}`)
    return text ? (JSON.parse(text) as unknown) : null
  }

  async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    return (await this.call(method, path, body, signal)) as T
  }
}

class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message)
  }
}

export interface Phase {
  id: string
  label: string
  /** nowMs() when the measured window began (CLOCK_MONOTONIC, as a --profile's sample times) */
  startedAt: number
  /** records consumed (committed or acknowledged) */
  records: number
  wallMs: number
  brokerMs: number
  clientMs: number
  /** HTTP requests in the measured window */
  requests: number
  /** fetches that returned nothing */
  emptyFetches: number
  /** false: stopped by its time box before every record was consumed */
  complete: boolean
}

/** Broker CPU, client CPU and time from one moment to another. */
export function meter(pid: number): () => { startedAt: number; wallMs: number; brokerMs: number; clientMs: number } {
  const t0 = nowMs()
  const b0 = procCpuMs(pid)
  const c0 = process.cpuUsage()
  return () => {
    const c = process.cpuUsage(c0)
    return { startedAt: t0, wallMs: nowMs() - t0, brokerMs: procCpuMs(pid) - b0, clientMs: (c.user + c.system) / 1000 }
  }
}

/** Runs `n` loops; the first to fail stops the others (through `stop`) and fails the whole. */
async function together(n: number, stop: AbortController, loop: (i: number) => Promise<void>): Promise<void> {
  const results = await Promise.allSettled(
    Array.from({ length: n }, async (_, i) => {
      try {
        await loop(i)
      } catch (err) {
        stop.abort()
        throw err
      }
    })
  )
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
}

export interface PhaseContext {
  api: Api
  pid: number
  ranges: Range[]
  total: number
  deadline: number
}

export async function orderedPhase(c: PhaseContext, group: string, members: number): Promise<Phase> {
  const { api, total } = c
  const ids: string[] = []
  for (let i = 0; i < members; i++) {
    const m = await api.json<{ memberId: string }>('POST', `/groups/${group}/members`, { streams: [LOG_STREAM], clientId: `bench-${i + 1}` })
    ids.push(m.memberId)
  }
  const fetched = new Seen(c.ranges, 'ordered group: fetched')
  const committed = new Seen(c.ranges, 'ordered group: committed')
  const next = new Map(c.ranges.map((r) => [r.partition, r.start]))
  // non-empty fetches are bounded by the records; a member stops at its first empty one
  const maxFetches = Math.ceil(total / BATCH) + LOG_PARTITIONS * 2 + members * 2 + 10
  let fetches = 0
  let empty = 0
  const stop = new AbortController()
  const requests0 = api.requests
  let end: (ReturnType<ReturnType<typeof meter>> & { records: number }) | null = null
  const measure = meter(c.pid)
  await together(members, stop, async (i) => {
    const member = `/groups/${group}/members/${ids[i]}`
    while (!stop.signal.aborted && committed.count < total) {
      if (nowMs() > c.deadline) throw new Error(`ordered group x${members}: deadline reached after ${committed.count} of ${total} records`)
      if (++fetches > maxFetches) throw new Error(`ordered group x${members}: more than ${maxFetches} fetches for ${total} records`)
      const page = await api.json<{ records: WireRecord[] }>('POST', `${member}/fetch`, { maxRecords: BATCH })
      if (page.records.length === 0) {
        // no appends meanwhile: the member's partitions are consumed
        empty++
        return
      }
      const last = new Map<number, number>()
      for (const r of page.records) {
        // an ordered group hands out each partition in offset order, without gaps
        if (r.offset !== next.get(r.partition))
          throw new Error(`ordered group: ${LOG_STREAM}/${r.partition}@${r.offset} fetched, expected offset ${next.get(r.partition)}`)
        next.set(r.partition, r.offset + 1)
        fetched.mark(r.partition, r.offset)
        last.set(r.partition, r.offset)
      }
      const offsets = [...last].map(([partition, offset]) => ({ stream: LOG_STREAM, partition, offset: offset + 1 }))
      await api.json('POST', `${member}/commit`, { offsets })
      for (const r of page.records) committed.mark(r.partition, r.offset)
      if (committed.count === total) end = { ...measure(), records: committed.count }
    }
  })
  const done = end ?? { ...measure(), records: committed.count }
  if (committed.count !== total) throw new Error(`ordered group x${members}: ${committed.count} of ${total} records consumed, then the fetches came back empty`)
  const description = await api.json<{ partitions: Array<{ lag: number }> }>('GET', `/groups/${group}`)
  const lag = description.partitions.reduce((n, p) => n + p.lag, 0)
  if (lag !== 0) throw new Error(`ordered group x${members}: lag ${lag} after all records were committed`)
  for (const id of ids) await api.call('DELETE', `/groups/${group}/members/${id}`)
  return {
    id: `ordered_${members}`,
    label: `ordered group, ${members} member${members > 1 ? 's' : ''}`,
    ...done,
    requests: api.requests - requests0,
    emptyFetches: empty,
    complete: true
  }
}

export async function sharedPhase(
  c: PhaseContext,
  group: string,
  ordering: 'none' | 'per-key',
  consumers: number,
  budgetMs: number | null = null,
  /** records per fetch (and so per acks request); share-mqtt also runs 32, the MQTT dispatcher's window */
  batch = BATCH
): Promise<Phase> {
  const { api, total } = c
  const name = `shared group (${ordering}) x${consumers}`
  await api.json('PUT', `/shared-groups/${group}`, { streams: [LOG_STREAM], ordering, maxAckPending: MAX_ACK_PENDING })
  const delivered = new Seen(c.ranges, `${name}: delivered`)
  const acked = new Seen(c.ranges, `${name}: acknowledged`)
  // per-key: the last offset handed out per partition and key
  const lastOfKey = new Map<string, number>()
  // a fetch that returns records is bounded by the records; the empty ones (woken by other
  // consumers' acks, which may free nothing for this one) by acks x consumers
  const maxFetches = (total + 100) * (consumers + 1)
  let fetches = 0
  let empty = 0
  const stop = new AbortController()
  const requests0 = api.requests
  let end: (ReturnType<ReturnType<typeof meter>> & { records: number }) | null = null
  const measure = meter(c.pid)
  const stopAt = budgetMs === null ? Infinity : nowMs() + budgetMs
  await together(consumers, stop, async (i) => {
    const consumer = `bench-${i + 1}`
    while (!stop.signal.aborted && acked.count < total) {
      if (nowMs() > stopAt) {
        end ??= { ...measure(), records: acked.count }
        stop.abort()
        return
      }
      if (nowMs() > c.deadline) throw new Error(`${name}: deadline reached after ${acked.count} of ${total} records`)
      if (++fetches > maxFetches) throw new Error(`${name}: more than ${maxFetches} fetches for ${total} records`)
      let page: { records: SharedWireRecord[] }
      try {
        page = await api.json('POST', `/shared-groups/${group}/fetch`, { consumer, maxRecords: batch, waitMs: SHARED_WAIT_MS }, stop.signal)
      } catch (err) {
        if (stop.signal.aborted) return // everything acknowledged (or another consumer failed)
        throw err
      }
      if (page.records.length === 0) {
        empty++
        continue
      }
      for (const r of page.records) {
        // the locks (ackWaitMs 30 s) never expire here: a second delivery is a lost or duplicate one
        if (r.deliveryCount !== 1) throw new Error(`${name}: ${LOG_STREAM}/${r.partition}@${r.offset} delivered with deliveryCount ${r.deliveryCount}`)
        delivered.mark(r.partition, r.offset)
        if (ordering === 'per-key') {
          const k = `${r.partition}/${r.key}`
          const before = lastOfKey.get(k) ?? -1
          if (r.offset <= before) throw new Error(`${name}: key ${r.key}: ${LOG_STREAM}/${r.partition}@${r.offset} handed out after offset ${before}`)
          lastOfKey.set(k, r.offset)
        }
      }
      const acks = page.records.map((r) => ({ stream: r.stream, partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, action: 'ack' }))
      const answer = await api.json<{ results: Array<{ partition: number; offset: number; ok: boolean; error?: string }> }>(
        'POST',
        `/shared-groups/${group}/acks`,
        { consumer, acks }
      )
      if (answer.results.length !== acks.length) throw new Error(`${name}: ${acks.length} acks answered with ${answer.results.length} results`)
      for (const r of answer.results) {
        if (!r.ok) throw new Error(`${name}: ack of ${LOG_STREAM}/${r.partition}@${r.offset} refused: ${r.error ?? 'not ok'}`)
        acked.mark(r.partition, r.offset)
      }
      if (acked.count === total) {
        end = { ...measure(), records: acked.count }
        stop.abort() // ends the other consumers' long-polls
      }
    }
  })
  const done = end ?? { ...measure(), records: acked.count }
  const id = `shared_${ordering === 'none' ? 'none' : 'perkey'}_${consumers}${batch === BATCH ? '' : `_fetch${batch}`}`
  const label = `shared group, ${ordering}, ${consumers} consumer${consumers > 1 ? 's' : ''}${batch === BATCH ? '' : `, fetch ${batch}`}`
  const counts = { ...done, requests: api.requests - requests0, emptyFetches: empty }
  if (acked.count < total && nowMs() > stopAt) return { id, label, ...counts, complete: false }
  if (acked.count !== total) throw new Error(`${name}: ${acked.count} of ${total} records acknowledged`)
  const description = await api.json<{ lag: number; deadLettered: number; partitions: Array<{ pending: number }> }>('GET', `/shared-groups/${group}`)
  const pending = description.partitions.reduce((n, p) => n + p.pending, 0)
  if (description.lag !== 0 || pending !== 0 || description.deadLettered !== 0) {
    throw new Error(`${name}: after all acks the group reports lag ${description.lag}, pending ${pending}, dead-lettered ${description.deadLettered}`)
  }
  return { id, label, ...counts, complete: true }
}

export function phaseMetrics(p: Phase): Metric[] {
  return [
    {
      key: `${p.id}_per_s`,
      label: `${p.label}: records/s`,
      value: p.wallMs > 0 ? (p.records * 1000) / p.wallMs : null,
      unit: 'records/s',
      better: 'higher',
      show: true
    },
    {
      key: `${p.id}_broker_cpu_us`,
      label: `${p.label}: broker CPU µs/record`,
      value: p.records > 0 ? (p.brokerMs * 1000) / p.records : null,
      unit: 'µs',
      better: 'lower',
      show: true
    },
    {
      key: `${p.id}_client_cpu_us`,
      label: `${p.label}: client CPU µs/record`,
      value: p.records > 0 ? (p.clientMs * 1000) / p.records : null,
      unit: 'µs',
      better: 'lower',
      show: false,
      ratio: false
    }
  ]
}

export function ratioMetric(key: string, label: string, a: Phase | undefined, b: Phase | undefined): Metric {
  const rate = (p: Phase | undefined): number | null => (p && p.wallMs > 0 ? p.records / p.wallMs : null)
  const ra = rate(a)
  const rb = rate(b)
  return { key, label, value: ra !== null && rb ? ra / rb : null, unit: 'x', better: 'higher', show: true, ratio: false }
}

/**
 * N records written in-process with Culex's Store and RocksLog (not measured) into `root`/data,
 * checked to be stored, then Culex started on that data dir with its admin API.
 */
export async function prefilledBroker(
  ctx: ScenarioContext,
  root: string,
  total: number,
  fill: (log: RocksLog) => Promise<void>,
  culexConfig: Record<string, unknown>
): Promise<{ broker: RunningBroker; c: PhaseContext }> {
  const dataDir = join(root, 'data')
  const store = await Store.open({ dataDir, durability: ctx.brokerName.endsWith('none') ? 'none' : 'fsync' })
  const log = await RocksLog.open(store, [streamConfig])
  let ranges: Range[]
  try {
    await fill(log)
    ranges = (await log.describeStream(LOG_STREAM)).partitions.map((p) => ({ partition: p.partition, start: p.startOffset, end: p.endOffset }))
  } finally {
    await log.close()
    await store.close()
  }
  const stored = ranges.reduce((n, r) => n + r.end - r.start, 0)
  if (stored !== total) throw new Error(`${stored} records stored, ${total} written`)
  const broker = await ctx.startBroker({ dataDir, admin: true, culexConfig })
  return { broker, c: { api: new Api(broker.adminPort!), pid: broker.pid, ranges, total, deadline: ctx.deadline } }
}

export const sharedAck: Scenario = {
  id: 'shared-ack',
  title: 'Consumer groups over HTTP: shared group (fetch + per-record ack) against ordered group (fetch + commit) on N stored records (Culex only)',
  setup: 'own',
  appliesTo: ['culex-fsync', 'culex-none', 'base-fsync', 'base-none'],
  deadlineMs: (mode) => pick(mode, { quick: 240_000, default: 600_000, full: 900_000 }),
  async run(ctx) {
    const total = sharedAckRecords(ctx.mode)
    const durability = ctx.brokerName.endsWith('none') ? 'none' : 'fsync'
    const notes: string[] = []
    const root = mkdtempSync(join(tmpdir(), 'culex-bench-shared-'))
    try {
      const { broker, c } = await prefilledBroker(ctx, root, total, (log) => prefill(log, total, ctx.deadline, KEYS), culexConfig)
      const phases: Phase[] = []
      const run = async (p: Promise<Phase>): Promise<Phase> => {
        const phase = await p
        phases.push(phase)
        if (!phase.complete) {
          notes.push(
            `${phase.label}: stopped by its ${perKeyBudgetMs(ctx.mode) / 1000} s time box after ${phase.records} of ${total} records ` +
              '(rate and CPU over those; each was delivered and acknowledged once, the rest not checked)'
          )
        }
        ctx.log(
          `  shared-ack   ${phase.label}: ${Math.round((phase.records * 1000) / phase.wallMs)} records/s, ` +
            `broker ${((phase.brokerMs * 1000) / phase.records).toFixed(1)} µs/record, ${phase.requests} requests (${phase.emptyFetches} empty fetches), ${(phase.wallMs / 1000).toFixed(2)} s${phase.complete ? '' : ' (time box)'}`
        )
        return phase
      }
      const ordered1 = await run(orderedPhase(c, 'bench-ordered-1', 1))
      // a build without shared groups (an older baseline): the ordered rows only
      let hasShared = true
      try {
        await c.api.call('GET', '/shared-groups')
      } catch (err) {
        if (!(err instanceof ApiFailure && err.status === 404)) throw err
        hasShared = false
        notes.push('no shared groups in this build (GET /api/v1/shared-groups: 404)')
      }
      const shared1 = hasShared ? await run(sharedPhase(c, 'bench-shared-none-1', 'none', 1)) : undefined
      const ordered4 = await run(orderedPhase(c, 'bench-ordered-4', LOG_PARTITIONS))
      let shared4: Phase | undefined
      let perKey1: Phase | undefined
      if (hasShared) {
        await run(sharedPhase(c, 'bench-shared-none-2', 'none', 2))
        shared4 = await run(sharedPhase(c, 'bench-shared-none-4', 'none', 4))
        perKey1 = await run(sharedPhase(c, 'bench-shared-key-1', 'per-key', 1, perKeyBudgetMs(ctx.mode)))
        await run(sharedPhase(c, 'bench-shared-key-4', 'per-key', 4, perKeyBudgetMs(ctx.mode)))
      }
      await broker.stop()

      const byId = new Map(phases.map((p) => [p.id, p]))
      const metrics: Metric[] = [
        ...phaseMetrics(ordered1),
        ...(shared1 ? phaseMetrics(shared1) : []),
        ratioMetric('shared_over_ordered_1', 'shared (none) / ordered, 1 consumer: records/s ratio', shared1, ordered1),
        ...phaseMetrics(ordered4),
        ...['shared_none_2', 'shared_none_4', 'shared_perkey_1', 'shared_perkey_4'].flatMap((id) => {
          const p = byId.get(id)
          return p ? phaseMetrics(p) : []
        }),
        ratioMetric('shared_over_ordered_4', 'shared (none) / ordered, 4 consumers: records/s ratio', shared4, ordered4),
        ratioMetric('perkey_over_none_1', 'shared per-key / none, 1 consumer: records/s ratio', perKey1, shared1)
      ]
      const cpu: CpuReport = {
        wallMs: phases.reduce((n, p) => n + p.wallMs, 0),
        brokerMs: phases.reduce((n, p) => n + p.brokerMs, 0),
        clientMs: phases.reduce((n, p) => n + p.clientMs, 0)
      }
      return {
        metrics,
        cpu,
        notes,
        details: { records: total, partitions: c.ranges, keys: KEYS, batch: BATCH, maxAckPending: MAX_ACK_PENDING, durability, phases }
      }
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }
}
