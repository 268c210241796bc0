import type { BatchOp } from '@nxtedition/rocksdb'
import { TopicIndex } from '../mqtt/topic-index.js'
import { topicNameProblem } from '../mqtt/topics.js'
import { key, prefixRange } from '../store/keys.js'
import type { Store } from '../store/store.js'
import { decodePacket, encodePacket } from './packet-codec.js'
import type { StoredPacket } from './persistence-types.js'

// Retained messages: the topics in memory (a TopicIndex, for wildcard lookups), the packets in
// RocksDB only, read when a subscription asks for them. A retained message costs memory for its
// topic, not its payload. Writes not yet committed stay readable in an overlay.

const SPACE_PREFIX_LENGTH = 2 // 'r' + 0x00
const READ_CHUNK = 256

const retainedKey = (topic: string): Buffer => key('r', topic)

export class RetainedStore {
  readonly #store: Store
  #topics = new TopicIndex()
  /** Topic -> the packet (or null: deleted) of a write not committed yet. */
  readonly #pending = new Map<string, StoredPacket | null>()

  constructor(store: Store) {
    this.#store = store
  }

  get size(): number {
    return this.#topics.size
  }

  /**
   * Rebuilds the topic index from the keys. A topic no MQTT client could have published (U+0000,
   * ill-formed, a wildcard: written by an earlier version that let such topics through) is left
   * out and reported, so stored data of that kind cannot break a start or reach subscribers.
   */
  async load(onInvalid: (topic: string, problem: string) => void): Promise<void> {
    for await (const k of this.#store.scanKeys(prefixRange('r'))) {
      const topic = k.toString('utf8', SPACE_PREFIX_LENGTH)
      const problem = topicNameProblem(topic) ?? (Buffer.byteLength(topic) !== k.length - SPACE_PREFIX_LENGTH ? 'not UTF-8' : null)
      if (problem) onInvalid(topic, problem)
      else this.#topics.add(topic)
    }
  }

  /** Sets (or with an empty payload deletes) a topic's retained message; the write is returned, not awaited. */
  set(topic: string, packet: StoredPacket | null): BatchOp | null {
    if (packet === null) {
      if (!this.has(topic)) return null
      this.#topics.delete(topic)
      this.#pending.set(topic, null)
      return { type: 'del', key: retainedKey(topic) }
    }
    this.#topics.add(topic)
    this.#pending.set(topic, packet)
    return { type: 'put', key: retainedKey(topic), value: encodePacket(packet) }
  }

  has(topic: string): boolean {
    return this.#topics.has(topic)
  }

  /** Once the write of `topic` is committed, RocksDB answers for it again. */
  committed(topic: string, packet: StoredPacket | null): void {
    if (this.#pending.get(topic) === packet) this.#pending.delete(topic)
  }

  /** The topics matching a filter. */
  topics(filter: string): string[] {
    return this.#topics.match(filter)
  }

  /** Every topic `test` accepts. */
  *allTopics(test: (topic: string) => boolean): Generator<string> {
    for (const topic of this.#topics.all()) if (test(topic)) yield topic
  }

  /** The packets of these topics, read in chunks; topics deleted meanwhile are skipped. */
  async *read(topics: string[]): AsyncGenerator<StoredPacket> {
    for (let i = 0; i < topics.length; i += READ_CHUNK) {
      const chunk = topics.slice(i, i + READ_CHUNK)
      const fromDisk = chunk.filter((t) => !this.#pending.has(t))
      const values = await this.#store.getMany(fromDisk.map(retainedKey))
      const read = new Map(fromDisk.map((t, j) => [t, values[j]]))
      for (const topic of chunk) {
        const pending = this.#pending.get(topic)
        if (pending !== undefined) {
          if (pending) yield pending
          continue
        }
        const value = read.get(topic)
        if (value) yield decodePacket(value)
      }
    }
  }

  clear(): void {
    this.#topics = new TopicIndex()
    this.#pending.clear()
  }
}
