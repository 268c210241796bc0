import { DURATION_EXPECTED, bool, parseDuration, positiveInteger, type SectionContext } from '../../config/values.js'
import { MappingError, TEMPLATE_HELP, filterToAmqpBinding, templateProblem } from '../mapping.js'
import { hideSecrets, secret } from '../secrets.js'

// The `target:` (outbound) and `source:` (inbound) of a `kind: amqp` bridge: RabbitMQ (AMQP 0-9-1).
// Outbound, every record is a persistent, mandatory publish on a confirm channel; inbound, a
// consumer with manual acks on a queue. The password may come from the environment and is hidden
// when the options are serialised.

/** How the bridge connects: the same for both directions. */
export interface AmqpConnection {
  host: string
  port: number
  /** The virtual host ('/' is RabbitMQ's default one). */
  vhost: string
  username: string
  /** From `password` or the variable `password-env` names; never logged. */
  password: string
  /** The heartbeat asked of the broker (seconds; 0 = none): a dead peer is noticed after about two. */
  heartbeatS: number
  /** Bound on the TCP connect + AMQP handshake + setup (declarations) of a connection. */
  connectTimeoutMs: number
}

/** AMQP 0-9-1 exchange types RabbitMQ ships; plugins add `x-...` types. */
export type ExchangeType = string

export interface AmqpTarget extends AmqpConnection {
  /** The exchange published to; '' = the default exchange (the routing key names a queue). */
  exchange: string
  exchangeType: ExchangeType
  /** exchange.declare at connect (idempotent when it exists with the same type and durability). */
  declareExchange: boolean
  /** The declared exchange survives a broker restart. */
  durable: boolean
  /** The routing key template (mapping.ts render): `{topic.}` = the MQTT topic with '.' for '/'. */
  routingKey: string
  /** How long a deliver waits for the publisher confirms of its records (ms). */
  confirmTimeoutMs: number
}

export interface AmqpBinding {
  exchange: string
  /** The MQTT filter as given, for messages. */
  filter: string
  /** The binding key: the filter with '.' for '/', '*' for '+' (topic exchange syntax). */
  bindingKey: string
}

/** A queue argument value (x-dead-letter-exchange, x-queue-type, x-max-length, ...). */
export type QueueArgument = string | number | boolean

export interface AmqpSourceOptions extends AmqpConnection {
  queue: string
  /** queue.declare at connect (else the queue must exist: a passive declare checks it). */
  declareQueue: boolean
  /** The declared queue survives a broker restart (and so do its persistent messages). */
  durable: boolean
  /** x-arguments of the declared queue, e.g. x-dead-letter-exchange for the messages Culex refuses. */
  queueArguments: Record<string, QueueArgument>
  /** queue.bind at connect: the queue receives what these exchanges route with these filters. */
  bindings: AmqpBinding[]
  /** basic.qos prefetch-count: unacked messages the consumer holds at most. */
  prefetch: number
  /** The MQTT topic template: {routing-key} (with '/' for '.'), {exchange}. */
  topic: string
  qos: 0 | 1 | 2
  retain: boolean
}

export const AMQP_DEFAULTS = {
  host: '127.0.0.1',
  port: 5672,
  vhost: '/',
  username: 'guest',
  password: 'guest',
  heartbeatS: 30,
  connectTimeoutMs: 10_000,
  exchangeType: 'topic',
  routingKey: '{topic.}',
  confirmTimeoutMs: 30_000,
  prefetch: 100,
  topic: '{routing-key}',
  qos: 1 as const,
  retain: false
}

const MAX_TIMEOUT_MS = 10 * 60_000
// AMQP 0-9-1 basic.qos prefetch-count is a short (16 bits).
const MAX_PREFETCH = 65_535
// AMQP 0-9-1 shortstr: exchange, queue and routing key are at most 255 bytes.
const MAX_SHORTSTR = 255
const BUILTIN_TYPES = ['topic', 'direct', 'fanout', 'headers']

const CONNECTION_KEYS = ['host', 'port', 'vhost', 'username', 'password', 'password-env', 'heartbeat', 'connect-timeout'] as const
const TARGET_KEYS = [...CONNECTION_KEYS, 'exchange', 'exchange-type', 'declare-exchange', 'durable', 'routing-key', 'confirm-timeout'] as const
const SOURCE_KEYS = [...CONNECTION_KEYS, 'queue', 'declare-queue', 'durable', 'queue-arguments', 'bindings', 'prefetch', 'topic', 'qos', 'retain'] as const
const BINDING_KEYS = ['exchange', 'filter'] as const
const SOURCE_TOPIC_HELP = 'an MQTT topic template with {routing-key} (dots become slashes) and {exchange}'

function text(ctx: SectionContext, path: string, raw: unknown, expected: string): string {
  if (typeof raw !== 'string' || raw === '') ctx.bad(path, raw, expected)
  return raw
}

/** An exchange or queue name: a shortstr RabbitMQ accepts (empty only where `allowEmpty`). */
function amqpName(ctx: SectionContext, path: string, raw: unknown, what: string, allowEmpty = false): string {
  const expected = `${what}: at most ${MAX_SHORTSTR} bytes${allowEmpty ? " ('' is the default exchange)" : ''}`
  if (typeof raw !== 'string' || (!allowEmpty && raw === '') || Buffer.byteLength(raw) > MAX_SHORTSTR) ctx.bad(path, raw, expected)
  return raw
}

function flag(ctx: SectionContext, path: string, raw: unknown, fallback: boolean): boolean {
  if (raw === undefined) return fallback
  try {
    return bool(raw)
  } catch {
    return ctx.bad(path, raw, 'true or false')
  }
}

function duration(ctx: SectionContext, path: string, raw: unknown, fallback: number): number {
  if (raw === undefined) return fallback
  const ms = parseDuration(raw)
  if (ms === null || ms > MAX_TIMEOUT_MS) ctx.bad(path, raw, `${DURATION_EXPECTED}, at most ${MAX_TIMEOUT_MS / 60_000}m`)
  return ms
}

function parseConnection(ctx: SectionContext, m: Record<string, unknown>, path: string): AmqpConnection {
  const host = m.host === undefined ? AMQP_DEFAULTS.host : text(ctx, `${path}.host`, m.host, 'a host name or IP address')
  let port = AMQP_DEFAULTS.port
  if (m.port !== undefined) {
    const n = positiveInteger(m.port)
    if (n === null || n > 65535) ctx.bad(`${path}.port`, m.port, 'a TCP port from 1 to 65535')
    port = n
  }
  const vhost = m.vhost === undefined ? AMQP_DEFAULTS.vhost : amqpName(ctx, `${path}.vhost`, m.vhost, 'a virtual host name')
  const username = m.username === undefined ? AMQP_DEFAULTS.username : text(ctx, `${path}.username`, m.username, 'a user name')
  const password = secret(ctx, m, path, 'password') ?? AMQP_DEFAULTS.password
  let heartbeatS = AMQP_DEFAULTS.heartbeatS
  if (m.heartbeat !== undefined) {
    const off = m.heartbeat === 0 || m.heartbeat === '0' || m.heartbeat === 'off' || m.heartbeat === false
    const ms = off ? 0 : parseDuration(m.heartbeat)
    // connection.tune heartbeat is a short number of seconds
    if (ms === null || (ms !== 0 && (ms < 1000 || ms > MAX_PREFETCH * 1000)))
      ctx.bad(`${path}.heartbeat`, m.heartbeat, `a duration of at least 1s (${DURATION_EXPECTED}), or off`)
    heartbeatS = Math.round(ms / 1000)
  }
  const connectTimeoutMs = duration(ctx, `${path}.connect-timeout`, m['connect-timeout'], AMQP_DEFAULTS.connectTimeoutMs)
  return { host, port, vhost, username, password, heartbeatS, connectTimeoutMs }
}

/** A JSON form without the password (status pages, logs). */
function hidePassword<T extends AmqpConnection>(options: T): T {
  return hideSecrets(options, ['password'])
}

/** Parses `target:` of an outbound `kind: amqp` bridge. */
export function parseTarget(raw: unknown, ctx: SectionContext, path: string): AmqpTarget {
  const m = ctx.mapping(path, raw, TARGET_KEYS, `a mapping with ${TARGET_KEYS.join(', ')}`)
  const connection = parseConnection(ctx, m, path)
  if (m.exchange === undefined) ctx.bad(`${path}.exchange`, undefined, "the exchange to publish to (required; '' for the default exchange)")
  const exchange = amqpName(ctx, `${path}.exchange`, m.exchange, 'an exchange name', true)
  let exchangeType = AMQP_DEFAULTS.exchangeType
  if (m['exchange-type'] !== undefined) {
    const t = m['exchange-type']
    if (typeof t !== 'string' || !(BUILTIN_TYPES.includes(t) || /^x-[A-Za-z0-9_.-]+$/.test(t))) {
      ctx.bad(`${path}.exchange-type`, t, `one of ${BUILTIN_TYPES.join(', ')} or a plugin's x-... type`)
    }
    exchangeType = t
  }
  // the default exchange and amq.* are the broker's own: a declare of them is refused (access-refused)
  const ownedByBroker = exchange === '' || exchange.startsWith('amq.')
  const declareExchange = flag(ctx, `${path}.declare-exchange`, m['declare-exchange'], !ownedByBroker)
  if (declareExchange && ownedByBroker)
    ctx.bad(`${path}.declare-exchange`, m['declare-exchange'], `false: ${exchange === '' ? 'the default exchange' : `'${exchange}'`} is the broker's own`)
  const durable = flag(ctx, `${path}.durable`, m.durable, true)

  let routingKey = AMQP_DEFAULTS.routingKey
  if (m['routing-key'] !== undefined) {
    if (typeof m['routing-key'] !== 'string') ctx.bad(`${path}.routing-key`, m['routing-key'], TEMPLATE_HELP)
    const problem = templateProblem(m['routing-key'])
    if (problem !== null) ctx.bad(`${path}.routing-key`, m['routing-key'], `${TEMPLATE_HELP} (${problem})`)
    if (Buffer.byteLength(m['routing-key']) > MAX_SHORTSTR) ctx.bad(`${path}.routing-key`, m['routing-key'], `${TEMPLATE_HELP}, at most ${MAX_SHORTSTR} bytes`)
    routingKey = m['routing-key']
  }
  const confirmTimeoutMs = duration(ctx, `${path}.confirm-timeout`, m['confirm-timeout'], AMQP_DEFAULTS.confirmTimeoutMs)
  return hidePassword({ ...connection, exchange, exchangeType, declareExchange, durable, routingKey, confirmTimeoutMs })
}

/** The problem of a source topic template, or null. */
export function sourceTopicProblem(template: string): string | null {
  const rest = template.replace(/\{(routing-key|exchange)\}/g, 'x')
  if (/[{}]/.test(rest)) return 'placeholders are {routing-key} and {exchange}'
  // MQTT 3.1.1 4.7.1: a topic name holds no wildcard
  if (/[+#\0]/.test(rest)) return "a topic name holds no '+', '#' or NUL"
  if (rest === '') return 'it is empty'
  return null
}

function parseBindings(ctx: SectionContext, path: string, raw: unknown): AmqpBinding[] {
  if (raw === undefined || raw === null) return []
  if (!Array.isArray(raw)) ctx.bad(path, raw, 'a list of { exchange, filter }')
  return raw.map((b: unknown, i) => {
    const at = `${path}[${i}]`
    const m = ctx.mapping(at, b, BINDING_KEYS, 'a mapping with exchange and filter')
    if (m.exchange === undefined) ctx.bad(`${at}.exchange`, undefined, 'the exchange to bind the queue to (required)')
    const exchange = amqpName(ctx, `${at}.exchange`, m.exchange, 'an exchange name (not the default exchange: it cannot be bound)')
    const expected = "an MQTT topic filter such as devices/+/cmd/# (levels without '.', '*' or whitespace)"
    if (typeof m.filter !== 'string') ctx.bad(`${at}.filter`, m.filter, `${expected} (required)`)
    let bindingKey: string
    try {
      bindingKey = filterToAmqpBinding(m.filter)
    } catch (e) {
      if (e instanceof MappingError) ctx.bad(`${at}.filter`, m.filter, expected)
      throw e
    }
    if (Buffer.byteLength(bindingKey) > MAX_SHORTSTR) ctx.bad(`${at}.filter`, m.filter, `${expected}, at most ${MAX_SHORTSTR} bytes`)
    return { exchange, filter: m.filter, bindingKey }
  })
}

function parseQueueArguments(ctx: SectionContext, path: string, raw: unknown): Record<string, QueueArgument> {
  if (raw === undefined || raw === null) return {}
  if (typeof raw !== 'object' || Array.isArray(raw)) ctx.bad(path, raw, 'a mapping of x-arguments, e.g. { x-dead-letter-exchange: culex.dlx }')
  const out: Record<string, QueueArgument> = {}
  for (const [k, v] of Object.entries(raw)) {
    // RabbitMQ's queue arguments are all x-...; anything else is a typo
    if (!/^x-[a-z0-9-]+$/.test(k)) ctx.bad(`${path}.${k}`, k, 'an x-... queue argument name such as x-dead-letter-exchange, x-queue-type or x-max-length')
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') ctx.bad(`${path}.${k}`, v, 'a text, a number or a boolean')
    out[k] = v
  }
  return out
}

/** Parses `source:` of an inbound `kind: amqp` bridge. */
export function parseSource(raw: unknown, ctx: SectionContext, path: string): AmqpSourceOptions {
  const m = ctx.mapping(path, raw, SOURCE_KEYS, `a mapping with ${SOURCE_KEYS.join(', ')}`)
  const connection = parseConnection(ctx, m, path)
  if (m.queue === undefined) ctx.bad(`${path}.queue`, undefined, 'the queue to consume (required)')
  const queue = amqpName(ctx, `${path}.queue`, m.queue, 'a queue name')
  const declareQueue = flag(ctx, `${path}.declare-queue`, m['declare-queue'], true)
  const durable = flag(ctx, `${path}.durable`, m.durable, true)
  const queueArguments = parseQueueArguments(ctx, `${path}.queue-arguments`, m['queue-arguments'])
  if (!declareQueue && Object.keys(queueArguments).length > 0)
    ctx.bad(`${path}.queue-arguments`, m['queue-arguments'], 'nothing: the queue is not declared (declare-queue: false)')
  const bindings = parseBindings(ctx, `${path}.bindings`, m.bindings)
  let prefetch = AMQP_DEFAULTS.prefetch
  if (m.prefetch !== undefined) {
    const n = positiveInteger(m.prefetch)
    if (n === null || n > MAX_PREFETCH) ctx.bad(`${path}.prefetch`, m.prefetch, `an integer from 1 to ${MAX_PREFETCH}`)
    prefetch = n
  }
  let topic = AMQP_DEFAULTS.topic
  if (m.topic !== undefined) {
    if (typeof m.topic !== 'string') ctx.bad(`${path}.topic`, m.topic, SOURCE_TOPIC_HELP)
    const problem = sourceTopicProblem(m.topic)
    if (problem !== null) ctx.bad(`${path}.topic`, m.topic, `${SOURCE_TOPIC_HELP} (${problem})`)
    topic = m.topic
  }
  let qos: 0 | 1 | 2 = AMQP_DEFAULTS.qos
  if (m.qos !== undefined) {
    if (m.qos !== 0 && m.qos !== 1 && m.qos !== 2) ctx.bad(`${path}.qos`, m.qos, '0, 1 or 2')
    qos = m.qos
  }
  const retain = flag(ctx, `${path}.retain`, m.retain, AMQP_DEFAULTS.retain)
  return hidePassword({ ...connection, queue, declareQueue, durable, queueArguments, bindings, prefetch, topic, qos, retain })
}
