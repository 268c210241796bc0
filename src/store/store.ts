import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { RocksLevel } from '@nxtedition/rocksdb'
import type { BatchOp, RangeOptions } from '@nxtedition/rocksdb'
import { Backlog, type Watermarks } from './backlog.js'
import { startCommitThread } from './commit-thread.js'
import { storeError } from './errors.js'
import { GroupCommitWriter, type Durability } from './group-commit.js'
import { key } from './keys.js'

export const SCHEMA_VERSION = 1

export interface StoreOptions {
  dataDir: string
  durability: Durability
  onWriteError?: (err: Error) => void
  /** Backpressure: the backlog of uncommitted bytes over which writers are held (see Backlog); none by default. */
  watermarks?: Watermarks
  /** TEST ONLY: a commit of so many bytes waits this long (ms), as on a slow disk (GroupCommitOptions). */
  testOnlyCommitDelayMs?: (batchBytes: number) => number
}

/**
 * The single RocksDB of a Culex node. Every module writes through `write` (group commit)
 * and reads through `get` / `scan`; nothing else opens the database.
 */
export class Store {
  private constructor(
    private readonly db: RocksLevel,
    readonly writer: GroupCommitWriter,
    readonly location: string
  ) {}

  static async open(options: StoreOptions): Promise<Store> {
    const backlog = new Backlog(options.watermarks) // checks the watermarks before anything opens
    await mkdir(options.dataDir, { recursive: true })
    const location = join(options.dataDir, 'culex.rocksdb')
    const db = new RocksLevel(location, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    try {
      await db.open()
    } catch (err) {
      throw storeError(`cannot open the data dir ${location}`, err)
    }
    const writer = new GroupCommitWriter(startCommitThread(db.handle), options.durability, {
      onError: options.onWriteError,
      backlog,
      testOnlyCommitDelayMs: options.testOnlyCommitDelayMs
    })
    const store = new Store(db, writer, location)
    await store.checkSchema()
    return store
  }

  get durability(): Durability {
    return this.writer.durability
  }

  /** The bytes written and not committed yet, and whether they are over the high-water mark. */
  get backlog(): Backlog {
    return this.writer.backlog
  }

  /** Resolves once `ops` are committed with the store's durability (see GroupCommitWriter). */
  write(ops: BatchOp[]): Promise<void> {
    return this.writer.write(ops)
  }

  /** Adds ops to every commit, computed as it is sent (see GroupCommitWriter#contribute). */
  contribute(ops: () => BatchOp[]): void {
    this.writer.contribute(ops)
  }

  /** Resolves once every write issued so far is committed. */
  barrier(): Promise<void> {
    return this.writer.barrier()
  }

  async get(k: Buffer): Promise<Buffer | undefined> {
    const [value] = await this.db.getMany([k])
    return value ?? undefined
  }

  /** Several keys in one call; undefined for the missing ones. */
  async getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 0) return []
    return (await this.db.getMany(keys)).map((v) => v ?? undefined)
  }

  /** Iterates the keys of a range in order, without reading the values. */
  async *scanKeys(range: RangeOptions, chunk = 256): AsyncGenerator<Buffer> {
    const it = this.db.iterator({ ...range, values: false })
    try {
      for (;;) {
        const entries = await it.nextv(chunk)
        if (entries.length === 0) return
        for (const [k] of entries) yield k
      }
    } finally {
      await it.close()
    }
  }

  /** Iterates a key range in order, in chunks so large ranges do not load at once. */
  async *scan(range: RangeOptions, chunk = 256): AsyncGenerator<[Buffer, Buffer]> {
    const it = this.db.iterator({ ...range })
    try {
      for (;;) {
        const entries = await it.nextv(chunk)
        if (entries.length === 0) return
        yield* entries
      }
    } finally {
      await it.close()
    }
  }

  /**
   * Deletes a key range at once, outside the group commit (retention: the range is already
   * unreachable, its head having been moved durably first). Synchronous in this binding, so a very
   * large range blocks the event loop while it runs.
   */
  async deleteRange(range: { gte: Buffer; lt: Buffer }): Promise<void> {
    await this.db.clear(range)
  }

  get isOpen(): boolean {
    return this.db.status === 'open'
  }

  /** Iterates the values of a key range in order, without materializing the keys. */
  async *scanValues(range: RangeOptions, chunk = 256): AsyncGenerator<Buffer> {
    const it = this.db.iterator({ ...range, keys: false })
    try {
      for (;;) {
        const entries = await it.nextv(chunk)
        if (entries.length === 0) return
        for (const [, v] of entries) yield v
      }
    } finally {
      await it.close()
    }
  }

  async close(): Promise<void> {
    // the commit thread shares the native database: it stops before the database closes
    await this.writer.close()
    await this.db.close()
  }

  private async checkSchema(): Promise<void> {
    const k = key('m', 'schema')
    const current = await this.get(k)
    if (!current) {
      await this.write([{ type: 'put', key: k, value: Buffer.from(String(SCHEMA_VERSION)) }])
      return
    }
    const version = Number(current.toString())
    if (version !== SCHEMA_VERSION) {
      await this.close()
      throw new Error(`data dir ${this.location} has schema version ${version}; this Culex reads version ${SCHEMA_VERSION}`)
    }
  }
}
