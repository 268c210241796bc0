import {
  AckPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg
} from '@nats-io/jetstream'
import { nanos, type NatsConnection as Connection } from '@nats-io/transport-node'
import { InboundRefused, type DriverDeps, type Source, type SourceContext } from '../types.js'
import { errorText, open } from './client.js'
import { durableName, type NatsSourceOptions } from './config.js'

// JetStream -> Culex. A durable pull consumer with explicit acks: each message is published into
// Culex and acked (a confirmed ack, +ACK with a reply) only once ctx.publish resolved. Messages are
// handled one at a time, in stream order. A message Culex refuses (or whose subject has no MQTT
// topic) is terminated (+TERM: never redelivered). When a publish fails otherwise, or the bridge
// is paused, the message and the ones pulled after it are nak'ed in order, so JetStream hands them
// out again first, in the same order; whatever could not be nak'ed (the connection is gone) comes
// again after ack_wait.

/** How long one pull request waits for messages (nats.js: at least 1 s; a short one loads the server). */
const FETCH_EXPIRES_MS = 10_000

const DELIVER: Record<NatsSourceOptions['deliverPolicy'], DeliverPolicy> = {
  all: DeliverPolicy.All,
  new: DeliverPolicy.New,
  last: DeliverPolicy.Last,
  last_per_subject: DeliverPolicy.LastPerSubject
}

class Unmappable extends Error {}

const ABORTED: unique symbol = Symbol('aborted')

/** The MQTT topic of a subject: strip-prefix removed, '.' -> '/', into the topic template. */
export function topicOf(options: Pick<NatsSourceOptions, 'topic' | 'stripPrefix'>, subject: string): string {
  let rest = subject
  if (options.stripPrefix !== null) {
    if (subject === options.stripPrefix) throw new Unmappable(`subject ${JSON.stringify(subject)} is only the strip-prefix`)
    if (subject.startsWith(`${options.stripPrefix}.`)) rest = subject.slice(options.stripPrefix.length + 1)
  }
  const tokens = rest.split('.')
  // '/' in a token would add a level; '+' and '#' are MQTT wildcards, not allowed in a topic name
  // (MQTT 3.1.1 §4.7.1, 5.0 §4.7.1); NUL is not allowed in any MQTT string (§1.5.3 / §1.5.4)
  const bad = tokens.find((t) => /[/+#\0]/.test(t))
  if (bad !== undefined)
    throw new Unmappable(`subject ${JSON.stringify(subject)} has no MQTT topic: the token ${JSON.stringify(bad)} holds '/', '+', '#' or NUL`)
  const topic = options.topic.replace(/\{subject\}/g, tokens.join('/'))
  if (Buffer.byteLength(topic) > 65_535) throw new Unmappable(`subject ${JSON.stringify(subject)} makes a topic longer than 65535 bytes`)
  return topic
}

export class NatsSource implements Source {
  readonly durable: string

  constructor(
    readonly options: NatsSourceOptions,
    readonly deps: DriverDeps
  ) {
    this.durable = durableName(options, deps.bridge)
  }

  async run(ctx: SourceContext): Promise<void> {
    const { signal, logger } = ctx
    // a function, not the property: it changes under the awaits
    const stopping = (): boolean => signal.aborted
    if (stopping()) return
    const { stream, maxMessages } = this.options
    const nc = await open(this.options, `culex-bridge-${this.deps.bridge}`)
    let batch: ConsumerMessages | null = null
    let wake = (): void => undefined
    const aborted = new Promise<void>((res) => (wake = res))
    const onAbort = (): void => {
      batch?.stop()
      wake()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      const jsm = await jetstreamManager(nc)
      await this.#ensureConsumer(jsm, logger)
      const consumer = await jetstream(nc).consumers.get(stream, this.durable)
      ctx.connected()
      logger.info({ bridge: this.deps.bridge, server: nc.getServer(), stream, consumer: this.durable }, 'nats bridge consuming')
      while (!stopping()) {
        const pulled = await consumer.fetch({ max_messages: maxMessages, expires: FETCH_EXPIRES_MS })
        batch = pulled
        if (stopping()) pulled.stop()
        let failure: Error | null = null
        // the messages to come again: the one that failed and those pulled after it
        const held: JsMsg[] = []
        try {
          // after stop() the iterator still yields what it holds
          for await (const msg of pulled) {
            if (stopping() || failure !== null) {
              held.push(msg)
              continue
            }
            try {
              await this.#handle(msg, ctx, aborted)
            } catch (e) {
              failure = e instanceof Error ? e : new Error(String(e))
              held.push(msg)
              pulled.stop()
            }
          }
        } catch (e) {
          // the pull failed (missed heartbeats, consumer deleted)
          failure ??= e instanceof Error ? e : new Error(String(e))
        }
        if (held.length > 0) await this.#giveBack(nc, jsm, held, logger)
        if (failure !== null && !stopping()) throw failure
        if (nc.isClosed()) throw new Error('the connection to NATS closed')
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      if (!nc.isClosed()) await nc.close().catch(() => undefined)
    }
  }

  /**
   * Naks messages, in order, so JetStream hands them out again first and in the same order. Our
   * pull request was stopped (UNSUB) but the server keeps it until it looks at it again; nats-server
   * 2.9 takes a nak'ed message off its redelivery queue for such a request, finds it no longer
   * valid, and drops the redelivery (the message then waits for ack_wait) and rewinds its next
   * sequence (one message is delivered twice): consumer.go loopAndGatherMsgs, "We will redo this
   * one". A consumer info request makes the server drop requests without interest (processWaiting)
   * first. If it fails, nothing is nak'ed: the messages come again after ack_wait.
   */
  async #giveBack(nc: Connection, jsm: JetStreamManager, held: JsMsg[], logger: SourceContext['logger']): Promise<void> {
    if (nc.isClosed()) return
    try {
      await jsm.consumers.info(this.options.stream, this.durable)
      for (const m of held) m.nak()
      await nc.flush()
    } catch (e) {
      logger.debug({ bridge: this.deps.bridge, err: errorText(e) }, 'nats bridge could not nak: the messages come again after ack_wait')
    }
  }

  /**
   * Publishes one message into Culex and acks it; throws when it is to come again (nak). A refused
   * message is terminated with a bare +TERM: nats-server before 2.10.4 ignores "+TERM <reason>"
   * (it compares the whole ack body), so the reason goes to the log only.
   */
  async #handle(msg: JsMsg, ctx: SourceContext, aborted: Promise<void>): Promise<void> {
    const { logger } = ctx
    let topic: string
    try {
      topic = topicOf(this.options, msg.subject)
    } catch (e) {
      if (!(e instanceof Unmappable)) throw e
      logger.warn({ bridge: this.deps.bridge, subject: msg.subject, seq: msg.seq, err: e.message }, 'nats message has no MQTT topic: terminated')
      msg.term()
      return
    }
    // a publish held up by backpressure tells JetStream it is in progress (+WPI), so ack_wait
    // does not redeliver it meanwhile
    const keepAlive = setInterval(() => msg.working(), Math.max(500, this.options.ackWaitMs / 2))
    let result: Error | null | typeof ABORTED
    try {
      // settles with null (published) or the error: never rejects, so an abort may leave it behind
      const published = ctx.publish({ topic, payload: Buffer.from(msg.data), qos: this.options.qos, retain: this.options.retain }).then(
        () => null,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e)))
      )
      result = await Promise.race([published, aborted.then((): typeof ABORTED => ABORTED)])
    } finally {
      clearInterval(keepAlive)
    }
    if (result === ABORTED) throw new Error('stopped before Culex took the message')
    if (result instanceof InboundRefused) {
      logger.warn({ bridge: this.deps.bridge, subject: msg.subject, topic, seq: msg.seq, err: result.message }, 'nats message refused by Culex: terminated')
      msg.term()
      return
    }
    if (result !== null) throw result
    // the acked ack: JetStream confirms it, so an ack lost with the connection is noticed here
    await msg.ackAck()
  }

  /** Creates the durable consumer, or checks an existing one and updates what may change. */
  async #ensureConsumer(jsm: JetStreamManager, logger: SourceContext['logger']): Promise<void> {
    const o = this.options
    const { stream } = o
    const name = this.durable
    const mutable = { ack_wait: nanos(o.ackWaitMs), max_deliver: o.maxDeliver, max_ack_pending: o.maxAckPending }
    let config: ConsumerConfig
    try {
      config = (await jsm.consumers.info(stream, name)).config
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound))
        throw new Error(`JetStream stream ${JSON.stringify(stream)}: ${errorText(e)}`, { cause: e })
      await jsm.consumers.add(stream, {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DELIVER[o.deliverPolicy],
        ...(o.filterSubject !== null ? { filter_subject: o.filterSubject } : {}),
        ...mutable
      })
      logger.info({ bridge: this.deps.bridge, stream, consumer: name, filter: o.filterSubject }, 'nats bridge created its durable consumer')
      return
    }
    const at = `JetStream consumer ${JSON.stringify(name)} on stream ${JSON.stringify(stream)}`
    const fix = 'delete it (nats consumer rm) or give the bridge another consumer name'
    if (config.deliver_subject) throw new Error(`${at} is a push consumer; the bridge pulls: ${fix}`)
    if (config.ack_policy !== AckPolicy.Explicit) throw new Error(`${at} has ack_policy ${config.ack_policy}; the bridge needs explicit: ${fix}`)
    const filter = config.filter_subject ?? ''
    if (filter !== (o.filterSubject ?? '') || (config.filter_subjects?.length ?? 0) > 0) {
      throw new Error(`${at} filters ${JSON.stringify(filter)}; the bridge is configured for ${JSON.stringify(o.filterSubject ?? '')}: ${fix}`)
    }
    if (config.ack_wait !== mutable.ack_wait || config.max_deliver !== mutable.max_deliver || config.max_ack_pending !== mutable.max_ack_pending) {
      await jsm.consumers.update(stream, name, mutable)
      logger.info({ bridge: this.deps.bridge, stream, consumer: name }, 'nats bridge updated its durable consumer')
    }
  }
}

export function createSource(options: NatsSourceOptions, deps: DriverDeps): NatsSource {
  return new NatsSource(options, deps)
}
