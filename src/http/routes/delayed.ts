import { CulexError } from '../../errors.js'
import type { RecordInput } from '../../log/types.js'
import { ApiError, badField } from '../errors.js'
import { parseTimestamp } from '../positions.js'
import type { ScheduledResponse } from '../wire.js'

// Delayed produce: POST /api/v1/streams/:stream/records with `deliverAt` (ms since the epoch or an
// ISO 8601 / RFC 3339 time) or `delayMs`. The records are stored durably and appended to the
// stream at their due time; the answer is 202 with an id per record and the due time, not offsets.

/** The delayed queue as the HTTP API sees it (src/delayed/queue.ts implements it). */
export interface DelayedAppends {
  /** Longest delay accepted (ms, delayed-max-delay). */
  readonly maxDelayMs: number
  /**
   * Stores records to append to `stream` at `dueAt` (ms since the epoch); resolves, once they are
   * durable, to one id per record. Rejects with a CulexError `DELAYED_FULL` past delayed-max-messages.
   */
  schedule(items: Array<{ dueAt: number; entry: DelayedRecordEntry }>): Promise<string[]>
}

/** A record to append later, as src/delayed/entry.ts stores it. */
export interface DelayedRecordEntry {
  kind: 'record'
  stream: string
  partition: number | null
  key: string | null
  value: Buffer
  headers: Record<string, string>
}

/** The body fields of a delayed produce. */
export interface DelayFields {
  deliverAt?: string | number
  delayMs?: number
}

export const delayProperties = {
  deliverAt: { type: ['string', 'integer'] },
  delayMs: { type: 'integer', minimum: 0 }
} as const

/**
 * When the records are due (ms since the epoch), or null for an ordinary produce. A time in the
 * past is due at once.
 */
export function dueTime(body: DelayFields, delayed: DelayedAppends | undefined, now: number = Date.now()): number | null {
  if (body.deliverAt === undefined && body.delayMs === undefined) return null
  const field = body.deliverAt !== undefined ? 'deliverAt' : 'delayMs'
  if (!delayed) throw new ApiError(501, 'NOT_AVAILABLE', `delayed delivery (${field}) is off on this server (delayed-enabled is false)`, { field })
  if (body.deliverAt !== undefined && body.delayMs !== undefined) throw badField('body', 'deliverAt', 'cannot be given with delayMs; give one of them')
  const max = delayed.maxDelayMs
  if (body.delayMs !== undefined) {
    if (body.delayMs > max) throw badField('body', 'delayMs', `must be at most ${max} (delayed-max-delay, ${describeMs(max)})`)
    return now + body.delayMs
  }
  const at = parseTimestamp(body.deliverAt, 'body', 'deliverAt')
  if (at > now + max) {
    throw badField('body', 'deliverAt', `must be at most delayed-max-delay (${describeMs(max)}) from now, ${new Date(now + max).toISOString()}`)
  }
  return Math.max(at, now)
}

/** Stores the records for later; the 202 answer. */
export async function scheduleRecords(
  delayed: DelayedAppends,
  stream: string,
  inputs: Array<{ input: RecordInput; partition: number | undefined }>,
  dueAt: number
): Promise<ScheduledResponse> {
  const items = inputs.map(({ input, partition }) => ({
    dueAt,
    entry: { kind: 'record' as const, stream, partition: partition ?? null, key: input.key, value: input.value, headers: input.headers ?? {} }
  }))
  let ids: string[]
  try {
    ids = await delayed.schedule(items)
  } catch (err) {
    // a bound on what the server holds for everyone, not on this caller's rate: 507, retriable
    const code = err instanceof CulexError ? (err as CulexError).code : null
    if (err instanceof CulexError && code === 'DELAYED_FULL') throw new ApiError(507, code, err.message, { ...err.details, retriable: true })
    throw err
  }
  return { scheduled: ids.map((id) => ({ id, deliverAt: dueAt })) }
}

function describeMs(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000]
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}
