import { CulexError } from '../../errors.js'
import { NAME_RULE, isValidName } from '../names.js'

// A shared group's configuration: one object, read once (as a NATS JetStream consumer config).
// Every field but `streams` has a default; `parseShareConfig` names the field it refuses.

export type Ordering = 'per-key' | 'none'

/** Exponential backoff: initialMs × multiplier^(n-1), at most maxMs, ± jitter (a fraction). */
export interface ExponentialBackoff {
  initialMs: number
  maxMs: number
  multiplier: number
  jitter: number
}

/** A list of delays (the last one repeats), or exponential. */
export type Backoff = number[] | ExponentialBackoff

export type StartPosition = 'earliest' | 'latest'

export interface ShareGroupConfig {
  /** The streams the group consumes. */
  streams: string[]
  /** How long a fetched record stays locked to its consumer before it is available again. */
  ackWaitMs: number
  /** Deliveries before a record goes to the dead-letter stream (RocketMQ's default, 16). */
  maxDeliveries: number
  /** Delay before a record that was nacked or whose lock expired is handed out again. */
  backoff: Backoff
  /** Records per partition between the acknowledged floor and the fetch position that are not finished. */
  maxAckPending: number
  /** Stream for dead letters; null: `<stream>.dlq` for each stream. */
  deadLetter: string | null
  /** per-key: a record is not handed out while an earlier record with its key is unfinished. */
  ordering: Ordering
  /** Where a partition starts when the group first sees it. */
  startAt: StartPosition
  /** Lag (records not yet finished) at which the group reports an alert; null: none. */
  lagAlert: number | null
}

export const SHARE_DEFAULTS: Omit<ShareGroupConfig, 'streams'> = {
  ackWaitMs: 30_000,
  maxDeliveries: 16,
  backoff: [1_000, 5_000, 30_000, 60_000],
  maxAckPending: 1_000,
  deadLetter: null,
  ordering: 'per-key',
  startAt: 'earliest',
  lagAlert: null
}

export const SHARE_LIMITS = {
  maxAckWaitMs: 12 * 3600_000,
  maxDeliveries: 1_000,
  maxDelayMs: 7 * 24 * 3600_000,
  maxAckPending: 100_000,
  maxBackoffSteps: 64
} as const

export type ShareConfigErrorCode = 'INVALID_ARGUMENT'

export class ShareConfigError extends CulexError<ShareConfigErrorCode> {
  constructor(
    readonly field: string,
    message: string
  ) {
    super('INVALID_ARGUMENT', `${field}: ${message}`, { field })
  }
}

function integer(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ShareConfigError(field, `expected an integer from ${min} to ${max}`)
  return v
}

function backoffOf(v: unknown): Backoff {
  if (Array.isArray(v)) {
    if (v.length === 0 || v.length > SHARE_LIMITS.maxBackoffSteps) throw new ShareConfigError('backoff', `expected 1 to ${SHARE_LIMITS.maxBackoffSteps} delays`)
    return v.map((d, i) => integer(`backoff[${i}]`, d, 0, SHARE_LIMITS.maxDelayMs))
  }
  if (typeof v !== 'object' || v === null) throw new ShareConfigError('backoff', 'expected a list of delays (ms) or { initialMs, maxMs, multiplier, jitter }')
  const o = v as Record<string, unknown>
  for (const k of Object.keys(o)) if (!['initialMs', 'maxMs', 'multiplier', 'jitter'].includes(k)) throw new ShareConfigError(`backoff.${k}`, 'unknown field')
  const initialMs = integer('backoff.initialMs', o.initialMs, 0, SHARE_LIMITS.maxDelayMs)
  const maxMs = integer('backoff.maxMs', o.maxMs, initialMs, SHARE_LIMITS.maxDelayMs)
  const multiplier = o.multiplier ?? 2
  if (typeof multiplier !== 'number' || !(multiplier >= 1 && multiplier <= 100))
    throw new ShareConfigError('backoff.multiplier', 'expected a number from 1 to 100')
  const jitter = o.jitter ?? 0
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) throw new ShareConfigError('backoff.jitter', 'expected a fraction from 0 to 1')
  return { initialMs, maxMs, multiplier, jitter }
}

const FIELDS = ['streams', ...Object.keys(SHARE_DEFAULTS)]

/** A config from untrusted input (the HTTP API, the stored JSON): defaults filled in, every field checked. */
export function parseShareConfig(input: unknown): ShareGroupConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ShareConfigError('config', 'expected an object')
  const o = input as Record<string, unknown>
  for (const k of Object.keys(o)) if (!FIELDS.includes(k)) throw new ShareConfigError(k, `unknown field; known: ${FIELDS.join(', ')}`)
  const streams = o.streams
  if (!Array.isArray(streams) || streams.length === 0 || streams.length > 64) throw new ShareConfigError('streams', 'expected 1 to 64 stream names')
  for (const [i, s] of streams.entries()) if (typeof s !== 'string' || !isValidName(s)) throw new ShareConfigError(`streams[${i}]`, `expected ${NAME_RULE}`)
  const deadLetter = o.deadLetter ?? null
  if (deadLetter !== null && (typeof deadLetter !== 'string' || !isValidName(deadLetter)))
    throw new ShareConfigError('deadLetter', `expected null or ${NAME_RULE}`)
  const ordering = o.ordering ?? SHARE_DEFAULTS.ordering
  if (ordering !== 'per-key' && ordering !== 'none') throw new ShareConfigError('ordering', "expected 'per-key' or 'none'")
  const startAt = o.startAt ?? SHARE_DEFAULTS.startAt
  if (startAt !== 'earliest' && startAt !== 'latest') throw new ShareConfigError('startAt', "expected 'earliest' or 'latest'")
  const lagAlert = o.lagAlert === undefined || o.lagAlert === null ? null : integer('lagAlert', o.lagAlert, 1, Number.MAX_SAFE_INTEGER)
  return {
    streams: [...new Set(streams as string[])],
    ackWaitMs: o.ackWaitMs === undefined ? SHARE_DEFAULTS.ackWaitMs : integer('ackWaitMs', o.ackWaitMs, 100, SHARE_LIMITS.maxAckWaitMs),
    maxDeliveries: o.maxDeliveries === undefined ? SHARE_DEFAULTS.maxDeliveries : integer('maxDeliveries', o.maxDeliveries, 1, SHARE_LIMITS.maxDeliveries),
    backoff: o.backoff === undefined ? [...(SHARE_DEFAULTS.backoff as number[])] : backoffOf(o.backoff),
    maxAckPending: o.maxAckPending === undefined ? SHARE_DEFAULTS.maxAckPending : integer('maxAckPending', o.maxAckPending, 1, SHARE_LIMITS.maxAckPending),
    deadLetter,
    ordering,
    startAt,
    lagAlert
  }
}

/** The delay before delivery number `deliveries + 1`, after `deliveries` failed ones (>= 1). */
export function backoffDelay(backoff: Backoff, deliveries: number, random: () => number = Math.random): number {
  const n = Math.max(1, deliveries)
  if (Array.isArray(backoff)) return backoff[Math.min(n, backoff.length) - 1] ?? 0
  const raw = Math.min(backoff.maxMs, backoff.initialMs * backoff.multiplier ** (n - 1))
  const spread = raw * backoff.jitter
  return Math.max(0, Math.round(raw - spread + 2 * spread * random()))
}

/** The dead-letter stream of records from `stream`. */
export function deadLetterStream(config: ShareGroupConfig, stream: string): string {
  return config.deadLetter ?? `${stream}.dlq`
}
