// The partitioned log's sections, in the config file only (YAML or JSON). Every error names the
// exact path of the bad value, e.g. `routes[1].key` or `streams.telemetry.retention.max-age`.
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

import { MAX_PARTITIONS, NAME_RULE, isValidName } from '../../log/names.js'
import type { RetentionPolicy, StreamConfig } from '../../log/types.js'
import { isSysTopic, levelCount, topicFilterProblem } from '../../mqtt/topics.js'
import type { RouteConfig, RouteKey } from '../../routing/routes.js'
import { ConfigError } from '../errors.js'
import type { Section } from '../section.js'
import { BYTE_SIZE_EXPECTED, DURATION_EXPECTED, parseByteSize, parseDuration, positiveInteger, type SectionContext } from '../values.js'

export interface LogSection {
  /** Streams of the log, from the config file's `streams` mapping. */
  streams: StreamConfig[]
  /** MQTT topic filter -> stream, from the `routes` list (order matters: the first match's key wins). */
  routes: RouteConfig[]
}

const STREAM_KEYS = ['partitions', 'retention'] as const
const RETENTION_KEYS = ['max-age', 'max-bytes', 'max-records'] as const
const ROUTE_KEYS = ['filter', 'stream', 'key'] as const

/** `streams.telemetry`, or `streams["a.b"]` when the name would read as a path. */
function streamPath(name: string): string {
  return /^[A-Za-z0-9_-]+$/.test(name) ? `streams.${name}` : `streams[${JSON.stringify(name)}]`
}

function parseRetention(ctx: SectionContext, path: string, raw: unknown): RetentionPolicy {
  if (raw === null || raw === undefined) return { maxAgeMs: null, maxBytes: null, maxRecords: null }
  const r = ctx.mapping(path, raw, RETENTION_KEYS, 'a mapping with max-age, max-bytes and/or max-records')
  const limit = (k: (typeof RETENTION_KEYS)[number], parse: (v: unknown) => number | null, expected: string): number | null => {
    const v = r[k]
    if (v === null || v === undefined) return null
    return parse(v) ?? ctx.bad(`${path}.${k}`, v, `${expected}, or null for no limit`)
  }
  return {
    maxAgeMs: limit('max-age', parseDuration, DURATION_EXPECTED),
    maxBytes: limit('max-bytes', parseByteSize, BYTE_SIZE_EXPECTED),
    maxRecords: limit('max-records', positiveInteger, 'a positive integer')
  }
}

/** The `streams` mapping: name -> { partitions, retention }. */
export function parseStreams(raw: unknown, ctx: SectionContext): StreamConfig[] {
  if (raw === null || raw === undefined) return []
  if (typeof raw !== 'object' || Array.isArray(raw)) ctx.bad('streams', raw, 'a mapping of stream names to stream settings')
  const out: StreamConfig[] = []
  for (const [name, value] of Object.entries(raw)) {
    if (!isValidName(name)) throw new ConfigError(`invalid stream name ${JSON.stringify(name)} under streams in ${ctx.origin}; expected ${NAME_RULE}`)
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

function parseRouteKey(ctx: SectionContext, path: string, raw: unknown, filter: string): RouteKey {
  const expected = 'topic-level:N (N >= 1, the N-th level of the topic), client-id or none'
  if (raw === null || raw === undefined || raw === 'none') return { kind: 'none' }
  if (raw === 'client-id') return { kind: 'client-id' }
  const m = typeof raw === 'string' ? /^topic-level:(\d+)$/.exec(raw) : null
  const level = m ? positiveInteger(m[1]) : null
  if (level === null) ctx.bad(path, raw, expected)
  // without '#', every matching topic has exactly as many levels as the filter
  const levels = levelCount(filter)
  if (!filter.endsWith('#') && level > levels) ctx.bad(path, raw, `a level the filter ${JSON.stringify(filter)} has (1 to ${levels}), client-id or none`)
  return { kind: 'topic-level', level }
}

/** The `routes` list; every route's stream must be one of `streams`. */
export function parseRoutes(raw: unknown, ctx: SectionContext, streams: StreamConfig[]): RouteConfig[] {
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
    if (isSysTopic(r.filter)) ctx.bad(`${path}.filter`, r.filter, 'a filter outside $SYS/ (broker status topics are never appended to the log)')
    const defined = names.size > 0 ? `one of the streams defined under streams (${[...names].join(', ')})` : 'a stream defined under streams (none is defined)'
    if (typeof r.stream !== 'string' || !names.has(r.stream)) ctx.bad(`${path}.stream`, r.stream, defined)
    return { filter: r.filter, stream: r.stream, key: parseRouteKey(ctx, `${path}.key`, r.key, r.filter) }
  })
}

export const logSection: Section<LogSection> = {
  name: 'log',
  defaults: { streams: [], routes: [] },
  keys: {},
  structured: {
    streams: (raw, ctx) => ({ streams: parseStreams(raw, ctx) }),
    // after streams (the order of this object): routes name streams
    routes: (raw, ctx, config) => ({ routes: parseRoutes(raw, ctx, config.streams) })
  }
}
