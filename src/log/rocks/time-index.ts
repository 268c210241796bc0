import type { BatchOp } from '@nxtedition/rocksdb'
import type { Store } from '../../store/store.js'
import { offsetOf, readU64Value, recordKey, timeIndexKey, timeIndexRange, u64Value } from './keys.js'
import type { PartitionState } from './partition-state.js'
import { recordTimestamp } from '../record-codec.js'

// A sparse time index per partition: an entry (timestamp -> first offset at it) at most every
// second or every 1,024 records, so "offset at time T" is one reverse seek plus a short scan.

const INTERVAL_MS = 1000
const INTERVAL_RECORDS = 1024

/** The index entry to write with a record appended at `timestamp`, if one is due. */
export function indexEntry(stream: string, partition: number, state: PartitionState, offset: number, timestamp: number): BatchOp | null {
  if (++state.recordsSinceIndex < INTERVAL_RECORDS && timestamp - state.lastIndexedTimestamp < INTERVAL_MS) return null
  state.lastIndexedTimestamp = timestamp
  state.recordsSinceIndex = 0
  return { type: 'put', key: timeIndexKey(stream, partition, timestamp), value: u64Value(offset) }
}

/** The first offset whose timestamp is >= ts, or the end offset. */
export async function offsetForTime(store: Store, stream: string, partition: number, state: PartitionState, ts: number): Promise<number> {
  // the last entry strictly before ts: every record below its offset is older than ts (several
  // records can share a millisecond, so an entry at ts itself may not be the first at ts)
  let from = state.start
  const range = timeIndexRange(stream, partition)
  for await (const [, v] of store.scan({ gte: range.gte, lt: timeIndexKey(stream, partition, Math.max(0, ts)), reverse: true, limit: 1 })) {
    from = Math.max(from, readU64Value(v))
  }
  const end = state.end
  for await (const [k, v] of store.scan({ gte: recordKey(stream, partition, from), lt: recordKey(stream, partition, end) })) {
    if (recordTimestamp(v) >= ts) return offsetOf(k)
  }
  return end
}
