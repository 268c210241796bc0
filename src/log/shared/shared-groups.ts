import { NAME_RULE, isValidName } from '../names.js'
import { LogError, type Log, type LogRecord, type PartitionOffset, type ShareStateUpdate, type StreamInfo } from '../types.js'
import { deadLetterStream, parseShareConfig, type ShareGroupConfig } from './config.js'
import { deadLetter, ensureDeadLetterStream } from './dead-letters.js'
import { SharePartition, type DeadLetter, type InFlight } from './share-partition.js'
import {
  ShareError,
  type AckRequest,
  type AckResult,
  type ShareFetchOptions,
  type ShareGroupDescription,
  type SharePartitionStatus,
  type SharedRecord
} from './types.js'

export * from './types.js'
export { DLQ_HEADERS, deadLetter, ensureDeadLetterStream, type DeliveryHistory } from './dead-letters.js'

// Shared groups: per-record acks over any Log backend (KIP-932 share groups, NATS JetStream
// consumers). Any number of consumers fetch from every partition; each record is locked to one
// of them for ackWaitMs and finished by its ack, or redelivered after a nack, a lock expiry or a
// restart, until maxDeliveries sends it to the dead-letter stream. State is written through the
// Log contract before a fetch returns and before an ack is answered, so a restart resumes it.

interface GroupState {
  name: string
  config: ShareGroupConfig
  partitions: Map<string, SharePartition>
  /** Serializes reads at `next` and state writes: two fetches must not hand out one record twice. */
  lock: Promise<void>
  /** Woken when a record becomes available without a new append (nack, expiry, ack freeing a key). */
  changed: AbortController
  deadLettered: number
  rotate: number
  alerting: boolean
}

const pid = (stream: string, partition: number): string => `${stream}\u0000${partition}`

export interface SharedGroupsOptions {
  now?: () => number
  /** Called when a group's lag crosses its lagAlert, either way. */
  onLagAlert?: (group: string, lag: number, alerting: boolean) => void
  /** How often lag is checked against lagAlert besides each fetch and ack (ms; default 5 s, 0: never). */
  lagCheckIntervalMs?: number
}

export class SharedGroups {
  readonly #groups = new Map<string, GroupState>()
  readonly #now: () => number
  #closed = false
  #lagTimer: NodeJS.Timeout | undefined

  private constructor(
    private readonly log: Log,
    private readonly options: SharedGroupsOptions
  ) {
    this.#now = options.now ?? Date.now
  }

  /** Loads every stored group. */
  static async open(log: Log, options: SharedGroupsOptions = {}): Promise<SharedGroups> {
    const groups = new SharedGroups(log, options)
    for (const name of await log.listShareGroups()) {
      const stored = await log.loadShareGroup(name)
      if (!stored) continue
      const state = groups.#state(name, parseShareConfig(JSON.parse(stored.config)))
      for (const p of stored.partitions) state.partitions.set(pid(p.stream, p.partition), SharePartition.restore(p))
    }
    // lag also grows while nobody fetches: appends alone must be able to raise an alert
    const every = options.lagCheckIntervalMs ?? 5000
    if (every > 0) {
      groups.#lagTimer = setInterval(() => {
        for (const g of groups.#groups.values()) groups.#checkLag(g)
      }, every)
      groups.#lagTimer.unref()
    }
    return groups
  }

  #state(name: string, config: ShareGroupConfig): GroupState {
    const state: GroupState = {
      name,
      config,
      partitions: new Map(),
      lock: Promise.resolve(),
      changed: new AbortController(),
      deadLettered: 0,
      rotate: 0,
      alerting: false
    }
    this.#groups.set(name, state)
    return state
  }

  #group(name: string): GroupState {
    const g = this.#groups.get(name)
    if (!g) throw new ShareError('UNKNOWN_GROUP', `shared group "${name}" does not exist; create it with PUT /api/v1/shared-groups/${name}`)
    return g
  }

  list(): string[] {
    return [...this.#groups.keys()].sort()
  }

  config(name: string): ShareGroupConfig {
    return this.#group(name).config
  }

  /** Creates a group or changes its config (streams may be added; partitions already known keep their position). */
  async put(name: string, input: unknown): Promise<ShareGroupDescription> {
    if (!isValidName(name)) throw new ShareError('INVALID_ARGUMENT', `invalid group name "${name}": expected ${NAME_RULE}`)
    const config = parseShareConfig(input)
    for (const s of config.streams) {
      await this.log.describeStream(s)
      const dlq = deadLetterStream(config, s)
      if (!isValidName(dlq)) throw new ShareError('INVALID_ARGUMENT', `deadLetter: the dead-letter stream "${dlq}" is no valid name; set deadLetter`)
      if (config.streams.includes(dlq)) throw new ShareError('INVALID_ARGUMENT', `deadLetter: "${dlq}" is also a stream the group consumes`)
    }
    await this.log.saveShareConfig(name, JSON.stringify(config))
    const existing = this.#groups.get(name)
    if (existing) existing.config = config
    else this.#state(name, config)
    return this.describe(name)
  }

  async delete(name: string): Promise<void> {
    const g = this.#group(name)
    await this.#exclusive(g, async () => {
      await this.log.deleteShareGroup(name)
      this.#groups.delete(name)
      g.changed.abort()
    })
  }

  async #exclusive<T>(g: GroupState, work: () => Promise<T>): Promise<T> {
    const before = g.lock
    let release!: () => void
    g.lock = new Promise((r) => (release = r))
    await before
    try {
      return await work()
    } finally {
      release()
    }
  }

  /** The group's partitions, created on first use at the config's start position. */
  async #partitions(g: GroupState): Promise<SharePartition[]> {
    const out: SharePartition[] = []
    for (const stream of g.config.streams) {
      const info = await this.log.describeStream(stream)
      for (const p of info.partitions) {
        let sp = g.partitions.get(pid(stream, p.partition))
        if (!sp) {
          const at = g.config.startAt === 'earliest' ? p.startOffset : p.endOffset
          sp = new SharePartition(stream, p.partition, at, at)
          g.partitions.set(pid(stream, p.partition), sp)
        }
        out.push(sp)
      }
    }
    return out
  }

  /** Hands out up to maxRecords, waiting up to waitMs for some. */
  async fetch(name: string, options: ShareFetchOptions): Promise<SharedRecord[]> {
    const deadline = this.#now() + options.waitMs
    for (;;) {
      const g = this.#group(name)
      // a caller that went away must not have records locked for it
      if (options.signal?.aborted || this.#closed) return []
      const changed = g.changed.signal
      const got = await this.#exclusive(g, () => this.#acquire(g, options))
      if (got.records.length > 0 || options.signal?.aborted) return got.records
      const now = this.#now()
      if (now >= deadline) return []
      // wait for an append, a release, the next backoff or lock expiry, or the end
      const wake = Math.min(deadline, got.nextChange) - now
      await this.#wait(got.targets, Math.max(1, wake), changed, options.signal)
    }
  }

  async #wait(targets: PartitionOffset[], ms: number, changed: AbortSignal, signal?: AbortSignal): Promise<void> {
    const stop = new AbortController()
    const onStop = (): void => stop.abort()
    changed.addEventListener('abort', onStop, { once: true })
    signal?.addEventListener('abort', onStop, { once: true })
    try {
      if (changed.aborted || signal?.aborted) return
      await this.log.waitForRecords(targets, ms, stop.signal)
    } finally {
      changed.removeEventListener('abort', onStop)
      signal?.removeEventListener('abort', onStop)
    }
  }

  #wake(g: GroupState): void {
    const old = g.changed
    g.changed = new AbortController()
    old.abort()
  }

  async #acquire(g: GroupState, options: ShareFetchOptions): Promise<{ records: SharedRecord[]; targets: PartitionOffset[]; nextChange: number }> {
    const now = this.#now()
    const partitions = await this.#partitions(g)
    const start = g.rotate++ % Math.max(1, partitions.length)
    const ordered = [...partitions.slice(start), ...partitions.slice(0, start)]
    const records: SharedRecord[] = []
    let bytes = 0
    const full = (): boolean => records.length >= options.maxRecords || (options.maxBytes !== undefined && bytes >= options.maxBytes)
    const targets: PartitionOffset[] = []
    let nextChange = Infinity
    for (const sp of ordered) {
      await this.#bury(g, sp, sp.expire(now, g.config))
      if (!full()) {
        for (const e of sp.acquireTracked(options.maxRecords - records.length, now, options.consumer, g.config)) {
          const record = sp.takeReadAhead(e.offset) ?? (await this.#read(sp, e.offset))
          if (record === null) {
            // retention removed it: nothing left to deliver
            sp.ack(e)
            continue
          }
          records.push(shared(record, e))
          bytes += record.value.length
        }
      }
      if (!full() && sp.room(g.config) > 0) {
        // without key order exactly what is wanted; with it, a little further for keys that are
        // free, but not far: what is read and held back is tracked (and re-read if not cached)
        const wanted = options.maxRecords - records.length
        const ahead = g.config.ordering === 'none' ? wanted : Math.min(Math.max(wanted, 16), 64)
        const fresh = await this.#readNew(sp, Math.min(sp.room(g.config), ahead, 500))
        for (const { entry, record } of sp.admitNew(fresh, options.maxRecords - records.length, now, options.consumer, g.config)) {
          records.push(shared(record, entry))
          bytes += record.value.length
        }
      }
      targets.push({ stream: sp.stream, partition: sp.partition, offset: sp.next })
      nextChange = Math.min(nextChange, sp.nextChange(now))
    }
    // the deliveries are counted durably before anyone sees the records
    await this.#persist(g, partitions)
    this.#checkLag(g)
    return { records, targets, nextChange }
  }

  async #read(sp: SharePartition, offset: number): Promise<LogRecord | null> {
    try {
      const [r] = await this.log.read(sp.stream, sp.partition, offset, { limit: 1 })
      return r?.offset === offset ? r : null
    } catch (err) {
      if (err instanceof LogError && err.code === 'OFFSET_OUT_OF_RANGE') return null
      throw err
    }
  }

  async #readNew(sp: SharePartition, limit: number): Promise<LogRecord[]> {
    try {
      return await this.log.read(sp.stream, sp.partition, sp.next, { limit })
    } catch (err) {
      if (!(err instanceof LogError && err.code === 'OFFSET_OUT_OF_RANGE')) throw err
      // retention overtook the group: what it removed can no longer be delivered
      const info = await this.log.describeStream(sp.stream)
      const p = info.partitions[sp.partition]
      if (p) sp.skipTo(p.startOffset)
      return []
    }
  }

  async #persist(g: GroupState, partitions: Iterable<SharePartition>): Promise<void> {
    const updates: ShareStateUpdate[] = []
    for (const sp of partitions) {
      const u = sp.drain()
      if (u) updates.push(u)
    }
    if (updates.length > 0) await this.log.updateShareState(g.name, updates)
  }

  /** Appends dead letters (durably), then finishes them in the group. */
  async #bury(g: GroupState, sp: SharePartition, dead: DeadLetter[]): Promise<void> {
    if (dead.length === 0) return
    const dlq = deadLetterStream(g.config, sp.stream)
    await ensureDeadLetterStream(this.log, sp.stream, dlq)
    const now = this.#now()
    for (const { entry, reason } of dead) {
      const record = await this.#read(sp, entry.offset)
      if (record !== null) await this.log.append(dlq, [deadLetter(g.name, record, entry, reason, now)], sp.partition)
      sp.buried(entry)
      g.deadLettered++
    }
  }

  /** Applies acks, nacks, extends and rejects; answers once the changes are durable. */
  async acknowledge(name: string, consumer: string, requests: AckRequest[]): Promise<AckResult[]> {
    const g = this.#group(name)
    return this.#exclusive(g, async () => {
      const now = this.#now()
      const results: AckResult[] = []
      const touched = new Set<SharePartition>()
      let released = false
      for (const r of requests) {
        const sp = g.partitions.get(pid(r.stream, r.partition))
        const held = sp?.held(r.offset, r.deliveryCount, now) ?? null
        // only the consumer that holds the lock may answer for the record (as in KIP-932)
        const e = held?.consumer === consumer ? held : null
        const base = { stream: r.stream, partition: r.partition, offset: r.offset }
        if (!sp || !e) {
          results.push({ ...base, ok: false, error: 'LOCK_LOST' })
          continue
        }
        touched.add(sp)
        switch (r.action) {
          case 'ack':
            sp.ack(e)
            released = true
            results.push({ ...base, ok: true })
            break
          case 'extend':
            sp.extend(e, now, g.config)
            results.push({ ...base, ok: true })
            break
          case 'nack':
            if (sp.nack(e, now, r.delayMs, r.error ?? null, g.config)) {
              await this.#bury(g, sp, [{ entry: e, reason: 'max-deliveries' }])
              results.push({ ...base, ok: true, deadLettered: true })
            } else results.push({ ...base, ok: true })
            released = true
            break
          case 'reject':
            if (r.error !== undefined) e.lastError = r.error
            await this.#bury(g, sp, [{ entry: e, reason: 'rejected' }])
            released = true
            results.push({ ...base, ok: true, deadLettered: true })
            break
        }
      }
      await this.#persist(g, touched)
      this.#checkLag(g)
      if (released) this.#wake(g)
      return results
    })
  }

  /** Reports a crossing of lagAlert, either way (asynchronously: it reads the end offsets). */
  /**
   * Releases every record a consumer holds (it disconnected): each is available again at once, its
   * delivery counted (as KIP-932 does when a member leaves).
   */
  async release(name: string, consumer: string): Promise<number> {
    const g = this.#groups.get(name)
    if (!g) return 0
    return this.#exclusive(g, async () => {
      let n = 0
      for (const sp of g.partitions.values()) {
        for (const e of sp.entries.values()) {
          if (e.consumer !== consumer || e.lockedUntil === 0) continue
          if (sp.nack(e, this.#now(), 0, null, g.config)) await this.#bury(g, sp, [{ entry: e, reason: 'max-deliveries' }])
          n++
        }
      }
      await this.#persist(g, g.partitions.values())
      if (n > 0) this.#wake(g)
      return n
    })
  }

  #checkLag(g: GroupState): void {
    if (g.config.lagAlert === null) return
    void this.describe(g.name).then(
      (d) => {
        if (d.lagAlert === g.alerting) return
        g.alerting = d.lagAlert
        this.options.onLagAlert?.(g.name, d.lag, d.lagAlert)
      },
      () => undefined
    )
  }

  async describe(name: string): Promise<ShareGroupDescription> {
    const g = this.#group(name)
    const partitions: SharePartitionStatus[] = []
    // one description per stream, not per partition
    const infos = new Map<string, StreamInfo>()
    for (const sp of await this.#partitions(g)) {
      let info = infos.get(sp.stream)
      if (!info) infos.set(sp.stream, (info = await this.log.describeStream(sp.stream)))
      const endOffset = info.partitions[sp.partition]?.endOffset ?? sp.next
      partitions.push({
        stream: sp.stream,
        partition: sp.partition,
        floor: sp.floor,
        next: sp.next,
        endOffset,
        acquired: sp.acquired,
        pending: sp.pending,
        lag: Math.max(0, endOffset - sp.floor)
      })
    }
    const lag = partitions.reduce((n, p) => n + p.lag, 0)
    return {
      group: name,
      config: g.config,
      partitions,
      lag,
      deadLettered: g.deadLettered,
      lagAlert: g.config.lagAlert !== null && lag >= g.config.lagAlert
    }
  }

  close(): void {
    this.#closed = true
    clearInterval(this.#lagTimer)
    for (const g of this.#groups.values()) g.changed.abort()
  }
}

function shared(record: LogRecord, e: InFlight): SharedRecord {
  return { ...record, deliveryCount: e.deliveries, lockedUntil: e.lockedUntil }
}
