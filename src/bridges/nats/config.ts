import { DURATION_EXPECTED, parseDuration, positiveInteger, type SectionContext } from '../../config/values.js'
import { MappingError, TEMPLATE_HELP, filterToNatsSubject, templateProblem } from '../mapping.js'
import { hideSecrets, secret } from '../secrets.js'

// The `target:` (outbound) and `source:` (inbound) of a `kind: nats` bridge: NATS JetStream.
// Outbound, every record is a JetStream publish with a Nats-Msg-Id, so the stream's duplicate
// window removes the retries; inbound, a durable pull consumer with explicit acks. Secrets
// (password, token) may come from the environment and are hidden when the options are serialised.

/** How the bridge connects: the same for both directions. */
export interface NatsConnection {
  /** nats://host:port URLs (a cluster's seeds); the client tries them in turn. */
  servers: string[]
  user: string | null
  password: string | null
  token: string | null
  connectTimeoutMs: number
}

export interface NatsTarget extends NatsConnection {
  /** The subject template (mapping.ts render): `{topic.}` = the MQTT topic with '.' for '/'. */
  subject: string
  /**
   * The JetStream stream that must capture the subjects: checked at connect, and a record whose
   * subject it does not capture is rejected (without it, such a publish has no responder: retried).
   */
  stream: string | null
  /** How long a publish waits for its PubAck (ms). */
  ackTimeoutMs: number
}

export type NatsDeliverPolicy = 'all' | 'new' | 'last' | 'last_per_subject'

export interface NatsSourceOptions extends NatsConnection {
  /** The JetStream stream to consume. */
  stream: string
  /** The durable consumer's name; null: `culex-<bridge>` ('.' in the bridge name become '_'). */
  consumer: string | null
  /** The consumer's filter_subject (a NATS subject, wildcards allowed); null: the whole stream. */
  filterSubject: string | null
  /** Where a new consumer starts (ignored for an existing one). */
  deliverPolicy: NatsDeliverPolicy
  /** JetStream redelivers a message not acked in this time (ms). */
  ackWaitMs: number
  /** Deliveries of one message before JetStream gives up on it; -1 = no limit. */
  maxDeliver: number
  /** Unacked messages the consumer hands out at most (1 = strict order even across redeliveries). */
  maxAckPending: number
  /** Messages per pull request (ack-wait must cover handling that many). */
  maxMessages: number
  /** The MQTT topic template: `{subject}` is the subject (after strip-prefix) with '/' for '.'. */
  topic: string
  /** Subject tokens removed from the front before `{subject}` is made (e.g. `culex.in`); null: none. */
  stripPrefix: string | null
  qos: 0 | 1 | 2
  retain: boolean
}

const CONNECTION_KEYS = ['servers', 'user', 'password', 'password-env', 'token', 'token-env', 'connect-timeout'] as const
const TARGET_KEYS = [...CONNECTION_KEYS, 'subject', 'stream', 'ack-timeout'] as const
const SOURCE_KEYS = [
  ...CONNECTION_KEYS,
  'stream',
  'consumer',
  'filter',
  'filter-subject',
  'deliver-policy',
  'ack-wait',
  'max-deliver',
  'max-ack-pending',
  'max-messages',
  'topic',
  'strip-prefix',
  'qos',
  'retain'
] as const

export const DEFAULT_SUBJECT = '{topic.}'
export const DEFAULT_ACK_TIMEOUT_MS = 5_000
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000
export const DEFAULT_ACK_WAIT_MS = 30_000
export const DEFAULT_MAX_ACK_PENDING = 1_000
/** Small: a pulled message waits for the ones before it, and its ack_wait runs meanwhile. */
export const DEFAULT_MAX_MESSAGES = 20
export const DEFAULT_TOPIC = '{subject}'
const MAX_TIMEOUT_MS = 10 * 60_000

// JetStream names (stream, durable consumer): nats-server refuses '.', '*', '>', path separators
// and whitespace in them (ADR-6, "Naming Rules": they become subject tokens and file names).
const JS_NAME = /^[^.*>/\\\s]{1,255}$/
const JS_NAME_RULE = "1 to 255 characters, none of them '.', '*', '>', '/', '\\' or whitespace (JetStream names)"

/**
 * Whether a text is a valid NATS subject to publish to (or, with `wildcards`, a subject filter):
 * tokens separated by '.', none empty, no whitespace; '*' and '>' only as whole tokens and only
 * in a filter, '>' only last (NATS "Subject-Based Messaging": wildcards).
 */
export function subjectProblem(subject: string, wildcards: boolean): string | null {
  if (subject === '') return 'it is empty'
  if (/[\s\0]/.test(subject)) return 'it holds whitespace'
  const tokens = subject.split('.')
  for (const [i, t] of tokens.entries()) {
    if (t === '') return "a token is empty (leading, trailing or doubled '.')"
    if (t === '*' || t === '>') {
      if (!wildcards) return `it holds the wildcard '${t}'`
      if (t === '>' && i !== tokens.length - 1) return "'>' is not the last token"
    } else if (t.includes('*') || t.includes('>')) {
      // legal for nats-server, but '*' / '>' in a token is a mistaken wildcard more often than a name
      return `the token ${JSON.stringify(t)} holds '*' or '>' without being a wildcard`
    }
  }
  return null
}

function duration(ctx: SectionContext, path: string, raw: unknown, fallback: number, max = MAX_TIMEOUT_MS): number {
  if (raw === undefined) return fallback
  const ms = parseDuration(raw)
  if (ms === null || ms > max) ctx.bad(path, raw, `${DURATION_EXPECTED}, at most ${max / 60_000}m`)
  return ms
}

function parseServers(ctx: SectionContext, path: string, raw: unknown): string[] {
  const expected = 'a NATS server URL (nats://host:port) or a list of them, without user:password (give user and password)'
  if (raw === undefined) ctx.bad(path, raw, `${expected} (required)`)
  const list = typeof raw === 'string' ? [raw] : raw
  if (!Array.isArray(list) || list.length === 0) ctx.bad(path, raw, expected)
  return list.map((s: unknown, i) => {
    const at = Array.isArray(raw) ? `${path}[${i}]` : path
    if (typeof s !== 'string' || s === '') ctx.bad(at, s, expected)
    let url: URL
    try {
      url = new URL(s.includes('://') ? s : `nats://${s}`)
    } catch {
      ctx.bad(at, s, expected)
    }
    if (!['nats:', 'tls:'].includes(url.protocol) || url.hostname === '' || url.username !== '' || url.password !== '' || url.pathname.length > 1) {
      ctx.bad(at, s, expected)
    }
    return `${url.protocol}//${url.host}`
  })
}

function parseConnection(ctx: SectionContext, m: Record<string, unknown>, path: string): NatsConnection {
  const servers = parseServers(ctx, `${path}.servers`, m.servers)
  let user: string | null = null
  if (m.user !== undefined && m.user !== null) {
    if (typeof m.user !== 'string' || m.user === '') ctx.bad(`${path}.user`, m.user, 'a user name')
    user = m.user
  }
  const password = secret(ctx, m, path, 'password')
  const token = secret(ctx, m, path, 'token')
  if (password !== null && user === null) ctx.bad(`${path}.user`, m.user, 'a user name (a password is given)')
  if (user !== null && password === null) ctx.bad(`${path}.password`, undefined, 'a password or password-env (a user is given)')
  if (token !== null && user !== null) ctx.bad(m.token !== undefined ? `${path}.token` : `${path}.token-env`, '(hidden)', 'user/password or a token, not both')
  const connectTimeoutMs = duration(ctx, `${path}.connect-timeout`, m['connect-timeout'], DEFAULT_CONNECT_TIMEOUT_MS)
  return { servers, user, password, token, connectTimeoutMs }
}

/** A JSON form without the secrets (status pages, logs). */
function hideConnection<T extends NatsConnection>(options: T): T {
  return hideSecrets(options, ['password', 'token'])
}

function jsName(ctx: SectionContext, path: string, raw: unknown, what: string): string {
  if (typeof raw !== 'string' || !JS_NAME.test(raw)) ctx.bad(path, raw, `${what}: ${JS_NAME_RULE}`)
  return raw
}

/** Parses `target:` of an outbound `kind: nats` bridge. */
export function parseTarget(raw: unknown, ctx: SectionContext, path: string): NatsTarget {
  const m = ctx.mapping(path, raw, TARGET_KEYS, `a mapping with ${TARGET_KEYS.join(', ')}`)
  const connection = parseConnection(ctx, m, path)

  let subject = DEFAULT_SUBJECT
  if (m.subject !== undefined) {
    if (typeof m.subject !== 'string' || m.subject === '') ctx.bad(`${path}.subject`, m.subject, TEMPLATE_HELP)
    const unknown = templateProblem(m.subject)
    if (unknown !== null) ctx.bad(`${path}.subject`, m.subject, `${TEMPLATE_HELP} (${unknown})`)
    // the literal parts must make a subject whatever the placeholders become
    const problem = subjectProblem(m.subject.replace(/\{[^}]*\}/g, 'x'), false)
    if (problem !== null) ctx.bad(`${path}.subject`, m.subject, `a NATS subject template without wildcards or whitespace (${problem})`)
    subject = m.subject
  }

  let stream: string | null = null
  if (m.stream !== undefined && m.stream !== null) stream = jsName(ctx, `${path}.stream`, m.stream, 'a JetStream stream name')

  const ackTimeoutMs = duration(ctx, `${path}.ack-timeout`, m['ack-timeout'], DEFAULT_ACK_TIMEOUT_MS)
  return hideConnection({ ...connection, subject, stream, ackTimeoutMs })
}

function integerIn(ctx: SectionContext, path: string, raw: unknown, fallback: number, max: number): number {
  if (raw === undefined) return fallback
  const n = positiveInteger(raw)
  if (n === null || n > max) ctx.bad(path, raw, `an integer from 1 to ${max}`)
  return n
}

/** Parses `source:` of an inbound `kind: nats` bridge. */
export function parseSource(raw: unknown, ctx: SectionContext, path: string): NatsSourceOptions {
  const m = ctx.mapping(path, raw, SOURCE_KEYS, `a mapping with ${SOURCE_KEYS.join(', ')}`)
  const connection = parseConnection(ctx, m, path)
  if (m.stream === undefined) ctx.bad(`${path}.stream`, undefined, 'the JetStream stream to consume (required)')
  const stream = jsName(ctx, `${path}.stream`, m.stream, 'a JetStream stream name')
  const consumer = m.consumer === undefined || m.consumer === null ? null : jsName(ctx, `${path}.consumer`, m.consumer, 'a durable consumer name')

  if (m.filter !== undefined && m['filter-subject'] !== undefined)
    ctx.bad(`${path}.filter-subject`, m['filter-subject'], 'filter (MQTT) or filter-subject (NATS), not both')
  let filterSubject: string | null = null
  if (m.filter !== undefined && m.filter !== null) {
    const expected = "an MQTT topic filter such as devices/+/cmd/# (levels without '.', '*', '>' or whitespace)"
    if (typeof m.filter !== 'string') ctx.bad(`${path}.filter`, m.filter, expected)
    try {
      filterSubject = filterToNatsSubject(m.filter)
    } catch (e) {
      if (e instanceof MappingError) ctx.bad(`${path}.filter`, m.filter, expected)
      throw e
    }
  }
  if (m['filter-subject'] !== undefined && m['filter-subject'] !== null) {
    const f = m['filter-subject']
    const problem = typeof f === 'string' ? subjectProblem(f, true) : 'it is not a text'
    if (problem !== null) ctx.bad(`${path}.filter-subject`, f, `a NATS subject filter such as devices.*.cmd.> (${problem})`)
    filterSubject = f as string
  }

  let deliverPolicy: NatsDeliverPolicy = 'all'
  if (m['deliver-policy'] !== undefined) {
    const d = m['deliver-policy']
    if (d !== 'all' && d !== 'new' && d !== 'last' && d !== 'last_per_subject')
      ctx.bad(`${path}.deliver-policy`, d, "'all', 'new', 'last' or 'last_per_subject'")
    deliverPolicy = d
  }
  const ackWaitMs = duration(ctx, `${path}.ack-wait`, m['ack-wait'], DEFAULT_ACK_WAIT_MS, 60 * 60_000)
  if (ackWaitMs < 1000) ctx.bad(`${path}.ack-wait`, m['ack-wait'], 'at least 1s (the client pulls with heartbeats of about a second)')
  let maxDeliver = -1
  if (m['max-deliver'] !== undefined && m['max-deliver'] !== -1 && m['max-deliver'] !== 'unlimited') {
    const n = positiveInteger(m['max-deliver'])
    if (n === null) ctx.bad(`${path}.max-deliver`, m['max-deliver'], "an integer >= 1, or -1 / 'unlimited'")
    maxDeliver = n
  }
  const maxAckPending = integerIn(ctx, `${path}.max-ack-pending`, m['max-ack-pending'], DEFAULT_MAX_ACK_PENDING, 1_000_000)
  const maxMessages = integerIn(ctx, `${path}.max-messages`, m['max-messages'], Math.min(DEFAULT_MAX_MESSAGES, maxAckPending), 10_000)
  if (maxMessages > maxAckPending) ctx.bad(`${path}.max-messages`, m['max-messages'], `at most max-ack-pending (${maxAckPending})`)

  let topic = DEFAULT_TOPIC
  if (m.topic !== undefined) {
    const expected = "an MQTT topic template: {subject} (the subject with '/' for '.') and text without '+', '#' or NUL"
    if (typeof m.topic !== 'string' || m.topic === '' || /[+#\0]/.test(m.topic)) ctx.bad(`${path}.topic`, m.topic, expected)
    const unknown = [...m.topic.matchAll(/\{([^}]*)\}/g)].find((x) => x[1] !== 'subject')
    if (unknown) ctx.bad(`${path}.topic`, m.topic, `${expected} (unknown placeholder {${unknown[1] ?? ''}})`)
    topic = m.topic
  }
  let stripPrefix: string | null = null
  if (m['strip-prefix'] !== undefined && m['strip-prefix'] !== null) {
    const p = typeof m['strip-prefix'] === 'string' ? m['strip-prefix'].replace(/\.$/, '') : m['strip-prefix']
    const problem = typeof p === 'string' ? subjectProblem(p, false) : 'it is not a text'
    if (problem !== null) ctx.bad(`${path}.strip-prefix`, m['strip-prefix'], `the leading tokens of a subject, such as culex.in (${problem})`)
    stripPrefix = p as string
  }

  let qos: 0 | 1 | 2 = 1
  if (m.qos !== undefined) {
    if (m.qos !== 0 && m.qos !== 1 && m.qos !== 2) ctx.bad(`${path}.qos`, m.qos, '0, 1 or 2')
    qos = m.qos
  }
  let retain = false
  if (m.retain !== undefined) {
    if (typeof m.retain !== 'boolean') ctx.bad(`${path}.retain`, m.retain, 'true or false')
    retain = m.retain
  }

  return hideConnection({
    ...connection,
    stream,
    consumer,
    filterSubject,
    deliverPolicy,
    ackWaitMs,
    maxDeliver,
    maxAckPending,
    maxMessages,
    topic,
    stripPrefix,
    qos,
    retain
  })
}

/** The durable consumer name of a source: the configured one, or `culex-<bridge>`. */
export function durableName(options: NatsSourceOptions, bridge: string): string {
  return options.consumer ?? `culex-${bridge.replace(/\./g, '_')}`
}
