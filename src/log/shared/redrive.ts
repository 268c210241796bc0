import type { Headers, Log, LogRecord } from '../types.js'
import { DLQ_HEADERS } from './dead-letters.js'
import { ShareError } from './types.js'

// Redrive: dead letters back into the streams they came from. Each dead letter goes back to its
// original stream and partition (so its key keeps its order there), without the dead-letter
// headers and with one naming where it was. Appends are idempotent per request id and dead letter
// (Log#appendOnce), so a request retried with the same id, or resumed after a crash, redrives each
// dead letter once, within the log's dedup window.

export const REDRIVEN_FROM = 'culex-redriven-from'

/** Dead letters scanned per request at most; `next` says where to go on. */
export const MAX_REDRIVE_SCAN = 10_000

export interface RedriveFilter {
  /** Only dead letters from this stream. */
  stream?: string
  key?: string
  /** 'max-deliveries' or 'rejected'. */
  reason?: string
  /** Only dead letters whose last error contains this. */
  error?: string
}

export interface RedriveRequest {
  /** Names the request: the same id again redrives nothing twice. */
  requestId: string
  /** One partition of the dead-letter stream, or all. */
  partition?: number
  /** First offset to look at (default: the partition's start). */
  fromOffset?: number
  /** Offset to stop before (default: the end when the request starts). */
  toOffset?: number
  filter?: RedriveFilter
  /** Dead letters to look at, across partitions (default and maximum MAX_REDRIVE_SCAN). */
  limit?: number
}

export interface RedriveResult {
  requestId: string
  scanned: number
  redriven: number
  /** Already redriven by this request id. */
  duplicates: number
  /** Not matching the filter, or not a dead letter (no origin headers). */
  skipped: number
  /** Per partition, where the scan stopped (the end offset when it reached it). */
  next: Array<{ partition: number; offset: number }>
}

function matches(r: LogRecord, filter: RedriveFilter | undefined): boolean {
  if (!filter) return true
  if (filter.stream !== undefined && r.headers[DLQ_HEADERS.stream] !== filter.stream) return false
  if (filter.key !== undefined && r.key !== filter.key) return false
  if (filter.reason !== undefined && r.headers[DLQ_HEADERS.reason] !== filter.reason) return false
  if (filter.error !== undefined && !(r.headers[DLQ_HEADERS.error] ?? '').includes(filter.error)) return false
  return true
}

function originalHeaders(r: LogRecord, dlq: string): Headers {
  const headers: Headers = {}
  const ours = new Set<string>(Object.values(DLQ_HEADERS))
  for (const [k, v] of Object.entries(r.headers)) if (!ours.has(k)) headers[k] = v
  headers[REDRIVEN_FROM] = `${dlq}/${r.partition}/${r.offset}`
  return headers
}

/**
 * Redrives the dead letters of `dlq` that match. `checkProduce` is called for each target stream
 * and throws to refuse it: a dead letter's origin is a header, which whoever could write the
 * dead-letter stream could set.
 */
export async function redrive(log: Log, dlq: string, request: RedriveRequest, checkProduce: (stream: string) => void): Promise<RedriveResult> {
  const info = await log.describeStream(dlq)
  const partitions = request.partition === undefined ? info.partitions : info.partitions.filter((p) => p.partition === request.partition)
  if (partitions.length === 0)
    throw new ShareError('INVALID_ARGUMENT', `partition ${request.partition}: ${dlq} has partitions 0 to ${info.partitions.length - 1}`)
  let budget = Math.min(request.limit ?? MAX_REDRIVE_SCAN, MAX_REDRIVE_SCAN)
  const result: RedriveResult = { requestId: request.requestId, scanned: 0, redriven: 0, duplicates: 0, skipped: 0, next: [] }
  for (const p of partitions) {
    let offset = Math.max(request.fromOffset ?? p.startOffset, p.startOffset)
    const end = Math.min(request.toOffset ?? p.endOffset, p.endOffset)
    while (offset < end && budget > 0) {
      const records = (await log.read(dlq, p.partition, offset, { limit: Math.min(budget, 500) })).filter((r) => r.offset < end)
      if (records.length === 0) break
      for (const r of records) {
        budget--
        result.scanned++
        offset = r.offset + 1
        const target = r.headers[DLQ_HEADERS.stream]
        const partition = Number(r.headers[DLQ_HEADERS.partition])
        if (target === undefined || !Number.isInteger(partition) || !matches(r, request.filter)) {
          result.skipped++
          continue
        }
        checkProduce(target)
        const targetInfo = await log.describeStream(target)
        const input = { key: r.key, value: r.value, headers: originalHeaders(r, dlq), topic: r.topic, qos: r.qos, clientId: r.clientId }
        const once = { id: `redrive/${request.requestId}/${dlq}/${r.partition}/${r.offset}`, fingerprint: 'redrive', onConflict: 'reject' as const }
        // the original partition, if the stream still has it; else the key decides
        const at = partition < targetInfo.partitions.length ? partition : undefined
        const { duplicate } = await log.appendOnce(target, [input], once, at)
        if (duplicate) result.duplicates++
        else result.redriven++
      }
    }
    result.next.push({ partition: p.partition, offset })
  }
  return result
}
