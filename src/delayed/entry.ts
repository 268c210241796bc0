import { randomBytes } from 'node:crypto'
import type { Headers, RecordInput } from '../log/types.js'
import { key, prefixRange, u64 } from '../store/keys.js'

// A delayed entry in the store: key `d, dueAt:u64, id:12 bytes` (so byte order is due order, and
// entries due at the same ms keep the order they were accepted in), value
// `version:u8, metaLength:u32, meta (JSON), body` where body is the MQTT payload or the record's
// value, kept as bytes.

/** An MQTT message to publish at its due time, as its client published it (less `$delayed/<s>/`). */
export interface DelayedMessage {
  kind: 'message'
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
  /** The publisher's client id (the log's client-id key rule uses it). */
  clientId: string | null
}

/** A log record to append at its due time (HTTP produce with deliverAt / delayMs). */
export interface DelayedRecord {
  kind: 'record'
  stream: string
  /** The partition the producer named, or null for the key's (or round robin). */
  partition: number | null
  key: string | null
  value: Buffer
  headers: Headers
}

export type DelayedEntry = DelayedMessage | DelayedRecord

export interface StoredEntry {
  key: Buffer
  dueAt: number
  id: string
  entry: DelayedEntry
}

const VERSION = 1
const ID_BYTES = 12

/** The range of every delayed entry. */
export const ENTRIES = prefixRange('d')

/** Keys below this are due at `now` or earlier. */
export function dueBefore(now: number): Buffer {
  return key('d', u64(Math.max(0, Math.floor(now) + 1)))
}

export function entryKey(dueAt: number, id: Buffer): Buffer {
  return key('d', u64(dueAt), id)
}

/** `d 0x00 dueAt:8 0x00 id:12` */
const KEY_BYTES = 1 + 1 + 8 + 1 + ID_BYTES

export function parseKey(k: Buffer): { dueAt: number; id: string } | null {
  if (k.length !== KEY_BYTES) return null
  return { dueAt: Number(k.readBigUInt64BE(2)), id: k.toString('hex', 11) }
}

/**
 * Ids for new entries: a counter that starts at the clock (ms * 65536, so a restart starts above
 * the ids of an earlier run unless the clock went back) and 4 random bytes. Entries due at the
 * same ms sort by it, in the order they were accepted.
 */
export class EntryIds {
  private next: bigint

  constructor(now: number = Date.now()) {
    this.next = BigInt(Math.floor(now)) << 16n
  }

  take(): Buffer {
    const id = Buffer.allocUnsafe(ID_BYTES)
    id.writeBigUInt64BE(this.next++ & 0xffff_ffff_ffff_ffffn, 0)
    randomBytes(4).copy(id, 8)
    return id
  }
}

interface MessageMeta {
  kind: 'message'
  topic: string
  qos: 0 | 1 | 2
  retain: boolean
  clientId: string | null
}

interface RecordMeta {
  kind: 'record'
  stream: string
  partition: number | null
  key: string | null
  headers: Headers
}

export function encodeEntry(entry: DelayedEntry): Buffer {
  const meta: MessageMeta | RecordMeta =
    entry.kind === 'message'
      ? { kind: 'message', topic: entry.topic, qos: entry.qos, retain: entry.retain, clientId: entry.clientId }
      : { kind: 'record', stream: entry.stream, partition: entry.partition, key: entry.key, headers: entry.headers }
  const json = Buffer.from(JSON.stringify(meta), 'utf8')
  const head = Buffer.allocUnsafe(5)
  head.writeUInt8(VERSION, 0)
  head.writeUInt32BE(json.length, 1)
  return Buffer.concat([head, json, entry.kind === 'message' ? entry.payload : entry.value])
}

/** The entry, or why it cannot be read (a later format, damage). */
export function decodeEntry(value: Buffer): DelayedEntry | string {
  if (value.length < 5) return 'too short'
  const version = value.readUInt8(0)
  if (version !== VERSION) return `format version ${version} is not known to this Culex`
  const length = value.readUInt32BE(1)
  if (5 + length > value.length) return 'its metadata is cut short'
  let meta: unknown
  try {
    meta = JSON.parse(value.toString('utf8', 5, 5 + length))
  } catch {
    return 'its metadata is not JSON'
  }
  const body = value.subarray(5 + length)
  if (meta === null || typeof meta !== 'object') return 'its metadata is not an object'
  const m = meta as Record<string, unknown>
  if (m.kind === 'message' && typeof m.topic === 'string' && (m.qos === 0 || m.qos === 1 || m.qos === 2)) {
    return {
      kind: 'message',
      topic: m.topic,
      payload: body,
      qos: m.qos,
      retain: m.retain === true,
      clientId: typeof m.clientId === 'string' ? m.clientId : null
    }
  }
  if (m.kind === 'record' && typeof m.stream === 'string') {
    return {
      kind: 'record',
      stream: m.stream,
      partition: typeof m.partition === 'number' ? m.partition : null,
      key: typeof m.key === 'string' ? m.key : null,
      headers: m.headers !== null && typeof m.headers === 'object' ? (m.headers as Headers) : {},
      value: body
    }
  }
  return 'its metadata is not a message or a record'
}

/** The record a delayed record becomes. */
export function recordInput(r: DelayedRecord): RecordInput {
  return { key: r.key, value: r.value, headers: r.headers, topic: null }
}
