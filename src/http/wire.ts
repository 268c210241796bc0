// The HTTP API's wire types: what crosses the network, in one module that the server, the CLI
// (src/commands/) and the dashboard import. Nothing here depends on the server's framework.

import type { AutoOffsetReset, GroupDescription, GroupSummary, Membership } from '../log/groups/types.js'
import type { ReplayStatus } from '../log/replay.js'
import type { BridgeStatus } from '../bridges/types.js'
import type { Headers, OffsetSpec, PartitionOffset, RetentionPolicy } from '../log/types.js'

export type { AutoOffsetReset, GroupDescription, GroupSummary, Headers, Membership, OffsetSpec, PartitionOffset, ReplayStatus }

/** Every error body: a stable code for programs, a message for people, and details. */
export interface ErrorBody {
  error: string
  message: string
  [detail: string]: unknown
}

/** An API error: thrown by the server to answer with it, and by clients that received one. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {}
  ) {
    super(message)
    this.name = 'ApiError'
  }

  get body(): ErrorBody {
    return { ...this.details, error: this.code, message: this.message }
  }

  /** The error a client received: status and JSON body. */
  static fromResponse(status: number, body: unknown): ApiError {
    const b = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
    const { error, message, ...details } = b
    return new ApiError(status, typeof error === 'string' ? error : `HTTP_${status}`, typeof message === 'string' ? message : `HTTP ${status}`, details)
  }
}

export const ENCODINGS = ['base64', 'utf8'] as const
/** How record values travel in JSON: base64 (any bytes, the default) or UTF-8 text. */
export type Encoding = (typeof ENCODINGS)[number]

/** A log record as the API returns it. */
export interface ApiRecord {
  stream: string
  partition: number
  offset: number
  /** Append time, ms since the epoch. */
  timestamp: number
  key: string | null
  /** The payload in the requested encoding. */
  value: string
  headers: Headers
  /** MQTT topic it was published on; null for records produced over HTTP. */
  topic: string | null
  qos: 0 | 1 | 2
  clientId: string | null
}

export interface PartitionSummary {
  partition: number
  startOffset: number
  endOffset: number
  bytes: number
}

/** GET /streams/:stream */
export interface StreamSummary {
  name: string
  partitionCount: number
  retention: RetentionPolicy
  /** Stored bytes over all partitions. */
  bytes: number
  /** Stored records over all partitions. */
  records: number
  partitions: PartitionSummary[]
}

export interface ProducedRecord {
  key?: string | null
  value: string
  headers?: Headers
  partition?: number
}

/** POST /streams/:stream/records: `{ records: [...] }` or one record's fields at the top level. */
export interface ProduceRequest extends Partial<ProducedRecord> {
  records?: ProducedRecord[]
  encoding?: Encoding
  /** Append the records at this time instead of now: ms since the epoch or an ISO 8601 / RFC 3339 time (answer: ScheduledResponse). */
  deliverAt?: string | number
  /** Append the records this many ms from now (answer: ScheduledResponse); not with deliverAt. */
  delayMs?: number
}

/** 202 to a produce with deliverAt or delayMs: the records are stored and appended at `deliverAt`. */
export interface ScheduledResponse {
  /** One per record, in request order. */
  scheduled: Array<{ id: string; /** ms since the epoch */ deliverAt: number }>
}

/**
 * A request with an `Idempotency-Key` header gets `duplicate` on every record: true when the key
 * was seen within the dedup window, nothing was appended, and these are the first request's
 * offsets (the answer then also carries `Idempotent-Replayed: true`).
 */
export interface ProduceResponse {
  offsets: Array<{ partition: number; offset: number; timestamp: number; duplicate?: boolean }>
}

/** The produce request header that makes it idempotent within the dedup window. */
export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key'

/** GET /streams/:stream/partitions/:p/records */
export interface ReadResponse {
  records: ApiRecord[]
  /** Offset to ask for next. */
  nextOffset: number
  startOffset: number
  endOffset: number
}

/** POST /groups/:group/members */
export interface JoinRequest {
  streams: string[]
  sessionTimeoutMs?: number
  clientId?: string
  autoOffsetReset?: AutoOffsetReset
  memberId?: string
}

/** POST /groups/:group/members/:member/fetch (every field optional on the wire) */
export interface FetchRequest {
  maxRecords: number
  maxBytes: number
  waitMs: number
  encoding: Encoding
}

export interface FetchResponse extends Membership {
  records: ApiRecord[]
}

export interface CommitRequest {
  offsets: PartitionOffset[]
}

export interface ResetRequest {
  stream: string
  to: OffsetSpec
}

export interface GroupList {
  groups: GroupSummary[]
}

/** POST /streams/:stream/replay; `from` and `to` may also give timestamps as ISO 8601 strings. */
export interface ReplayRequestBody {
  from: OffsetSpec
  to?: OffsetSpec
  topicPrefix: string
  partitions?: number[]
}

/**
 * GET /streams/:stream/partitions/:p/frames answers `application/vnd.culex.records`: each record
 * as `u32 length | u64 offset | binary record`, decoded by decodeFrames (src/log/record-codec.ts).
 * `x-culex-start-offset` and `x-culex-end-offset` give the range the stream covers.
 */
export const FRAMES_CONTENT_TYPE = 'application/vnd.culex.records'
export { decodeFrames } from '../log/record-codec.js'

/** Push over WebSocket: frames the client sends. */
export interface PushClientFrame {
  credit?: number
  commit?: PartitionOffset[]
}

/** Push over WebSocket: frames the server sends. */
export type PushServerFrame =
  { records: ApiRecord[]; generation: number; assignments: Array<{ stream: string; partition: number }> } | { committed: PartitionOffset[] } | ErrorBody

/** A record handed out by a shared group: locked to the consumer until `lockedUntil`. */
export interface SharedApiRecord extends ApiRecord {
  /** 1 on the first delivery; name it in the ack, so a late ack cannot finish a later delivery. */
  deliveryCount: number
  /** When the lock ends (ms since the epoch) unless extended. */
  lockedUntil: number
}

/** POST /shared-groups/:group/fetch */
export interface SharedFetchRequest {
  consumer: string
  maxRecords: number
  maxBytes: number
  waitMs: number
  encoding: Encoding
}

export interface SharedFetchResponse {
  records: SharedApiRecord[]
}

/** POST /shared-groups/:group/acks */
export interface SharedAckRequest {
  consumer: string
  acks: Array<{
    stream: string
    partition: number
    offset: number
    deliveryCount?: number
    action: 'ack' | 'nack' | 'extend' | 'reject'
    delayMs?: number
    error?: string
  }>
}

export interface SharedAckResponse {
  results: Array<{ stream: string; partition: number; offset: number; ok: boolean; error?: 'LOCK_LOST'; deadLettered?: boolean }>
}

// --- operating Culex: probes, the admin API, status ---------------------------------------

/** GET /healthz: the process answers. */
export interface HealthResponse {
  status: 'ok'
}

/** One check of GET /readyz. */
export interface ReadinessCheck {
  /** `store`, `listeners`, `bridge:<name>`. */
  name: string
  ok: boolean
  detail: string
}

/** GET /readyz: 200 with status 'ok' when every check passes, 503 with 'unavailable' otherwise. */
export interface ReadinessResponse {
  status: 'ok' | 'unavailable'
  checks: ReadinessCheck[]
}

export type ListenerKind = 'mqtt' | 'mqtts' | 'ws' | 'wss'

export interface ApiSubscription {
  filter: string
  qos: 0 | 1 | 2
}

/** A connected MQTT client (GET /api/v1/clients). */
export interface ApiClientInfo {
  id: string
  /** The authenticated user name (the CONNECT username, a JWT's subject, a certificate CN); null: anonymous. */
  username: string | null
  /** The listener it came through; null when it cannot be told (the connection is closing). */
  listener: ListenerKind | null
  /** Remote address and port, e.g. 127.0.0.1:51234. */
  address: string | null
  /** 3 (MQTT 3.1), 4 (3.1.1) or 5. */
  protocolVersion: number | null
  /** Seconds; 0: none. */
  keepalive: number
  cleanSession: boolean
  /** ISO 8601. */
  connectedAt: string
  subscriptions: ApiSubscription[]
  /** Messages in its session's queue (persistent sessions: not yet delivered or not yet acknowledged). */
  queued: number
  /** Bytes written to its connection and not yet sent (what max-outgoing-bytes bounds). */
  outgoingBytes: number
}

/** A page of a list: `next` is the cursor (`?after=`) of the next page, null on the last one. */
export interface Page {
  /** Matching items in all pages. */
  total: number
  next: string | null
}

export interface ClientList extends Page {
  clients: ApiClientInfo[]
}

/** A stored (persistent) session, online or offline (GET /api/v1/sessions). */
export interface ApiSession {
  clientId: string
  connected: boolean
  subscriptions: ApiSubscription[]
  /** Messages in its offline queue, in flight ones included. */
  queued: number
}

export interface SessionList extends Page {
  sessions: ApiSession[]
}

/** A retained message in a list (GET /api/v1/retained). */
export interface RetainedSummary {
  topic: string
  qos: 0 | 1 | 2
  /** Payload size. */
  bytes: number
}

export interface RetainedList extends Page {
  retained: RetainedSummary[]
}

/** GET /api/v1/retained/<topic> */
export interface RetainedMessage extends RetainedSummary {
  encoding: Encoding
  payload: string
}

export type { BridgeStatus }

/** PUBLISH messages the broker received (from clients) and sent (to clients) since it started. */
export interface MessageStats {
  received: number
  sent: number
  /** PUBLISH received and sent per second over the last `rateWindowSeconds` (up to a minute; since the start before that). */
  receivedPerSecond: number
  sentPerSecond: number
  rateWindowSeconds: number
}

/** GET /api/v1/status: one screen about the running gateway (`culex status`). */
export interface StatusResponse {
  version: string
  /** ISO 8601. */
  startedAt: string
  uptimeSeconds: number
  listeners: Array<{ kind: ListenerKind | 'admin'; host: string; port: number }>
  clients: { connected: number; sessions: number }
  subscriptions: number
  retained: number
  /** null: the broker keeps no message counters. */
  messages: MessageStats | null
  streams: StreamSummary[]
  groups: GroupSummary[]
  sharedGroups: Array<{ group: string; streams: string[]; lag: number; deadLettered: number }>
  bridges: BridgeStatus[]
  ready: ReadinessResponse
}
