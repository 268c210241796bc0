import { JetStreamApiError, jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream'
import { errors, headers as natsHeaders, type MsgHdrs, type NatsConnection as Connection } from '@nats-io/transport-node'
import type { LogRecord } from '../../log/types.js'
import { MappingError, recordId, render } from '../mapping.js'
import type { DriverDeps, Outcome, Sink } from '../types.js'
import { errorText, open, subjectMatches } from './client.js'
import { subjectProblem, type NatsTarget } from './config.js'

// Log -> JetStream. Every record is a JetStream publish (a request on its subject, answered with a
// PubAck once the stream stored it) with Nats-Msg-Id = <bridge>/<stream>/<partition>/<offset>: a
// retry of a record JetStream already stored is answered `duplicate: true` within the stream's
// duplicate_window (default 2 min), so the target holds each record once. A retry after a longer
// outage can store a record twice. A batch is pipelined (up to MAX_IN_FLIGHT publishes await their
// PubAck at once) on one connection, which keeps them in offset order on the wire and in the stream.

/** Publishes awaiting their PubAck at once (per deliver, i.e. per partition). */
const MAX_IN_FLIGHT = 512

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms))

/** Headers the bridge sets on every message (NATS header names are case-sensitive; ours win). */
const OWN_HEADERS = ['Culex-Stream', 'Culex-Partition', 'Culex-Offset', 'Culex-Timestamp', 'Culex-Key', 'Culex-Topic', 'Culex-Client-Id']
const OWN_LOWER = new Set(OWN_HEADERS.map((h) => h.toLowerCase()))
// a header name is an RFC 822 field-name (printable ASCII 33-126 without ':'), as nats.js checks it
const HEADER_NAME = /^[!-9;-~]+$/
const BAD_HEADER_VALUE = /[\r\n]/

/** Builds the NATS headers of a record; a record whose headers NATS cannot carry faithfully throws MappingError. */
export function headersOf(record: LogRecord): MsgHdrs {
  const h = natsHeaders()
  const put = (name: string, value: string): void => {
    if (BAD_HEADER_VALUE.test(value)) throw new MappingError(`header ${name} holds CR or LF, which a NATS header value cannot`)
    h.set(name, value)
  }
  for (const [name, value] of Object.entries(record.headers)) {
    const lower = name.toLowerCase()
    if (OWN_LOWER.has(lower)) continue
    // Nats-* headers steer JetStream (Nats-Msg-Id, Nats-Expected-*, Nats-Rollup purges the stream):
    // a record must not carry them through to the target
    if (lower.startsWith('nats-')) throw new MappingError(`header ${JSON.stringify(name)} is reserved by JetStream (Nats-*)`)
    if (!HEADER_NAME.test(name)) throw new MappingError(`header name ${JSON.stringify(name)} is not a NATS header name (printable ASCII without ':' or space)`)
    put(name, value)
  }
  put('Culex-Stream', record.stream)
  put('Culex-Partition', String(record.partition))
  put('Culex-Offset', String(record.offset))
  put('Culex-Timestamp', String(record.timestamp))
  if (record.key !== null) put('Culex-Key', record.key)
  if (record.topic !== null) put('Culex-Topic', record.topic)
  if (record.clientId !== null) put('Culex-Client-Id', record.clientId)
  return h
}

/** Whether a publish failed because the connection is gone (not: a timeout, no responders, a permissions violation). */
function connectionLost(e: unknown): boolean {
  if (e instanceof errors.ClosedConnectionError || e instanceof errors.ConnectionError) return true
  return e instanceof errors.RequestError && !e.isNoResponders() && !(e.cause instanceof errors.PermissionViolationError)
}

/** Maps a failed publish to an outcome: the message's fault is 'rejected', the server's state or the network 'retry'. */
export function outcomeOf(e: unknown, subject: string): Outcome {
  if (e instanceof JetStreamApiError) {
    const text = `JetStream refused ${subject}: ${e.message} (err_code ${e.code})`
    // A JetStream API error carries an HTTP-like code: 4xx is about the message (10054 too large,
    // 10097 headers too large, 10060 another stream captures it), 5xx about the server's state
    // (10077 store failed / max messages with discard new, 10023 insufficient resources): later.
    if (e.status >= 400 && e.status < 500) {
      return { status: 'rejected', error: text, headers: { 'nats-subject': subject, 'nats-code': String(e.status), 'nats-err-code': String(e.code) } }
    }
    return { status: 'retry', error: text }
  }
  // raised by the client before sending: the message is over the server's max_payload
  if (e instanceof errors.InvalidArgumentError)
    return { status: 'rejected', error: `NATS cannot send ${subject}: ${e.message}`, headers: { 'nats-subject': subject } }
  // the server's -ERR for the publish, delivered as the cause of the request's error: the
  // account may not publish there (a config change fixes it; the record goes to the dead letters)
  const cause = e instanceof Error ? e.cause : undefined
  if (cause instanceof errors.PermissionViolationError) {
    return { status: 'rejected', error: `NATS refused ${subject}: ${cause.message}`, headers: { 'nats-subject': subject } }
  }
  // nats.js turns a publish without a responder into "jetstream is not enabled": in fact no stream
  // captures the subject (or JetStream is down): retried, and configure `stream` to reject instead
  if (e instanceof Error && e.cause instanceof errors.RequestError && e.cause.isNoResponders())
    return { status: 'retry', error: `no JetStream stream answered on ${subject} (no responders)` }
  return { status: 'retry', error: `publish to ${subject}: ${errorText(e)}` }
}

export class NatsSink implements Sink {
  #nc: Connection | null = null
  #js: JetStreamClient | null = null
  /** The subjects of `target.stream`, read at connect. */
  #streamSubjects: string[] | null = null
  #connecting: Promise<void> | null = null
  /** Set when a deliver had retries: the next one first checks that the connection still answers. */
  #suspect = false

  constructor(
    readonly target: NatsTarget,
    readonly deps: DriverDeps
  ) {}

  async connect(_signal: AbortSignal): Promise<void> {
    if (this.#nc !== null && !this.#nc.isClosed()) return
    // deliveries of several partitions may ask at once: one connection for all
    this.#connecting ??= this.#open().finally(() => {
      this.#connecting = null
    })
    return this.#connecting
  }

  async #open(): Promise<void> {
    const { logger, bridge } = this.deps
    const nc = await open(this.target, `culex-bridge-${bridge}`)
    try {
      // jetstreamManager asks for the account info: fails when JetStream is not enabled
      const jsm = await jetstreamManager(nc, { timeout: this.target.ackTimeoutMs })
      if (this.target.stream !== null) {
        const info = await jsm.streams.info(this.target.stream).catch((e: unknown) => {
          throw new Error(`JetStream stream ${JSON.stringify(this.target.stream)}: ${errorText(e)} (the bridge does not create it)`)
        })
        // typed as a list, absent in the JSON of a mirror
        const listed: unknown = info.config.subjects
        const subjects = Array.isArray(listed) ? listed.map(String) : []
        if (subjects.length === 0)
          throw new Error(`JetStream stream ${JSON.stringify(this.target.stream)} has no subjects (a mirror or a sourced stream cannot be published to)`)
        this.#streamSubjects = subjects
      }
    } catch (e) {
      await nc.close().catch(() => undefined)
      throw e
    }
    this.#nc = nc
    this.#js = jetstream(nc, { timeout: this.target.ackTimeoutMs })
    logger.info({ bridge, server: nc.getServer(), stream: this.target.stream }, 'nats bridge connected')
    void nc.closed().then((err) => {
      if (this.#nc === nc) logger.warn({ bridge, err: err ? errorText(err) : null }, 'nats bridge connection closed')
    })
  }

  async deliver(records: readonly LogRecord[], signal: AbortSignal): Promise<Outcome[]> {
    const nc = this.#nc
    const js = this.#js
    if (nc === null || js === null || nc.isClosed()) throw new Error('not connected to NATS')
    if (this.#suspect) {
      // the last deliver had retries: a server killed under a busy client, or one that stopped
      // answering, is not always noticed yet; a PING round trip tells, and a throw makes the
      // runner connect again
      this.#suspect = false
      const alive = await Promise.race([nc.flush().then(() => true), sleep(this.target.ackTimeoutMs).then(() => false)]).catch(() => false)
      if (!alive) {
        this.#drop(nc)
        throw new Error(`the NATS server does not answer a PING in ${this.target.ackTimeoutMs} ms`)
      }
    }
    const retry: Outcome = { status: 'retry', error: 'delivery aborted before the PubAck' }
    // an abort leaves the ones not yet answered as 'retry'
    const outcomes: Outcome[] = records.map(() => retry)
    let next = 0
    let stopped = false
    // Pipelined, at most MAX_IN_FLIGHT unacknowledged: a lane sends the next record as soon as its
    // last one is answered. The lanes take records in offset order and a publish is written to
    // the socket when it is called, so they go out (and are stored) in offset order.
    const lane = async (): Promise<void> => {
      while (!stopped && next < records.length) {
        const i = next++
        outcomes[i] = await this.#publish(nc, js, records[i] as LogRecord)
      }
    }
    const all = Promise.all(Array.from({ length: Math.min(MAX_IN_FLIGHT, records.length) }, lane))
    let onAbort: (() => void) | undefined
    const aborted = new Promise<void>((res) => {
      onAbort = () => res()
      if (signal.aborted) res()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
    try {
      // each publish ends within ack-timeout; an abort ends the wait at once
      await Promise.race([all, aborted])
    } finally {
      stopped = true
      if (onAbort) signal.removeEventListener('abort', onAbort)
    }
    if (outcomes.some((o) => o.status === 'retry')) this.#suspect = true
    return outcomes
  }

  async #publish(nc: Connection, js: JetStreamClient, record: LogRecord): Promise<Outcome> {
    let subject: string
    let headers: MsgHdrs
    try {
      subject = render(this.target.subject, record)
      const problem = subjectProblem(subject, false)
      if (problem !== null) throw new MappingError(`subject ${JSON.stringify(subject)} is not a NATS subject to publish to: ${problem}`)
      if (this.#streamSubjects !== null && !this.#streamSubjects.some((f) => subjectMatches(subject, f))) {
        throw new MappingError(
          `JetStream stream ${JSON.stringify(this.target.stream)} does not capture subject ${JSON.stringify(subject)} (its subjects: ${this.#streamSubjects.join(', ')})`
        )
      }
      headers = headersOf(record)
    } catch (e) {
      if (e instanceof MappingError) return { status: 'rejected', error: e.message }
      throw e
    }
    try {
      // a PubAck with duplicate: true (JetStream stored this id before: a retry after a lost ack)
      // is delivered all the same
      await js.publish(subject, record.value, {
        msgID: `${this.deps.bridge}/${recordId(record)}`,
        headers,
        timeout: this.target.ackTimeoutMs,
        // Nats-Expected-Stream: JetStream refuses (10060) when another stream captures the subject
        ...(this.target.stream !== null ? { expect: { streamName: this.target.stream } } : {})
      })
      return { status: 'delivered' }
    } catch (e) {
      // the connection is gone (possibly before the client noticed): the next connect opens another
      if (connectionLost(e)) this.#drop(nc)
      return outcomeOf(e, subject)
    }
  }

  #drop(nc: Connection): void {
    if (this.#nc !== nc) return
    this.#nc = null
    this.#js = null
    void nc.close().catch(() => undefined)
  }

  async close(): Promise<void> {
    const nc = this.#nc
    this.#nc = null
    this.#js = null
    if (nc !== null && !nc.isClosed()) await nc.close().catch(() => undefined)
  }
}

export function createSink(target: NatsTarget, deps: DriverDeps): NatsSink {
  return new NatsSink(target, deps)
}
