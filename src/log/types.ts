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
  /** The partition to append to, instead of the key's (the `partition` argument of append, when given, wins). */
  partition?: number
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

/**
 * An idempotent append (Log#appendOnce), as NATS JetStream's Nats-Msg-Id: an id remembered by the
 * log for its dedup window, with the fingerprint (a digest) of what was appended under it.
 */
export interface AppendOnce {
  /** Names the append within its stream; callers give it a namespace ("http", "mqtt"). */
  id: string
  /** A digest of the content: the same id with the same fingerprint is a duplicate. */
  fingerprint: string
  /**
   * The same id with another fingerprint: 'reject' refuses it (IDEMPOTENCY_CONFLICT, nothing
   * appended); 'append' appends it, and it takes the id over.
   */
  onConflict: 'reject' | 'append'
  /** false: append without looking the id up, and take it over (default true). */
  lookup?: boolean
}

export interface AppendOnceResult {
  /** True when nothing was appended: `results` are those of the first append under the id. */
  duplicate: boolean
  results: AppendResult[]
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

export type LogErrorCode =
  | 'UNKNOWN_STREAM'
  | 'UNKNOWN_PARTITION'
  | 'OFFSET_OUT_OF_RANGE'
  | 'INVALID_ARGUMENT'
  | 'STREAM_EXISTS'
  /** appendOnce: the id was used within the dedup window for other content. */
  | 'IDEMPOTENCY_CONFLICT'

export class LogError extends CulexError<LogErrorCode> {}

export interface Log {
  /** Creates a stream, or checks that an existing one has the same partition count (retention may change). */
  ensureStream(config: StreamConfig): Promise<StreamInfo>
  listStreams(): Promise<StreamInfo[]>
  /** Throws UNKNOWN_STREAM. */
  describeStream(name: string): Promise<StreamInfo>
  /** Appends in order; resolves once every record is committed with the store's durability. */
  append(stream: string, records: RecordInput[], partition?: number): Promise<AppendResult[]>
  /**
   * As append, at most once per id within the backend's dedup window: a repeat with the same
   * fingerprint appends nothing and resolves, once the first append is durable, to its results
   * (`duplicate: true`). The window and a bound on the ids remembered are the backend's options;
   * at the bound the oldest ids are forgotten first. The ids survive a restart.
   */
  appendOnce(stream: string, records: RecordInput[], once: AppendOnce, partition?: number): Promise<AppendOnceResult>
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

  /** Shared groups (per-record acks, src/log/shared/): the names of the groups with a stored config. */
  listShareGroups(): Promise<string[]>
  /** A shared group's config (opaque JSON to the backend) and its state, or null when it has none. */
  loadShareGroup(group: string): Promise<StoredShareGroup | null>
  /** Stores a group's config, creating the group. */
  saveShareConfig(group: string, config: string): Promise<void>
  /** Applies state changes of a shared group in one durable write. */
  updateShareState(group: string, updates: ShareStateUpdate[]): Promise<void>
  /** Removes a shared group's config and state. */
  deleteShareGroup(group: string): Promise<void>

  close(): Promise<void>
}

/**
 * One record of a shared group that is neither finished nor beyond `next` (as KIP-932's in-flight
 * records): delivered and waiting for its ack, due for redelivery, or held back by per-key order.
 */
export interface ShareRecordState {
  offset: number
  /** The record's key, for per-key order (kept here so a restart need not read the record). */
  key: string | null
  /** Times handed out so far. */
  deliveries: number
  /** Not handed out again before this time (ms; backoff and nack delays). */
  availableAt: number
  firstDeliveryAt: number | null
  lastDeliveryAt: number | null
  /** The last error a consumer gave with a nack. */
  lastError: string | null
}

/**
 * A shared group's position in one partition: every offset below `floor` is finished; offsets in
 * [floor, next) are finished unless they have a record state; offsets from `next` on were never
 * handed out.
 */
export interface SharePartitionState {
  stream: string
  partition: number
  floor: number
  next: number
  records: ShareRecordState[]
}

export interface StoredShareGroup {
  config: string
  partitions: SharePartitionState[]
}

export interface ShareStateUpdate {
  stream: string
  partition: number
  /** New floor and next, when they moved (both are always written together). */
  position?: { floor: number; next: number }
  put?: ShareRecordState[]
  remove?: number[]
}

/** The message for an offset outside [start, end]: the end is where the next record goes. */
export function outOfRange(stream: string, partition: number, offset: number, start: number, end: number): LogError {
  const available =
    start === end
      ? `it is empty; the next record gets offset ${end}`
      : `offsets ${start} to ${end - 1} are stored; ${end} is the end, where the next record goes`
  return new LogError('OFFSET_OUT_OF_RANGE', `offset ${offset} is out of range for ${stream}/${partition}: ${available}`, { earliest: start, latest: end })
}
