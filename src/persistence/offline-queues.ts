import type { BatchOp } from '@nxtedition/rocksdb'
import { Packet } from './aedes-persistence-deps.js'
import { key, middlePart, prefixRange, trailingU64, u64 } from '../store/keys.js'
import { OutQueue, metaOf, type OutMeta } from './outgoing-index.js'
import { decodePacket, encodePacket } from './packet-codec.js'
import type { PersistencePacket, QueueLimits, StoredPacket } from './persistence-types.js'
import type { Store } from '../store/store.js'

// The offline queues of persistent sessions (aedes's outgoing* calls). Packets stay in RocksDB
// (o, clientId, seq) and are read in chunks; memory holds per entry only the ids that
// outgoingUpdate / outgoingClearMessageId look up (outgoing-index.ts). A messageId given when a
// queued packet is sent is written alone (om, clientId, seq), never by rewriting the packet.
// Writes not yet committed stay readable in an overlay, so calls made back to back see each other.

const SPACE_PREFIX_LENGTH = 2 // 'o' + 0x00
const OM_PREFIX_LENGTH = 3 // 'om' + 0x00
const STREAM_CHUNK = 256

const outKey = (clientId: string, seq: number): Buffer => key('o', clientId, u64(seq))
const outMessageIdKey = (clientId: string, seq: number): Buffer => key('om', clientId, u64(seq))
const encodeMessageId = (messageId: unknown): Buffer => Buffer.from(JSON.stringify({ m: messageId }), 'utf8')
const decodeMessageId = (value: Buffer): unknown => (JSON.parse(value.toString('utf8')) as { m?: unknown }).m

function messageIdOf(packet: unknown): unknown {
  return typeof packet === 'object' && packet !== null ? (packet as { messageId?: unknown }).messageId : undefined
}

/** An outgoing write not yet committed (an overlay on RocksDB for readers of the 'o' space). */
interface PendingValue {
  value: Buffer | null
}

export class OfflineQueues {
  // clientId -> queue metadata; seqs are global so they are never reused while running
  #outgoing = new Map<string, OutQueue>()
  #nextSeq = 0
  // 'o' keys (latin1) written but not yet committed: readers see them before RocksDB does
  #pending = new Map<string, PendingValue>()

  readonly #store: Store
  readonly #limits: QueueLimits | undefined

  constructor(store: Store, limits?: QueueLimits) {
    this.#store = store
    this.#limits = limits
  }

  /** Rebuilds the queue metadata from RocksDB (reading only each packet's header). */
  async load(): Promise<void> {
    for await (const [k, v] of this.#store.scan(prefixRange('o'))) {
      const clientId = middlePart(k, SPACE_PREFIX_LENGTH, 8)
      const seq = Number(trailingU64(k))
      this.#queue(clientId).add(seq, metaOf(decodePacket(v, false), v.length))
      if (seq >= this.#nextSeq) this.#nextSeq = seq + 1
    }

    const orphans: BatchOp[] = []
    for await (const [k, v] of this.#store.scan(prefixRange('om'))) {
      const clientId = middlePart(k, OM_PREFIX_LENGTH, 8)
      const seq = Number(trailingU64(k))
      const queue = this.#outgoing.get(clientId)
      const meta = queue?.metas.get(seq)
      if (!queue || !meta) {
        orphans.push({ type: 'del', key: k }) // cleared with its entry in one batch, so never expected
        continue
      }
      queue.update(seq, meta, { messageId: decodeMessageId(v), messageIdUpdated: true })
    }
    if (orphans.length > 0) await this.#commit(orphans)
  }

  /** Appends `packet` to the queue of every subscription's client. */
  async enqueue(subs: Array<{ clientId: string }>, packet: PersistencePacket): Promise<void> {
    if (subs.length === 0) return
    // as stored by the memory persistence (new Packet drops the wire-only fields)
    const stored = new Packet(packet)
    const value = encodePacket(stored)
    const ops: BatchOp[] = []
    for (const sub of subs) {
      const queue = this.#queue(sub.clientId)
      if (!this.#makeRoom(sub.clientId, queue, value.length, ops)) continue
      const seq = this.#nextSeq++
      queue.add(seq, metaOf(stored, value.length))
      ops.push({ type: 'put', key: outKey(sub.clientId, seq), value })
    }
    await this.#commit(ops)
  }

  /** outgoingUpdate: records the messageId a queued packet was sent with, or replaces an entry. */
  async update(clientId: string, packet: PersistencePacket): Promise<void> {
    const queue = this.#outgoing.get(clientId)
    const found = queue?.findForUpdate(packet)
    if (!queue || !found) throw new Error('no such packet')
    const { seq } = found
    const meta = queue.metas.get(seq)
    if (!meta) throw new Error('no such packet')
    if (found.sameBroker) {
      // the packet got its messageId: only that is written, no read-modify-write of the packet.
      // Not waited for: aedes drains a queue one packet at a time, and a crash before this commit
      // only means the packet is sent again after the restart with a new id (at least once).
      queue.update(seq, meta, { messageId: packet.messageId, messageIdUpdated: true })
      this.#commit([{ type: 'put', key: outMessageIdKey(clientId, seq), value: encodeMessageId(packet.messageId) }]).catch(noop)
      return
    }
    // another packet with this messageId takes the entry's place (e.g. the PUBREL after PUBREC)
    const value = encodePacket(packet)
    const ops: BatchOp[] = [{ type: 'put', key: outKey(clientId, seq), value }]
    if (meta.messageIdUpdated) ops.push({ type: 'del', key: outMessageIdKey(clientId, seq) })
    queue.update(seq, meta, metaOf(packet as StoredPacket, value.length))
    await this.#commit(ops)
  }

  /** outgoingClearMessageId: removes the entry sent with this messageId and returns its packet. */
  async clearMessageId(clientId: string, packet: PersistencePacket): Promise<StoredPacket | undefined> {
    const queue = this.#outgoing.get(clientId)
    const seq = queue?.findByMessageId(messageIdOf(packet))
    if (!queue || seq === undefined) return undefined
    const meta = queue.delete(seq)
    if (!meta) return undefined
    if (queue.metas.size === 0) this.#outgoing.delete(clientId)
    // The entry is gone from memory, so nothing else reads or writes its key from here: read
    // the packet (uncommitted write first), then delete it.
    const k = outKey(clientId, seq)
    const value = this.#pending.get(k.toString('latin1'))?.value ?? (await this.#store.get(k))
    const ops: BatchOp[] = [{ type: 'del', key: k }]
    if (meta.messageIdUpdated) ops.push({ type: 'del', key: outMessageIdKey(clientId, seq) })
    // not waited for: lost in a crash, the delivered packet is only sent again after the restart
    // (at least once; a client answers a PUBREL it has already completed with PUBCOMP)
    this.#commit(ops).catch(noop)
    return value ? withMeta(decodePacket(value), meta) : undefined
  }

  /**
   * Yields the client's queue as it was when called (entries cleared since are skipped), reading
   * the packets from RocksDB in chunks, or from the overlay where a write is not committed yet.
   */
  async *stream(clientId: string): AsyncGenerator<StoredPacket> {
    const queue = this.#outgoing.get(clientId)
    if (!queue) return
    const seqs = [...queue.metas.keys()]
    for (let i = 0; i < seqs.length; i += STREAM_CHUNK) {
      const chunk = seqs.slice(i, i + STREAM_CHUNK)
      const keys = chunk.map((seq) => outKey(clientId, seq))
      // taken before the scan: a write committed while it runs is in the scan or in this
      const pendingBefore = keys.map((k) => this.#pending.get(k.toString('latin1'))?.value)
      const scanned = new Map<number, Buffer>()
      for await (const [k, v] of this.#store.scan({ gte: keys[0], lte: keys[keys.length - 1] })) {
        scanned.set(Number(trailingU64(k)), v)
      }
      for (const [j, seq] of chunk.entries()) {
        const meta = this.#outgoing.get(clientId)?.metas.get(seq)
        if (!meta) continue
        const value = this.#pending.get(outKey(clientId, seq).toString('latin1'))?.value ?? pendingBefore[j] ?? scanned.get(seq)
        if (value) yield withMeta(decodePacket(value), meta)
      }
    }
  }

  /**
   * Whether a packet of `bytes` may join the queue under max-queued-messages / max-queued-bytes:
   * with drop-oldest the oldest entries go (their deletes join `ops`), with drop-new it does not.
   * Each packet dropped is reported.
   */
  #makeRoom(clientId: string, queue: OutQueue, bytes: number, ops: BatchOp[]): boolean {
    const limits = this.#limits
    if (!limits) return true
    const full = (): boolean =>
      (limits.maxMessages > 0 && queue.metas.size + 1 > limits.maxMessages) || (limits.maxBytes > 0 && queue.bytes + bytes > limits.maxBytes)
    if (!full()) return true
    if (limits.policy === 'drop-new' || (limits.maxBytes > 0 && bytes > limits.maxBytes)) {
      limits.onDrop(clientId)
      return false
    }
    for (let oldest = queue.oldest(); oldest && full(); oldest = queue.oldest()) {
      const [seq, meta] = oldest
      queue.delete(seq)
      ops.push({ type: 'del', key: outKey(clientId, seq) })
      if (meta.messageIdUpdated) ops.push({ type: 'del', key: outMessageIdKey(clientId, seq) })
      limits.onDrop(clientId)
    }
    return true
  }

  clear(): void {
    this.#outgoing.clear()
  }

  /** Clients with a queue (admin API). */
  clientIds(): IterableIterator<string> {
    return this.#outgoing.keys()
  }

  /** Entries in a client's queue: not yet delivered, or delivered and not yet acknowledged (admin API). */
  count(clientId: string): number {
    return this.#outgoing.get(clientId)?.metas.size ?? 0
  }

  #queue(clientId: string): OutQueue {
    let queue = this.#outgoing.get(clientId)
    if (!queue) {
      queue = new OutQueue()
      this.#outgoing.set(clientId, queue)
    }
    return queue
  }

  /**
   * Commits `ops` through the store's group commit; resolves once durable. Outgoing packet
   * writes stay visible in #pending until then. If the store fails, memory is ahead of RocksDB,
   * but the Store then rejects every later write too (the gateway treats that as fatal).
   */
  #commit(ops: BatchOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve()
    const mine: Array<[string, PendingValue]> = []
    for (const op of ops) {
      if (op.key[0] === 0x6f /* 'o' */ && op.key[1] === 0x00) {
        const entry: PendingValue = { value: op.type === 'put' ? op.value : null }
        const k = op.key.toString('latin1')
        this.#pending.set(k, entry)
        mine.push([k, entry])
      }
    }
    const done = this.#store.write(ops)
    if (mine.length > 0) {
      const release = (): void => {
        for (const [k, entry] of mine) if (this.#pending.get(k) === entry) this.#pending.delete(k)
      }
      done.then(release, release)
    }
    return done
  }
}

const noop = (): void => {}

/** A stored outgoing packet with the messageId outgoingUpdate gave it. */
function withMeta(packet: StoredPacket, meta: OutMeta): StoredPacket {
  if (meta.messageIdUpdated) packet.messageId = meta.messageId as number | undefined
  return packet
}
