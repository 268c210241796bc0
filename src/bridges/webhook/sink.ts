import { isUtf8 } from 'node:buffer'
import { createHmac } from 'node:crypto'
import type { Headers, LogRecord } from '../../log/types.js'
import { packageVersion } from '../../version.js'
import type { DriverDeps, Outcome, Sink } from '../types.js'
import type { WebhookTarget } from './config.js'

// Outbound webhook: each batch is one POST of a JSON body { "records": [...] } to the target URL
// with Node's fetch (undici). One request is all or nothing: 2xx delivers every record in it;
// 408, 429, 5xx, a timeout or a connection error means 'retry'; any other answer refuses the
// batch, and a refused batch of several records is sent again one record at a time, so only the
// records the receiver refuses go to the dead letters. Redirects are not followed: following one
// would send the body, and its signature, to an address nobody configured.

/** A Retry-After longer than this is cut to it: the runner comes back, the receiver may say it again. */
export const MAX_RETRY_AFTER_MS = 10 * 60_000
/** How much of a refusing response is kept on the dead letter (culex-webhook-response). */
export const RESPONSE_KEPT_BYTES = 1024

/** What one request came to. */
type Answer =
  { kind: 'delivered' } | { kind: 'retry'; error: string; retryAfterMs?: number } | { kind: 'refused'; error: string; headers: Headers; redirect: boolean }

const USER_AGENT = `culex/${packageVersion()}`

/**
 * One record as JSON. The value is text when its bytes are valid UTF-8 (`"encoding": "utf-8"`),
 * else base64 (`"encoding": "base64"`): either way the receiver gets the exact bytes back.
 */
export function encodeRecord(record: LogRecord): string {
  const text = isUtf8(record.value)
  return JSON.stringify({
    id: `${record.stream}/${record.partition}/${record.offset}`,
    stream: record.stream,
    partition: record.partition,
    offset: record.offset,
    timestamp: new Date(record.timestamp).toISOString(),
    key: record.key,
    topic: record.topic,
    headers: record.headers,
    clientId: record.clientId,
    encoding: text ? 'utf-8' : 'base64',
    value: record.value.toString(text ? 'utf8' : 'base64')
  })
}

const BODY_OPEN = '{"records":['
const BODY_CLOSE = ']}'

/** `Culex-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (Stripe's scheme). */
export function signature(secret: string, body: Buffer, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.`).update(body).digest('hex')
  return `t=${unixSeconds},v1=${mac}`
}

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, in ms from now, capped at
 * MAX_RETRY_AFTER_MS; undefined when absent or not understood (the runner's backoff applies).
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined
  const v = value.trim()
  let ms: number
  if (/^\d+$/.test(v)) ms = Number(v) * 1000
  else {
    const at = Date.parse(v)
    if (Number.isNaN(at)) return undefined
    ms = Math.max(0, at - now)
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS)
}

/** The start of a response body, as text; the rest is not read. */
async function bodyStart(res: Response): Promise<string> {
  if (res.body === null) return ''
  // undici's body is a ReadableStream of bytes (typed as of any)
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const chunks: Uint8Array[] = []
  let bytes = 0
  try {
    while (bytes <= RESPONSE_KEPT_BYTES) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      bytes += value.byteLength
    }
  } finally {
    if (bytes > RESPONSE_KEPT_BYTES) await reader.cancel().catch(() => undefined)
  }
  const all = Buffer.concat(chunks)
  return bytes > RESPONSE_KEPT_BYTES ? `${all.subarray(0, RESPONSE_KEPT_BYTES).toString('utf8')}…` : all.toString('utf8')
}

/** The offsets a request spans (its records are never empty). */
function span(records: readonly LogRecord[]): { first: number; last: number } {
  return { first: records[0]?.offset ?? -1, last: records[records.length - 1]?.offset ?? -1 }
}

/** Read anew each time: an await may have passed since the last look (TS would narrow it to false). */
function aborted(signal: AbortSignal): boolean {
  return signal.aborted
}

function describe(err: unknown): string {
  // fetch fails with TypeError('fetch failed') and the socket's error as the cause
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err
  return cause instanceof Error ? cause.message : String(cause)
}

function statusLine(res: Response): string {
  return res.statusText ? `${res.status} ${res.statusText}` : String(res.status)
}

export class WebhookSink implements Sink {
  /**
   * Per stream/partition, the last request whose fate is unknown (timeout, 5xx, lost connection):
   * when the runner delivers again from its first record, the same records go in one request again,
   * so the Idempotency-Key and the body are the same as the first time, even when the log has
   * grown since and the batch is larger.
   */
  private readonly inDoubt = new Map<string, { first: number; last: number }>()

  constructor(
    private readonly target: WebhookTarget,
    private readonly deps: DriverDeps
  ) {}

  /** HTTP has no session: each deliver is its own request. */
  async connect(): Promise<void> {}

  async deliver(records: readonly LogRecord[], signal: AbortSignal): Promise<Outcome[]> {
    const first = records[0]
    if (first === undefined) return []
    const partitionKey = `${first.stream}/${first.partition}`
    const parts = records.map(encodeRecord)
    const sizes = parts.map((p) => Buffer.byteLength(p))
    const outcomes: Outcome[] = []
    const retryRest = (error: string, retryAfterMs?: number): Outcome[] => {
      while (outcomes.length < records.length) outcomes.push(retryAfterMs === undefined ? { status: 'retry', error } : { status: 'retry', error, retryAfterMs })
      return outcomes
    }

    let doubt = this.inDoubt.get(partitionKey)
    if (doubt !== undefined && doubt.first !== first.offset) {
      this.inDoubt.delete(partitionKey)
      doubt = undefined
    }

    let i = 0
    while (i < records.length) {
      if (aborted(signal)) return retryRest('delivery aborted: the bridge is pausing or stopping')
      const end = this.chunkEnd(records, sizes, i, doubt)
      doubt = undefined
      if (end === i) {
        // a record that alone exceeds max-batch-bytes can never be sent
        outcomes.push({ status: 'rejected', error: `record encodes to ${sizes[i]} bytes of JSON, more than max-batch-bytes (${this.target.maxBatchBytes})` })
        i++
        continue
      }
      const batch = records.slice(i, end)
      const answer = await this.post(partitionKey, batch, parts.slice(i, end), signal)
      if (answer.kind === 'delivered') {
        this.inDoubt.delete(partitionKey)
        for (let j = i; j < end; j++) outcomes.push({ status: 'delivered' })
      } else if (answer.kind === 'retry') {
        this.inDoubt.set(partitionKey, span(batch))
        return retryRest(answer.error, answer.retryAfterMs)
      } else if (end - i === 1 || answer.redirect) {
        // a redirect is about the URL, not the records: sending them one by one changes nothing
        this.inDoubt.delete(partitionKey)
        for (let j = i; j < end; j++) outcomes.push({ status: 'rejected', error: answer.error, headers: answer.headers })
      } else {
        this.inDoubt.delete(partitionKey)
        this.deps.logger.warn(
          { bridge: this.deps.bridge, records: end - i, status: answer.headers['culex-webhook-status'] },
          'webhook receiver refused a batch: sending its records one at a time'
        )
        for (let j = i; j < end; j++) {
          if (aborted(signal)) return retryRest('delivery aborted: the bridge is pausing or stopping')
          const one = records.slice(j, j + 1)
          const single = await this.post(partitionKey, one, parts.slice(j, j + 1), signal)
          if (single.kind === 'delivered') outcomes.push({ status: 'delivered' })
          else if (single.kind === 'refused') outcomes.push({ status: 'rejected', error: single.error, headers: single.headers })
          else {
            this.inDoubt.set(partitionKey, span(one))
            return retryRest(single.error, single.retryAfterMs)
          }
        }
      }
      i = end
    }
    return outcomes
  }

  async close(): Promise<void> {
    this.inDoubt.clear()
  }

  /** The end (exclusive) of the request that starts at `start`: the request in doubt, else as many records as fit. */
  private chunkEnd(records: readonly LogRecord[], sizes: number[], start: number, doubt: { first: number; last: number } | undefined): number {
    if (doubt !== undefined) {
      const last = records.findIndex((r, j) => j >= start && r.offset === doubt.last)
      if (last >= start) return last + 1
    }
    let bytes = BODY_OPEN.length + BODY_CLOSE.length
    let end = start
    while (end < records.length) {
      const next = bytes + (sizes[end] ?? 0) + (end > start ? 1 : 0)
      if (next > this.target.maxBatchBytes) break
      bytes = next
      end++
    }
    return end
  }

  /** POSTs records as one request and classifies the answer. Never throws. */
  private async post(partitionKey: string, records: readonly LogRecord[], parts: readonly string[], signal: AbortSignal): Promise<Answer> {
    const { first, last } = span(records)
    const body = Buffer.from(`${BODY_OPEN}${parts.join(',')}${BODY_CLOSE}`)
    const headers: Record<string, string> = { ...this.target.headers }
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'user-agent')) headers['user-agent'] = USER_AGENT
    headers['content-type'] = 'application/json'
    // the same records give the same key on every attempt (see inDoubt)
    headers['idempotency-key'] = `${partitionKey}/${first}-${last}`
    headers['culex-bridge'] = this.deps.bridge
    if (this.target.secret !== null) headers['culex-signature'] = signature(this.target.secret, body, Math.floor(Date.now() / 1000))

    // Bounded per request, response body included. One controller with a timer and a listener
    // removed afterwards, rather than AbortSignal.any, which holds on to the long-lived deliver signal.
    const controller = new AbortController()
    const timeout = { fired: false }
    const timer = setTimeout(() => {
      timeout.fired = true
      controller.abort()
    }, this.target.timeoutMs)
    const onAbort = (): void => controller.abort()
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      if (aborted(signal)) controller.abort()
      const res = await fetch(this.target.url, { method: 'POST', body, headers, redirect: 'manual', signal: controller.signal })
      const status = res.status
      if (status >= 200 && status < 300) {
        // the status is the answer; the body is read (a little) only to keep the connection reusable
        await bodyStart(res).catch(() => undefined)
        return { kind: 'delivered' }
      }
      const text = await bodyStart(res)
      const said = text === '' ? '' : `: ${text.slice(0, 200)}`
      // RFC 9110 §15.5.9 (408), RFC 6585 §4 (429), §15.6 (5xx): the request may succeed later
      if (status === 408 || status === 429 || status >= 500) {
        const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'))
        const error = `webhook answered ${statusLine(res)}${said}`
        return retryAfterMs === undefined ? { kind: 'retry', error } : { kind: 'retry', error, retryAfterMs }
      }
      const dlq: Headers = { 'culex-webhook-status': String(status), 'culex-webhook-response': text }
      if (status >= 300 && status < 400) {
        const location = res.headers.get('location')
        if (location !== null) dlq['culex-webhook-location'] = location
        return {
          kind: 'refused',
          redirect: true,
          headers: dlq,
          error: `webhook answered ${statusLine(res)} (to ${location ?? 'no Location'}); redirects are not followed, as that would send the records elsewhere: set url to the final address`
        }
      }
      return { kind: 'refused', redirect: false, headers: dlq, error: `webhook refused the record: ${statusLine(res)}${said}` }
    } catch (err) {
      if (timeout.fired) return { kind: 'retry', error: `no answer from the webhook within ${this.target.timeoutMs} ms` }
      if (signal.aborted) return { kind: 'retry', error: 'delivery aborted: the bridge is pausing or stopping' }
      return { kind: 'retry', error: `cannot POST to the webhook: ${describe(err)}` }
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
  }
}
