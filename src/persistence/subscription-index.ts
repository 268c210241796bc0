import { QLOBBER_OPTIONS, QlobberSub, type QlobberSubLike } from './aedes-persistence-deps.js'
import type { ClientSubscription, PersistenceSubscription, TopicSubscription } from './persistence-types.js'

// The offline subscriptions in memory, as the memory persistence keeps them: per client (every
// QoS) and in a QlobberSub trie for matching (QoS > 0 only: QoS 0 subscriptions are restored on
// reconnect but never get offline messages). The persistence writes the same changes to RocksDB.

export interface SubRecord {
  qos: number
  rh: number | undefined
  rap: boolean | undefined
  nl: boolean | undefined
  subscriptionIdentifier?: number
}

export function subRecord(sub: PersistenceSubscription): SubRecord {
  // same shape as the memory persistence: the four keys always, the identifier only when set
  const record: SubRecord = { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl }
  if (sub.subscriptionIdentifier !== undefined) record.subscriptionIdentifier = sub.subscriptionIdentifier
  return record
}

export const encodeSubRecord = (record: SubRecord): Buffer => Buffer.from(JSON.stringify(record), 'utf8')

export function decodeSubRecord(value: Buffer): SubRecord {
  const v = JSON.parse(value.toString('utf8')) as Partial<SubRecord>
  const record: SubRecord = { qos: v.qos ?? 0, rh: v.rh, rap: v.rap, nl: v.nl }
  if (v.subscriptionIdentifier !== undefined) record.subscriptionIdentifier = v.subscriptionIdentifier
  return record
}

function trieSub(clientId: string, topic: string, record: SubRecord): TopicSubscription {
  return { clientId, topic, qos: record.qos, rh: record.rh, rap: record.rap, nl: record.nl }
}

export class SubscriptionIndex {
  #byClient = new Map<string, Map<string, SubRecord>>()
  #trie: QlobberSubLike = new QlobberSub(QLOBBER_OPTIONS)
  #clientsCount = 0

  /** The trie, shared with aedes-persistence's broadcast helper. */
  get trie(): QlobberSubLike {
    return this.#trie
  }

  /** Sets a client's subscription to `filter` (new or replacing one). */
  set(clientId: string, filter: string, record: SubRecord): void {
    let stored = this.#byClient.get(clientId)
    if (!stored) {
      stored = new Map()
      this.#byClient.set(clientId, stored)
      this.#clientsCount++
    }
    const previous = stored.get(filter)
    if (record.qos > 0) this.#trie.add(filter, trieSub(clientId, filter, record))
    else if (previous && previous.qos > 0) this.#trie.remove(filter, { clientId, topic: filter })
    stored.set(filter, record)
  }

  /** Removes the given filters of a client; returns the ones it had. */
  remove(clientId: string, filters: string[]): string[] {
    const stored = this.#byClient.get(clientId)
    if (!stored) return []
    const removed: string[] = []
    for (const filter of filters) {
      const previous = stored.get(filter)
      if (previous === undefined) continue
      if (previous.qos > 0) this.#trie.remove(filter, { clientId, topic: filter })
      stored.delete(filter)
      removed.push(filter)
    }
    if (stored.size === 0) this.#forget(clientId)
    return removed
  }

  /** Removes every subscription of a client; returns its filters. */
  clean(clientId: string): string[] {
    const stored = this.#byClient.get(clientId)
    if (!stored) return []
    for (const [filter, record] of stored) if (record.qos > 0) this.#trie.remove(filter, { clientId, topic: filter })
    this.#forget(clientId)
    return [...stored.keys()]
  }

  has(clientId: string): boolean {
    return this.#byClient.has(clientId)
  }

  byClient(clientId: string): ClientSubscription[] {
    const subs: ClientSubscription[] = []
    const stored = this.#byClient.get(clientId)
    if (stored) for (const [topic, record] of stored) subs.push({ topic, ...record })
    return subs
  }

  byTopic(topic: string): TopicSubscription[] {
    return this.#trie.match(topic)
  }

  count(): { subsCount: number; clientsCount: number } {
    return { subsCount: this.#trie.subscriptionsCount, clientsCount: this.#clientsCount }
  }

  /** Clients with stored subscriptions (admin API). */
  clientIds(): IterableIterator<string> {
    return this.#byClient.keys()
  }

  /** Clients subscribed to exactly this filter. */
  *clientsOf(filter: string): Generator<string> {
    for (const [clientId, stored] of this.#byClient) if (stored.has(filter)) yield clientId
  }

  clear(): void {
    this.#byClient.clear()
    this.#trie = new QlobberSub(QLOBBER_OPTIONS)
    this.#clientsCount = 0
  }

  #forget(clientId: string): void {
    this.#clientsCount--
    this.#byClient.delete(clientId)
  }
}
