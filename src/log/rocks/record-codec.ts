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

function stringBytes(s: string | null): Buffer | null {
  if (s === null) return null
  const b = Buffer.from(s, 'utf8')
  if (b.length >= NULL_STRING) throw new RangeError(`string of ${b.length} bytes is too long for a log record field`)
  return b
}

export function encodeRecord(r: StoredRecord): Buffer {
  const topic = stringBytes(r.topic)
  const key = stringBytes(r.key)
  const clientId = stringBytes(r.clientId)
  const headers = Object.keys(r.headers).length > 0 ? Buffer.from(JSON.stringify(r.headers), 'utf8') : null
  const size = 1 + 1 + 8 + 2 * 3 + (topic?.length ?? 0) + (key?.length ?? 0) + (clientId?.length ?? 0) + 4 + (headers?.length ?? 0) + r.value.length
  const out = Buffer.allocUnsafe(size)
  let at = out.writeUInt8(VERSION, 0)
  at = out.writeUInt8(r.qos, at)
  at = out.writeBigUInt64BE(BigInt(r.timestamp), at)
  for (const s of [topic, key, clientId]) {
    at = out.writeUInt16BE(s === null ? NULL_STRING : s.length, at)
    if (s) at += s.copy(out, at)
  }
  at = out.writeUInt32BE(headers?.length ?? 0, at)
  if (headers) at += headers.copy(out, at)
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
