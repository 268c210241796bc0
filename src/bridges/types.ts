import type { Logger } from 'pino'
import type { SectionContext } from '../config/values.js'
import type { Headers, LogRecord } from '../log/types.js'

// The bridge contract. A bridge kind (bridges/<kind>/) gives a driver: it parses its own part of
// the config and makes a Sink (outbound: log -> target) and/or a Source (inbound: target -> Culex).
// The runners (outbound.ts, inbound.ts) own everything the kinds share: stored progress, retries
// with backoff, dead letters, pause and resume, counters and state. A kind only talks to its target.

/** What the target did with one record. */
export type Outcome =
  /** The target holds it durably (JetStream PubAck, XADD reply, publisher confirm, PUBACK, 2xx). */
  | { status: 'delivered' }
  /** The target refuses it for good (too large, not routable, 4xx): it goes to the dead-letter stream. */
  | { status: 'rejected'; error: string; headers?: Headers }
  /** Not now (target down, timeout, 5xx, 429): delivered again after the backoff or `retryAfterMs`. */
  | { status: 'retry'; error: string; retryAfterMs?: number }

export interface Sink {
  /**
   * Connects to the target. Throws when it cannot; the runner retries with backoff. Called before
   * the first deliver and again after a deliver threw (a client that reconnects by itself may
   * resolve at once).
   */
  connect(signal: AbortSignal): Promise<void>
  /**
   * Delivers one partition's records, in offset order, and resolves with one outcome per record,
   * each only once the target holds it durably. Throwing counts as 'retry' for every record.
   * Called concurrently for different partitions, never twice at once for one partition. The
   * runner retries from the first record not delivered, so records after a 'retry' that the target
   * took anyway arrive twice (at least once), unless the target deduplicates (Nats-Msg-Id). Sent
   * in order on one connection, a lost connection cuts a batch: the target has a prefix, and
   * per-key order holds. Only a target that refuses one record for a moment and takes the next
   * ones (a Redis OOM reply mid-pipeline) gets those before the retried one: batch-size 1 is the
   * strict order.
   */
  deliver(records: readonly LogRecord[], signal: AbortSignal): Promise<Outcome[]>
  close(): Promise<void>
}

/** A message an inbound bridge hands to Culex. */
export interface InboundMessage {
  topic: string
  payload: Buffer
  qos: 0 | 1 | 2
  retain: boolean
}

/** Why Culex would not take an inbound message (bad topic, refused by a hook): never retried. */
export class InboundRefused extends Error {}

export interface SourceContext {
  /**
   * Publishes into Culex: to MQTT subscribers and, where a route matches, the log. Resolves once
   * Culex made it durable (QoS 1/2: stored and appended), so the source may ack it then and not
   * before. Rejects with InboundRefused when Culex refuses it for good (the source then rejects it
   * without requeue, or acks and counts it dropped, as its target allows), with another error when
   * Culex is stopping (the source must not ack).
   */
  publish(message: InboundMessage): Promise<void>
  /** Aborted on pause or shutdown: stop consuming, ack nothing more, resolve run(). */
  signal: AbortSignal
  logger: Logger
  /** Tell the runner the source is connected and consuming (state 'running'). */
  connected(): void
}

export interface Source {
  /**
   * Consumes until ctx.signal aborts (then resolves, after closing its connection) or the
   * connection fails (then rejects; the runner calls run again after the backoff). Whatever was
   * not acked is redelivered by the source system: acks follow ctx.publish, never precede it.
   */
  run(ctx: SourceContext): Promise<void>
}

export interface DriverDeps {
  logger: Logger
  /** The bridge's name (a client id, a consumer name, a Nats-Msg-Id prefix). */
  bridge: string
}

/**
 * One kind of bridge. `parseTarget` / `parseSource` validate the kind's own mapping (`target:` of
 * an outbound bridge, `source:` of an inbound one) and name the bad key through ctx.bad(path, ...).
 * A kind without a direction leaves its parser out. Factories may load the client lazily.
 */
export interface BridgeDriver<Target = unknown, SourceOptions = unknown> {
  kind: string
  parseTarget?: (raw: unknown, ctx: SectionContext, path: string) => Target
  parseSource?: (raw: unknown, ctx: SectionContext, path: string) => SourceOptions
  createSink?: (target: Target, deps: DriverDeps) => Promise<Sink>
  createSource?: (source: SourceOptions, deps: DriverDeps) => Promise<Source>
}

export type BridgeState = 'starting' | 'running' | 'retrying' | 'paused' | 'stopped'

export interface BridgeStatus {
  name: string
  kind: string
  direction: 'out' | 'in'
  /** Outbound: the log streams it carries; inbound: none. */
  streams: string[]
  state: BridgeState
  /** The last error while retrying (null once a delivery or a connect succeeded). */
  lastError: string | null
  lastErrorAt: string | null
  /** Outbound: records delivered; inbound: messages published into Culex. */
  delivered: number
  /** Outbound: records the target refused, appended to the dead-letter stream; inbound: messages Culex refused. */
  deadLettered: number
  /** Deliveries (or connects) that failed and were retried. */
  retries: number
  /** Outbound: records in the bridge's streams not yet delivered (end offset - stored progress). */
  lag: number | null
}
