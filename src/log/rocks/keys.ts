import { key, prefixRange, trailingU64, u32, u64 } from '../../store/keys.js'

// Keys of the log in the shared RocksDB (docs/architecture.md, "Storage"). Partition and offset are fixed-width
// big-endian, so a partition's records sort by offset and its time index by timestamp.

export const recordKey = (stream: string, partition: number, offset: number): Buffer => key('l', stream, u32(partition), u64(offset))

/** `l, stream, partition, 0x00`: the fixed start of a partition's record keys, built once per partition. */
export const recordKeyPrefix = (stream: string, partition: number): Buffer => recordRange(stream, partition).gte

/** A record key from its partition's prefix: one allocation, no concatenation (the append hot path). */
export function recordKeyAt(prefix: Buffer, offset: number): Buffer {
  const k = Buffer.allocUnsafe(prefix.length + 8)
  prefix.copy(k, 0)
  k.writeUInt32BE(Math.floor(offset / 2 ** 32), prefix.length)
  k.writeUInt32BE(offset >>> 0, prefix.length + 4)
  return k
}
export const recordRange = (stream: string, partition: number): { gte: Buffer; lt: Buffer } => prefixRange('l', stream, u32(partition))

export const timeIndexKey = (stream: string, partition: number, ts: number): Buffer => key('lt', stream, u32(partition), u64(ts))
export const timeIndexRange = (stream: string, partition: number): { gte: Buffer; lt: Buffer } => prefixRange('lt', stream, u32(partition))

export const commitKey = (group: string, stream: string, partition: number): Buffer => key('c', group, stream, u32(partition))
export const commitRange = (): { gte: Buffer; lt: Buffer } => prefixRange('c')

export const streamConfigKey = (stream: string): Buffer => key('m', 'stream', stream)
export const streamConfigRange = (): { gte: Buffer; lt: Buffer } => prefixRange('m', 'stream')

/** Head of a partition after retention (start offset, bytes stored), written with every append. */
export const partitionHeadKey = (stream: string, partition: number): Buffer => key('m', 'head', stream, u32(partition))

export const offsetOf = (k: Buffer): number => Number(trailingU64(k))

/** Decodes a commit key: c, group, stream, partition:u32. Group and stream hold no 0x00. */
export function parseCommitKey(k: Buffer): { group: string; stream: string; partition: number } {
  const partition = k.readUInt32BE(k.length - 4)
  const [group = '', stream = ''] = k.toString('utf8', 2, k.length - 5).split('\u0000')
  return { group, stream, partition }
}

export const u64Value = (n: number): Buffer => u64(n)
export const readU64Value = (b: Buffer): number => Number(b.readBigUInt64BE(0))

// Shared groups (src/log/shared/): config, per-partition position, per-record state.
export const shareConfigKey = (group: string): Buffer => key('sc', group)
export const shareConfigRange = (): { gte: Buffer; lt: Buffer } => prefixRange('sc')
export const sharePositionKey = (group: string, stream: string, partition: number): Buffer => key('sp', group, stream, u32(partition))
export const sharePositionRange = (group: string): { gte: Buffer; lt: Buffer } => prefixRange('sp', group)
export const shareRecordKey = (group: string, stream: string, partition: number, offset: number): Buffer =>
  key('sr', group, stream, u32(partition), u64(offset))
export const shareRecordRange = (group: string): { gte: Buffer; lt: Buffer } => prefixRange('sr', group)

/** Decodes `sp, group, stream, partition:u32` (or the same prefix of an `sr` key, with its offset). */
export function parseShareKey(k: Buffer, withOffset: boolean): { stream: string; partition: number; offset: number } {
  const end = withOffset ? k.length - 9 : k.length
  const partition = k.readUInt32BE(end - 4)
  const parts = k.toString('utf8', 3, end - 5).split('\u0000')
  return { stream: parts[1] ?? '', partition, offset: withOffset ? Number(k.readBigUInt64BE(k.length - 8)) : 0 }
}
