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

export type ToWorker =
  | { type: 'init'; index: number; task: Task }
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
}

export type FromWorker =
  { type: 'ready'; connected: number } | ({ type: 'progress' } & Progress) | ({ type: 'result' } & WorkerResult) | { type: 'error'; message: string }
