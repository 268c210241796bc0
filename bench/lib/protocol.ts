// Messages between the bench runner and its load-generator worker processes (IPC, JSON).

/** Publishers: `clients` MQTT.js clients, each with at most `window` unacknowledged publishes. */
export interface PubTask {
  kind: 'pub'
  port: number
  clients: number
  clientIdPrefix: string
  /** topic; `{w}` is replaced by the worker index, `{c}` by the client index */
  topic: string
  qos: 0 | 1 | 2
  /** outstanding publishes per client (for QoS 0: writes not yet flushed to the socket) */
  window: number
  /** messages per client, at most */
  maxPerClient: number
  /** publishing stops after this long (from go) */
  durationMs: number
  /** messages per second per client; 0 = as fast as the window and credit allow */
  ratePerClient: number
  payloadBytes: number
  /** messages this worker may send before the first credit message; Infinity = no credit control */
  initialCredit: number | null
}

/** Subscribers: `clients` MQTT.js clients subscribed to `filter`. */
export interface SubTask {
  kind: 'sub'
  port: number
  clients: number
  clientIdPrefix: string
  filter: string
  qos: 0 | 1 | 2
  /** record publish-to-deliver latency (timestamp in the payload) */
  latency: boolean
  /** messages sent within this long after go are not counted in the latency samples */
  warmupMs: number
}

/** Idle connections: connect `clients` clients, `concurrency` at a time, then hold them. */
export interface IdleTask {
  kind: 'idle'
  port: number
  clients: number
  clientIdPrefix: string
  concurrency: number
  /** loopback source addresses to spread the clients over (each has ~28k ephemeral ports) */
  localAddresses: string[]
}

export type Task = PubTask | SubTask | IdleTask

/**
 * Raw publishers (bench/raw/worker.ts): `connections` TCP sockets that write pre-encoded MQTT 3.1.1
 * PUBLISH packets, no MQTT.js. Connection c of the worker is publisher `firstPublisher + c`, and
 * publishes to `bench/<publisher>/t`; the payload carries the publisher index and a sequence number.
 */
export interface RawPubTask {
  kind: 'raw-pub'
  port: number
  connections: number
  /** global index of this worker's first connection */
  firstPublisher: number
  qos: 0 | 1
  /** QoS 1: unacknowledged publishes per connection; QoS 0 and QoS 1: packets per socket write, at most */
  window: number
  /** messages per connection, at most */
  maxPerConnection: number
  /** publishing stops after this long (from go) */
  durationMs: number
  payloadBytes: number
  /** messages this worker may send before the first credit message; null = no credit control */
  initialCredit: number | null
  /** after a read that did not fill the read buffer, stop reading for this long (0 = never) */
  readPauseMs: number
}

/** Raw subscribers: `connections` TCP sockets, each subscribed to its `filters` entry. */
export interface RawSubTask {
  kind: 'raw-sub'
  port: number
  /** one list of topic filters per connection */
  filters: string[][]
  qos: 0 | 1
  /** report progress as soon as this many messages arrived since the last report (credit round trip) */
  reportEvery: number
  /** after a read that did not fill the read buffer, stop reading for this long (0 = never) */
  readPauseMs: number
}

export type RawTask = RawPubTask | RawSubTask
export type AnyTask = Task | RawTask

/** What a raw publisher connection did: publisher index, sent, acked, acked without a gap from seq 0. */
export interface RawPubConnection {
  publisher: number
  sent: number
  acked: number
  /** sequence numbers 0 .. ackedPrefix-1 are all acknowledged */
  ackedPrefix: number
}

/** What a raw subscriber saw of one publisher. */
export interface RawSubPublisher {
  publisher: number
  /** distinct sequence numbers received */
  distinct: number
  /** highest sequence number received */
  maxSeq: number
  /** deliveries of a sequence number already received */
  duplicates: number
  /** deliveries whose sequence number was lower than one received before (reordered) */
  reordered: number
  /** sequence numbers below maxSeq never received, ascending, at most RAW_MISSING_CAP of them */
  missing: number[]
  /** more were missing than listed */
  missingTruncated: boolean
}

export const RAW_MISSING_CAP = 1000

export interface RawDetail {
  publishers?: RawPubConnection[]
  subscribed?: RawSubPublisher[]
  /** packets the scanner could not make sense of, unexpected acks */
  protocolErrors: number
  /** subscribers: PUBACKs sent, one per delivery at QoS 1 */
  pubacksSent?: number
}

export type ToWorker<T extends AnyTask = Task> =
  | { type: 'init'; index: number; task: T }
  | { type: 'go' }
  /** total messages this (publisher) worker may have sent so far */
  | { type: 'credit'; upTo: number }
  | { type: 'stop' }

export interface Progress {
  sent: number
  acked: number
  received: number
  connected: number
  failed: number
  /** every publisher client is finished (count or time reached, nothing outstanding) */
  pubDone: boolean
}

export interface WorkerResult extends Progress {
  errors: number
  firstSendAt: number | null
  lastAckAt: number | null
  firstRecvAt: number | null
  lastRecvAt: number | null
  goAt: number
  /** connections: when the first connect started / the last CONNACK came */
  connectStartAt: number | null
  connectEndAt: number | null
  cpuUserMs: number
  cpuSystemMs: number
  /** latency samples in ms (sub tasks with latency on) */
  latencies: number[] | null
  errorSamples: string[]
  /** raw workers only: per-publisher accounting for the loss check */
  raw?: RawDetail
}

export type FromWorker =
  { type: 'ready'; connected: number } | ({ type: 'progress' } & Progress) | ({ type: 'result' } & WorkerResult) | { type: 'error'; message: string }
