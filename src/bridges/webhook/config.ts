import { BYTE_SIZE_EXPECTED, DURATION_EXPECTED, parseByteSize, parseDuration, type SectionContext } from '../../config/values.js'
import { envValue, secret, urlWithoutCredentials } from '../secrets.js'

// The `target:` of a webhook bridge (outbound only: there is no inbound webhook source, Culex
// takes HTTP input on its own produce API). Secrets (the HMAC key, header values such as an
// Authorization token) may come from the environment, and are left out when the target is
// serialised (toJSON), so a status page or a log line cannot show them.

export interface WebhookTarget {
  /** Where the batches are POSTed (http: or https:). */
  url: string
  /** Per request: from sending to the end of the response (ms). */
  timeoutMs: number
  /** The HMAC-SHA256 key of the Culex-Signature header; null = requests are not signed. */
  secret: string | null
  /** Extra request headers (Authorization, ...), by their name as written in the config. */
  headers: Record<string, string>
  /** Most bytes of one request body; a larger batch is sent in several requests. */
  maxBatchBytes: number
}

const KEYS = ['url', 'timeout', 'secret', 'secret-env', 'headers', 'max-batch-bytes'] as const

export const DEFAULT_TIMEOUT_MS = 10_000
/** A request that takes longer than this is not an answer a log bridge waits for. */
export const MAX_TIMEOUT_MS = 10 * 60_000
/** 1 MiB: within the default body limit of common receivers (nginx: 1m). */
export const DEFAULT_MAX_BATCH_BYTES = 2 ** 20
export const MAX_MAX_BATCH_BYTES = 2 ** 30

/** Headers the sink writes itself (and Host and framing, which fetch owns). */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'transfer-encoding',
  'connection',
  'host',
  'culex-signature',
  'culex-bridge',
  'idempotency-key'
])

// RFC 9110 §5.1: a field name is a token; §5.5: a field value has no CR, LF or NUL.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const BAD_FIELD_VALUE = /[\r\n\0]/

function parseUrl(ctx: SectionContext, path: string, raw: unknown): string {
  const expected = 'an http:// or https:// URL without user:password (give credentials in headers)'
  // fetch refuses a URL with credentials (Fetch standard, "new Request", step 5.4)
  return urlWithoutCredentials(ctx, path, raw, ['http:', 'https:'], expected).href
}

function parseHeaders(ctx: SectionContext, path: string, raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {}
  const expected = 'a mapping of header name to a value or to { env: NAME }'
  if (typeof raw !== 'object' || Array.isArray(raw)) ctx.bad(path, raw, expected)
  const headers: Record<string, string> = {}
  const seen = new Set<string>()
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const at = `${path}.${name}`
    const lower = name.toLowerCase()
    if (!TOKEN.test(name)) ctx.bad(at, name, "a header name (an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~)")
    if (RESERVED_HEADERS.has(lower)) ctx.bad(at, name, `a header the bridge does not set itself (not ${[...RESERVED_HEADERS].join(', ')})`)
    if (seen.has(lower)) ctx.bad(at, name, 'a header named once (names are case-insensitive)')
    seen.add(lower)
    let text: string
    if (typeof value === 'string' || typeof value === 'number') text = String(value)
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const env = ctx.mapping(at, value, ['env'], '{ env: NAME }')
      text = envValue(ctx, `${at}.env`, env.env)
    } else ctx.bad(at, value, 'a header value (text) or { env: NAME }')
    if (BAD_FIELD_VALUE.test(text)) ctx.bad(at, '(hidden)', 'a header value without CR, LF or NUL')
    headers[name] = text
  }
  return headers
}

/** Parses `target:` of a `kind: webhook` bridge. */
export function parseTarget(raw: unknown, ctx: SectionContext, path: string): WebhookTarget {
  const m = ctx.mapping(path, raw, KEYS, `a mapping with ${KEYS.join(', ')}`)
  if (m.url === undefined) ctx.bad(`${path}.url`, undefined, 'the URL to POST to (required)')
  const url = parseUrl(ctx, `${path}.url`, m.url)

  let timeoutMs = DEFAULT_TIMEOUT_MS
  if (m.timeout !== undefined) {
    const ms = parseDuration(m.timeout)
    if (ms === null || ms > MAX_TIMEOUT_MS) ctx.bad(`${path}.timeout`, m.timeout, `${DURATION_EXPECTED}, at most 10m`)
    timeoutMs = ms
  }

  const hmacKey = secret(ctx, m, path, 'secret')

  const headers = parseHeaders(ctx, `${path}.headers`, m.headers)

  let maxBatchBytes = DEFAULT_MAX_BATCH_BYTES
  if (m['max-batch-bytes'] !== undefined) {
    const bytes = parseByteSize(m['max-batch-bytes'])
    if (bytes === null || bytes < 1024 || bytes > MAX_MAX_BATCH_BYTES)
      ctx.bad(`${path}.max-batch-bytes`, m['max-batch-bytes'], `${BYTE_SIZE_EXPECTED}, from 1KiB to 1GiB`)
    maxBatchBytes = bytes
  }

  const target: WebhookTarget = { url, timeoutMs, secret: hmacKey, headers, maxBatchBytes }
  // not enumerable: the target stays a plain record to spread or compare
  Object.defineProperty(target, 'toJSON', {
    enumerable: false,
    value: () => ({
      url,
      timeoutMs,
      secret: hmacKey === null ? null : '(hidden)',
      headers: Object.fromEntries(Object.keys(headers).map((h) => [h, '(hidden)'])),
      maxBatchBytes
    })
  })
  return target
}
