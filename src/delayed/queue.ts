import type { Logger } from 'pino'
import { CulexError } from '../errors.js'
import type { RecordInput } from '../log/types.js'
import { StoreError } from '../store/errors.js'
import type { Store } from '../store/store.js'
import {
  ENTRIES,
  EntryIds,
  decodeEntry,
  dueBefore,
  encodeEntry,
  entryKey,
  parseKey,
  recordInput,
  type DelayedEntry,
  type DelayedMessage,
  type StoredEntry
} from './entry.js'

// Delayed delivery: entries stored in the store's `d` key space in due order, delivered at their
// due time (an MQTT publish, or a log append), then deleted. Memory holds the count of pending
// entries and one timer, for the earliest entry: each pass reads a bounded batch from the front of
// the key range, so however many entries wait, only one batch is in memory.
//
// Delivery guarantees:
// - A record (HTTP) is appended and its entry deleted in one store batch, when the log shares the
//   store (the embedded log, `appendSharesBatch`): once, whatever crashes.
// - An MQTT message is published, and its entry deleted once the publish's own writes were issued
//   (QoS 1/2: committed). A crash after the publish and before the delete commits publishes it again
//   at the next start: at least once. Batches commit in order, so the delete can never be durable
//   while the publish's writes are not.

type StoreOps = Parameters<Store['write']>[0]

export type DelayedErrorCode = 'DELAYED_FULL'

/** What the queue refuses: `DELAYED_FULL` past delayed-max-messages (retriable: entries come due). */
export class DelayedError extends CulexError<DelayedErrorCode> {}

export interface DelayedOptions {
  /** Most entries pending at once; 0 = no limit (delayed-max-messages). */
  maxMessages: number
  /** Longest delay accepted (ms, delayed-max-delay). */
  maxDelayMs: number
  logger: Logger
  /** Entries read per pass (default 256). */
  batchEntries?: number
  /** Bytes of entries read per pass (default 8 MiB; at least one entry is read). */
  batchBytes?: number
  /** Longest a timer waits before the front is read again (default 30 s): wall-clock changes are caught up then. */
  maxTimerMs?: number
}

export interface DelayedSinks {
  /** Publishes a message into the broker (hooks included: the log's routes apply). */
  publish: (message: DelayedMessage) => Promise<void>
  /** Appends records to a stream of the log. */
  append: (stream: string, records: RecordInput[], partition: number | undefined) => Promise<unknown>
  /**
   * True when `append` issues its store write synchronously, on this queue's store (the embedded
   * log): the queue then issues the entries' delete in the same turn, and the group commit puts
   * both in one batch (docs/architecture.md, "One writer"). Otherwise it deletes after the append.
   */
  appendSharesBatch: boolean
}

export interface DelayedStats {
  pending: number
  delivered: number
  /** Entries that could not be delivered (the stream is gone, the entry is unreadable): logged and deleted. */
  dropped: number
}

export interface ScheduleItem {
  dueAt: number
  entry: DelayedEntry
}

const noop = (): void => {}

export class DelayedQueue {
  private count: number
  private readonly ids = new EntryIds()
  private sinks: DelayedSinks | null = null
  private timer: NodeJS.Timeout | null = null
  /** When the armed timer fires (ms since the epoch); Infinity when none is armed. */
  private armedFor = Number.POSITIVE_INFINITY
  private pass: Promise<void> | null = null
  private again = false
  private stopped = false
  private delivered = 0
  private dropped = 0
  private readonly batchEntries: number
  private readonly batchBytes: number
  private readonly maxTimerMs: number

  private constructor(
    private readonly store: Store,
    private readonly options: DelayedOptions,
    pending: number
  ) {
    this.count = pending
    this.batchEntries = options.batchEntries ?? 256
    this.batchBytes = options.batchBytes ?? 8 * 1024 * 1024
    this.maxTimerMs = options.maxTimerMs ?? 30_000
  }

  /** Opens the queue on the store: counts the entries pending (keys only, in chunks). */
  static async open(store: Store, options: DelayedOptions): Promise<DelayedQueue> {
    let pending = 0
    for await (const _ of store.scanKeys(ENTRIES, 1024)) pending++
    if (pending > 0) options.logger.info({ pending }, 'delayed entries pending')
    return new DelayedQueue(store, options, pending)
  }

  get maxDelayMs(): number {
    return this.options.maxDelayMs
  }

  get pending(): number {
    return this.count
  }

  stats(): DelayedStats {
    return { pending: this.count, delivered: this.delivered, dropped: this.dropped }
  }

  /**
   * Stores entries to deliver at their due times; resolves once they are durable, to their ids.
   * The room is taken synchronously: past delayed-max-messages the promise rejects with
   * DELAYED_FULL and nothing is stored. Entries may be stored before start and after stop: they
   * are delivered by the next start.
   */
  schedule(items: ScheduleItem[]): Promise<string[]> {
    const { maxMessages } = this.options
    if (maxMessages > 0 && this.count + items.length > maxMessages) {
      const room = Math.max(0, maxMessages - this.count)
      return Promise.reject(
        new DelayedError(
          'DELAYED_FULL',
          `${this.count} delayed messages and records are pending, the most delayed-max-messages allows is ${maxMessages}` +
            (items.length > 1 ? ` (room for ${room}, ${items.length} given)` : '') +
            '; try again once some are delivered',
          { limit: maxMessages, pending: this.count },
          true
        )
      )
    }
    const ops: StoreOps = []
    const ids: string[] = []
    let earliest = Number.POSITIVE_INFINITY
    for (const item of items) {
      const dueAt = Math.max(0, Math.floor(item.dueAt))
      const id = this.ids.take()
      ops.push({ type: 'put', key: entryKey(dueAt, id), value: encodeEntry(item.entry) })
      ids.push(id.toString('hex'))
      earliest = Math.min(earliest, dueAt)
    }
    this.count += items.length
    return this.store.write(ops).then(
      () => {
        this.wake(earliest)
        return ids
      },
      (err: unknown) => {
        this.count -= items.length
        throw err
      }
    )
  }

  /** Starts delivering: entries already due (those due while the gateway was down) go at once. */
  start(sinks: DelayedSinks): void {
    if (this.sinks) throw new Error('the delayed queue is already started')
    this.sinks = sinks
    this.stopped = false
    this.run()
  }

  /** Stops delivering: no new pass starts, and the one under way finishes. */
  async stop(): Promise<void> {
    this.stopped = true
    this.disarm()
    await this.pass
  }

  /** A new entry is due at `dueAt`: make sure a timer fires by then. */
  private wake(dueAt: number): void {
    if (!this.sinks || this.stopped) return
    // a pass under way may have read the front before this entry was stored: read it again after
    if (this.pass) {
      this.again = true
      return
    }
    if (dueAt < this.armedFor) this.arm(dueAt)
  }

  private arm(dueAt: number): void {
    this.disarm()
    if (dueAt === Number.POSITIVE_INFINITY || this.stopped) return
    this.armedFor = dueAt
    const wait = Math.min(Math.max(0, dueAt - Date.now()), this.maxTimerMs)
    this.timer = setTimeout(() => {
      this.timer = null
      this.armedFor = Number.POSITIVE_INFINITY
      this.run()
    }, wait)
    this.timer.unref()
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.armedFor = Number.POSITIVE_INFINITY
  }

  private run(): void {
    if (this.stopped || !this.sinks) return
    if (this.pass) {
      this.again = true
      return
    }
    this.disarm()
    this.pass = this.deliverDue(this.sinks)
      .catch((err: unknown) => {
        // the store refuses writes: the gateway is stopping (it was told by the store); deliver no more
        if (err instanceof StoreError) this.stopped = true
        else this.options.logger.error({ err }, 'delayed delivery failed; trying again in a second')
        if (!this.stopped) this.arm(Date.now() + 1000)
      })
      .finally(() => {
        this.pass = null
        if (this.again) {
          this.again = false
          this.run()
        }
      })
  }

  /** Delivers every entry due now, a batch at a time, then arms the timer for the next one. */
  private async deliverDue(sinks: DelayedSinks): Promise<void> {
    for (;;) {
      if (this.stopped) return
      this.again = false
      const batch = await this.readDue(Date.now())
      if (batch.length === 0) break
      await this.deliver(sinks, batch)
    }
    const front = await this.front()
    if (this.storedMeanwhile()) return // the next pass reads the front again
    if (front !== null) this.arm(front)
  }

  /** Whether an entry was stored while this pass ran (it may be before the front read). */
  private storedMeanwhile(): boolean {
    return this.again
  }

  private async readDue(now: number): Promise<StoredEntry[]> {
    const out: StoredEntry[] = []
    let bytes = 0
    for await (const [k, value] of this.store.scan({ gte: ENTRIES.gte, lt: dueBefore(now) }, 16)) {
      const where = parseKey(k)
      const entry = decodeEntry(value)
      if (!where || typeof entry === 'string') {
        // unreadable: delete it, or it would block the front for ever
        this.options.logger.error({ key: k.toString('hex'), problem: where ? entry : 'its key is malformed' }, 'delayed entry dropped: it cannot be read')
        await this.store.write([{ type: 'del', key: k }])
        this.count--
        this.dropped++
        continue
      }
      out.push({ key: k, dueAt: where.dueAt, id: where.id, entry })
      bytes += value.length
      if (out.length >= this.batchEntries || bytes >= this.batchBytes) break
    }
    return out
  }

  /** The due time of the earliest entry, or null. */
  private async front(): Promise<number | null> {
    for await (const k of this.store.scanKeys({ ...ENTRIES, limit: 1 }, 1)) return parseKey(k)?.dueAt ?? Date.now()
    return null
  }

  /**
   * Delivers a batch in due order: publishes are issued in order without waiting for each other,
   * records go in one append per run of the same stream and partition.
   */
  private async deliver(sinks: DelayedSinks, batch: StoredEntry[]): Promise<void> {
    const work: Array<Promise<void>> = []
    for (let i = 0; i < batch.length;) {
      const first = batch[i]
      if (!first) break
      if (first.entry.kind === 'message') {
        work.push(this.publish(sinks, first, first.entry))
        i++
        continue
      }
      const { stream, partition } = first.entry
      let j = i + 1
      for (; j < batch.length; j++) {
        const e = batch[j]?.entry
        if (e?.kind !== 'record' || e.stream !== stream || e.partition !== partition) break
      }
      work.push(this.append(sinks, batch.slice(i, j), stream, partition))
      i = j
    }
    // a store failure rejects every promise: report one
    const results = await Promise.allSettled(work)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }

  private async publish(sinks: DelayedSinks, stored: StoredEntry, message: DelayedMessage): Promise<void> {
    try {
      await sinks.publish(message)
      this.delivered++
    } catch (err) {
      if (err instanceof StoreError) throw err
      this.dropped++
      this.options.logger.error({ err, id: stored.id, topic: message.topic }, 'delayed message dropped: the broker refused to publish it')
    }
    // issued once the publish's own writes were: it cannot commit before them
    await this.store.write([{ type: 'del', key: stored.key }])
    this.count--
  }

  private async append(sinks: DelayedSinks, entries: StoredEntry[], stream: string, partition: number | null): Promise<void> {
    const records = entries.map((e) => recordInput(e.entry as Extract<DelayedEntry, { kind: 'record' }>))
    const deletes: StoreOps = entries.map((e) => ({ type: 'del', key: e.key }))
    let appended: Promise<unknown>
    let deleted: Promise<void>
    if (sinks.appendSharesBatch) {
      // both writes issued in this turn: one batch, so the records are appended exactly once
      appended = callSafely(() => sinks.append(stream, records, partition ?? undefined))
      deleted = this.store.write(deletes)
    } else {
      appended = callSafely(() => sinks.append(stream, records, partition ?? undefined))
      deleted = appended.then(
        () => this.store.write(deletes),
        () => this.store.write(deletes)
      )
    }
    deleted.catch(noop)
    const [a, d] = await Promise.allSettled([appended, deleted])
    if (d.status === 'rejected') throw d.reason
    this.count -= entries.length
    if (a.status === 'fulfilled') {
      this.delivered += entries.length
      return
    }
    if (a.reason instanceof StoreError) throw a.reason
    this.dropped += entries.length
    this.options.logger.error({ err: a.reason, stream, partition, ids: entries.map((e) => e.id) }, 'delayed records dropped: the log refused to append them')
  }
}

function callSafely(f: () => Promise<unknown>): Promise<unknown> {
  try {
    return f()
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)))
  }
}
