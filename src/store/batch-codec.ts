import type { BatchOp } from '@nxtedition/rocksdb'

// A write batch as one transferable buffer (decoded by the commit thread, commit-thread.ts), so the main thread hands it to the commit thread
// with one copy of the keys and values and no structured clone of objects:
//   per op: u8 type (1 put, 2 del) | u32 key length | u32 value length | key | value

export const PUT = 1
export const DEL = 2
const HEADER = 9

export function batchSize(ops: readonly BatchOp[]): number {
  let size = 0
  for (const op of ops) size += HEADER + op.key.length + (op.type === 'put' ? op.value.length : 0)
  return size
}

/** Encodes ops into a fresh ArrayBuffer (never Buffer's shared pool, so it can be transferred). */
export function encodeBatch(ops: readonly BatchOp[], size = batchSize(ops)): ArrayBuffer {
  const ab = new ArrayBuffer(size)
  const out = Buffer.from(ab)
  let at = 0
  for (const op of ops) {
    const value = op.type === 'put' ? op.value : null
    out[at] = value ? PUT : DEL
    out.writeUInt32LE(op.key.length, at + 1)
    out.writeUInt32LE(value?.length ?? 0, at + 5)
    at += HEADER
    at += op.key.copy(out, at)
    if (value) at += value.copy(out, at)
  }
  return ab
}
