import type { Headers, LogRecord } from './types.js'

// The binary form of a record, part of the log contract: the embedded backend stores it as the
// value of a record key (l, stream, partition, offset), and the HTTP API streams it as it is
// (application/vnd.culex.records, see frames below), so a bulk read copies bytes and decodes
// nothing. Stream, partition and offset are not in it; the layout:
//   u8 version | u8 qos | u64 timestamp | str topic | str key | str clientId | u32 headersLen,
//   headers JSON (0 bytes when empty) | payload (the rest)
// where str = u16 length (0xffff = null) + UTF-8 bytes.

const VERSION = 1
const NULL_STRING = 0xffff

/** What encodeRecord takes: a record without its place in the log. */
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

/** Decodes a record straight into a LogRecord; `value` is a view into `buf` (no copy). */
export function decodeRecord(buf: Buffer, stream: string, partition: number, offset: number): LogRecord {
  if (buf[0] !== VERSION) throw new Error(`unknown log record version ${buf[0]}`)
  const qos = buf[1] as 0 | 1 | 2
  const timestamp = recordTimestamp(buf)
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
  return { stream, partition, offset, timestamp, key, value: buf.subarray(at), headers, topic, qos, clientId }
}

/** The timestamp alone, for time-index scans. */
export function recordTimestamp(buf: Buffer): number {
  return buf.readUInt32BE(2) * 2 ** 32 + buf.readUInt32BE(6)
}

// Frames: a sequence of records over a byte stream (the HTTP API's bulk reads):
//   u32 frame length (the bytes after it) | u64 offset | the record's binary form
// Clients cut the stream at the lengths and decode each record with decodeRecord.

export const FRAME_HEADER = 12

export function frameHeader(offset: number, recordLength: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER)
  h.writeUInt32BE(8 + recordLength, 0)
  h.writeUInt32BE(Math.floor(offset / 2 ** 32), 4)
  h.writeUInt32BE(offset >>> 0, 8)
  return h
}

/** Decodes the whole frames in `buf`; returns them and the bytes of an incomplete last frame. */
export function decodeFrames(buf: Buffer, stream: string, partition: number): { records: LogRecord[]; rest: Buffer } {
  const records: LogRecord[] = []
  let at = 0
  while (buf.length - at >= 4) {
    const length = buf.readUInt32BE(at)
    if (buf.length - at - 4 < length) break
    const offset = buf.readUInt32BE(at + 4) * 2 ** 32 + buf.readUInt32BE(at + 8)
    records.push(decodeRecord(buf.subarray(at + FRAME_HEADER, at + 4 + length), stream, partition, offset))
    at += 4 + length
  }
  return { records, rest: buf.subarray(at) }
}
