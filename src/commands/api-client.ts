// A small client of the gateway's HTTP API, for the CLI commands.
import type { ApiRecord } from '../admin/encoding.js'

export type { ApiRecord }

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>
  ) {
    super(typeof body.message === 'string' ? body.message : `HTTP ${status}`)
    this.name = 'ApiError'
  }
}

export class ApiClient {
  constructor(readonly baseUrl: string) {}

  async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    let res: Response
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal
      })
    } catch (err) {
      if (signal?.aborted) throw err
      throw new Error(`cannot reach the Culex API at ${this.baseUrl} (${(err as Error).message}); is the gateway running, and is --url right?`)
    }
    const text = await res.text()
    const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {}
    if (!res.ok) throw new ApiError(res.status, parsed)
    return parsed as T
  }
}


/** --from / --to values: earliest, latest, an offset, or an ISO 8601 time. */
export type PositionArg = 'earliest' | 'latest' | { offset: number } | { timestamp: number }

export function parsePosition(raw: string, flag: string): PositionArg {
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
