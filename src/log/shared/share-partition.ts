import type { LogRecord, SharePartitionState, ShareRecordState, ShareStateUpdate } from '../types.js'
import { backoffDelay, type ShareGroupConfig } from './config.js'

// One partition of a shared group, in memory (KIP-932's share-partition): the acknowledged floor,
// the fetch position `next`, and the records in between that are not finished. Pure state: the
// caller (shared-groups.ts) reads the log, persists the changes this returns, and dead-letters.
//
// A record between floor and next is in one of these states:
//   available  deliveries < maxDeliveries, availableAt <= now, not locked
//   waiting    not locked, availableAt > now (backoff or a nack's delay)
//   acquired   locked to a consumer until lockedUntil
// and finished records have no entry. Locks are not stored: after a restart every record is
// available again (its deliveries were stored when it was handed out, so none is lost or reset).

export interface InFlight extends ShareRecordState {
  /** 0 when not acquired. */
  lockedUntil: number
  consumer: string | null
}

export interface Acquired {
  entry: InFlight
  /** The record, read from the log with this acquisition. */
  record: LogRecord
}

export type DeadLetterReason = 'max-deliveries' | 'rejected'

export interface DeadLetter {
  entry: InFlight
  reason: DeadLetterReason
}

/** Records held back by key order kept in memory per partition, at most (payload bytes + 256 each). */
export const READ_AHEAD_BYTES = 1 << 20

export class SharePartition {
  /** Unfinished records by offset. Added in offset order and never re-added, so iteration is in offset order. */
  readonly entries = new Map<number, InFlight>()
  /** key -> offsets of unfinished records with it, for per-key order; each set's first is its lowest. */
  readonly #byKey = new Map<string, Set<number>>()
  /** Unfinished records without a key (per-key order does not hold them back). */
  readonly #unkeyed = new Set<InFlight>()
  /** Records locked to a consumer now. */
  readonly #locked = new Set<InFlight>()
  /** Records not locked whose availableAt may lie in the future (backoff, nack delay). */
  readonly #waiting = new Set<InFlight>()
  /**
   * Records read from the log but held back by key order, kept so that handing them out later
   * needs no read per record (one RocksDB iterator each). Bounded by READ_AHEAD_BYTES.
   */
  readonly #readAhead = new Map<number, LogRecord>()
  #readAheadBytes = 0
  /** Changes not yet written, as one update. */
  #put = new Map<number, InFlight>()
  /** The highest offset tracked so far: a lower one (only after a restart) means re-sorting. */
  #highest = -1
  #remove = new Set<number>()
  #moved = false
  #resort = false

  constructor(
    readonly stream: string,
    readonly partition: number,
    public floor: number,
    public next: number
  ) {}

  static restore(state: SharePartitionState): SharePartition {
    const p = new SharePartition(state.stream, state.partition, state.floor, state.next)
    for (const r of [...state.records].sort((a, b) => a.offset - b.offset)) {
      const e: InFlight = { ...r, lockedUntil: 0, consumer: null }
      p.#track(e)
      if (e.availableAt > 0) p.#waiting.add(e)
    }
    return p
  }

  /** Unfinished records: what maxAckPending caps. */
  get pending(): number {
    return this.entries.size
  }

  get acquired(): number {
    return this.#locked.size
  }

  #track(e: InFlight): void {
    if (e.offset < this.#highest) this.#resort = true
    else this.#highest = e.offset
    this.entries.set(e.offset, e)
    if (e.key === null) this.#unkeyed.add(e)
    else {
      let set = this.#byKey.get(e.key)
      if (!set) this.#byKey.set(e.key, (set = new Set()))
      set.add(e.offset)
    }
  }

  #finish(e: InFlight): void {
    this.entries.delete(e.offset)
    this.#forget(e.offset)
    this.#unkeyed.delete(e)
    this.#locked.delete(e)
    this.#waiting.delete(e)
    if (e.key !== null) {
      const set = this.#byKey.get(e.key)
      set?.delete(e.offset)
      if (set?.size === 0) this.#byKey.delete(e.key)
    }
    this.#put.delete(e.offset)
    this.#remove.add(e.offset)
    // the floor moves up to the first unfinished record
    const floor = this.entries.keys().next().value ?? this.next
    if (floor !== this.floor) {
      this.floor = floor
      this.#moved = true
    }
  }

  #changed(e: InFlight): void {
    this.#put.set(e.offset, e)
  }

  /** Whether per-key order lets this record out now: no earlier unfinished record has its key. */
  #keyFree(e: InFlight, config: ShareGroupConfig): boolean {
    if (config.ordering === 'none' || e.key === null) return true
    return this.#byKey.get(e.key)?.values().next().value === e.offset
  }

  /**
   * Releases the locks that expired by `now`: each such record waits out its backoff, or is
   * returned for the dead-letter stream when it has had maxDeliveries.
   */
  expire(now: number, config: ShareGroupConfig): DeadLetter[] {
    const dead: DeadLetter[] = []
    for (const e of this.#locked) {
      if (e.lockedUntil > now) continue
      const ended = e.lockedUntil
      this.#unlock(e)
      if (e.deliveries >= config.maxDeliveries) dead.push({ entry: e, reason: 'max-deliveries' })
      else {
        // the backoff runs from when the lock ended, not from when this was noticed
        e.availableAt = ended + backoffDelay(config.backoff, e.deliveries)
        this.#waiting.add(e)
        this.#changed(e)
      }
    }
    return dead
  }

  /** Hands out up to `max` records that are tracked and available, in offset order. */
  acquireTracked(max: number, now: number, consumer: string, config: ShareGroupConfig): InFlight[] {
    const out: InFlight[] = []
    for (const e of this.#candidates(config)) {
      if (out.length >= max) break
      if (e.lockedUntil !== 0 || e.availableAt > now || !this.#keyFree(e, config)) continue
      this.#lock(e, now, consumer, config)
      out.push(e)
    }
    return out
  }

  /**
   * The records that could be handed out, in offset order: with per-key order only each key's
   * first record and the unkeyed ones (a handful, not every pending record).
   */
  #candidates(config: ShareGroupConfig): Iterable<InFlight> {
    if (config.ordering === 'none') return this.entries.values()
    const heads: InFlight[] = [...this.#unkeyed]
    for (const offsets of this.#byKey.values()) {
      const first = offsets.values().next().value
      const e = first === undefined ? undefined : this.entries.get(first)
      if (e) heads.push(e)
    }
    return heads.sort((a, b) => a.offset - b.offset)
  }

  #unlock(e: InFlight): void {
    e.lockedUntil = 0
    e.consumer = null
    this.#locked.delete(e)
  }

  /** How many records may still be read from `next` on (maxAckPending less what is unfinished). */
  room(config: ShareGroupConfig): number {
    return Math.max(0, config.maxAckPending - this.entries.size)
  }

  /**
   * Takes records read from the log at `next`: each is tracked, and handed out while fewer than
   * `max` were and per-key order allows. Returns those handed out.
   */
  admitNew(records: LogRecord[], max: number, now: number, consumer: string, config: ShareGroupConfig): Acquired[] {
    const out: Acquired[] = []
    for (const record of records) {
      if (record.offset < this.next) continue
      if (this.entries.has(record.offset)) {
        // delivered before a restart, and restored: only the position moves
        this.next = record.offset + 1
        continue
      }
      const e: InFlight = {
        offset: record.offset,
        key: record.key,
        deliveries: 0,
        availableAt: 0,
        firstDeliveryAt: null,
        lastDeliveryAt: null,
        lastError: null,
        lockedUntil: 0,
        consumer: null
      }
      this.#track(e)
      this.next = record.offset + 1
      this.#moved = true
      if (out.length < max && this.#keyFree(e, config)) {
        this.#lock(e, now, consumer, config)
        out.push({ entry: e, record })
      } else {
        // held back by key order: never written until it is handed out (drain keeps the position below it)
        const size = record.value.length + 256
        if (this.#readAheadBytes + size <= READ_AHEAD_BYTES) {
          this.#readAhead.set(e.offset, record)
          this.#readAheadBytes += size
        }
      }
    }
    if (this.#resort) this.#sort()
    return out
  }

  /** A record read ahead, taken out of the cache (null when it was not kept). */
  takeReadAhead(offset: number): LogRecord | null {
    const r = this.#readAhead.get(offset) ?? null
    this.#forget(offset)
    return r
  }

  #forget(offset: number): void {
    const r = this.#readAhead.get(offset)
    if (!r) return
    this.#readAhead.delete(offset)
    this.#readAheadBytes -= r.value.length + 256
  }

  /** Puts the maps back in offset order (after records below restored ones were read again). */
  #sort(): void {
    const all = [...this.entries.values()].sort((a, b) => a.offset - b.offset)
    this.entries.clear()
    for (const e of all) this.entries.set(e.offset, e)
    for (const [key, offsets] of this.#byKey) this.#byKey.set(key, new Set([...offsets].sort((a, b) => a - b)))
    this.#resort = false
  }

  /** The log's head moved past records never handed out (retention): skip them. */
  skipTo(start: number): void {
    if (this.next >= start) return
    this.next = start
    this.#moved = true
    for (const e of [...this.entries.values()]) if (e.offset < start) this.#finish(e)
    if (this.floor < start && this.entries.size === 0) this.floor = start
  }

  #lock(e: InFlight, now: number, consumer: string, config: ShareGroupConfig): void {
    e.deliveries++
    e.firstDeliveryAt ??= now
    e.lastDeliveryAt = now
    e.lockedUntil = now + config.ackWaitMs
    e.consumer = consumer
    this.#locked.add(e)
    this.#waiting.delete(e)
    this.#changed(e)
  }

  /** The entry locked by this delivery, or null when its lock was lost (expired, or handed out again). */
  held(offset: number, deliveries: number | undefined, now: number): InFlight | null {
    const e = this.entries.get(offset)
    if (!e || e.lockedUntil === 0 || e.lockedUntil <= now) return null
    if (deliveries !== undefined && e.deliveries !== deliveries) return null
    return e
  }

  ack(e: InFlight): void {
    this.#finish(e)
  }

  /** Redeliver after `delayMs` (or the backoff); returns true when it has had maxDeliveries (dead-letter it). */
  nack(e: InFlight, now: number, delayMs: number | undefined, error: string | null, config: ShareGroupConfig): boolean {
    this.#unlock(e)
    if (error !== null) e.lastError = error
    if (e.deliveries >= config.maxDeliveries) return true
    e.availableAt = now + (delayMs ?? backoffDelay(config.backoff, e.deliveries))
    this.#waiting.add(e)
    this.#changed(e)
    return false
  }

  extend(e: InFlight, now: number, config: ShareGroupConfig): void {
    e.lockedUntil = now + config.ackWaitMs
  }

  /** Finishes a dead-lettered record (after the dead letter is durable). */
  buried(e: InFlight): void {
    this.#finish(e)
  }

  /**
   * The earliest time after `now` that a lock ends or a backoff is over, or Infinity. A record
   * held back only by its key is not counted: what frees it is an answer, which wakes waiters.
   */
  nextChange(now: number): number {
    let t = Infinity
    for (const e of this.#locked) if (e.lockedUntil > now && e.lockedUntil < t) t = e.lockedUntil
    for (const e of this.#waiting) {
      if (e.availableAt <= now) this.#waiting.delete(e)
      else if (e.availableAt < t) t = e.availableAt
    }
    return t
  }

  /** The changes since the last call, as one update for the log (empty: null). */
  drain(): ShareStateUpdate | null {
    if (this.#put.size === 0 && this.#remove.size === 0 && !this.#moved) return null
    // A record never handed out (held back by its key) is not written: the stored position stays
    // at the first of them, and after a restart they are read from the log again.
    let next = this.next
    for (const e of this.entries.values()) {
      if (e.deliveries === 0) {
        next = e.offset
        break
      }
    }
    const update: ShareStateUpdate = {
      stream: this.stream,
      partition: this.partition,
      position: { floor: this.floor, next },
      put: [...this.#put.values()].map(stored),
      remove: [...this.#remove]
    }
    this.#put = new Map()
    this.#remove = new Set()
    this.#moved = false
    return update
  }
}

function stored(e: InFlight): ShareRecordState {
  const { offset, key, deliveries, availableAt, firstDeliveryAt, lastDeliveryAt, lastError } = e
  return { offset, key, deliveries, availableAt, firstDeliveryAt, lastDeliveryAt, lastError }
}
