import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib'
import type { Headers, LogRecord } from '../../log/types.js'
import { MappingError, recordId, render } from '../mapping.js'
import type { DriverDeps, Outcome, Sink } from '../types.js'
import { closeConnection, destroyConnection, openConnection, within } from './client.js'
import type { AmqpTarget } from './config.js'

// Outbound to RabbitMQ: each record is a basic.publish on a confirm channel (persistent,
// mandatory, message-id = the record id) and is 'delivered' only on its publisher confirm
// (basic.ack), which RabbitMQ sends for a persistent message once every queue it was routed to
// has written it to disk (https://www.rabbitmq.com/confirms.html, "When Will Published Messages
// Be Confirmed by the Broker?"). An unroutable message is returned (basic.return, because of the
// mandatory flag) before its ack: it is 'rejected' (NO_ROUTE goes to the dead letters, not round
// and round). A basic.nack, a closed channel or connection and a confirm that does not come in
// time are 'retry'.

/** AMQP 0-9-1 shortstr: a routing key is at most 255 bytes. */
const MAX_ROUTING_KEY_BYTES = 255
/** How long close() waits for connection.close-ok. */
const CLOSE_TIMEOUT_MS = 2_000

/** basic.return's fields (amqplib types a returned message with the delivery fields). */
interface ReturnFields {
  replyCode?: number
  replyText?: string
  exchange?: string
  routingKey?: string
}

interface Pending {
  /** Set by basic.return, which RabbitMQ sends before the basic.ack of the same message. */
  returned: ReturnFields | null
  settle(outcome: Outcome): void
}

/** One connection with its confirm channel; dead once either closed. */
interface Link {
  conn: ChannelModel
  channel: ConfirmChannel
  /** Messages published and not yet confirmed, by message-id (to match basic.return to them). */
  pending: Map<string, Pending>
  /** Why the link is no longer usable (null while it is). */
  dead: string | null
  /** Wakes publishers waiting for 'drain' when the link dies. */
  died: Promise<void>
  /** Marks the link dead (once): the next deliver or connect opens a new one. */
  kill(why: string): void
}

const retry = (error: string): Outcome => ({ status: 'retry', error })

export class AmqpSink implements Sink {
  #link: Link | null = null
  #opening: Promise<Link> | null = null
  #closed = false

  constructor(
    private readonly target: AmqpTarget,
    private readonly deps: DriverDeps
  ) {}

  async connect(signal: AbortSignal): Promise<void> {
    await this.#ensure(signal)
  }

  /** The live link, opening one when there is none (shared by concurrent callers). */
  async #ensure(signal: AbortSignal): Promise<Link> {
    if (this.#closed) throw new Error('the amqp sink is closed')
    const link = this.#link
    if (link && link.dead === null) return link
    this.#opening ??= this.#open().finally(() => {
      this.#opening = null
    })
    return within(this.#opening, this.target.connectTimeoutMs + 1_000, `connecting to RabbitMQ at ${this.target.host}:${this.target.port}`, signal)
  }

  async #open(): Promise<Link> {
    const t = this.target
    const conn = await openConnection(t, this.deps.bridge)
    let link: Link | null = null
    /** Why the connection died before the link was made. */
    let early: string | null = null
    let markDead: (why: string) => void = () => undefined
    const dead = (why: string): void => {
      if (link) markDead(why)
      else early ??= why
    }
    // at once: an 'error' without a listener would be thrown
    conn.on('error', (err: Error) => dead(`connection error: ${err.message}`))
    conn.on('close', (err?: Error) => {
      const connected = link !== null && link.dead === null && this.#link === link
      dead(err ? `connection closed: ${err.message}` : 'connection closed')
      if (connected && !this.#closed) this.deps.logger.warn({ err: link?.dead }, 'amqp bridge lost its RabbitMQ connection')
    })
    conn.on('blocked', (reason: string) => this.deps.logger.warn({ reason }, 'RabbitMQ blocks publishing on the bridge connection (a resource alarm)'))
    conn.on('unblocked', () => this.deps.logger.info('RabbitMQ unblocked the bridge connection'))
    try {
      // setup is bounded as the connect is: a broker that accepted the handshake may still hang
      const channel = await within(conn.createConfirmChannel(), t.connectTimeoutMs, 'opening a confirm channel')
      const made: Link = {
        conn,
        channel,
        pending: new Map(),
        dead: early,
        kill: (why) => markDead(why),
        died: new Promise<void>((res) => {
          markDead = (why) => {
            if (made.dead !== null) return
            made.dead = why
            if (this.#link === made) this.#link = null
            res()
          }
        })
      }
      link = made
      // (read through a function: TypeScript does not see the listeners assign it)
      const before = ((): string | null => early)()
      if (before !== null) throw new Error(before)
      // a channel error (e.g. 404 on a missing exchange) closes the channel, not the connection:
      // the link is dead either way, and the connection goes with it
      channel.on('error', (err: Error) => markDead(`channel error: ${err.message}`))
      channel.on('close', () => {
        markDead('channel closed')
        void closeConnection(conn, CLOSE_TIMEOUT_MS)
      })
      channel.on('return', (msg: Message) => {
        const id: unknown = msg.properties.messageId
        const p = typeof id === 'string' ? made.pending.get(id) : undefined
        const f: Partial<Record<keyof ReturnFields, unknown>> = msg.fields
        if (p) {
          p.returned = {
            replyCode: typeof f.replyCode === 'number' ? f.replyCode : undefined,
            replyText: typeof f.replyText === 'string' ? f.replyText : undefined,
            exchange: typeof f.exchange === 'string' ? f.exchange : undefined,
            routingKey: typeof f.routingKey === 'string' ? f.routingKey : undefined
          }
        }
      })
      if (t.declareExchange) {
        await within(channel.assertExchange(t.exchange, t.exchangeType, { durable: t.durable }), t.connectTimeoutMs, `declaring exchange '${t.exchange}'`)
      } else if (t.exchange !== '') {
        // a passive declare: a missing exchange is said now, not as a channel error per publish
        await within(channel.checkExchange(t.exchange), t.connectTimeoutMs, `checking exchange '${t.exchange}'`)
      }
      if (this.#closed) throw new Error('the amqp sink is closed')
      if (made.dead !== null) throw new Error(made.dead)
      this.#link = made
      this.deps.logger.info({ host: t.host, port: t.port, vhost: t.vhost, exchange: t.exchange }, 'amqp bridge connected to RabbitMQ')
      return made
    } catch (err) {
      dead('connect failed')
      destroyConnection(conn)
      throw err
    }
  }

  async deliver(records: readonly LogRecord[], signal: AbortSignal): Promise<Outcome[]> {
    const link = await this.#ensure(signal)
    const t = this.target
    const deadline = Date.now() + t.confirmTimeoutMs
    const results: Array<Outcome | undefined> = records.map(() => undefined)
    const waits: Array<Promise<void>> = []
    for (const [i, record] of records.entries()) {
      if (link.dead !== null || signal.aborted || Date.now() >= deadline) break
      let routingKey: string
      try {
        routingKey = render(t.routingKey, record)
      } catch (err) {
        if (!(err instanceof MappingError)) throw err
        results[i] = { status: 'rejected', error: `no routing key: ${err.message}` }
        continue
      }
      if (Buffer.byteLength(routingKey) > MAX_ROUTING_KEY_BYTES) {
        results[i] = {
          status: 'rejected',
          error: `routing key longer than ${MAX_ROUTING_KEY_BYTES} bytes (AMQP 0-9-1 shortstr)`,
          headers: { 'amqp-routing-key': routingKey.slice(0, 255) }
        }
        continue
      }
      const id = recordId(record)
      let done: () => void = () => undefined
      waits.push(new Promise<void>((res) => (done = res)))
      const pending: Pending = {
        returned: null,
        settle: (outcome) => {
          if (results[i] === undefined) results[i] = outcome
          if (link.pending.get(id) === pending) link.pending.delete(id)
          done()
        }
      }
      link.pending.set(id, pending)
      let writable: boolean
      try {
        writable = link.channel.publish(t.exchange, routingKey, record.value, this.#properties(record, id), (err: unknown) => {
          if (err === null || err === undefined) pending.settle(pending.returned ? returned(pending.returned) : { status: 'delivered' })
          else pending.settle(retry(confirmError(err, link)))
        })
      } catch (err) {
        // amqplib encodes before it sends: a RangeError is a message it cannot encode (a header
        // table over 64 KiB) and nothing went out; anything else is a channel that is gone
        if (err instanceof RangeError) pending.settle({ status: 'rejected', error: `not encodable as an AMQP message: ${err.message}` })
        else pending.settle(retry(`publish failed: ${err instanceof Error ? err.message : String(err)}`))
        continue
      }
      // the channel's write buffer is full: wait for 'drain' (flow control) before the next one
      if (!writable) {
        this.deps.logger.debug({ published: i + 1, of: records.length }, 'amqp channel write buffer full; waiting for drain')
        await this.#drained(link, deadline, signal)
      }
    }
    const settled = Promise.all(waits).then(() => 'all' as const)
    let timer: NodeJS.Timeout | undefined
    let onAbort: (() => void) | undefined
    const timeout = new Promise<'timeout'>((res) => {
      timer = setTimeout(() => res('timeout'), Math.max(0, deadline - Date.now()))
      onAbort = () => res('timeout')
      signal.addEventListener('abort', onAbort, { once: true })
    })
    const how = await Promise.race([settled, timeout, link.died.then(() => 'died' as const)])
    clearTimeout(timer)
    if (onAbort) signal.removeEventListener('abort', onAbort)
    if (how === 'timeout' && !signal.aborted && link.dead === null) {
      // confirms still outstanding: what the broker does with them is unknown, and a late
      // basic.return must not be matched to a republished record; start over on a new connection
      this.deps.logger.warn({ timeoutMs: t.confirmTimeoutMs }, 'RabbitMQ did not confirm in time; reconnecting')
      link.kill(`no publisher confirm within ${t.confirmTimeoutMs} ms`)
      destroyConnection(link.conn)
    }
    // a dead link: amqplib calls every outstanding confirm callback with an error, synchronously
    // when the channel closes, so what is still unset was not published
    const why = signal.aborted
      ? 'the bridge stopped'
      : how === 'timeout'
        ? `no publisher confirm within ${t.confirmTimeoutMs} ms`
        : (link.dead ?? 'not published')
    return results.map((r) => r ?? retry(why))
  }

  /** basic.publish properties: the record as an AMQP message. */
  #properties(record: LogRecord, id: string): Options.Publish {
    const headers: Headers = {
      ...record.headers,
      'culex-stream': record.stream,
      'culex-partition': String(record.partition),
      'culex-offset': String(record.offset)
    }
    if (record.key !== null) headers['culex-key'] = record.key
    if (record.topic !== null) headers['culex-topic'] = record.topic
    return {
      persistent: true,
      mandatory: true,
      messageId: id,
      // AMQP 0-9-1 timestamp: POSIX time in seconds
      timestamp: Math.floor(record.timestamp / 1000),
      appId: 'culex',
      headers
    }
  }

  /** Resolves on the channel's 'drain', when the link dies, at the deadline or on abort. */
  async #drained(link: Link, deadline: number, signal: AbortSignal): Promise<void> {
    let onDrain: (() => void) | undefined
    let timer: NodeJS.Timeout | undefined
    let onAbort: (() => void) | undefined
    await Promise.race([
      new Promise<void>((res) => {
        onDrain = res
        link.channel.once('drain', onDrain)
        timer = setTimeout(res, Math.max(0, deadline - Date.now()))
        onAbort = res
        signal.addEventListener('abort', onAbort, { once: true })
      }),
      link.died
    ])
    if (onDrain) link.channel.removeListener('drain', onDrain)
    clearTimeout(timer)
    if (onAbort) signal.removeEventListener('abort', onAbort)
  }

  async close(): Promise<void> {
    this.#closed = true
    const link = this.#link
    this.#link = null
    if (link) await closeConnection(link.conn, CLOSE_TIMEOUT_MS)
  }
}

/** The dead-letter outcome of a basic.return: the reply code and text as headers. */
function returned(f: ReturnFields): Outcome {
  const headers: Headers = {}
  if (f.replyCode !== undefined) headers['amqp-reply-code'] = String(f.replyCode)
  if (f.replyText !== undefined) headers['amqp-reply-text'] = f.replyText
  if (f.exchange !== undefined) headers['amqp-exchange'] = f.exchange
  if (f.routingKey !== undefined) headers['amqp-routing-key'] = f.routingKey
  // 312 NO_ROUTE: no queue is bound for the routing key (AMQP 0-9-1 basic.return, mandatory flag)
  return {
    status: 'rejected',
    error: `returned by RabbitMQ: ${f.replyCode ?? '?'} ${f.replyText ?? ''} (exchange '${f.exchange ?? ''}', routing key '${f.routingKey ?? ''}')`,
    headers
  }
}

function confirmError(err: unknown, link: Link): string {
  const message = err instanceof Error ? err.message : String(err)
  if (message === 'message nacked') return 'RabbitMQ nacked the message (basic.nack)'
  return link.dead ?? message
}
