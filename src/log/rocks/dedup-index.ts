import type { BatchOp } from '@nxtedition/rocksdb'
import { prefixRange } from '../../store/keys.js'
import type { Store } from '../../store/store.js'
import type { AppendResult } from '../types.js'

// The ids of RocksLog#appendOnce (the contract's dedup window, as NATS JetStream's duplicate
// window). RocksDB holds every remembered id with its fingerprint and the append's results, in
// the key space `x, stream, id`; each is written in the same batch as the records it names, so a
// crash never keeps one without the other. Memory holds, per id, only its time and fingerprint
// (and the append in flight, if any): lookups are synchronous, so appendOnce keeps call order.
// A duplicate's results are read from RocksDB.
//
// Bounded twice: an id is forgotten once its window has passed (checked on lookup; a sweep deletes
// it), and at `maxKeys` ids the oldest is forgotten to make room for a new one (onEvicted).

export interface DedupOptions {
  /** How long an id is remembered (ms); 0 turns deduplication off (appendOnce appends every time). */
  windowMs: number
  /** Most ids remembered at once; beyond, the oldest is forgotten before its window has passed. */
  maxKeys: number
  /** How often ids past their window are deleted (ms); default: the window, at most 30 s; 0 = only by sweepDedup. */
  sweepIntervalMs?: number
  /** Ids forgotten before their window had passed, to stay within maxKeys. */
  onEvicted?: (count: number) => void
}

/** The backend's defaults (the config's are the same: src/config/sections/dedup.ts). */
export const DEDUP_DEFAULTS: DedupOptions = { windowMs: 120_000, maxKeys: 100_000 }

export interface DedupEntry {
  /** When the append was remembered (ms since the epoch). */
  readonly at: number
  readonly fingerprint: string
  /** The append while it commits (a duplicate waits for it); null once it is durable. */
  pending: Promise<AppendResult[]> | null
}

const SPACE = Buffer.from('x\u0000', 'latin1')

/**
 * `x, stream, id`. The id is the last part and may itself hold 0x00 (the MQTT ids do: a client id
 * and a packet id); stream names hold none, so the first 0x00 after the stream ends it.
 */
function diskKey(mapKey: string): Buffer {
  return Buffer.concat([SPACE, Buffer.from(mapKey, 'utf8')])
}

const mapKeyOf = (stream: string, id: string): string => `${stream}\u0000${id}`

export const dedupRange = (): { gte: Buffer; lt: Buffer } => prefixRange('x')

/** `u64 at | u16 fingerprint bytes | fingerprint | u32 count | count x (u32 partition, u64 offset, u64 timestamp)` */
function encodeEntry(at: number, fingerprint: string, results: AppendResult[]): Buffer {
  const fp = Buffer.from(fingerprint, 'utf8')
  const b = Buffer.allocUnsafe(8 + 2 + fp.length + 4 + results.length * 20)
  let o = b.writeBigUInt64BE(BigInt(at), 0)
  o = b.writeUInt16BE(fp.length, o)
  o += fp.copy(b, o)
  o = b.writeUInt32BE(results.length, o)
  for (const r of results) {
    o = b.writeUInt32BE(r.partition, o)
    o = b.writeBigUInt64BE(BigInt(r.offset), o)
    o = b.writeBigUInt64BE(BigInt(r.timestamp), o)
  }
  return b
}

function decodeHead(v: Buffer): { at: number; fingerprint: string; resultsAt: number } {
  const at = Number(v.readBigUInt64BE(0))
  const fpLength = v.readUInt16BE(8)
  return { at, fingerprint: v.toString('utf8', 10, 10 + fpLength), resultsAt: 10 + fpLength }
}

function decodeResults(v: Buffer): AppendResult[] {
  let o = decodeHead(v).resultsAt
  const n = v.readUInt32BE(o)
  o += 4
  const out: AppendResult[] = []
  for (let i = 0; i < n; i++, o += 20) {
    out.push({ partition: v.readUInt32BE(o), offset: Number(v.readBigUInt64BE(o + 4)), timestamp: Number(v.readBigUInt64BE(o + 12)) })
  }
  return out
}

/** The limit of an id's length (bytes), so that its RocksDB key stays small. */
export const MAX_ID_BYTES = 1024

export class DedupIndex {
  /** `stream 0x00 id` -> entry, oldest first (an id remembered again moves to the end). */
  private readonly entries = new Map<string, DedupEntry>()

  constructor(
    private readonly store: Store,
    readonly options: DedupOptions
  ) {
    if (!Number.isSafeInteger(options.windowMs) || options.windowMs < 0) throw new RangeError(`dedup windowMs must be an integer >= 0, not ${options.windowMs}`)
    if (!Number.isSafeInteger(options.maxKeys) || options.maxKeys < 1) throw new RangeError(`dedup maxKeys must be an integer >= 1, not ${options.maxKeys}`)
  }

  get enabled(): boolean {
    return this.options.windowMs > 0
  }

  /** Ids remembered now (some may be past their window until the next sweep). */
  get size(): number {
    return this.entries.size
  }

  /** Loads the stored ids (at open), deleting those past their window and the oldest beyond maxKeys. */
  async load(now: number): Promise<void> {
    const range = dedupRange()
    if (!this.enabled) {
      // off: nothing is remembered, and nothing stale is kept for when it is turned on again
      await this.store.deleteRange(range)
      return
    }
    const live: Array<[string, DedupEntry]> = []
    const ops: BatchOp[] = []
    for await (const [k, v] of this.store.scan(range)) {
      const { at, fingerprint } = decodeHead(v)
      if (at + this.options.windowMs <= now) ops.push({ type: 'del', key: k })
      else live.push([k.toString('utf8', SPACE.length), { at, fingerprint, pending: null }])
    }
    live.sort((a, b) => a[1].at - b[1].at)
    for (const [mapKey, entry] of live) this.entries.set(mapKey, entry)
    this.evict(0, ops)
    if (ops.length > 0) await this.store.write(ops)
  }

  /** The entry of an id, unless its window has passed. Synchronous. */
  find(stream: string, id: string, now: number): DedupEntry | undefined {
    const entry = this.entries.get(mapKeyOf(stream, id))
    return entry && entry.at + this.options.windowMs > now ? entry : undefined
  }

  /**
   * Remembers an append: adds to `ops` (the append's batch) the entry, and the deletions of the
   * ids forgotten to make room for it.
   */
  remember(stream: string, id: string, fingerprint: string, results: AppendResult[], now: number, ops: BatchOp[]): DedupEntry {
    const mapKey = mapKeyOf(stream, id)
    this.entries.delete(mapKey) // taken over: now the newest
    this.evict(1, ops)
    const entry: DedupEntry = { at: now, fingerprint, pending: null }
    this.entries.set(mapKey, entry)
    ops.push({ type: 'put', key: diskKey(mapKey), value: encodeEntry(now, fingerprint, results) })
    return entry
  }

  /** The append of `entry` failed: nothing of it was written, so its id is not remembered. */
  forget(stream: string, id: string, entry: DedupEntry): void {
    const mapKey = mapKeyOf(stream, id)
    if (this.entries.get(mapKey) === entry) this.entries.delete(mapKey)
  }

  /** The stored results of an id (undefined if it was forgotten meanwhile). */
  async results(stream: string, id: string): Promise<AppendResult[] | undefined> {
    const v = await this.store.get(diskKey(mapKeyOf(stream, id)))
    return v ? decodeResults(v) : undefined
  }

  /** Forgets the ids whose window has passed; returns their deletions. */
  sweep(now: number): BatchOp[] {
    const ops: BatchOp[] = []
    for (const [mapKey, entry] of this.entries) {
      // oldest first: the first one still in its window ends the sweep
      if (entry.at + this.options.windowMs > now) break
      this.entries.delete(mapKey)
      ops.push({ type: 'del', key: diskKey(mapKey) })
    }
    return ops
  }

  /** Forgets the oldest ids until `room` more fit within maxKeys. */
  private evict(room: number, ops: BatchOp[]): void {
    let evicted = 0
    while (this.entries.size + room > this.options.maxKeys) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) break
      this.entries.delete(oldest.value)
      ops.push({ type: 'del', key: diskKey(oldest.value) })
      evicted++
    }
    if (evicted > 0) this.options.onEvicted?.(evicted)
  }
}
