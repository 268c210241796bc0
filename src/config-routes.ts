// The structured config keys `streams` and `routes` (config file only; YAML or JSON).
// Every error names the exact path of the bad value, e.g. `routes[1].key` or
// `streams.telemetry.retention.max-age`, and where it came from.
//
//   streams:
//     telemetry:
//       partitions: 4            # 1..1024, default 1
//       retention:
//         max-age: 7d            # ms, or 500ms / 30s / 15m / 12h / 7d; null or absent = no limit
//         max-bytes: 1GiB        # per partition; bytes, or 10kB / 10KiB / MB / MiB / GB / GiB / TB / TiB
//         max-records: 1000000   # per partition
//   routes:
//     - filter: devices/+/telemetry
//       stream: telemetry
//       key: topic-level:2       # topic-level:N, client-id or none (default)

import { isValidName } from './log/log-keys.js'
import type { RetentionPolicy, StreamConfig } from './log/types.js'

/** How a routed publish gets its record key (the key picks the partition; no key = round robin). */
export type RouteKey = { kind: 'topic-level'; level: number } | { kind: 'client-id' } | { kind: 'none' }

/** Publishes whose topic matches `filter` are appended to `stream`. */
export interface RouteConfig {
  filter: string
  stream: string
  key: RouteKey
}

/** Thrown with the full message; config.ts turns it into a ConfigError. */
export class StructuredConfigError extends Error {}

export const MAX_PARTITIONS = 1024
const STREAM_KEYS = ['partitions', 'retention'] as const
const RETENTION_KEYS = ['max-age', 'max-bytes', 'max-records'] as const
const ROUTE_KEYS = ['filter', 'stream', 'key'] as const

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const BYTE_UNITS: Record<string, number> = {
  B: 1,
  kB: 1e3,
  KiB: 2 ** 10,
  MB: 1e6,
  MiB: 2 ** 20,
  GB: 1e9,
  GiB: 2 ** 30,
  TB: 1e12,
  TiB: 2 ** 40
}

class Context {
  constructor(readonly origin: string) {}

  bad(path: string, raw: unknown, expected: string): never {
    throw new StructuredConfigError(`invalid value for ${path} in ${this.origin}: ${show(raw)}; expected ${expected}`)
  }

  /** A mapping with only the known keys. */
  mapping(path: string, raw: unknown, known: readonly string[], expected: string): Record<string, unknown> {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) this.bad(path, raw, expected)
    for (const k of Object.keys(raw)) {
      if (!known.includes(k)) {
        throw new StructuredConfigError(`unknown key "${k}" in ${path} in ${this.origin}; known keys: ${known.join(', ')}`)
      }
    }
    return raw as Record<string, unknown>
  }
}

function show(raw: unknown): string {
  return raw === undefined ? 'undefined' : JSON.stringify(raw)
}

/** `streams.telemetry`, or `streams["a.b"]` when the name would read as a path. */
function streamPath(name: string): string {
  return /^[A-Za-z0-9_-]+$/.test(name) ? `streams.${name}` : `streams[${JSON.stringify(name)}]`
}

function positiveInteger(raw: unknown): number | null {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN
  return Number.isSafeInteger(n) && n >= 1 ? n : null
}

/** Milliseconds from a number (ms) or a duration string; null when not valid. */
export function parseDuration(raw: unknown): number | null {
  const plain = positiveInteger(raw)
  if (plain !== null) return plain
  if (typeof raw !== 'string') return null
  const m = /^(\d+)\s*(ms|s|m|h|d)$/.exec(raw.trim())
  if (!m) return null
  const ms = Number(m[1]) * DURATION_UNITS[m[2]!]!
  return Number.isSafeInteger(ms) && ms >= 1 ? ms : null
}

/** Bytes from a number or a size string (decimal kB/MB/GB/TB, binary KiB/MiB/GiB/TiB); null when not valid. */
export function parseByteSize(raw: unknown): number | null {
  const plain = positiveInteger(raw)
  if (plain !== null) return plain
  if (typeof raw !== 'string') return null
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/.exec(raw.trim())
  const unit = m ? BYTE_UNITS[m[2]!] : undefined
  if (!m || unit === undefined) return null
  const bytes = Math.floor(Number(m[1]) * unit)
  return Number.isSafeInteger(bytes) && bytes >= 1 ? bytes : null
}

/** Why a topic filter is invalid, or null when it is a valid MQTT topic filter. */
export function topicFilterProblem(filter: string): string | null {
  if (filter.length === 0) return 'it is empty'
  if (filter.includes('\u0000')) return 'it contains U+0000'
  if (Buffer.byteLength(filter, 'utf8') > 65535) return 'it is longer than 65535 bytes'
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return "'#' must be a whole level and the last one"
    if (level.includes('+') && level !== '+') return "'+' must be a whole level"
  }
  return null
}

function parseRetention(ctx: Context, path: string, raw: unknown): RetentionPolicy {
  const none: RetentionPolicy = { maxAgeMs: null, maxBytes: null, maxRecords: null }
  if (raw === null || raw === undefined) return none
  const r = ctx.mapping(path, raw, RETENTION_KEYS, 'a mapping with max-age, max-bytes and/or max-records')
  const limit = (k: (typeof RETENTION_KEYS)[number], parse: (v: unknown) => number | null, expected: string): number | null => {
    const v = r[k]
    if (v === null || v === undefined) return null
    return parse(v) ?? ctx.bad(`${path}.${k}`, v, `${expected}, or null for no limit`)
  }
  return {
    maxAgeMs: limit('max-age', parseDuration, 'a positive number of milliseconds or a duration such as 500ms, 30s, 15m, 12h, 7d'),
    maxBytes: limit('max-bytes', parseByteSize, 'a positive number of bytes or a size such as 10kB, 10KiB, 100MB, 100MiB, 1GB, 1GiB'),
    maxRecords: limit('max-records', positiveInteger, 'a positive integer')
  }
}

/** The `streams` mapping: name -> { partitions, retention }. */
export function parseStreams(raw: unknown, origin: string): StreamConfig[] {
  const ctx: Context = new Context(origin)
  if (raw === null || raw === undefined) return []
  if (typeof raw !== 'object' || Array.isArray(raw)) ctx.bad('streams', raw, 'a mapping of stream names to stream settings')
  const out: StreamConfig[] = []
  for (const [name, value] of Object.entries(raw)) {
    if (!isValidName(name)) {
      throw new StructuredConfigError(
        `invalid stream name ${JSON.stringify(name)} under streams in ${origin}; expected 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit`
      )
    }
    const path = streamPath(name)
    // `telemetry:` with nothing under it is a stream with the defaults
    const s = value === null ? {} : ctx.mapping(path, value, STREAM_KEYS, 'a mapping with partitions and/or retention')
    let partitions = 1
    if (s.partitions !== undefined) {
      const n = positiveInteger(s.partitions)
      if (n === null || n > MAX_PARTITIONS) ctx.bad(`${path}.partitions`, s.partitions, `an integer from 1 to ${MAX_PARTITIONS}`)
      partitions = n
    }
    out.push({ name, partitions, retention: parseRetention(ctx, `${path}.retention`, s.retention) })
  }
  return out
}

function parseRouteKey(ctx: Context, path: string, raw: unknown, filter: string): RouteKey {
  const expected = 'topic-level:N (N >= 1, the N-th level of the topic), client-id or none'
  if (raw === null || raw === undefined || raw === 'none') return { kind: 'none' }
  if (raw === 'client-id') return { kind: 'client-id' }
  const m = typeof raw === 'string' ? /^topic-level:(\d+)$/.exec(raw) : null
  const level = m ? positiveInteger(m[1]) : null
  if (level === null) ctx.bad(path, raw, expected)
  // without '#', every matching topic has exactly as many levels as the filter
  const levels = filter.split('/')
  if (levels[levels.length - 1] !== '#' && level > levels.length) {
    ctx.bad(path, raw, `a level the filter ${JSON.stringify(filter)} has (1 to ${levels.length}), client-id or none`)
  }
  return { kind: 'topic-level', level }
}

/** The `routes` list; every route's stream must be one of `streams`. */
export function parseRoutes(raw: unknown, streams: StreamConfig[], origin: string): RouteConfig[] {
  const ctx: Context = new Context(origin)
  if (raw === null || raw === undefined) return []
  if (!Array.isArray(raw)) ctx.bad('routes', raw, 'a list of routes ({ filter, stream, key })')
  const names = new Set(streams.map((s) => s.name))
  return raw.map((value: unknown, i): RouteConfig => {
    const path = `routes[${i}]`
    const r = ctx.mapping(path, value, ROUTE_KEYS, 'a mapping with filter, stream and optionally key')
    const filterExpected = "an MQTT topic filter ('+' and '#' as whole levels, '#' only last), e.g. devices/+/telemetry"
    if (typeof r.filter !== 'string') ctx.bad(`${path}.filter`, r.filter, filterExpected)
    const problem = topicFilterProblem(r.filter)
    if (problem) ctx.bad(`${path}.filter`, r.filter, `${filterExpected}; ${problem}`)
    if (r.filter === '$SYS' || r.filter.startsWith('$SYS/')) {
      ctx.bad(`${path}.filter`, r.filter, 'a filter outside $SYS/ (broker status topics are never appended to the log)')
    }
    const defined = names.size > 0 ? `one of the streams defined under streams (${[...names].join(', ')})` : 'a stream defined under streams (none is defined)'
    if (typeof r.stream !== 'string' || !names.has(r.stream)) ctx.bad(`${path}.stream`, r.stream, defined)
    return { filter: r.filter, stream: r.stream, key: parseRouteKey(ctx, `${path}.key`, r.key, r.filter) }
  })
}
