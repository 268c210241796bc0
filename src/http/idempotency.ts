import { createHash } from 'node:crypto'
import { LogError, type AppendOnce, type Log, type RecordInput } from '../log/types.js'
import { badField } from './errors.js'
import { ApiError, IDEMPOTENCY_KEY_HEADER, type ProduceResponse } from './wire.js'

// Idempotent produce: `Idempotency-Key` (as Stripe's header, and the IETF httpapi draft's, whose
// quoted form is accepted too). The key is remembered per stream for the log's dedup window
// (`dedup-window`, 2 minutes by default, as NATS JetStream's duplicate window): a repeat appends
// nothing and is answered with the first request's offsets, each marked `duplicate: true`.
//
// The same key with another body is refused with 422 IDEMPOTENCY_CONFLICT (as Stripe does), not
// answered with the first request's offsets (as JetStream does): a client that reuses a key for
// other records has a bug, and answering 200 would tell it that records it never stored are stored.

/** As node gives it in request.headers. */
export const IDEMPOTENCY_HEADER = IDEMPOTENCY_KEY_HEADER.toLowerCase()
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255
const KEY_RULE = `1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters without spaces, quotes or backslashes (a UUID, say)`
const KEY_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** The request's Idempotency-Key, or null without one; a 400 naming the header when it is malformed. */
export function idempotencyKey(raw: string | string[] | undefined): string | null {
  if (raw === undefined) return null
  if (Array.isArray(raw)) throw badField('header', 'Idempotency-Key', `must be given once, not ${raw.length} times`)
  // the draft's structured-field form: "key"
  const key = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH || !KEY_PATTERN.test(key)) {
    throw badField('header', 'Idempotency-Key', `must be ${KEY_RULE}; got ${JSON.stringify(raw.length > 300 ? raw.slice(0, 300) + '...' : raw)}`)
  }
  return key
}

/**
 * The log's appendOnce for a keyed produce request: the id is `http 0x00 key` (MQTT's are
 * `mqtt ...`), the fingerprint a SHA-256 of the records as decoded (their encoding on the wire
 * does not matter), explicit partitions included.
 */
export function produceOnce(key: string, records: RecordInput[]): AppendOnce {
  const h = createHash('sha256')
  const length = Buffer.allocUnsafe(4)
  for (const r of records) {
    const headers = Object.entries(r.headers ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const meta = Buffer.from(JSON.stringify([r.key, r.partition ?? null, headers]), 'utf8')
    length.writeUInt32BE(meta.length)
    h.update(length).update(meta)
    length.writeUInt32BE(r.value.length)
    h.update(length).update(r.value)
  }
  return { id: `http\u0000${key}`, fingerprint: h.digest('base64url'), onConflict: 'reject' }
}

/** Appends a keyed produce request once; a conflict is a 422 that names the key. */
export async function produceIdempotent(log: Log, stream: string, records: RecordInput[], key: string): Promise<ProduceResponse & { duplicate: boolean }> {
  try {
    const { duplicate, results } = await log.appendOnce(stream, records, produceOnce(key, records))
    return { duplicate, offsets: results.map((r) => ({ ...r, duplicate })) }
  } catch (err) {
    if (!(err instanceof LogError) || err.code !== 'IDEMPOTENCY_CONFLICT') throw err
    throw new ApiError(
      422,
      'IDEMPOTENCY_CONFLICT',
      `Idempotency-Key ${JSON.stringify(key)} was used on stream ${stream} within the dedup window for other records; nothing was appended (a new request needs a new key)`,
      { field: IDEMPOTENCY_KEY_HEADER, in: 'header' }
    )
  }
}
