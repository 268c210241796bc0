import type { SectionContext } from '../../config/values.js'
import { DURATION_EXPECTED, bool, integer, parseDuration, positiveInteger } from '../../config/values.js'
import { TEMPLATE_HELP, templateProblem } from '../mapping.js'
import { hideSecrets, secret } from '../secrets.js'

// The `target:` (outbound: XADD to a stream) and `source:` (inbound: a consumer group read with
// XREADGROUP) of a redis bridge. Connection keys are the same in both.

export interface RedisConnectionOptions {
  host: string
  port: number
  /** ACL user (Redis 6+ AUTH username password); null = the default user. */
  username: string | null
  /** From `password` or the environment variable `password-env` names; never logged. */
  password: string | null
  db: number
  /** Bound on every command (and on connecting): a reply later than this fails the command. */
  commandTimeoutMs: number
}

export interface RedisTarget extends RedisConnectionOptions {
  /** Stream key template: {topic} {topic.} {key} {stream} {partition}. */
  key: string
  /** XADD ... MAXLEN [~] n: the stream is trimmed to about n entries; null = never trimmed. */
  maxlen: number | null
  /** `MAXLEN ~ n` (trim whole macro nodes, cheaper, keeps a few more) instead of `MAXLEN = n`. */
  approximate: boolean
}

export interface RedisSourceOptions extends RedisConnectionOptions {
  /** The stream key read. */
  key: string
  /** Consumer group (XGROUP CREATE ... MKSTREAM when missing). */
  group: string
  /** Consumer name within the group; null = the bridge's name. Stable across restarts so its pending entries are read again. */
  consumer: string | null
  /** Where a new group starts: `$` (entries added from now on), `0` (the whole stream) or an entry id. */
  startId: string
  /** Entries per XREADGROUP. */
  count: number
  /** XREADGROUP BLOCK, ms. */
  blockMs: number
  /** XAUTOCLAIM entries pending longer than this with other (dead) consumers; null = never claim. */
  claimIdleMs: number | null
  /** MQTT topic template: {key} (the stream key) and {field:<name>} (an entry field). */
  topic: string
  /** The entry field that holds the payload. */
  valueField: string
  qos: 0 | 1 | 2
  retain: boolean
  /** Entries Culex refuses are XADDed here (then XACKed); null = XACKed and counted dropped. */
  deadLetterKey: string | null
}

export const REDIS_DEFAULTS = {
  host: '127.0.0.1',
  port: 6379,
  db: 0,
  commandTimeoutMs: 5000,
  key: 'culex:{stream}',
  group: 'culex',
  startId: '$',
  count: 100,
  blockMs: 2000,
  topic: '{field:topic}',
  valueField: 'value',
  qos: 1 as const,
  retain: false
}

const CONNECTION_KEYS = ['host', 'port', 'username', 'password', 'password-env', 'db', 'command-timeout']
const TARGET_KEYS = [...CONNECTION_KEYS, 'key', 'maxlen', 'approximate']
const SOURCE_KEYS = [
  ...CONNECTION_KEYS,
  'key',
  'group',
  'consumer',
  'start-id',
  'count',
  'block',
  'claim-idle',
  'topic',
  'value-field',
  'qos',
  'retain',
  'dead-letter-key'
]

// Redis databases are numbered 0..databases-1 (16 by default); the server refuses SELECT past that.
const MAX_DB = 1_000_000
// A stream entry id (https://redis.io/docs/data-types/streams/#entry-ids): <ms> or <ms>-<seq>.
const ENTRY_ID = /^\d+(-\d+)?$/
const TOPIC_PLACEHOLDER = /\{(key|field:[^{}]+)\}/g

function nonEmptyText(ctx: SectionContext, path: string, raw: unknown, expected: string): string {
  if (typeof raw !== 'string' || raw.length === 0) ctx.bad(path, raw, expected)
  return raw
}

function parseConnection(ctx: SectionContext, path: string, r: Record<string, unknown>): RedisConnectionOptions {
  const host = r.host === undefined ? REDIS_DEFAULTS.host : nonEmptyText(ctx, `${path}.host`, r.host, 'a host name or IP address')
  let port = REDIS_DEFAULTS.port
  if (r.port !== undefined) {
    const n = positiveInteger(r.port)
    if (n === null || n > 65535) ctx.bad(`${path}.port`, r.port, 'a TCP port from 1 to 65535')
    port = n
  }
  const username = r.username === undefined || r.username === null ? null : nonEmptyText(ctx, `${path}.username`, r.username, 'an ACL user name')
  const password = secret(ctx, r, path, 'password')
  let db = REDIS_DEFAULTS.db
  if (r.db !== undefined) {
    const n = integer(r.db)
    if (n === null || n < 0 || n > MAX_DB) ctx.bad(`${path}.db`, r.db, 'a database number >= 0')
    db = n
  }
  let commandTimeoutMs = REDIS_DEFAULTS.commandTimeoutMs
  if (r['command-timeout'] !== undefined) {
    commandTimeoutMs = parseDuration(r['command-timeout']) ?? ctx.bad(`${path}.command-timeout`, r['command-timeout'], DURATION_EXPECTED)
  }
  return hidePassword({ host, port, username, password, db, commandTimeoutMs })
}

/** The options with a toJSON that shows `(hidden)` for the password: a status page or a log line cannot show it. */
function hidePassword<T extends RedisConnectionOptions>(options: T): T {
  return hideSecrets(options, ['password'])
}

/** `target:` of an outbound redis bridge. */
export function parseRedisTarget(raw: unknown, ctx: SectionContext, path: string): RedisTarget {
  const r = ctx.mapping(path, raw, TARGET_KEYS, 'a mapping with key, maxlen, approximate, host, port, ...')
  const connection = parseConnection(ctx, path, r)
  let key = REDIS_DEFAULTS.key
  if (r.key !== undefined) {
    key = nonEmptyText(ctx, `${path}.key`, r.key, TEMPLATE_HELP)
    const problem = templateProblem(key)
    if (problem) ctx.bad(`${path}.key`, key, `${TEMPLATE_HELP}; ${problem}`)
  }
  let maxlen: number | null = null
  if (r.maxlen !== undefined && r.maxlen !== null && r.maxlen !== 0 && r.maxlen !== '0') {
    maxlen = positiveInteger(r.maxlen) ?? ctx.bad(`${path}.maxlen`, r.maxlen, 'a positive number of entries, or 0 / null for no trimming')
  }
  let approximate = true
  if (r.approximate !== undefined) {
    try {
      approximate = bool(r.approximate)
    } catch {
      ctx.bad(`${path}.approximate`, r.approximate, 'true (MAXLEN ~ n) or false (MAXLEN = n)')
    }
  }
  return hidePassword({ ...connection, key, maxlen, approximate })
}

/** The problem of a source topic template, or null. */
export function topicTemplateProblem(template: string): string | null {
  const rest = template.replace(TOPIC_PLACEHOLDER, 'x')
  if (/[{}]/.test(rest)) return 'placeholders are {key} and {field:<name>}'
  // MQTT 3.1.1 4.7.1: wildcards are not allowed in a topic name
  if (/[+#\0]/.test(rest)) return "a topic name holds no '+', '#' or NUL"
  return null
}

/** `source:` of an inbound redis bridge. */
export function parseRedisSource(raw: unknown, ctx: SectionContext, path: string): RedisSourceOptions {
  const r = ctx.mapping(path, raw, SOURCE_KEYS, 'a mapping with key, group, topic, host, port, ...')
  const connection = parseConnection(ctx, path, r)
  const key = nonEmptyText(ctx, `${path}.key`, r.key, 'the key of the Redis stream to read')
  const group = r.group === undefined ? REDIS_DEFAULTS.group : nonEmptyText(ctx, `${path}.group`, r.group, 'a consumer group name')
  const consumer = r.consumer === undefined || r.consumer === null ? null : nonEmptyText(ctx, `${path}.consumer`, r.consumer, 'a consumer name')
  let startId = REDIS_DEFAULTS.startId
  if (r['start-id'] !== undefined) {
    const v = typeof r['start-id'] === 'number' ? String(r['start-id']) : r['start-id']
    if (typeof v !== 'string' || (v !== '$' && !ENTRY_ID.test(v))) {
      ctx.bad(`${path}.start-id`, r['start-id'], "'$' (new entries only), '0' (the whole stream) or an entry id such as 1700000000000-0")
    }
    startId = v
  }
  let count = REDIS_DEFAULTS.count
  if (r.count !== undefined) {
    const n = positiveInteger(r.count)
    if (n === null || n > 10_000) ctx.bad(`${path}.count`, r.count, 'an integer from 1 to 10000')
    count = n
  }
  let blockMs = REDIS_DEFAULTS.blockMs
  if (r.block !== undefined) blockMs = parseDuration(r.block) ?? ctx.bad(`${path}.block`, r.block, DURATION_EXPECTED)
  let claimIdleMs: number | null = null
  if (r['claim-idle'] !== undefined && r['claim-idle'] !== null && r['claim-idle'] !== 'off') {
    claimIdleMs = parseDuration(r['claim-idle']) ?? ctx.bad(`${path}.claim-idle`, r['claim-idle'], `${DURATION_EXPECTED}, or null / off to never claim`)
  }
  let topic = REDIS_DEFAULTS.topic
  if (r.topic !== undefined) {
    const expected = 'an MQTT topic template with {key} (the stream key) and {field:<name>} (an entry field), e.g. devices/{field:device}/cmd'
    topic = nonEmptyText(ctx, `${path}.topic`, r.topic, expected)
    const problem = topicTemplateProblem(topic)
    if (problem) ctx.bad(`${path}.topic`, topic, `${expected}; ${problem}`)
  }
  const valueField =
    r['value-field'] === undefined ? REDIS_DEFAULTS.valueField : nonEmptyText(ctx, `${path}.value-field`, r['value-field'], 'an entry field name')
  let qos: 0 | 1 | 2 = REDIS_DEFAULTS.qos
  if (r.qos !== undefined) {
    if (r.qos !== 0 && r.qos !== 1 && r.qos !== 2) ctx.bad(`${path}.qos`, r.qos, '0, 1 or 2')
    qos = r.qos
  }
  let retain = REDIS_DEFAULTS.retain
  if (r.retain !== undefined) {
    try {
      retain = bool(r.retain)
    } catch {
      ctx.bad(`${path}.retain`, r.retain, 'true or false')
    }
  }
  let deadLetterKey: string | null = null
  if (r['dead-letter-key'] !== undefined && r['dead-letter-key'] !== null) {
    deadLetterKey = nonEmptyText(ctx, `${path}.dead-letter-key`, r['dead-letter-key'], 'a stream key, or null to XACK and drop refused entries')
    if (deadLetterKey === key) ctx.bad(`${path}.dead-letter-key`, deadLetterKey, 'a stream key other than key (refused entries would be read again)')
  }
  return hidePassword({ ...connection, key, group, consumer, startId, count, blockMs, claimIdleMs, topic, valueField, qos, retain, deadLetterKey })
}
