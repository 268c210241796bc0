import type { Store } from '../../store/store.js'
import type { RetentionPolicy } from '../types.js'
import { offsetOf, readU64Value, recordKey, timeIndexRange } from './keys.js'
import type { PartitionState } from './partition-state.js'
import { offsetForTime } from './time-index.js'

// Retention of the embedded log: whole ranges from the head of a partition, by age, count or
// bytes, whichever removes most, never past the committed end. A distributed backend applies its
// own retention; this is a chore of the RocksDB backend, not part of the Log contract.

export interface RetentionPlan {
  /** New first offset of the partition. */
  start: number
  /** Bytes (keys + values) of the records below it that go. */
  bytes: number
  /** Time-index entries that point below the new start. */
  timeIndexDeletes: Buffer[]
}

/** How far the head of a partition moves under its policy; null when nothing goes. */
export async function planRetention(
  store: Store,
  stream: string,
  partition: number,
  state: PartitionState,
  policy: RetentionPolicy,
  now: number
): Promise<RetentionPlan | null> {
  const end = state.end
  let start = state.start
  if (policy.maxRecords !== null) start = Math.max(start, end - policy.maxRecords)
  if (policy.maxAgeMs !== null) start = Math.max(start, await offsetForTime(store, stream, partition, state, now - policy.maxAgeMs))
  start = Math.min(start, end)

  // Sum what goes; with a byte limit, keep moving the head until the rest fits.
  let bytes = 0
  const overLimit = (): boolean => policy.maxBytes !== null && state.bytes - bytes > policy.maxBytes
  if (start > state.start || overLimit()) {
    const range = { gte: recordKey(stream, partition, state.start), lt: recordKey(stream, partition, end) }
    for await (const [k, v] of store.scan(range, 1024)) {
      const offset = offsetOf(k)
      if (offset >= start && !overLimit()) break
      bytes += k.length + v.length
      start = Math.max(start, offset + 1)
    }
  }
  if (start <= state.start) return null

  const timeIndexDeletes: Buffer[] = []
  for await (const [k, v] of store.scan(timeIndexRange(stream, partition))) {
    if (readU64Value(v) >= start) break
    timeIndexDeletes.push(k)
  }
  return { start, bytes, timeIndexDeletes }
}
