import type { BatchOp } from '@nxtedition/rocksdb'
import type { Store } from '../../store/store.js'
import { offsetOf, partitionHeadKey, recordKeyPrefix, recordRange, timeIndexRange } from './keys.js'
import { recordTimestamp } from '../record-codec.js'

/** What RocksLog keeps in memory per partition; rebuilt from RocksDB at open. */
export interface PartitionState {
  /** `l, stream, partition, 0x00`: record keys are this plus the offset. */
  keyPrefix: Buffer
  start: number
  /** Offset the next append gets (records below it may still be committing). */
  next: number
  /** End visible to readers: every record below it is committed (Kafka's high watermark). */
  end: number
  bytes: number
  lastTimestamp: number
  lastIndexedTimestamp: number
  recordsSinceIndex: number
}

/** The head (start offset, bytes) is stored; the end is the last record + 1. */
export async function loadPartition(store: Store, stream: string, partition: number): Promise<PartitionState> {
  const headValue = await store.get(partitionHeadKey(stream, partition))
  const head = headValue ? (JSON.parse(headValue.toString('utf8')) as { start: number; bytes: number }) : { start: 0, bytes: 0 }
  const state: PartitionState = {
    keyPrefix: recordKeyPrefix(stream, partition),
    start: head.start,
    next: head.start,
    end: head.start,
    bytes: head.bytes,
    lastTimestamp: 0,
    lastIndexedTimestamp: 0,
    recordsSinceIndex: 0
  }
  for await (const [k, v] of store.scan({ ...recordRange(stream, partition), reverse: true, limit: 1 })) {
    state.next = state.end = offsetOf(k) + 1
    state.lastTimestamp = recordTimestamp(v)
  }
  for await (const [k] of store.scan({ ...timeIndexRange(stream, partition), reverse: true, limit: 1 })) {
    state.lastIndexedTimestamp = Number(k.readBigUInt64BE(k.length - 8))
  }
  return state
}

/** The write that stores a partition's head; part of every batch that changes it. */
export function headOp(stream: string, partition: number, state: PartitionState): BatchOp {
  return { type: 'put', key: partitionHeadKey(stream, partition), value: Buffer.from(JSON.stringify({ start: state.start, bytes: state.bytes })) }
}
