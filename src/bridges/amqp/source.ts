import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib'
import { MappingError, dottedToTopic } from '../mapping.js'
import { InboundRefused, type DriverDeps, type Source, type SourceContext } from '../types.js'
import { closeConnection, destroyConnection, openConnection, within } from './client.js'
import type { AmqpSourceOptions } from './config.js'

// Inbound from RabbitMQ: a consumer with manual acks on a queue (declared and bound at connect
// when configured). A message is acked (basic.ack) only after Culex took it (ctx.publish resolved);
// one Culex refuses for good is rejected without requeue (basic.nack requeue=false), which
// dead-letters it when the queue has a dead-letter exchange and drops it otherwise. Any other
// failure acks nothing more and closes the connection: RabbitMQ requeues every unacked message
// of a closed channel (AMQP 0-9-1 basic.ack/basic.recover semantics), so it comes again.

/** How long closing waits for connection.close-ok. */
const CLOSE_TIMEOUT_MS = 2_000
/** MQTT 3.1.1 1.5.3: a topic name is a UTF-8 string of at most 65,535 bytes. */
const MAX_TOPIC_BYTES = 65_535

type EntryState = 'pending' | 'published' | 'refused' | 'failed'

interface Entry {
  msg: ConsumeMessage
  state: EntryState
  error: string
}

export class AmqpSource implements Source {
  constructor(
    private readonly options: AmqpSourceOptions,
    private readonly deps: DriverDeps
  ) {}

  async run(ctx: SourceContext): Promise<void> {
    const o = this.options
    // a function, so that TypeScript does not narrow `aborted` to false after the first check
    const aborted = (): boolean => ctx.signal.aborted
    if (aborted()) return
    const opening = openConnection(o, this.deps.bridge)
    let conn: ChannelModel
    try {
      conn = await within(opening, o.connectTimeoutMs + 1_000, `connecting to RabbitMQ at ${o.host}:${o.port}`, ctx.signal)
    } catch (err) {
      // a connection that opens after all is of no use any more
      opening.then(destroyConnection, () => undefined)
      if (aborted()) return
      throw err
    }

    let fail: (err: Error) => void = () => undefined
    const failed = new Promise<Error>((res) => (fail = res))
    conn.on('error', (err: Error) => fail(new Error(`RabbitMQ connection error: ${err.message}`)))
    conn.on('close', (err?: Error) => fail(new Error(err ? `RabbitMQ connection closed: ${err.message}` : 'RabbitMQ connection closed')))
    let stopped = false
    let opened: Channel | null = null
    try {
      const ch = await within(conn.createChannel(), o.connectTimeoutMs, 'opening a channel')
      opened = ch
      ch.on('error', (err: Error) => fail(new Error(`RabbitMQ channel error: ${err.message}`)))
      ch.on('close', () => fail(new Error('RabbitMQ closed the channel')))
      await within(this.#setup(ch), o.connectTimeoutMs, `setting up queue '${o.queue}'`)

      // acks go out in delivery order: a message settled early waits for the ones before it
      const inflight: Entry[] = []
      const flush = (): void => {
        while (!stopped && inflight[0] !== undefined && inflight[0].state !== 'pending') {
          const entry = inflight.shift() as Entry
          try {
            if (entry.state === 'published') ch.ack(entry.msg)
            else if (entry.state === 'refused') {
              ch.nack(entry.msg, false, false)
              ctx.logger.warn(
                { routingKey: entry.msg.fields.routingKey, exchange: entry.msg.fields.exchange, error: entry.error },
                'Culex refused an inbound AMQP message; rejected without requeue'
              )
            } else {
              // not acked, and nothing after it is: the channel closes and RabbitMQ requeues them
              stopped = true
              fail(new Error(`Culex did not take an inbound message: ${entry.error}`))
            }
          } catch (err) {
            // the channel is gone (ack after close throws): it requeues what it held
            stopped = true
            fail(err instanceof Error ? err : new Error(String(err)))
          }
        }
      }
      const onMessage = (msg: ConsumeMessage | null): void => {
        // basic.cancel from the broker: the queue was deleted (or its node went away)
        if (msg === null) return fail(new Error(`RabbitMQ cancelled the consumer of queue '${o.queue}' (queue deleted?)`))
        if (stopped || aborted()) return
        const entry: Entry = { msg, state: 'pending', error: '' }
        inflight.push(entry)
        let topic: string
        try {
          topic = this.#topic(msg)
        } catch (err) {
          if (!(err instanceof MappingError)) throw err
          entry.state = 'refused'
          entry.error = err.message
          return flush()
        }
        ctx.publish({ topic, payload: msg.content, qos: o.qos, retain: o.retain }).then(
          () => {
            entry.state = 'published'
            flush()
          },
          (err: unknown) => {
            entry.state = err instanceof InboundRefused ? 'refused' : 'failed'
            entry.error = err instanceof Error ? err.message : String(err)
            flush()
          }
        )
      }
      await within(ch.consume(o.queue, onMessage, { noAck: false }), o.connectTimeoutMs, `consuming queue '${o.queue}'`)
      ctx.connected()
      ctx.logger.info({ host: o.host, port: o.port, vhost: o.vhost, queue: o.queue }, 'amqp bridge consuming from RabbitMQ')

      let onAbort = (): void => undefined
      const abort = new Promise<null>((res) => {
        onAbort = () => res(null)
        ctx.signal.addEventListener('abort', onAbort, { once: true })
      })
      const err = await Promise.race([failed, abort])
      ctx.signal.removeEventListener('abort', onAbort)
      stopped = true
      if (err !== null && !aborted()) throw err
    } catch (err) {
      if (aborted()) return
      throw err
    } finally {
      stopped = true
      // the channel first: channel.close goes out behind the acks on the same channel, while a
      // connection.close could overtake them (amqplib muxes channels); what is unacked (in flight
      // in Culex, or after a failure) is then requeued by RabbitMQ
      if (opened) await within(opened.close(), CLOSE_TIMEOUT_MS, 'closing the channel').catch(() => undefined)
      await closeConnection(conn, CLOSE_TIMEOUT_MS)
    }
  }

  /** Declares (or checks) the queue, binds it, sets the prefetch. */
  async #setup(ch: Channel): Promise<void> {
    const o = this.options
    if (o.declareQueue) await ch.assertQueue(o.queue, { durable: o.durable, exclusive: false, autoDelete: false, arguments: o.queueArguments })
    else await ch.checkQueue(o.queue)
    for (const b of o.bindings) await ch.bindQueue(o.queue, b.exchange, b.bindingKey)
    // basic.qos with global=false: the limit applies to this consumer (RabbitMQ's reading)
    await ch.prefetch(o.prefetch, false)
  }

  /** The MQTT topic of a message: the template with {routing-key} ('.' -> '/') and {exchange}. */
  #topic(msg: ConsumeMessage): string {
    const topic = this.options.topic.replace(/\{(routing-key|exchange)\}/g, (_, name: string) =>
      name === 'exchange' ? msg.fields.exchange : dottedToTopic(msg.fields.routingKey)
    )
    // MQTT 3.1.1 4.7.3: at least one character, no wildcards, no NUL
    if (topic === '' || /[+#\0]/.test(topic) || Buffer.byteLength(topic) > MAX_TOPIC_BYTES) {
      throw new MappingError(`routing key ${JSON.stringify(msg.fields.routingKey)} gives no valid MQTT topic (${JSON.stringify(topic.slice(0, 200))})`)
    }
    return topic
  }
}
