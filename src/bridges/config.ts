import type { SectionContext } from '../config/values.js'
import { DURATION_EXPECTED, parseDuration, positiveInteger } from '../config/values.js'
import { NAME_RULE, isValidName } from '../log/names.js'
import type { StreamConfig } from '../log/types.js'
import type { ExponentialBackoff } from '../log/shared/config.js'
import { DRIVERS } from './registry.js'

// The `bridges` list of the config file: the part every bridge shares (name, kind, direction,
// streams, batching, retry, dead letters) is parsed here; `target:` and `source:` by the kind's
// driver. Every refusal names the path of the bad value, e.g. `bridges[2].retry.initial`.

export interface BridgeRetry {
  /** Delay before attempt n+1: initial × multiplier^(n-1), at most max, ± jitter. */
  backoff: ExponentialBackoff
  /** Outbound: attempts of one record before it goes to the dead letters (0 = retry for ever). */
  maxAttempts: number
}

export type StartAt = 'earliest' | 'latest'

export interface OutboundBridgeConfig {
  name: string
  kind: string
  direction: 'out'
  /** Log streams the bridge carries to the target (every partition of each). */
  streams: string[]
  /** Where a partition starts when the bridge has no stored progress for it. */
  startAt: StartAt
  /** Records per delivery to the target (per partition). */
  batchSize: number
  retry: BridgeRetry
  /** Stream for records the target refuses; null: `<stream>.dlq`. */
  deadLetter: string | null
  /** The kind's own options (its driver parsed them). */
  target: unknown
}

export interface InboundBridgeConfig {
  name: string
  kind: string
  direction: 'in'
  /** Backoff between reconnects (maxAttempts is not used: a source is retried for ever). */
  retry: BridgeRetry
  source: unknown
}

export type BridgeConfig = OutboundBridgeConfig | InboundBridgeConfig

export const BRIDGE_DEFAULTS = {
  startAt: 'earliest' as StartAt,
  batchSize: 100,
  retry: { backoff: { initialMs: 200, maxMs: 30_000, multiplier: 2, jitter: 0.2 }, maxAttempts: 0 }
}

export const MAX_BATCH_SIZE = 10_000

/** The consumer group under which an outbound bridge stores its progress (GET /api/v1/groups shows it). */
export function progressGroup(bridge: string): string {
  return `bridge.${bridge}`
}

const COMMON_KEYS = ['name', 'kind', 'direction', 'retry']
const OUT_KEYS = [...COMMON_KEYS, 'streams', 'start-at', 'batch-size', 'dead-letter', 'target']
const IN_KEYS = [...COMMON_KEYS, 'source']
const RETRY_KEYS = ['initial', 'max', 'multiplier', 'jitter', 'max-attempts']

function parseRetry(ctx: SectionContext, path: string, raw: unknown): BridgeRetry {
  const d = BRIDGE_DEFAULTS.retry
  if (raw === undefined || raw === null) return structuredClone(d)
  const r = ctx.mapping(path, raw, RETRY_KEYS, 'a mapping with initial, max, multiplier, jitter and/or max-attempts')
  const duration = (k: string, fallback: number): number => {
    if (r[k] === undefined) return fallback
    return parseDuration(r[k]) ?? ctx.bad(`${path}.${k}`, r[k], DURATION_EXPECTED)
  }
  const initialMs = duration('initial', d.backoff.initialMs)
  const maxMs = duration('max', Math.max(d.backoff.maxMs, initialMs))
  if (maxMs < initialMs) ctx.bad(`${path}.max`, r.max, `a duration >= initial (${initialMs} ms)`)
  const number = (k: string, fallback: number, min: number, max: number): number => {
    const v = r[k]
    if (v === undefined) return fallback
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) ctx.bad(`${path}.${k}`, v, `a number from ${min} to ${max}`)
    return v
  }
  const multiplier = number('multiplier', d.backoff.multiplier, 1, 100)
  const jitter = number('jitter', d.backoff.jitter, 0, 1)
  let maxAttempts = d.maxAttempts
  if (r['max-attempts'] !== undefined) {
    const v = r['max-attempts']
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 1_000_000) ctx.bad(`${path}.max-attempts`, v, 'an integer >= 0 (0 = retry for ever)')
    maxAttempts = v
  }
  return { backoff: { initialMs, maxMs, multiplier, jitter }, maxAttempts }
}

function parseStreams(ctx: SectionContext, path: string, raw: unknown, streams: StreamConfig[]): string[] {
  const names = streams.map((s) => s.name)
  const expected =
    names.length > 0 ? `a list of streams defined under streams (${names.join(', ')})` : 'a list of streams defined under streams (none is defined)'
  const list = typeof raw === 'string' ? [raw] : raw
  if (!Array.isArray(list) || list.length === 0) ctx.bad(path, raw, expected)
  list.forEach((s: unknown, i) => {
    if (typeof s !== 'string' || !names.includes(s)) ctx.bad(`${path}[${i}]`, s, expected)
  })
  return [...new Set(list as string[])]
}

function parseOne(ctx: SectionContext, path: string, raw: unknown, streams: StreamConfig[]): BridgeConfig {
  const kinds = [...DRIVERS.keys()].join(', ')
  const head = ctx.mapping(path, raw, [...new Set([...OUT_KEYS, ...IN_KEYS])], `a mapping with name, kind, direction and target (out) or source (in)`)
  const name = head.name
  if (typeof name !== 'string' || !isValidName(name)) ctx.bad(`${path}.name`, name, NAME_RULE)
  const kind = head.kind
  const driver = typeof kind === 'string' ? DRIVERS.get(kind) : undefined
  if (!driver) ctx.bad(`${path}.kind`, kind, `one of ${kinds} (there is no Kafka bridge: see the README)`)
  const direction = head.direction
  if (direction !== 'out' && direction !== 'in') ctx.bad(`${path}.direction`, direction, "'out' (log -> target) or 'in' (source -> Culex)")
  // the keys of the other direction are refused by name, not ignored
  const r = ctx.mapping(
    path,
    raw,
    direction === 'out' ? OUT_KEYS : IN_KEYS,
    direction === 'out' ? 'an outbound bridge: name, kind, direction, streams, target, ...' : 'an inbound bridge: name, kind, direction, source, retry'
  )
  const retry = parseRetry(ctx, `${path}.retry`, r.retry)
  if (direction === 'in') {
    if (!driver.parseSource) ctx.bad(`${path}.direction`, direction, `'out': a ${driver.kind} bridge has no inbound direction`)
    if (r.source === undefined) ctx.bad(`${path}.source`, r.source, `the ${driver.kind} source (a mapping)`)
    return { name, kind: driver.kind, direction, retry, source: driver.parseSource(r.source, ctx, `${path}.source`) }
  }
  if (!driver.parseTarget) ctx.bad(`${path}.direction`, direction, `'in': a ${driver.kind} bridge has no outbound direction`)
  if (r.target === undefined) ctx.bad(`${path}.target`, r.target, `the ${driver.kind} target (a mapping)`)
  let startAt = BRIDGE_DEFAULTS.startAt
  if (r['start-at'] !== undefined) {
    if (r['start-at'] !== 'earliest' && r['start-at'] !== 'latest') ctx.bad(`${path}.start-at`, r['start-at'], "'earliest' or 'latest'")
    startAt = r['start-at']
  }
  let batchSize = BRIDGE_DEFAULTS.batchSize
  if (r['batch-size'] !== undefined) {
    const n = positiveInteger(r['batch-size'])
    if (n === null || n > MAX_BATCH_SIZE) ctx.bad(`${path}.batch-size`, r['batch-size'], `an integer from 1 to ${MAX_BATCH_SIZE}`)
    batchSize = n
  }
  const list = parseStreams(ctx, `${path}.streams`, r.streams, streams)
  let deadLetter: string | null = null
  if (r['dead-letter'] !== undefined && r['dead-letter'] !== null) {
    const d = r['dead-letter']
    if (typeof d !== 'string' || !isValidName(d)) ctx.bad(`${path}.dead-letter`, d, `a stream name (${NAME_RULE}), or null for <stream>.dlq`)
    if (list.includes(d)) ctx.bad(`${path}.dead-letter`, d, 'a stream the bridge does not carry (its dead letters would be carried again)')
    deadLetter = d
  }
  for (const s of list) {
    const dlq = deadLetter ?? `${s}.dlq`
    if (!isValidName(dlq)) ctx.bad(`${path}.dead-letter`, r['dead-letter'], `a stream name: "${dlq}" (the default for ${s}) is too long`)
  }
  return {
    name,
    kind: driver.kind,
    direction,
    streams: list,
    startAt,
    batchSize,
    retry,
    deadLetter,
    target: driver.parseTarget(r.target, ctx, `${path}.target`)
  }
}

/** The `bridges` list; names are unique, streams must be defined. */
export function parseBridges(raw: unknown, ctx: SectionContext, streams: StreamConfig[]): BridgeConfig[] {
  if (raw === null || raw === undefined) return []
  if (!Array.isArray(raw)) ctx.bad('bridges', raw, 'a list of bridges ({ name, kind, direction, ... })')
  const seen = new Set<string>()
  return raw.map((value: unknown, i) => {
    const b = parseOne(ctx, `bridges[${i}]`, value, streams)
    if (seen.has(b.name)) ctx.bad(`bridges[${i}].name`, b.name, 'a name no other bridge has')
    seen.add(b.name)
    return b
  })
}
