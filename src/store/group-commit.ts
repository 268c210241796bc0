import type { BatchOp } from '@nxtedition/rocksdb'
import type { Worker } from 'node:worker_threads'
import { batchSize, encodeBatch } from './batch-codec.js'
import { Backlog } from './backlog.js'
import type { CommitResult } from './commit-thread.js'
import { storeError } from './errors.js'

export type Durability = 'fsync' | 'none'

export interface GroupCommitStats {
  commits: number
  ops: number
  bytes: number
  pendingOps: number
  pendingBytes: number
  /** pendingBytes plus the bytes of the batch on the commit thread (see Backlog). */
  backlogBytes: number
}

export interface GroupCommitOptions {
  onError?: (err: Error) => void
  /** The backlog and its watermarks (backpressure); by default, one without watermarks. */
  backlog?: Backlog
  /**
   * TEST ONLY: how long (ms) a commit of a batch of so many bytes waits before it is written, as on
   * a slow disk, so that tests can build a backlog. Not a config key; the gateway never sets it.
   */
  testOnlyCommitDelayMs?: (batchBytes: number) => number
}

/** One committed batch, for the metrics (its size and how long the commit thread took). */
export interface CommitObservation {
  ops: number
  bytes: number
  /** From sending the batch to the commit thread to its answer (fsync included). */
  seconds: number
}

interface Waiter {
  resolve: () => void
  reject: (err: Error) => void
}

interface Batch {
  ops: number
  bytes: number
  waiters: Waiter[]
  /** performance.now() when sent to the commit thread (with a commit observer only). */
  sentAt?: number
}

/**
 * Group commit on a commit thread (commit-thread.ts). Writes issued while a batch is on the
 * disk wait for the next one; the next batch is sent from `setImmediate`, when every socket read
 * of the current event-loop turn has queued its writes. One batch is in flight at a time, so under
 * load each fsync covers everything that arrived during the previous one, and the event loop never
 * waits for the disk. A write's promise resolves only after its batch is on disk (`fsync`) or in
 * RocksDB's write-ahead log in the page cache (`none`: survives kill -9, not power loss).
 * Batches commit in the order their writes were issued.
 */
export class GroupCommitWriter {
  private pending: BatchOp[] = []
  private waiters: Waiter[] = []
  private pendingBytes = 0
  private scheduled = false
  private inFlight: Batch | null = null
  private nextId = 0
  private failed: Error | null = null
  private readonly stats = { commits: 0, ops: 0, bytes: 0 }
  private idle: Array<() => void> = []
  private readonly contributors: Array<() => BatchOp[]> = []
  private readonly onError: (err: Error) => void
  private readonly commitDelayMs: ((batchBytes: number) => number) | null
  private commitObserver: ((commit: CommitObservation) => void) | null = null
  /** Bytes written and not committed: waiting for the next batch, or in the batch on the commit thread. */
  readonly backlog: Backlog

  constructor(
    private readonly thread: Worker,
    readonly durability: Durability,
    options: GroupCommitOptions = {}
  ) {
    this.onError = options.onError ?? (() => {})
    this.backlog = options.backlog ?? new Backlog()
    this.commitDelayMs = options.testOnlyCommitDelayMs ?? null
    thread.on('message', (result: CommitResult) => this.committed(result))
    thread.on('error', (err) => this.fail(storeError('write refused', err)))
    thread.on('exit', (code) => this.fail(storeError('write refused', new Error(`the commit thread exited (code ${code})`))))
  }

  /** Queues ops for the next commit; resolves once they are durable. */
  write(ops: BatchOp[]): Promise<void> {
    if (this.failed) return Promise.reject(this.failed)
    for (const op of ops) {
      this.pending.push(op)
      this.pendingBytes += op.key.length + (op.type === 'put' ? op.value.length : 0)
    }
    if (ops.length > 0) this.reportBacklog()
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }))
    this.schedule()
    return done
  }

  /**
   * Resolves once every write issued so far is durable: the barrier before an ack, for writes
   * that were queued without waiting (see RocksPersistence). Immediate when nothing is queued.
   */
  barrier(): Promise<void> {
    if (this.failed) return Promise.reject(this.failed)
    if (this.waiters.length === 0 && this.pending.length === 0 && !this.inFlight) return Promise.resolve()
    return this.write([])
  }

  /** Commits whatever is pending and waits for it (shutdown, tests). */
  async flush(): Promise<void> {
    if (this.pending.length > 0 || this.waiters.length > 0) await this.write([])
    while (this.inFlight) await new Promise<void>((resolve) => this.idle.push(resolve))
  }

  /**
   * Adds ops to every batch, computed when the batch is sent: state that many writes of one
   * window change (a log partition's head) is written once per batch, not once per write.
   */
  contribute(ops: () => BatchOp[]): void {
    this.contributors.push(ops)
  }

  /** Tells `observer` of each batch committed (the metrics' histograms); one at a time, null to stop. */
  observeCommits(observer: ((commit: CommitObservation) => void) | null): void {
    this.commitObserver = observer
  }

  getStats(): GroupCommitStats {
    return { ...this.stats, pendingOps: this.pending.length, pendingBytes: this.pendingBytes, backlogBytes: this.backlog.bytes }
  }

  private reportBacklog(): void {
    this.backlog.update(this.pendingBytes + (this.inFlight?.bytes ?? 0))
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return
    this.scheduled = true
    setImmediate(() => this.send())
  }

  private send(): void {
    this.scheduled = false
    if (this.inFlight || this.waiters.length === 0) return
    for (const contributor of this.contributors) for (const op of contributor()) this.pending.push(op)
    const ops = this.pending
    const waiters = this.waiters
    const bytes = this.pendingBytes
    this.pending = []
    this.waiters = []
    this.pendingBytes = 0
    if (this.failed) {
      for (const w of waiters) w.reject(this.failed)
      this.reportBacklog()
      return
    }
    const batch: Batch = { ops: ops.length, bytes, waiters }
    if (this.commitObserver) batch.sentAt = performance.now()
    if (ops.length === 0) {
      // a barrier with nothing new to write: it waits for nothing but what is already committed
      this.settle(batch, null)
      return
    }
    this.inFlight = batch
    const size = batchSize(ops)
    const buffer = encodeBatch(ops, size)
    this.thread.ref() // a batch on its way keeps the process alive until it is answered
    const message = { id: ++this.nextId, buffer, sync: this.durability === 'fsync' }
    if (this.commitDelayMs) setTimeout(() => this.thread.postMessage(message, [buffer]), this.commitDelayMs(size))
    else this.thread.postMessage(message, [buffer])
  }

  private committed(result: CommitResult): void {
    const batch = this.inFlight
    if (!batch) return
    this.inFlight = null
    this.thread.unref()
    this.reportBacklog()
    const err = result.error ? storeError('write refused', Object.assign(new Error(result.error.message), { code: result.error.code })) : null
    this.settle(batch, err)
    for (const resolve of this.idle.splice(0)) resolve()
    if (this.waiters.length > 0) this.schedule()
  }

  private settle(batch: Batch, err: Error | null): void {
    if (err) {
      this.fail(err)
      for (const w of batch.waiters) w.reject(err)
      return
    }
    this.stats.commits++
    this.stats.ops += batch.ops
    this.stats.bytes += batch.bytes
    for (const w of batch.waiters) w.resolve()
    if (this.commitObserver && batch.sentAt !== undefined && batch.ops > 0)
      this.commitObserver({ ops: batch.ops, bytes: batch.bytes, seconds: (performance.now() - batch.sentAt) / 1000 })
  }

  /** Once a write failed, every later write fails too: nothing is acknowledged that was not stored. */
  private fail(err: Error): void {
    if (this.failed) return
    this.failed = err
    this.onError(err)
    // nothing drains any more: nothing may wait for the backlog (the gateway stops)
    this.backlog.release()
    const batch = this.inFlight
    this.inFlight = null
    if (batch) for (const w of batch.waiters) w.reject(err)
    for (const resolve of this.idle.splice(0)) resolve()
  }

  /** Stops the commit thread (after flush). */
  async close(): Promise<void> {
    await this.flush()
    this.thread.removeAllListeners('exit')
    await this.thread.terminate()
  }
}
