import type { Headers } from '../types.js'

// Value of a log record key (l, stream, partition, offset). Stream, partition and offset live in
// the key; the value is a compact binary layout so that replay decodes without JSON:
//   u8 version | u8 qos | u64 timestamp | str topic | str key | str clientId | u32 headersLen,
//   headers JSON (0 bytes when empty) | payload (the rest)
// where str = u16 length (0xffff = null) + UTF-8 bytes.

const VERSION = 1
const NULL_STRING = 0xffff

export interface StoredRecord {
  timestamp: number
  qos: 0 | 1 | 2
  topic: string | null
  key: string | null
  clientId: string | null
  headers: Headers
  value: Buffer
}

function byteLength(s: string | null): number {
  if (s === null) return 0
  const n = Buffer.byteLength(s, 'utf8')
  if (n >= NULL_STRING) throw new RangeError(`string of ${n} bytes is too long for a log record field`)
  return n
}

function writeString(out: Buffer, at: number, s: string | null, length: number): number {
  out.writeUInt16BE(s === null ? NULL_STRING : length, at)
  if (s !== null) out.write(s, at + 2, length, 'utf8')
  return at + 2 + length
}

/** One allocation and one pass: strings are written in place, the timestamp as two u32. */
export function encodeRecord(r: StoredRecord): Buffer {
  const topicLength = byteLength(r.topic)
  const keyLength = byteLength(r.key)
  const clientIdLength = byteLength(r.clientId)
  let headers: string | null = null
  for (const _ in r.headers) {
    headers = JSON.stringify(r.headers)
    break
  }
  const headersLength = headers === null ? 0 : Buffer.byteLength(headers, 'utf8')
  const size = 1 + 1 + 8 + 6 + topicLength + keyLength + clientIdLength + 4 + headersLength + r.value.length
  const out = Buffer.allocUnsafe(size)
  out[0] = VERSION
  out[1] = r.qos
  out.writeUInt32BE(Math.floor(r.timestamp / 2 ** 32), 2)
  out.writeUInt32BE(r.timestamp >>> 0, 6)
  let at = writeString(out, 10, r.topic, topicLength)
  at = writeString(out, at, r.key, keyLength)
  at = writeString(out, at, r.clientId, clientIdLength)
  out.writeUInt32BE(headersLength, at)
  at += 4
  if (headers !== null) at += out.write(headers, at, headersLength, 'utf8')
  r.value.copy(out, at)
  return out
}

/** Decodes a record; `value` is a view into `buf` (no copy). */
export function decodeRecord(buf: Buffer): StoredRecord {
  if (buf[0] !== VERSION) throw new Error(`unknown log record version ${buf[0]}`)
  const qos = buf[1] as 0 | 1 | 2
  const timestamp = Number(buf.readBigUInt64BE(2))
  let at = 10
  const str = (): string | null => {
    const len = buf.readUInt16BE(at)
    at += 2
    if (len === NULL_STRING) return null
    const s = buf.toString('utf8', at, at + len)
    at += len
    return s
  }
  const topic = str()
  const key = str()
  const clientId = str()
  const headersLength = buf.readUInt32BE(at)
  at += 4
  const headers = headersLength > 0 ? (JSON.parse(buf.toString('utf8', at, at + headersLength)) as Headers) : {}
  at += headersLength
  return { timestamp, qos, topic, key, clientId, headers, value: buf.subarray(at) }
}

/** The timestamp alone, for time-index scans. */
export function recordTimestamp(buf: Buffer): number {
  return Number(buf.readBigUInt64BE(2))
}
