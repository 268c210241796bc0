// The aedes persistence of Culex (the aedes-persistence 11 async interface) on the node's RocksDB.
//
// Semantics follow aedes-persistence/asyncPersistence.js (the memory persistence) call for call;
// what differs is where the state lives:
// - RocksDB is the source of truth. Every write goes through Store#write (group commit, fsync
//   with durability 'fsync').
// - The writes of the publish path (storeRetained, outgoingEnqueue(Combi), incomingStorePacket)
//   resolve as soon as they are queued: the broker waits for them all at once, with one barrier
//   (Store#barrier) before the PUBACK / PUBREC, instead of one commit after another (a retained
//   QoS 1 publish with offline subscribers used to wait for two fsyncs in a row). Every other
//   mutating method (subscriptions before SUBACK, wills before CONNACK, PUBREL's delete before
//   PUBCOMP, the queue changes of deliveries) resolves only once its batch is committed.
// - Retained messages, subscriptions, wills and incoming QoS 2 packets are also kept in memory and
//   read from there, as the memory persistence does; load() rebuilds them from RocksDB.
// - Outgoing (offline) queues can be large, so their packets stay in RocksDB: offline-queues.ts.
//
// In-memory state changes synchronously when a method is called, before its write commits, so
// calls made back to back see each other's effect in call order (as with the memory persistence)
// and every decision is taken without awaiting a read.

import { Readable } from 'node:stream'
import type { BatchOp } from '@nxtedition/rocksdb'
import { decodePacket, encodePacket } from './packet-codec.js'
import { key, middlePart, prefixRange, splitStringKey, trailingU16, u16 } from '../store/keys.js'
import type { Store } from '../store/store.js'

import {
  REFUSED,
  type ClientSubscription,
  type PersistenceBroker,
  type PersistenceClient,
  type PersistencePacket,
  type PersistenceSubscription,
  type RocksPersistenceOptions,
  type StoredPacket,
  type TopicSubscription
} from './persistence-types.js'
import { BroadcastPersistence, Packet, QLOBBER_OPTIONS, QlobberTrue, type BroadcastLike } from './aedes-persistence-deps.js'
import { SubscriptionIndex, decodeSubRecord, encodeSubRecord, subRecord } from './subscription-index.js'
import { OfflineQueues } from './offline-queues.js'
import { RetainedStore } from './retained-store.js'

export type * from './persistence-types.js'
export { REFUSED } from './persistence-types.js'

// --- keys -----------------------------------------------------------------------------------

const SPACE_PREFIX_LENGTH = 2 // 'r' + 0x00, 'i' + 0x00, ...

const incomingKey = (clientId: string, messageId: number): Buffer => key('i', clientId, u16(messageId))

function isU16(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffff
}

function payloadLength(payload: unknown): number {
  return typeof payload === 'string' || payload instanceof Uint8Array ? payload.length : 0
}

// --- the persistence ------------------------------------------------------------------------

export class RocksPersistence {
  readonly #store: Store
  readonly #broadcastSubscriptions: boolean
  #broker: PersistenceBroker | undefined
  #broadcast: BroadcastLike | undefined
  #loaded = false
  #destroyed = false

  // retained messages: topics in memory, packets on disk
  readonly #retained: RetainedStore
  readonly #onInvalidRetained: (topic: string, problem: string) => void
  // clientId -> (filter -> record); QoS > 0 subscriptions also in the trie
  #subscriptions = new SubscriptionIndex()
  // clientId -> (messageId -> packet)
  #incoming = new Map<string, Map<number, StoredPacket>>()
  // clientId -> will
  #wills = new Map<string, StoredPacket>()
  // offline queues of persistent sessions
  readonly #queues: OfflineQueues

  constructor(store: Store, options: RocksPersistenceOptions = {}) {
    this.#store = store
    this.#queues = new OfflineQueues(store, options.queueLimits)
    this.#retained = new RetainedStore(store)
    this.#onInvalidRetained = options.onInvalidRetained ?? (() => {})
    this.#broadcastSubscriptions = options.broadcastSubscriptions === true
  }

  /** Opens the persistence on `store`, rebuilding the in-memory indexes from it. */
  static async open(store: Store, options: RocksPersistenceOptions = {}): Promise<RocksPersistence> {
    const persistence = new RocksPersistence(store, options)
    await persistence.load()
    return persistence
  }

  /** Rebuilds every in-memory index from RocksDB. Call once, before use. */
  async load(): Promise<void> {
    if (this.#loaded) throw new Error('RocksPersistence already loaded')
    this.#loaded = true
    const store = this.#store

    await this.#retained.load(this.#onInvalidRetained)

    for await (const [k, v] of store.scan(prefixRange('s'))) {
      const [clientId = '', ...rest] = splitStringKey(k).parts
      const topic = rest.join('\u0000')
      this.#subscriptions.set(clientId, topic, decodeSubRecord(v))
    }

    for await (const [k, v] of store.scan(prefixRange('w'))) {
      this.#wills.set(k.toString('utf8', SPACE_PREFIX_LENGTH), decodePacket(v))
    }

    for await (const [k, v] of store.scan(prefixRange('i'))) {
      const clientId = middlePart(k, SPACE_PREFIX_LENGTH, 2)
      let packets = this.#incoming.get(clientId)
      if (!packets) {
        packets = new Map()
        this.#incoming.set(clientId, packets)
      }
      packets.set(trailingU16(k), decodePacket(v))
    }

    await this.#queues.load()
  }

  /** The broker given to setup() (the abstract tests read it). */
  get broker(): PersistenceBroker | undefined {
    return this.#broker
  }

  // aedes checks that this is an AsyncFunction
  async setup(broker: PersistenceBroker): Promise<void> {
    if (!this.#loaded) throw new Error('RocksPersistence.setup() before load()')
    this.#broker = broker
    if (this.#broadcastSubscriptions) {
      this.#broadcast = new BroadcastPersistence(broker, this.#subscriptions.trie)
      await this.#broadcast.brokerSubscribe()
    }
  }

  // --- retained ---

  async storeRetained(pkt: PersistencePacket): Promise<void> {
    const packet = Object.assign({}, pkt) as StoredPacket // a copy: the caller may change its packet later
    const topic = String(packet.topic)
    const stored = payloadLength(packet.payload) === 0 ? null : packet
    const op = this.#retained.set(topic, stored)
    if (!op) return
    // queued for the broker's barrier; once committed, RocksDB answers reads of the topic again
    this.#store.write([op]).then(
      () => this.#retained.committed(topic, stored),
      () => {}
    )
  }

  /**
   * The retained messages matching each pattern, one pattern after the other (a SUBSCRIBE with
   * several filters is handled as that many SUBSCRIBEs [MQTT-3.8.4-4]). With `grantedQos` (the
   * broker passes each filter's granted QoS, source-patches.ts), a message above it comes at it
   * [MQTT-3.8.4-6]: a copy, the stored packet is untouched.
   */
  createRetainedStreamCombi(patterns: string[], grantedQos?: number[]): Readable {
    return Readable.from(this.#retainedByPatterns(patterns, grantedQos))
  }

  createRetainedStream(pattern: string): Readable {
    return Readable.from(this.#retainedByPatterns([pattern]))
  }

  async *#retainedByPatterns(patterns: string[], grantedQos?: number[]): AsyncGenerator<StoredPacket> {
    for (const [i, pattern] of patterns.entries()) {
      const max = grantedQos?.[i] ?? 2
      const levels = pattern.split('/')
      const hash = levels.indexOf('#')
      let topics: string[]
      if (hash === -1 || hash === levels.length - 1) {
        topics = this.#retained.topics(pattern)
      } else {
        // '#' in the middle is no MQTT filter, but qlobber (the memory persistence) accepts it
        const qlobber = new QlobberTrue(QLOBBER_OPTIONS)
        qlobber.add(pattern)
        topics = [...this.#retained.allTopics((t) => qlobber.test(t))]
      }
      for await (const packet of this.#retained.read(topics)) yield (packet.qos ?? 0) > max ? { ...packet, qos: max } : packet
    }
  }

  /** Retained messages stored. */
  get retainedCount(): number {
    return this.#retained.size
  }

  /** The retained topics a filter matches (admin API; the filter must be valid). */
  retainedTopics(filter: string): string[] {
    return this.#retained.topics(filter)
  }

  /** The retained packets of these topics, read in chunks (admin API). */
  readRetained(topics: string[]): AsyncGenerator<StoredPacket> {
    return this.#retained.read(topics)
  }

  /** Client ids of the stored sessions: with subscriptions or an offline queue (admin API). */
  sessionIds(): Set<string> {
    return new Set([...this.#subscriptions.clientIds(), ...this.#queues.clientIds()])
  }

  /** Messages in a client's offline queue, in flight ones included (admin API). */
  queuedCount(clientId: string): number {
    return this.#queues.count(clientId)
  }

  // --- subscriptions ---

  /**
   * aedes 1.2 calls addSubscriptions once per filter of a SUBSCRIBE, each time with the packet's
   * whole list (lib/handlers/subscribe.js, storeSubscriptions): N filters made N x N writes, and
   * 4,000 filters in one packet ran the broker out of memory. The calls for one list (and client)
   * while its write is under way share that write.
   */
  readonly #added = new WeakMap<object, Map<string, Promise<void>>>()

  addSubscriptions(client: PersistenceClient, subs: PersistenceSubscription[]): Promise<void> {
    let byClient = this.#added.get(subs)
    if (!byClient) this.#added.set(subs, (byClient = new Map<string, Promise<void>>()))
    let added = byClient.get(client.id)
    if (!added) {
      // the calls of one SUBSCRIBE come in one pass, before the write is done; later calls write again
      const forget = (): void => void byClient.delete(client.id)
      added = this.#addSubscriptions(client, subs).finally(forget)
      byClient.set(client.id, added)
    }
    return added
  }

  async #addSubscriptions(client: PersistenceClient, all: PersistenceSubscription[]): Promise<void> {
    // aedes calls this from the first filter's turn; the broker decides the others in the same
    // pass: after it, the filters it refused (SUBACK 0x80) are known and left out
    await new Promise((resolve) => setImmediate(resolve))
    const subs = all.filter((sub) => sub[REFUSED] !== true)
    const clientId = client.id
    if (clientId.includes('\u0000') || subs.some((sub) => sub.topic.includes('\u0000'))) {
      // U+0000 separates key parts; MQTT forbids it in client ids and topics [MQTT-1.5.3-2]
      throw new Error('client id and topic filter must not contain U+0000')
    }
    // a client with no subscription is not stored (the memory one would count it until cleaned)
    const ops: BatchOp[] = subs.map((sub) => {
      const record = subRecord(sub)
      this.#subscriptions.set(clientId, sub.topic, record)
      return { type: 'put', key: key('s', clientId, sub.topic), value: encodeSubRecord(record) }
    })
    await this.#commit(ops)
    if (this.#broadcast) await this.#broadcast.addedSubscriptions(client, subs)
  }

  async removeSubscriptions(client: PersistenceClient, subs: string[]): Promise<void> {
    const removed = this.#subscriptions.remove(client.id, subs)
    await this.#commit(removed.map((topic) => ({ type: 'del', key: key('s', client.id, topic) })))
    if (this.#broadcast) await this.#broadcast.removedSubscriptions(client, subs)
  }

  async subscriptionsByClient(client: PersistenceClient): Promise<ClientSubscription[]> {
    return this.#subscriptions.byClient(client.id)
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.#subscriptions.count()
  }

  async subscriptionsByTopic(pattern: string): Promise<TopicSubscription[]> {
    return this.#subscriptions.byTopic(pattern)
  }

  async cleanSubscriptions(client: PersistenceClient): Promise<void> {
    const removed = this.#subscriptions.clean(client.id)
    await this.#commit(removed.map((topic) => ({ type: 'del', key: key('s', client.id, topic) })))
  }

  getClientList(topic: string): Readable {
    return Readable.from(this.#subscriptions.clientsOf(topic))
  }

  // --- outgoing ---

  async outgoingEnqueue(sub: { clientId: string }, packet: PersistencePacket): Promise<void> {
    this.#queues.enqueue([sub], packet).catch(noop) // settled by the broker's barrier
  }

  async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: PersistencePacket): Promise<void> {
    this.#queues.enqueue(subs, packet).catch(noop) // settled by the broker's barrier
  }

  async outgoingUpdate(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    await this.#queues.update(client.id, packet)
  }

  async outgoingClearMessageId(client: PersistenceClient, packet: PersistencePacket): Promise<StoredPacket | undefined> {
    return this.#queues.clearMessageId(client.id, packet)
  }

  outgoingStream(client: PersistenceClient): Readable {
    return Readable.from(this.#queues.stream(client.id))
  }

  // --- incoming QoS 2 ---

  async incomingStorePacket(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    const messageId = packet.messageId
    if (!isU16(messageId)) throw new Error(`invalid messageId ${String(messageId)}`)
    const stored = new Packet(packet)
    stored.messageId = messageId
    let packets = this.#incoming.get(client.id)
    if (!packets) {
      packets = new Map()
      this.#incoming.set(client.id, packets)
    }
    packets.set(messageId, stored)
    this.#queue([{ type: 'put', key: incomingKey(client.id, messageId), value: encodePacket(stored) }])
  }

  async incomingGetPacket(client: PersistenceClient, packet: PersistencePacket): Promise<StoredPacket> {
    const stored = this.#incomingPacket(client.id, packet.messageId)
    // aedes asks this for every new QoS 2 packet and takes the rejection to mean "new": one shared
    // error instead of capturing a stack trace each time (11% of the event loop in the profile)
    if (!stored) throw NO_SUCH_INCOMING_PACKET
    return stored
  }

  async incomingDelPacket(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    const messageId = packet.messageId
    const packets = this.#incoming.get(client.id)
    if (!packets || !isU16(messageId) || !packets.has(messageId)) throw new Error('no such packet')
    packets.delete(messageId)
    if (packets.size === 0) this.#incoming.delete(client.id)
    await this.#commit([{ type: 'del', key: incomingKey(client.id, messageId) }])
  }

  async cleanIncoming(client: PersistenceClient): Promise<void> {
    const packets = this.#incoming.get(client.id)
    if (!packets) return
    this.#incoming.delete(client.id)
    await this.#commit([...packets.keys()].map((messageId) => ({ type: 'del', key: incomingKey(client.id, messageId) })))
  }

  /** Whether a QoS 2 packet with this id awaits its PUBREL (so a PUBLISH with the id is a duplicate). */
  hasIncoming(clientId: string, messageId: unknown): boolean {
    return this.#incomingPacket(clientId, messageId) !== undefined
  }

  #incomingPacket(clientId: string, messageId: unknown): StoredPacket | undefined {
    return isU16(messageId) ? this.#incoming.get(clientId)?.get(messageId) : undefined
  }

  // --- wills ---

  async putWill(client: PersistenceClient, packet: PersistencePacket): Promise<void> {
    // the memory persistence stamps the caller's packet too
    packet.brokerId = this.#broker?.id
    packet.clientId = client.id
    const stored = Object.assign({}, packet) as StoredPacket
    this.#wills.set(client.id, stored)
    await this.#commit([{ type: 'put', key: key('w', client.id), value: encodePacket(stored) }])
  }

  async getWill(client: PersistenceClient): Promise<StoredPacket | undefined> {
    return this.#wills.get(client.id)
  }

  async delWill(client: PersistenceClient): Promise<StoredPacket | undefined> {
    const will = this.#wills.get(client.id)
    if (!will) return undefined
    this.#wills.delete(client.id)
    await this.#commit([{ type: 'del', key: key('w', client.id) }])
    return will
  }

  /** Wills of brokers not in `brokers` (the ones alive), i.e. of this node after a restart. */
  streamWill(brokers: Record<string, unknown> = {}): Readable {
    const wills = this.#wills
    return Readable.from(
      (function* () {
        for (const will of wills.values()) if (!brokers[String(will.brokerId)]) yield will
      })()
    )
  }

  // --- lifecycle ---

  /** Releases the persistence. The Store belongs to the gateway and stays open. */
  async destroy(): Promise<void> {
    if (this.#destroyed) throw new Error('destroyed called twice!')
    this.#destroyed = true
    if (this.#broadcast) await this.#broadcast.brokerUnsubscribe()
    this.#retained.clear()
    this.#subscriptions.clear()
    this.#incoming.clear()
    this.#wills.clear()
    this.#queues.clear()
  }

  /**
   * Queues `ops` without waiting: the broker's barrier before the ack makes them durable. A failed
   * write fails every later one too (the Store stops), so the barrier reports it and no ack goes out.
   */
  #queue(ops: BatchOp[]): void {
    this.#store.write(ops).catch(noop)
  }

  /** Commits `ops` through the store's group commit; resolves once durable. */
  #commit(ops: BatchOp[]): Promise<void> {
    return ops.length === 0 ? Promise.resolve() : this.#store.write(ops)
  }
}

const NO_SUCH_INCOMING_PACKET: Error = new Error('no such packet')

const noop = (): void => {}
