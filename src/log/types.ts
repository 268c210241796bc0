import { CulexError } from '../errors.js'

// The log contract: everything outside src/log/ sees the partitioned log only through these types.
// The embedded RocksDB backend (rocks/) is the default; another backend (NATS JetStream, Kafka)
// implements the same interface and runs the same abstract suite (test/log/abstract-log.ts),
// without changes to the broker or the HTTP API. Every method may do I/O: callers await.

export interface RetentionPolicy {
  /** Records older than this are deleted (ms); null = keep regardless of age. */
  maxAgeMs: number | null
  /** Bytes kept per partition; null = no size limit. */
  maxBytes: number | null
  /** Records kept per partition; null = no count limit. */
  maxRecords: number | null
}

export interface StreamConfig {
  name: string
  partitions: number
  retention: RetentionPolicy
}

export interface PartitionInfo {
  partition: number
  /** First offset still stored (the log head after retention). */
  startOffset: number
  /** Offset the next record will get; startOffset === endOffset means empty. */
  endOffset: number
  bytes: number
}

export interface StreamInfo {
  config: StreamConfig
  partitions: PartitionInfo[]
}

export type Headers = Record<string, string>

/** What a producer hands to append. The log stamps offset and timestamp. */
export interface RecordInput {
  key: string | null
  value: Buffer
  headers?: Headers
  /** MQTT topic the record was published on (null for records produced over HTTP). */
  topic?: string | null
  qos?: 0 | 1 | 2
  clientId?: string | null
}

export interface LogRecord {
  stream: string
  partition: number
  offset: number
  /** Append time, ms since the epoch; never decreases within a partition. */
  timestamp: number
  key: string | null
  value: Buffer
  headers: Headers
  topic: string | null
  qos: 0 | 1 | 2
  clientId: string | null
}

export interface AppendResult {
  partition: number
  offset: number
  timestamp: number
}

export interface ReadOptions {
  /** Most records to return. */
  limit: number
  /** Stop after this many value bytes (at least one record is returned if there is one). */
  maxBytes?: number
}

/** A record in its binary form (record-codec.ts), for bulk reads that pass bytes through. */
export interface EncodedRecord {
  offset: number
  bytes: Buffer
}

export type OffsetSpec = 'earliest' | 'latest' | { offset: number } | { timestamp: number }

/** A partition of a stream at an offset: a read position, a commit, a wait target. */
export interface PartitionOffset {
  stream: string
  partition: number
  offset: number
}

export type LogErrorCode = 'UNKNOWN_STREAM' | 'UNKNOWN_PARTITION' | 'OFFSET_OUT_OF_RANGE' | 'INVALID_ARGUMENT' | 'STREAM_EXISTS'

export class LogError extends CulexError<LogErrorCode> {}

export interface Log {
  /** Creates a stream, or checks that an existing one has the same partition count (retention may change). */
  ensureStream(config: StreamConfig): Promise<StreamInfo>
  listStreams(): Promise<StreamInfo[]>
  /** Throws UNKNOWN_STREAM. */
  describeStream(name: string): Promise<StreamInfo>
  /** Appends in order; resolves once every record is committed with the store's durability. */
  append(stream: string, records: RecordInput[], partition?: number): Promise<AppendResult[]>
  /** Records from `offset` on; none at the end offset. Throws OFFSET_OUT_OF_RANGE below the head or beyond the end. */
  read(stream: string, partition: number, offset: number, options: ReadOptions): Promise<LogRecord[]>
  /** As read, in the binary form of record-codec.ts (maxBytes counts whole records). */
  readEncoded(stream: string, partition: number, offset: number, options: ReadOptions): Promise<EncodedRecord[]>
  /** The first offset whose record's timestamp is >= ts (the end offset if there is none). */
  offsetForTime(stream: string, partition: number, ts: number): Promise<number>
  /** Resolves an offset spec to an offset in [start, end]. */
  resolveOffset(stream: string, partition: number, spec: OffsetSpec): Promise<number>
  /** Resolves true when any of the partitions has a record at or after the given offset, false after timeoutMs or on abort. */
  waitForRecords(targets: PartitionOffset[], timeoutMs: number, signal?: AbortSignal): Promise<boolean>

  /** Committed offset of a consumer group (the next offset to consume), or null. */
  committed(group: string, stream: string, partition: number): Promise<number | null>
  commit(group: string, offsets: PartitionOffset[]): Promise<void>
  /** Every group that has committed offsets, with them. */
  listCommitted(): Promise<Array<PartitionOffset & { group: string }>>

  close(): Promise<void>
}

/** The message for an offset outside [start, end]: the end is where the next record goes. */
export function outOfRange(stream: string, partition: number, offset: number, start: number, end: number): LogError {
  const available =
    start === end
      ? `it is empty; the next record gets offset ${end}`
      : `offsets ${start} to ${end - 1} are stored; ${end} is the end, where the next record goes`
  return new LogError('OFFSET_OUT_OF_RANGE', `offset ${offset} is out of range for ${stream}/${partition}: ${available}`, { earliest: start, latest: end })
}
