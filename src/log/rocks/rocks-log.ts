import type { BatchOp } from '@nxtedition/rocksdb'
import type { Store } from '../../store/store.js'
import { MAX_PARTITIONS, NAME_RULE, isValidName } from '../names.js'
import { partitionForKey } from '../partitioner.js'
import {
  LogError,
  outOfRange,
  type AppendOnce,
  type AppendOnceResult,
  type AppendResult,
  type EncodedRecord,
  type Log,
  type LogRecord,
  type OffsetSpec,
  type PartitionOffset,
  type ReadOptions,
  type RecordInput,
  type ShareStateUpdate,
  type StoredShareGroup,
  type StreamConfig,
  type StreamInfo
} from '../types.js'
import { AppendWaiters } from './append-waiters.js'
import * as shareState from './share-state.js'
import { DEDUP_DEFAULTS, DedupIndex, MAX_ID_BYTES, type DedupEntry, type DedupOptions } from './dedup-index.js'
import { commitKey, commitRange, parseCommitKey, readU64Value, recordKey, recordKeyAt, streamConfigKey, streamConfigRange, u64Value } from './keys.js'
import { headOp, loadPartition, type PartitionState } from './partition-state.js'
import { decodeRecord, encodeRecord } from '../record-codec.js'
import { planRetention } from './retention.js'
import { indexEntry, offsetForTime } from './time-index.js'

export interface RocksLogOptions {
  /** How often retention runs in the background (ms); 0 = only when applyRetention is called. */
  retentionIntervalMs?: number
  onRetentionError?: (err: unknown) => void
  /** appendOnce's dedup window and bound (default DEDUP_DEFAULTS: 2 minutes, 100,000 ids). */
  dedup?: DedupOptions
  onDedupSweepError?: (err: unknown) => void
}

/** The writes of an append, prepared synchronously (offsets taken), and what to do once they commit. */
interface PreparedAppend {
  s: StreamState
  ops: BatchOp[]
  results: AppendResult[]
  touched: Set<number>
}

interface StreamState {
  config: StreamConfig
  partitions: PartitionState[]
  roundRobin: number
}

/** The embedded log on the node's RocksDB: the default backend of the Log contract. */
export class RocksLog implements Log {
  private readonly streams = new Map<string, StreamState>()
  private readonly commits = new Map<string, number>()
  private readonly waiters = new AppendWaiters()
  /** Partitions appended to since the last commit was sent: their heads go into the next one. */
  private readonly dirty = new Map<PartitionState, [string, number]>()
  private retentionTimer: NodeJS.Timeout | undefined
  private dedupTimer: NodeJS.Timeout | undefined
  private retentionRunning: Promise<number> | null = null
  private closed = false

  private readonly dedup: DedupIndex

  private constructor(
    private readonly store: Store,
    dedup: DedupOptions
  ) {
    this.dedup = new DedupIndex(store, dedup)
    // a partition's head (start offset, bytes) is written once per commit, not once per append
    store.contribute(() => this.dirtyHeads())
  }

  private dirtyHeads(): BatchOp[] {
    if (this.dirty.size === 0) return []
    const ops: BatchOp[] = []
    for (const [state, [stream, p]] of this.dirty) ops.push(headOp(stream, p, state))
    this.dirty.clear()
    return ops
  }

  /** Opens the log: loads stored streams and commits, then ensures the configured streams. */
  static async open(store: Store, streams: StreamConfig[] = [], options: RocksLogOptions = {}): Promise<RocksLog> {
    const log = new RocksLog(store, options.dedup ?? DEDUP_DEFAULTS)
    await log.load()
    await log.dedup.load(Date.now())
    for (const config of streams) await log.ensureStream(config)
    const interval = options.retentionIntervalMs ?? 30_000
    if (interval > 0) {
      log.retentionTimer = setInterval(() => {
        log.applyRetention().catch((err: unknown) => options.onRetentionError?.(err))
      }, interval)
      log.retentionTimer.unref()
    }
    const sweep = log.dedup.enabled ? (options.dedup?.sweepIntervalMs ?? Math.min(log.dedup.options.windowMs, 30_000)) : 0
    if (sweep > 0) {
      log.dedupTimer = setInterval(() => {
        log.sweepDedup().catch((err: unknown) => options.onDedupSweepError?.(err))
      }, sweep)
      log.dedupTimer.unref()
    }
    return log
  }

  private async load(): Promise<void> {
    for await (const [, v] of this.store.scan(streamConfigRange())) {
      const config = JSON.parse(v.toString('utf8')) as StreamConfig
      this.streams.set(config.name, { config, partitions: await this.loadPartitions(config), roundRobin: 0 })
    }
    for await (const [k, v] of this.store.scan(commitRange())) {
      const { group, stream, partition } = parseCommitKey(k)
      this.commits.set(commitId(group, stream, partition), readU64Value(v))
    }
  }

  private async loadPartitions(config: StreamConfig): Promise<PartitionState[]> {
    const partitions: PartitionState[] = []
    for (let p = 0; p < config.partitions; p++) partitions.push(await loadPartition(this.store, config.name, p))
    return partitions
  }

  async ensureStream(config: StreamConfig): Promise<StreamInfo> {
    if (!isValidName(config.name)) throw new LogError('INVALID_ARGUMENT', `invalid stream name "${config.name}": expected ${NAME_RULE}`)
    if (!Number.isInteger(config.partitions) || config.partitions < 1 || config.partitions > MAX_PARTITIONS) {
      throw new LogError('INVALID_ARGUMENT', `partitions must be an integer from 1 to ${MAX_PARTITIONS}`)
    }
    const existing = this.streams.get(config.name)
    if (existing && existing.config.partitions !== config.partitions) {
      // Changing the count would move keys to other partitions and break per-key order.
      throw new LogError('STREAM_EXISTS', `stream ${config.name} has ${existing.config.partitions} partitions; it cannot be changed to ${config.partitions}`, {
        partitions: existing.config.partitions
      })
    }
    const stored: StreamConfig = { name: config.name, partitions: config.partitions, retention: { ...config.retention } }
    if (!existing || JSON.stringify(existing.config) !== JSON.stringify(stored)) {
      await this.store.write([{ type: 'put', key: streamConfigKey(config.name), value: Buffer.from(JSON.stringify(stored)) }])
    }
    if (existing) existing.config = stored
    else this.streams.set(stored.name, { config: stored, partitions: await this.loadPartitions(stored), roundRobin: 0 })
    return this.info(stored.name)
  }

  async listStreams(): Promise<StreamInfo[]> {
    return [...this.streams.keys()].sort().map((name) => this.info(name))
  }

  async describeStream(name: string): Promise<StreamInfo> {
    return this.info(name)
  }

  private info(name: string): StreamInfo {
    const s = this.stream(name)
    return {
      config: structuredClone(s.config),
      partitions: s.partitions.map((p, partition) => ({ partition, startOffset: p.start, endOffset: p.end, bytes: p.bytes }))
    }
  }

  async append(stream: string, records: RecordInput[], partition?: number): Promise<AppendResult[]> {
    const batch = this.prepare(stream, records, partition)
    await this.store.write(batch.ops)
    this.appended(stream, batch)
    return batch.results
  }

  /**
   * The id is looked up and remembered synchronously (dedup-index.ts), so appendOnce keeps call
   * order with append; its entry goes into the records' batch.
   */
  async appendOnce(stream: string, records: RecordInput[], once: AppendOnce, partition?: number): Promise<AppendOnceResult> {
    checkOnce(once)
    this.stream(stream)
    if (!this.dedup.enabled) return { duplicate: false, results: await this.append(stream, records, partition) }
    const now = Date.now()
    const found = once.lookup === false ? undefined : this.dedup.find(stream, once.id, now)
    if (found && found.fingerprint === once.fingerprint) return this.duplicateOf(stream, records, once, found, partition)
    if (found && once.onConflict === 'reject') {
      throw new LogError('IDEMPOTENCY_CONFLICT', `id ${JSON.stringify(once.id)} was used on stream ${stream} within the dedup window for other content`, {
        stream
      })
    }
    const batch = this.prepare(stream, records, partition)
    const entry = this.dedup.remember(stream, once.id, once.fingerprint, batch.results, now, batch.ops)
    const written = this.store.write(batch.ops).then(() => {
      this.appended(stream, batch)
      return batch.results
    })
    entry.pending = written
    try {
      await written
    } catch (err) {
      this.dedup.forget(stream, once.id, entry)
      throw err
    } finally {
      entry.pending = null
    }
    return { duplicate: false, results: batch.results }
  }

  /** A repeat: the first append's results, once it is durable (its failure is the repeat's). */
  private async duplicateOf(stream: string, records: RecordInput[], once: AppendOnce, entry: DedupEntry, partition?: number): Promise<AppendOnceResult> {
    const results = entry.pending ? await entry.pending : await this.dedup.results(stream, once.id)
    if (results) return { duplicate: true, results }
    // forgotten between the lookup and the read (its window ended, or room was made): a new append
    return this.appendOnce(stream, records, { ...once, lookup: false }, partition)
  }

  /**
   * The records' writes, with their offsets and timestamps, taken synchronously so that appends
   * keep call order. Every partition is checked before any state changes.
   */
  private prepare(stream: string, records: RecordInput[], partition?: number): PreparedAppend {
    const s = this.stream(stream)
    if (partition !== undefined) this.partition(s, partition)
    else for (const input of records) if (input.partition !== undefined) this.partition(s, input.partition)
    const ops: BatchOp[] = []
    const results: AppendResult[] = []
    const touched = new Set<number>()
    for (const input of records) {
      const p = partition ?? input.partition ?? (input.key !== null ? partitionForKey(input.key, s.config.partitions) : s.roundRobin++ % s.config.partitions)
      const state = this.partition(s, p)
      const timestamp = Math.max(Date.now(), state.lastTimestamp)
      const offset = state.next++
      const value = encodeRecord({
        timestamp,
        qos: input.qos ?? 0,
        topic: input.topic ?? null,
        key: input.key,
        clientId: input.clientId ?? null,
        headers: input.headers ?? {},
        value: input.value
      })
      const k = recordKeyAt(state.keyPrefix, offset)
      ops.push({ type: 'put', key: k, value })
      if (!this.dirty.has(state)) this.dirty.set(state, [stream, p])
      state.bytes += k.length + value.length
      state.lastTimestamp = timestamp
      const entry = indexEntry(stream, p, state, offset, timestamp)
      if (entry) ops.push(entry)
      touched.add(p)
      results.push({ partition: p, offset, timestamp })
    }
    return { s, ops, results, touched }
  }

  /** After the batch of `prepare` committed: the records are readable, and waiting readers woken. */
  private appended(stream: string, { s, results, touched }: PreparedAppend): void {
    // The writer commits in call order, so everything below these offsets is durable now.
    for (const r of results) {
      const state = this.partition(s, r.partition)
      if (r.offset + 1 > state.end) state.end = r.offset + 1
    }
    for (const p of touched) this.waiters.notify(AppendWaiters.id(stream, p))
  }

  read(stream: string, partition: number, offset: number, options: ReadOptions): Promise<LogRecord[]> {
    return this.collect(
      stream,
      partition,
      offset,
      options,
      (at, v) => decodeRecord(v, stream, partition, at),
      (r) => r.value.length
    )
  }

  /** The stored value is the record's binary form: nothing is decoded. */
  readEncoded(stream: string, partition: number, offset: number, options: ReadOptions): Promise<EncodedRecord[]> {
    return this.collect(
      stream,
      partition,
      offset,
      options,
      (at, v) => ({ offset: at, bytes: v }),
      (r) => r.bytes.length
    )
  }

  /**
   * Records from `offset` on, up to `limit` and `maxBytes` (at least one record if there is one).
   * Offsets are dense from the head to the end, so the n-th value read is at `offset + n` and the
   * keys are not read at all. The range is checked in the same tick the iterator is created, and
   * a RocksDB iterator reads one point in time: retention moving the head meanwhile changes nothing.
   */
  private async collect<T>(
    stream: string,
    partition: number,
    offset: number,
    options: ReadOptions,
    make: (offset: number, v: Buffer) => T,
    size: (record: T) => number
  ): Promise<T[]> {
    const state = this.partition(this.stream(stream), partition)
    this.checkInRange(stream, partition, state, offset)
    const limit = Math.max(1, Math.floor(options.limit))
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
    const out: T[] = []
    let bytes = 0
    const range = { gte: recordKeyAt(state.keyPrefix, offset), lt: recordKeyAt(state.keyPrefix, state.end), limit }
    for await (const v of this.store.scanValues(range, Math.min(limit, 1024))) {
      const r = make(offset + out.length, v)
      bytes += size(r)
      if (out.length > 0 && bytes > maxBytes) break
      out.push(r)
    }
    return out
  }

  async offsetForTime(stream: string, partition: number, ts: number): Promise<number> {
    return offsetForTime(this.store, stream, partition, this.partition(this.stream(stream), partition), ts)
  }

  async resolveOffset(stream: string, partition: number, spec: OffsetSpec): Promise<number> {
    const state = this.partition(this.stream(stream), partition)
    if (spec === 'earliest') return state.start
    if (spec === 'latest') return state.end
    if ('offset' in spec) {
      this.checkInRange(stream, partition, state, spec.offset)
      return spec.offset
    }
    return this.offsetForTime(stream, partition, spec.timestamp)
  }

  async waitForRecords(targets: PartitionOffset[], timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    for (const t of targets) if (this.partition(this.stream(t.stream), t.partition).end > t.offset) return true
    if (this.closed) return false
    return this.waiters.wait(
      targets.map((t) => AppendWaiters.id(t.stream, t.partition)),
      timeoutMs,
      signal
    )
  }

  /** Deletes whole ranges from the head of every partition, per each stream's retention; returns the records deleted. */
  applyRetention(now = Date.now()): Promise<number> {
    // one run at a time; a call during a run waits for that run
    this.retentionRunning ??= this.retain(now).finally(() => {
      this.retentionRunning = null
    })
    return this.retentionRunning
  }

  private async retain(now: number): Promise<number> {
    let deleted = 0
    for (const [name, s] of this.streams) {
      for (const [p, state] of s.partitions.entries()) {
        const plan = await planRetention(this.store, name, p, state, s.config.retention, now)
        if (!plan || this.closed) continue
        // the new head is durable before anything is deleted, so a crash never exposes a gap
        const oldStart = state.start
        state.start = plan.start
        state.bytes -= plan.bytes
        await this.store.write([headOp(name, p, state), ...plan.timeIndexDeletes.map((key): BatchOp => ({ type: 'del', key }))])
        await this.store.deleteRange({ gte: recordKey(name, p, oldStart), lt: recordKey(name, p, plan.start) })
        deleted += plan.start - oldStart
      }
    }
    return deleted
  }

  async committed(group: string, stream: string, partition: number): Promise<number | null> {
    return this.commits.get(commitId(group, stream, partition)) ?? null
  }

  async commit(group: string, offsets: PartitionOffset[]): Promise<void> {
    if (!isValidName(group)) throw new LogError('INVALID_ARGUMENT', `invalid group name "${group}": expected ${NAME_RULE}`)
    const ops: BatchOp[] = []
    for (const { stream, partition, offset } of offsets) {
      const state = this.partition(this.stream(stream), partition)
      if (!Number.isInteger(offset) || offset < 0 || offset > state.end) {
        throw new LogError('OFFSET_OUT_OF_RANGE', `cannot commit offset ${offset} for ${stream}/${partition}: the end offset is ${state.end}`, {
          earliest: state.start,
          latest: state.end
        })
      }
      ops.push({ type: 'put', key: commitKey(group, stream, partition), value: u64Value(offset) })
    }
    await this.store.write(ops)
    for (const { stream, partition, offset } of offsets) this.commits.set(commitId(group, stream, partition), offset)
  }

  async listCommitted(): Promise<Array<PartitionOffset & { group: string }>> {
    return [...this.commits].map(([id, offset]) => {
      const [group = '', stream = '', partition = '0'] = id.split('\u0000')
      return { group, stream, partition: Number(partition), offset }
    })
  }

  listShareGroups(): Promise<string[]> {
    return shareState.listShareGroups(this.store)
  }

  loadShareGroup(group: string): Promise<StoredShareGroup | null> {
    return shareState.loadShareGroup(this.store, group)
  }

  saveShareConfig(group: string, config: string): Promise<void> {
    return shareState.saveShareConfig(this.store, group, config)
  }

  updateShareState(group: string, updates: ShareStateUpdate[]): Promise<void> {
    return shareState.updateShareState(this.store, group, updates)
  }

  deleteShareGroup(group: string): Promise<void> {
    return shareState.deleteShareGroup(this.store, group)
  }

  /** Forgets the appendOnce ids whose window has passed (a timer runs it); returns how many. */
  async sweepDedup(now = Date.now()): Promise<number> {
    if (this.closed) return 0
    const ops = this.dedup.sweep(now)
    if (ops.length > 0) await this.store.write(ops)
    return ops.length
  }

  /** appendOnce ids remembered now. */
  get dedupSize(): number {
    return this.dedup.size
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.retentionTimer)
    clearInterval(this.dedupTimer)
    this.waiters.wakeAll()
    await this.retentionRunning
  }

  private stream(name: string): StreamState {
    const s = this.streams.get(name)
    if (!s) throw new LogError('UNKNOWN_STREAM', `unknown stream "${name}"`, { stream: name })
    return s
  }

  private partition(s: StreamState, partition: number): PartitionState {
    const state = Number.isInteger(partition) ? s.partitions[partition] : undefined
    if (!state) {
      throw new LogError('UNKNOWN_PARTITION', `stream ${s.config.name} has partitions 0 to ${s.config.partitions - 1}, not ${partition}`, {
        partitions: s.config.partitions
      })
    }
    return state
  }

  private checkInRange(stream: string, partition: number, state: PartitionState, offset: number): void {
    if (!Number.isInteger(offset) || offset < state.start || offset > state.end) throw outOfRange(stream, partition, offset, state.start, state.end)
  }
}

function checkOnce(once: AppendOnce): void {
  if (typeof once.id !== 'string' || once.id.length === 0 || Buffer.byteLength(once.id) > MAX_ID_BYTES) {
    throw new LogError('INVALID_ARGUMENT', `an appendOnce id must be 1 to ${MAX_ID_BYTES} bytes`)
  }
  if (typeof once.fingerprint !== 'string' || Buffer.byteLength(once.fingerprint) > 255) {
    throw new LogError('INVALID_ARGUMENT', 'an appendOnce fingerprint must be a string of at most 255 bytes')
  }
}

function commitId(group: string, stream: string, partition: number): string {
  return `${group}\u0000${stream}\u0000${partition}`
}
