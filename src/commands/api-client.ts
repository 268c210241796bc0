// A small client of the gateway's HTTP API, for the CLI commands. Wire types: src/http/wire.ts.
import { ApiError, type ApiRecord, type OffsetSpec } from '../http/wire.js'

export { ApiError }

/** The gateway did not answer (not running, restarting, wrong --url). */
export class Unreachable extends Error {
  override name = 'Unreachable'
}

/** Credentials for the API: a bearer token, or a user of the password file (HTTP Basic). */
export interface ApiCredentials {
  token?: string
  user?: string
  password?: string
}

/** The Authorization header for these credentials, if any. */
export function authorization(credentials: ApiCredentials): string | undefined {
  if (credentials.token !== undefined && credentials.token !== '') return `Bearer ${credentials.token}`
  if (credentials.user !== undefined && credentials.user !== '') {
    return `Basic ${Buffer.from(`${credentials.user}:${credentials.password ?? ''}`).toString('base64')}`
  }
  return undefined
}

export class ApiClient {
  /** Whether the gateway has answered any request yet. */
  answered = false
  private readonly authorization: string | undefined

  constructor(
    readonly baseUrl: string,
    credentials: ApiCredentials = {}
  ) {
    this.authorization = authorization(credentials)
  }

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    // fetch keeps its abort listener on the signal it is given; a long-lived signal (a tail's) gets
    // a fresh one per request instead, linked for the request's duration only
    const local = new AbortController()
    const abort = (): void => local.abort()
    if (signal?.aborted) local.abort()
    signal?.addEventListener('abort', abort, { once: true })
    try {
      return await this.send<T>(method, path, body, local.signal)
    } finally {
      signal?.removeEventListener('abort', abort)
    }
  }

  private async send<T>(method: string, path: string, body: unknown, signal: AbortSignal): Promise<T> {
    let res: Response
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method,
        headers: {
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...(this.authorization === undefined ? {} : { authorization: this.authorization })
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal
      })
    } catch (err) {
      if (signal.aborted) throw err
      throw new Unreachable(`cannot reach the Culex API at ${this.baseUrl} (${causeOf(err)}); is the gateway running, and is --url right?`)
    }
    this.answered = true
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      if (signal.aborted) throw err
      throw new Unreachable(`the Culex API at ${this.baseUrl} closed the connection (${causeOf(err)})`)
    }
    const parsed: unknown = text ? JSON.parse(text) : {}
    if (!res.ok) throw ApiError.fromResponse(res.status, parsed)
    return parsed as T
  }
}

function causeOf(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause
  return cause?.code ?? cause?.message ?? (err as Error).message
}

/** Whether a command should wait and try again: the gateway is down or restarting. */
export function isRetriable(err: unknown): boolean {
  return err instanceof Unreachable || (err instanceof ApiError && err.statusCode >= 500)
}

/** --from / --to values: earliest, latest, an offset, or an ISO 8601 time. */
export function parsePosition(raw: string, flag: string): OffsetSpec {
  if (raw === 'earliest' || raw === 'latest') return raw
  if (/^\d+$/.test(raw)) return { offset: Number(raw) }
  const ts = Date.parse(raw)
  if (!Number.isNaN(ts) && /^\d{4}-\d{2}-\d{2}/.test(raw)) return { timestamp: ts }
  throw new Error(`invalid ${flag} "${raw}": expected earliest, latest, an offset (e.g. 42) or an ISO 8601 time (e.g. 2026-11-24T10:00:00Z)`)
}

export function formatRecord(r: ApiRecord, json: boolean): string {
  if (json) return JSON.stringify(r)
  return `${r.stream}/${r.partition}@${r.offset} ${new Date(r.timestamp).toISOString()} key=${r.key ?? '-'} topic=${r.topic ?? '-'} ${r.value}`
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no listener behind either way. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** Exponential backoff with full jitter (250 ms doubling up to 5 s), as AWS recommends. */
export class Backoff {
  private attempt = 0
  constructor(
    private readonly baseMs = 250,
    private readonly capMs = 5000
  ) {}

  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt++)
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
  }

  reset(): void {
    this.attempt = 0
  }
}
