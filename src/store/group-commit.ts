import type { BatchOp, RocksLevel } from '@nxtedition/rocksdb'

export type Durability = 'fsync' | 'none'

export interface GroupCommitStats {
  commits: number
  ops: number
  bytes: number
  pendingOps: number
  pendingBytes: number
}

interface Waiter {
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * Group commit: every write issued during one turn of the event loop goes into a single
 * RocksDB batch, written once with `sync: true` (one fsync shared by all of them).
 *
 * @nxtedition/rocksdb writes a batch synchronously on the JS thread and honours `sync` only
 * on batches (not on `put`), so the commit runs from `setImmediate`: by then every socket read
 * of this turn has queued its writes, and the ones arriving while the fsync blocks the loop
 * join the next turn's batch. A write's promise resolves only after its batch is on disk
 * (`fsync`) or in RocksDB's WAL in the page cache (`none`: survives kill -9, not power loss).
 */
export class GroupCommitWriter {
  private pending: BatchOp[] = []
  private waiters: Waiter[] = []
  private pendingBytes = 0
  private scheduled = false
  private failed: Error | null = null
  private readonly stats = { commits: 0, ops: 0, bytes: 0 }

  constructor(
    private readonly db: RocksLevel,
    readonly durability: Durability,
    private readonly onError: (err: Error) => void = () => {}
  ) {}

  /** Queues ops for the next commit; resolves once they are durable. */
  write(ops: BatchOp[]): Promise<void> {
    if (this.failed) return Promise.reject(this.failed)
    for (const op of ops) {
      this.pending.push(op)
      this.pendingBytes += op.key.length + (op.value?.length ?? 0)
    }
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }))
    this.schedule()
    return done
  }

  /** Commits whatever is pending now (used at shutdown and by tests). */
  flush(): Promise<void> {
    if (this.pending.length === 0 && this.waiters.length === 0) return Promise.resolve()
    return this.write([])
  }

  getStats(): GroupCommitStats {
    return { ...this.stats, pendingOps: this.pending.length, pendingBytes: this.pendingBytes }
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.commit())
  }

  private commit(): void {
    this.scheduled = false
    const ops = this.pending
    const waiters = this.waiters
    const bytes = this.pendingBytes
    this.pending = []
    this.waiters = []
    this.pendingBytes = 0
    if (waiters.length === 0) return
    const settle = (err: Error | null): void => {
      if (err) {
        this.failed = err
        this.onError(err)
        for (const w of waiters) w.reject(err)
        return
      }
      this.stats.commits++
      this.stats.ops += ops.length
      this.stats.bytes += bytes
      for (const w of waiters) w.resolve()
    }
    if (ops.length === 0) {
      settle(null)
      return
    }
    this.db.batch(ops, { sync: this.durability === 'fsync' }).then(
      () => settle(null),
      (err: unknown) => settle(err instanceof Error ? err : new Error(String(err)))
    )
  }
}
