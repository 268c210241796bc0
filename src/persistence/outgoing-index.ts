// In-memory index of each client's offline queue: enough metadata (brokerId, brokerCounter,
// messageId) to find an entry for outgoingUpdate / outgoingClearMessageId without reading RocksDB.
import type { PersistencePacket, StoredPacket } from './persistence-types.js'

export interface OutMeta {
  brokerId: unknown
  brokerCounter: unknown
  messageId: unknown
  /** messageId was set by outgoingUpdate and lives under the 'om' key, not in the packet. */
  messageIdUpdated: boolean
  /** Bytes of the stored packet (its encoded size), for max-queued-bytes. */
  bytes: number
}

/** One client's queue: entries by seq (Map order = enqueue order, as seqs only grow). */
export class OutQueue {
  readonly metas = new Map<number, OutMeta>()
  /** Sum of the entries' bytes. */
  bytes = 0
  readonly #byBroker = new Map<string, Set<number>>()
  readonly #byMessageId = new Map<number, Set<number>>()

  static brokerKey(brokerId: unknown, brokerCounter: unknown): string {
    // distinct for every pair that differs under ===, undefined included
    return JSON.stringify([typeof brokerId, String(brokerId), typeof brokerCounter, String(brokerCounter)])
  }

  add(seq: number, meta: OutMeta): void {
    this.metas.set(seq, meta)
    this.bytes += meta.bytes
    this.#index(seq, meta)
  }

  /** The oldest entry. */
  oldest(): [number, OutMeta] | undefined {
    for (const entry of this.metas) return entry
    return undefined
  }

  delete(seq: number): OutMeta | undefined {
    const meta = this.metas.get(seq)
    if (!meta) return undefined
    this.#unindex(seq, meta)
    this.metas.delete(seq)
    this.bytes -= meta.bytes
    return meta
  }

  update(seq: number, meta: OutMeta, change: Partial<OutMeta>): void {
    if (change.bytes !== undefined) this.bytes += change.bytes - meta.bytes
    this.#unindex(seq, meta)
    Object.assign(meta, change)
    this.#index(seq, meta)
  }

  /** The entry outgoingUpdate changes: the memory persistence's loop, answered from the indexes. */
  findForUpdate(packet: PersistencePacket): { seq: number; sameBroker: boolean } | undefined {
    const { brokerId, brokerCounter, messageId } = packet
    if (typeof messageId !== 'number') return this.#scanForUpdate(packet)
    // first entry of the same broker with the same counter...
    const sameBroker = minSeq(this.#byBroker.get(OutQueue.brokerKey(brokerId, brokerCounter)))
    // ...or first entry of another broker with the same messageId, whichever comes first
    const otherBroker = minSeq(this.#byMessageId.get(messageId), (seq) => this.metas.get(seq)?.brokerId !== brokerId)
    if (sameBroker !== undefined && (otherBroker === undefined || sameBroker < otherBroker)) return { seq: sameBroker, sameBroker: true }
    if (otherBroker !== undefined) return { seq: otherBroker, sameBroker: false }
    return undefined
  }

  /** The first entry whose messageId is `messageId`. */
  findByMessageId(messageId: unknown): number | undefined {
    if (typeof messageId === 'number') return minSeq(this.#byMessageId.get(messageId))
    for (const [seq, meta] of this.metas) if (meta.messageId === messageId) return seq
    return undefined
  }

  #scanForUpdate(packet: PersistencePacket): { seq: number; sameBroker: boolean } | undefined {
    for (const [seq, meta] of this.metas) {
      if (meta.brokerId === packet.brokerId) {
        if (meta.brokerCounter === packet.brokerCounter) return { seq, sameBroker: true }
      } else if (meta.messageId === packet.messageId) {
        return { seq, sameBroker: false }
      }
    }
    return undefined
  }

  #index(seq: number, meta: OutMeta): void {
    addTo(this.#byBroker, OutQueue.brokerKey(meta.brokerId, meta.brokerCounter), seq)
    if (typeof meta.messageId === 'number') addTo(this.#byMessageId, meta.messageId, seq)
  }

  #unindex(seq: number, meta: OutMeta): void {
    removeFrom(this.#byBroker, OutQueue.brokerKey(meta.brokerId, meta.brokerCounter), seq)
    if (typeof meta.messageId === 'number') removeFrom(this.#byMessageId, meta.messageId, seq)
  }
}

function addTo<K>(map: Map<K, Set<number>>, k: K, seq: number): void {
  const set = map.get(k)
  if (set) set.add(seq)
  else map.set(k, new Set([seq]))
}

function removeFrom<K>(map: Map<K, Set<number>>, k: K, seq: number): void {
  const set = map.get(k)
  if (!set) return
  set.delete(seq)
  if (set.size === 0) map.delete(k)
}

function minSeq(seqs: Set<number> | undefined, accept?: (seq: number) => boolean): number | undefined {
  let min: number | undefined
  if (seqs) for (const seq of seqs) if ((min === undefined || seq < min) && (!accept || accept(seq))) min = seq
  return min
}

export function metaOf(packet: StoredPacket, bytes: number): OutMeta {
  return {
    brokerId: packet.brokerId,
    brokerCounter: packet.brokerCounter,
    messageId: packet.messageId,
    messageIdUpdated: false,
    bytes
  }
}
