// Key spaces of the single RocksDB (docs/architecture.md, "Storage").
// Parts are joined with 0x00: MQTT forbids U+0000 in client ids and topics [MQTT-1.5.3-2],
// so a separator can never appear inside a part, and byte order groups each prefix together.
// Numbers are fixed-width big-endian so that byte order is numeric order.

export const SEP = 0x00

export type KeySpace =
  | 'r' // retained: r, topic
  | 's' // subscriptions: s, clientId, filter
  | 'o' // outgoing queue: o, clientId, seq:u64
  | 'om' // outgoing messageId set by outgoingUpdate: om, clientId, seq:u64
  | 'i' // incoming QoS 2: i, clientId, messageId:u16
  | 'w' // wills: w, clientId
  | 'l' // log records: l, stream, partition:u32, offset:u64
  | 'lt' // log time index
  | 'c' // committed offsets
  | 'x' // dedup window of appendOnce: x, stream, id (the id may hold 0x00: it is the last part)
  | 'sc' // shared-group config: sc, group
  | 'sp' // shared-group partition state (acknowledged floor, next offset): sp, group, stream, partition:u32
  | 'sr' // shared-group record state (deliveries, due time, last error): sr, group, stream, partition:u32, offset:u64
  | 'd' // delayed messages and records: d, dueAt:u64, id (src/delayed/)
  | 'm' // metadata

export type KeyPart = string | Buffer

function partBuffer(part: KeyPart): Buffer {
  return typeof part === 'string' ? Buffer.from(part, 'utf8') : part
}

/** Builds `space 0x00 part 0x00 part ...`. */
export function key(space: KeySpace, ...parts: KeyPart[]): Buffer {
  const buffers: Buffer[] = [Buffer.from(space, 'latin1')]
  for (const part of parts) {
    buffers.push(Buffer.of(SEP), partBuffer(part))
  }
  return Buffer.concat(buffers)
}

/** The range of every key that starts with `space 0x00 parts... 0x00`. */
export function prefixRange(space: KeySpace, ...parts: KeyPart[]): { gte: Buffer; lt: Buffer } {
  const prefix = Buffer.concat([key(space, ...parts), Buffer.of(SEP)])
  const end = Buffer.from(prefix)
  end[end.length - 1] = SEP + 1
  return { gte: prefix, lt: end }
}

export function u64(value: number | bigint): Buffer {
  const b = Buffer.allocUnsafe(8)
  b.writeBigUInt64BE(BigInt(value))
  return b
}

export function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(value)
  return b
}

export function u16(value: number): Buffer {
  const b = Buffer.allocUnsafe(2)
  b.writeUInt16BE(value)
  return b
}

/** Splits a key whose parts are all strings (no fixed-width numbers) into its space and parts. */
export function splitStringKey(k: Buffer): { space: string; parts: string[] } {
  const pieces: string[] = []
  let start = 0
  for (let i = 0; i < k.length; i++) {
    if (k[i] === SEP) {
      pieces.push(k.toString('utf8', start, i))
      start = i + 1
    }
  }
  pieces.push(k.toString('utf8', start))
  const [space = '', ...parts] = pieces
  return { space, parts }
}

/** The string part between a known prefix length and a trailing fixed-width number (plus its separator). */
export function middlePart(k: Buffer, prefixLength: number, trailingWidth: number): string {
  return k.toString('utf8', prefixLength, k.length - trailingWidth - 1)
}

export function trailingU64(k: Buffer): bigint {
  return k.readBigUInt64BE(k.length - 8)
}

export function trailingU16(k: Buffer): number {
  return k.readUInt16BE(k.length - 2)
}
