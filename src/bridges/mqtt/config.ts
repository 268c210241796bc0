import { existsSync } from 'node:fs'
import { DURATION_EXPECTED, parseDuration, positiveInteger, bool, type SectionContext } from '../../config/values.js'
import { templateProblem } from '../mapping.js'
import { hideSecrets, secret, urlWithoutCredentials } from '../secrets.js'

// The `target:` (outbound) and `source:` (inbound) of a `kind: mqtt` bridge: another MQTT broker.
// Both connect the same way (url, credentials, client id, protocol version, keepalive, TLS files).
// The password may come from the environment (password-env); it is left out when the options are
// serialised (toJSON), so a status page or a log line cannot show it.

export type QoS = 0 | 1 | 2

export interface MqttConnection {
  /** mqtt://host[:port] or mqtts://host[:port]. */
  url: string
  username: string | null
  password: string | null
  /** null: `culex-bridge-<bridge name>`. */
  clientId: string | null
  /** 5 (MQTT 5.0) or 4 (MQTT 3.1.1). */
  protocolVersion: 4 | 5
  /** Keep Alive (MQTT 3.1.2.10), whole seconds; 0 = off. */
  keepaliveS: number
  /** From opening the socket to CONNACK. */
  connectTimeoutMs: number
  /** PEM files for mqtts://: the CA to trust instead of the system's, a client certificate and its key. */
  ca: string | null
  cert: string | null
  key: string | null
}

export interface MqttTarget extends MqttConnection {
  /** Topic template: {topic}, {topic.}, {key}, {stream}, {partition}. */
  topic: string
  qos: QoS
  retain: boolean
  /** Longest wait for the acknowledgements of one deliver; then 'retry' and a new connection. */
  timeoutMs: number
  /** Most QoS 1/2 publishes awaiting their PUBACK / PUBCOMP (and never more than the server's Receive Maximum). */
  maxInflight: number
}

export interface MqttFilter {
  filter: string
  /** The subscription's Maximum QoS. */
  qos: QoS
}

export interface MqttSourceOptions extends MqttConnection {
  filters: MqttFilter[]
  /** MQTT 5 Session Expiry Interval (s): how long the remote keeps the session (and queues for it) while Culex is away. */
  sessionExpiryS: number
  /** Culex topic template; {topic} is the remote topic after strip-prefix. */
  topic: string
  /** Removed from the front of a remote topic that starts with it. */
  stripPrefix: string | null
  /** QoS and retain of the publish into Culex; 'as-published' keeps the remote's retain flag. */
  qos: QoS
  retain: boolean | 'as-published'
}

export const MQTT_DEFAULTS = {
  protocolVersion: 5 as const,
  keepaliveS: 30,
  connectTimeoutMs: 10_000,
  topic: '{topic}',
  qos: 1 as const,
  retain: false,
  timeoutMs: 30_000,
  maxInflight: 100,
  filterQos: 1 as const,
  sessionExpiryS: 7 * 24 * 3600
}

/** MQTT 5 3.1.2.11.2: 0xFFFFFFFF = the session does not expire. */
export const SESSION_NEVER_EXPIRES = 0xffffffff
/** MQTT 3.1.2.10: Keep Alive is a two-byte number of seconds. */
const MAX_KEEPALIVE_S = 65535
/** MQTT 4.9: Receive Maximum is at most 65,535. */
const MAX_INFLIGHT = 65535
const MAX_TIMEOUT_MS = 10 * 60_000

const CONNECTION_KEYS = ['url', 'username', 'password', 'password-env', 'client-id', 'protocol-version', 'keepalive', 'connect-timeout', 'ca', 'cert', 'key']
const TARGET_KEYS = [...CONNECTION_KEYS, 'topic', 'qos', 'retain', 'timeout', 'max-inflight']
const SOURCE_KEYS = [...CONNECTION_KEYS, 'filters', 'session-expiry', 'topic', 'strip-prefix', 'qos', 'retain']

function text(ctx: SectionContext, path: string, raw: unknown, expected: string): string {
  if (typeof raw !== 'string' || raw.length === 0) ctx.bad(path, raw, expected)
  return raw
}

function parseQos(ctx: SectionContext, path: string, raw: unknown, fallback: QoS): QoS {
  if (raw === undefined) return fallback
  if (raw === 0 || raw === 1 || raw === 2 || raw === '0' || raw === '1' || raw === '2') return Number(raw) as QoS
  ctx.bad(path, raw, 'a QoS: 0, 1 or 2')
}

function parseUrl(ctx: SectionContext, path: string, raw: unknown): string {
  const expected = 'an mqtt:// or mqtts:// URL (host and optional port, no user:password, no path: give credentials in username / password)'
  const url = urlWithoutCredentials(ctx, path, raw, ['mqtt:', 'mqtts:'], expected)
  if (url.hostname === '') ctx.bad(path, raw, expected)
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') ctx.bad(path, raw, expected)
  return `${url.protocol}//${url.host}`
}

function pemFile(ctx: SectionContext, path: string, raw: unknown): string | null {
  if (raw === undefined || raw === null) return null
  const file = text(ctx, path, raw, 'the path of a PEM file')
  if (!existsSync(file)) ctx.bad(path, raw, 'the path of a PEM file that exists')
  return file
}

/**
 * MQTT 5 1.5.4 / 4.7.3: a topic name or filter is non-empty UTF-8 without U+0000, at most 65,535
 * bytes. A topic name has no wildcards (4.7.1); in a filter '+' and '#' fill a whole level and '#'
 * is the last one. Returns what is wrong, or null.
 */
export function topicProblem(topic: string, filter: boolean): string | null {
  if (topic.length === 0) return 'it is empty'
  if (topic.includes('\u0000')) return 'it holds U+0000'
  if (Buffer.byteLength(topic) > 65535) return 'it is longer than 65,535 bytes'
  if (/[\uD800-\uDFFF]/.test(topic.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))) return 'it is not valid UTF-8 (a lone surrogate)'
  const levels = topic.split('/')
  for (const [i, level] of levels.entries()) {
    if (!filter) {
      if (level.includes('+') || level.includes('#')) return "a topic name holds no wildcard ('+' or '#')"
    } else {
      if (level.includes('+') && level !== '+') return "'+' fills a whole level"
      if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return "'#' fills the last level"
    }
  }
  return null
}

function parseConnection(ctx: SectionContext, path: string, m: Record<string, unknown>): MqttConnection {
  if (m.url === undefined) ctx.bad(`${path}.url`, undefined, 'the URL of the MQTT broker, mqtt://host:port or mqtts://host:port (required)')
  const url = parseUrl(ctx, `${path}.url`, m.url)
  const username = m.username === undefined || m.username === null ? null : text(ctx, `${path}.username`, m.username, 'a user name')
  const password = secret(ctx, m, path, 'password')
  // MQTT 3.1.3.5 / 3.1.3.4: without a user name there is no password (3.1.1); mosquitto refuses it
  if (password !== null && username === null) ctx.bad(`${path}.username`, undefined, 'a user name (a password is sent with a user name)')
  let clientId: string | null = null
  if (m['client-id'] !== undefined && m['client-id'] !== null) {
    clientId = text(ctx, `${path}.client-id`, m['client-id'], 'an MQTT client identifier (non-empty text)')
    if (Buffer.byteLength(clientId) > 65535 || clientId.includes('\u0000'))
      ctx.bad(`${path}.client-id`, m['client-id'], 'an MQTT client identifier (UTF-8 without U+0000)')
  }
  let protocolVersion: 4 | 5 = MQTT_DEFAULTS.protocolVersion
  const pv = m['protocol-version']
  if (pv !== undefined) {
    if (pv === 5 || pv === '5' || pv === '5.0') protocolVersion = 5
    else if (pv === 4 || pv === '4' || pv === '3.1.1') protocolVersion = 4
    else ctx.bad(`${path}.protocol-version`, pv, "5 (MQTT 5.0) or 4 (MQTT 3.1.1, also written '3.1.1')")
  }
  let keepaliveS = MQTT_DEFAULTS.keepaliveS
  if (m.keepalive !== undefined) {
    if (m.keepalive === 0 || m.keepalive === 'off') keepaliveS = 0
    else {
      const ms = parseDuration(m.keepalive)
      if (ms === null || ms < 1000 || ms > MAX_KEEPALIVE_S * 1000) ctx.bad(`${path}.keepalive`, m.keepalive, `${DURATION_EXPECTED}, from 1s to 65535s, or off`)
      keepaliveS = Math.ceil(ms / 1000)
    }
  }
  let connectTimeoutMs = MQTT_DEFAULTS.connectTimeoutMs
  if (m['connect-timeout'] !== undefined) {
    const ms = parseDuration(m['connect-timeout'])
    if (ms === null || ms > MAX_TIMEOUT_MS) ctx.bad(`${path}.connect-timeout`, m['connect-timeout'], `${DURATION_EXPECTED}, at most 10m`)
    connectTimeoutMs = ms
  }
  const ca = pemFile(ctx, `${path}.ca`, m.ca)
  const cert = pemFile(ctx, `${path}.cert`, m.cert)
  const key = pemFile(ctx, `${path}.key`, m.key)
  if ((cert === null) !== (key === null))
    ctx.bad(`${path}.${cert === null ? 'cert' : 'key'}`, undefined, 'cert and key together (a client certificate and its private key)')
  if ((ca ?? cert) !== null && url.startsWith('mqtt:')) ctx.bad(`${path}.url`, m.url, 'an mqtts:// URL (ca, cert and key are for TLS)')
  return { url, username, password, clientId, protocolVersion, keepaliveS, connectTimeoutMs, ca, cert, key }
}

/** Leaves the password out of JSON.stringify (status pages, log lines). */
function hidePassword<T extends MqttConnection>(options: T): T {
  return hideSecrets(options, ['password'])
}

/** Parses `target:` of a `kind: mqtt` outbound bridge. */
export function parseTarget(raw: unknown, ctx: SectionContext, path: string): MqttTarget {
  const m = ctx.mapping(path, raw, TARGET_KEYS, `a mapping with ${TARGET_KEYS.join(', ')}`)
  const connection = parseConnection(ctx, path, m)

  let topic: string = MQTT_DEFAULTS.topic
  if (m.topic !== undefined) {
    topic = text(ctx, `${path}.topic`, m.topic, 'a topic template such as {topic} or site1/{topic}')
    const problem = templateProblem(topic)
    if (problem !== null) ctx.bad(`${path}.topic`, m.topic, `a topic template with {topic}, {topic.}, {key}, {stream}, {partition} (${problem})`)
    // the fixed text of the template must be a valid topic name on its own (a record's values are checked per record)
    const fixed = topicProblem(topic.replace(/\{[^}]*\}/g, 'x'), false)
    if (fixed !== null) ctx.bad(`${path}.topic`, m.topic, `a template for an MQTT topic name (${fixed})`)
  }
  const qos = parseQos(ctx, `${path}.qos`, m.qos, MQTT_DEFAULTS.qos)
  let retain = MQTT_DEFAULTS.retain
  if (m.retain !== undefined) {
    try {
      retain = bool(m.retain)
    } catch {
      ctx.bad(`${path}.retain`, m.retain, 'true or false')
    }
  }
  let timeoutMs = MQTT_DEFAULTS.timeoutMs
  if (m.timeout !== undefined) {
    const ms = parseDuration(m.timeout)
    if (ms === null || ms > MAX_TIMEOUT_MS) ctx.bad(`${path}.timeout`, m.timeout, `${DURATION_EXPECTED}, at most 10m`)
    timeoutMs = ms
  }
  let maxInflight = MQTT_DEFAULTS.maxInflight
  if (m['max-inflight'] !== undefined) {
    const n = positiveInteger(m['max-inflight'])
    if (n === null || n > MAX_INFLIGHT) ctx.bad(`${path}.max-inflight`, m['max-inflight'], 'a number of messages from 1 to 65535')
    maxInflight = n
  }
  return hidePassword({ ...connection, topic, qos, retain, timeoutMs, maxInflight })
}

function parseFilters(ctx: SectionContext, path: string, raw: unknown, protocolVersion: 4 | 5): MqttFilter[] {
  const expected = 'a non-empty list of MQTT topic filters, each a filter or { filter, qos }'
  if (!Array.isArray(raw) || raw.length === 0) ctx.bad(path, raw, expected)
  const filters: MqttFilter[] = []
  for (const [i, entry] of (raw as unknown[]).entries()) {
    const at = `${path}[${i}]`
    let filter: unknown = entry
    let qos: QoS = MQTT_DEFAULTS.filterQos
    if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) {
      const f = ctx.mapping(at, entry, ['filter', 'qos'], 'a topic filter or { filter, qos }')
      filter = f.filter
      qos = parseQos(ctx, `${at}.qos`, f.qos, MQTT_DEFAULTS.filterQos)
      if (filter === undefined) ctx.bad(`${at}.filter`, undefined, 'an MQTT topic filter (required)')
    }
    const where = filter === entry ? at : `${at}.filter`
    if (typeof filter !== 'string') ctx.bad(where, filter, 'an MQTT topic filter such as devices/+/cmd or site1/#')
    const problem = topicProblem(filter, true)
    if (problem !== null) ctx.bad(where, filter, `an MQTT topic filter (${problem})`)
    // 3.1.1 acknowledges a QoS 2 message (PUBREC) before the bridge could publish it into Culex: not at least once
    if (qos === 2 && protocolVersion === 4) ctx.bad(`${at}.qos`, qos, 'QoS 0 or 1 with protocol-version 4 (QoS 2 needs protocol-version 5)')
    if (filters.some((f) => f.filter === filter)) ctx.bad(where, filter, 'a filter listed once')
    filters.push({ filter, qos })
  }
  return filters
}

/** Parses `source:` of a `kind: mqtt` inbound bridge. */
export function parseSource(raw: unknown, ctx: SectionContext, path: string): MqttSourceOptions {
  const m = ctx.mapping(path, raw, SOURCE_KEYS, `a mapping with ${SOURCE_KEYS.join(', ')}`)
  const connection = parseConnection(ctx, path, m)
  if (m.filters === undefined) ctx.bad(`${path}.filters`, undefined, 'a non-empty list of MQTT topic filters to subscribe to (required)')
  const filters = parseFilters(ctx, `${path}.filters`, m.filters, connection.protocolVersion)

  let sessionExpiryS = MQTT_DEFAULTS.sessionExpiryS
  if (m['session-expiry'] !== undefined) {
    if (m['session-expiry'] === 'never') sessionExpiryS = SESSION_NEVER_EXPIRES
    else {
      const ms = parseDuration(m['session-expiry'])
      if (ms === null || ms < 1000 || ms / 1000 >= SESSION_NEVER_EXPIRES)
        ctx.bad(`${path}.session-expiry`, m['session-expiry'], `${DURATION_EXPECTED} (at least 1s), or never`)
      sessionExpiryS = Math.ceil(ms / 1000)
    }
  }
  let topic: string = MQTT_DEFAULTS.topic
  if (m.topic !== undefined) {
    topic = text(ctx, `${path}.topic`, m.topic, 'a topic template such as {topic} or remote/{topic}')
    const unknown = [...topic.matchAll(/\{([^}]*)\}/g)].map((x) => x[1]).find((n) => n !== 'topic')
    if (unknown !== undefined) ctx.bad(`${path}.topic`, m.topic, `a topic template with {topic} only (unknown placeholder {${unknown}})`)
    const fixed = topicProblem(topic.replaceAll('{topic}', 'x'), false)
    if (fixed !== null) ctx.bad(`${path}.topic`, m.topic, `a template for an MQTT topic name (${fixed})`)
  }
  let stripPrefix: string | null = null
  if (m['strip-prefix'] !== undefined && m['strip-prefix'] !== null) {
    stripPrefix = text(ctx, `${path}.strip-prefix`, m['strip-prefix'], 'the text to remove from the front of a remote topic, such as site1/')
    if (stripPrefix.includes('+') || stripPrefix.includes('#')) ctx.bad(`${path}.strip-prefix`, m['strip-prefix'], "a fixed text, without '+' or '#'")
  }
  const qos = parseQos(ctx, `${path}.qos`, m.qos, MQTT_DEFAULTS.qos)
  let retain: boolean | 'as-published' = MQTT_DEFAULTS.retain
  if (m.retain !== undefined) {
    if (m.retain === 'as-published') retain = 'as-published'
    else {
      try {
        retain = bool(m.retain)
      } catch {
        ctx.bad(`${path}.retain`, m.retain, 'true, false or as-published')
      }
    }
    // MQTT 5 3.8.3.1 Retain As Published; 3.1.1 clears the flag on everything but the retained messages sent on subscribing
    if (retain === 'as-published' && connection.protocolVersion === 4)
      ctx.bad(`${path}.retain`, m.retain, 'true or false with protocol-version 4 (as-published needs protocol-version 5)')
  }
  return hidePassword({ ...connection, filters, sessionExpiryS, topic, stripPrefix, qos, retain })
}
