import { isUtf8 } from 'node:buffer'

// The MQTT rules for topic names and topic filters, in one place: validation, matching, the
// '$' rules and shared-subscription names. Every other module (routes, retained messages, ACLs,
// bridges, replay prefixes) asks this one. Clause numbers are those of MQTT 3.1.1 (OASIS
// Standard, 2014) unless marked 5.0 (OASIS Standard, 2019).

export const LEVEL_SEPARATOR = '/'
export const SINGLE_LEVEL_WILDCARD = '+'
export const MULTI_LEVEL_WILDCARD = '#'

/** Topic names and filters encode to at most this many bytes [MQTT-4.7.3-3]. */
export const MAX_TOPIC_BYTES = 65_535

/** The broker's own status topics; clients may not publish there. */
export const SYS_PREFIX = '$SYS/'

/** Prefix of a shared subscription's filter (5.0 §4.8.2). */
export const SHARE_PREFIX = '$share/'

export interface TopicLimits {
  /** Longest topic in bytes (at most MAX_TOPIC_BYTES). */
  maxBytes?: number
  /** Most levels ('a/b/c' has 3). */
  maxLevels?: number
}

/**
 * Why `bytes` are not a valid MQTT UTF-8 string, or null. Well-formed UTF-8 only: no overlong
 * forms, no surrogates U+D800..U+DFFF [MQTT-1.5.3-1]; no U+0000 [MQTT-1.5.3-2].
 */
export function utf8Problem(bytes: Uint8Array): string | null {
  if (!isUtf8(bytes)) return 'it is not well-formed UTF-8 [MQTT-1.5.3-1]'
  if (bytes.includes(0)) return 'it contains U+0000 [MQTT-1.5.3-2]'
  return null
}

/** Why a decoded string breaks the rules of MQTT UTF-8 strings, or null [MQTT-1.5.3-1, MQTT-1.5.3-2]. */
export function stringProblem(s: string): string | null {
  // a lone surrogate cannot come from well-formed UTF-8
  if (!s.isWellFormed()) return 'it is not well-formed UTF-8 (a lone surrogate) [MQTT-1.5.3-1]'
  if (s.includes('\u0000')) return 'it contains U+0000 [MQTT-1.5.3-2]'
  return null
}

function commonProblem(topic: string, limits: TopicLimits): string | null {
  if (topic.length === 0) return 'it is empty [MQTT-4.7.3-1]'
  const encoding = stringProblem(topic)
  if (encoding) return encoding
  const maxBytes = Math.min(limits.maxBytes ?? MAX_TOPIC_BYTES, MAX_TOPIC_BYTES)
  const bytes = Buffer.byteLength(topic, 'utf8')
  if (bytes > maxBytes) return `it is ${bytes} bytes long; the limit is ${maxBytes} [MQTT-4.7.3-3]`
  if (limits.maxLevels !== undefined) {
    const levels = levelCount(topic)
    if (levels > limits.maxLevels) return `it has ${levels} levels; the limit is ${limits.maxLevels}`
  }
  return null
}

/** Why `topic` is not a valid topic name (a PUBLISH or will topic), or null. */
export function topicNameProblem(topic: string, limits: TopicLimits = {}): string | null {
  const problem = commonProblem(topic, limits)
  if (problem) return problem
  // wildcards are for filters only [MQTT-4.7.1-1, MQTT-3.3.2-2]
  if (topic.includes(SINGLE_LEVEL_WILDCARD) || topic.includes(MULTI_LEVEL_WILDCARD)) {
    return "it contains a wildcard ('+' or '#'), which only topic filters may have [MQTT-3.3.2-2]"
  }
  return null
}

/** Why `filter` is not a valid topic filter (SUBSCRIBE, UNSUBSCRIBE, routes, ACLs), or null. */
export function topicFilterProblem(filter: string, limits: TopicLimits = {}): string | null {
  const problem = commonProblem(filter, limits)
  if (problem) return problem
  const levels = filter.split(LEVEL_SEPARATOR)
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] ?? ''
    if (level.includes(MULTI_LEVEL_WILDCARD) && (level !== MULTI_LEVEL_WILDCARD || i !== levels.length - 1)) {
      return "'#' must be a whole level and the last one [MQTT-4.7.1-2]"
    }
    if (level.includes(SINGLE_LEVEL_WILDCARD) && level !== SINGLE_LEVEL_WILDCARD) {
      return "'+' must be a whole level [MQTT-4.7.1-3]"
    }
  }
  return null
}

export function levelCount(topic: string): number {
  let n = 1
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f) n++
  return n
}

export function isWildcardFilter(filter: string): boolean {
  return filter.includes(SINGLE_LEVEL_WILDCARD) || filter.includes(MULTI_LEVEL_WILDCARD)
}

/** Topics starting with '$' are the server's (4.7.2); '$SYS/' is the usual one. */
export function isDollarTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24
}

export function isSysTopic(topic: string): boolean {
  return topic === '$SYS' || topic.startsWith(SYS_PREFIX)
}

/**
 * Whether a wildcard at level `index` may match the topic level `name`: a filter starting with
 * a wildcard does not match topic names beginning with '$' [MQTT-4.7.2-1].
 */
export function wildcardMayMatch(index: number, name: string): boolean {
  return index > 0 || !isDollarTopic(name)
}

/**
 * Whether the topic name `topic` matches the (valid) filter `filter`:
 * - '+' matches exactly one level, an empty one too: 'a/+' matches 'a/' [MQTT-4.7.1-3, 4.7.1.3];
 * - '#' matches the parent level and any number below: 'a/#' matches 'a' [MQTT-4.7.1-2, 4.7.1.2];
 * - a filter starting with a wildcard never matches a '$' topic [MQTT-4.7.2-1];
 * - no normalization: levels compare byte for byte [MQTT-4.7.3-4].
 */
export function matches(filter: string, topic: string): boolean {
  const f = filter.split(LEVEL_SEPARATOR)
  const t = topic.split(LEVEL_SEPARATOR)
  for (let i = 0; i < f.length; i++) {
    const level = f[i]
    const name = t[i]
    if (level === MULTI_LEVEL_WILDCARD) return wildcardMayMatch(i, name ?? '')
    if (name === undefined) return false
    if (level === SINGLE_LEVEL_WILDCARD) {
      if (!wildcardMayMatch(i, name)) return false
    } else if (level !== name) {
      return false
    }
  }
  return f.length === t.length
}

/**
 * The filter that matches exactly the topic names both (valid) filters match, or null when no
 * topic name matches both. Level by level: a literal meets a literal only if they are equal; '+'
 * yields the other level; '#' yields the rest of the other filter, the parent level included
 * [MQTT-4.7.1-2]. A first-level wildcard never meets a literal starting with '$' [MQTT-4.7.2-1],
 * and when both first levels are wildcards the result keeps one, so it excludes '$' topics too.
 */
export function filterIntersection(a: string, b: string): string | null {
  const x = a.split(LEVEL_SEPARATOR)
  const y = b.split(LEVEL_SEPARATOR)
  const out: string[] = []
  for (let i = 0; ; i++) {
    const p = x[i]
    const q = y[i]
    if (p === MULTI_LEVEL_WILDCARD || q === MULTI_LEVEL_WILDCARD) {
      const rest = p === MULTI_LEVEL_WILDCARD ? y.slice(i) : x.slice(i)
      // '#' meets '$x' only past the first level [MQTT-4.7.2-1]
      const other = rest[0]
      if (other !== undefined && !isWildcardLevel(other) && !wildcardMayMatch(i, other)) return null
      return [...out, ...rest].join(LEVEL_SEPARATOR)
    }
    if (p === undefined || q === undefined) return p === q ? out.join(LEVEL_SEPARATOR) : null
    if (p === SINGLE_LEVEL_WILDCARD || q === SINGLE_LEVEL_WILDCARD) {
      const other = p === SINGLE_LEVEL_WILDCARD ? q : p
      if (other !== SINGLE_LEVEL_WILDCARD && !wildcardMayMatch(i, other)) return null
      out.push(other)
    } else if (p === q) {
      out.push(p)
    } else {
      return null
    }
  }
}

/** Whether some valid topic name matches both (valid) filters, the '$' rule included [MQTT-4.7.2-1]: `#` and `$SYS/#` do not overlap. */
export function filtersOverlap(a: string, b: string): boolean {
  return filterIntersection(a, b) !== null
}

/**
 * Whether every topic name that matches the (valid) filter `inner` also matches `outer`: 'a/#'
 * covers 'a' [MQTT-4.7.1-2] and 'a/+/c'; 'a/+' does not cover 'a/#'; '+/x' does not cover '$SYS/x'
 * [MQTT-4.7.2-1], while '#' covers '+/x' since neither reaches '$' topics; '+/#' and '#' cover each other.
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split(LEVEL_SEPARATOR)
  const n = inner.split(LEVEL_SEPARATOR)
  for (let i = 0; ; i++) {
    const p = o[i]
    const q = n[i]
    // '#' takes every level from here on, the parent included; at the first level not a '$' one
    if (p === MULTI_LEVEL_WILDCARD) return q === undefined || isWildcardLevel(q) || wildcardMayMatch(i, q)
    // the inner filter goes on (deeper levels, or '#') where the outer one has ended, or the reverse
    if (p === undefined || q === undefined) return p === q
    // a topic name has at least one level, so a first-level '#' is '+/#'
    if (q === MULTI_LEVEL_WILDCARD) return i === 0 && p === SINGLE_LEVEL_WILDCARD && o[1] === MULTI_LEVEL_WILDCARD
    if (p === SINGLE_LEVEL_WILDCARD) {
      if (q !== SINGLE_LEVEL_WILDCARD && !wildcardMayMatch(i, q)) return false
    } else if (p !== q) {
      return false
    }
  }
}

function isWildcardLevel(level: string): boolean {
  return level === SINGLE_LEVEL_WILDCARD || level === MULTI_LEVEL_WILDCARD
}

export interface SharedSubscription {
  /** The ShareName: the group of subscribers that share the messages. */
  group: string
  /** The topic filter the group subscribes to. */
  filter: string
}

/**
 * Splits `$share/<group>/<filter>` (5.0 §4.8.2; EMQX and mosquitto accept it from 3.1.1 clients
 * too). Returns null for a filter that is no shared subscription, and throws for a malformed one.
 */
export function parseSharedSubscription(topicFilter: string): SharedSubscription | null {
  if (!topicFilter.startsWith(SHARE_PREFIX)) return null
  const rest = topicFilter.slice(SHARE_PREFIX.length)
  const slash = rest.indexOf(LEVEL_SEPARATOR)
  const group = slash === -1 ? rest : rest.slice(0, slash)
  // a ShareName of at least one character [MQTT-4.8.2-1], without '/', '+' or '#' [MQTT-4.8.2-2]
  if (group.length === 0) throw new TopicError(`shared subscription ${JSON.stringify(topicFilter)} has an empty ShareName [MQTT-4.8.2-1]`)
  if (group.includes(SINGLE_LEVEL_WILDCARD) || group.includes(MULTI_LEVEL_WILDCARD)) {
    throw new TopicError(`ShareName ${JSON.stringify(group)} must not contain '+' or '#' [MQTT-4.8.2-2]`)
  }
  // ... followed by '/' and a topic filter [MQTT-4.8.2-2]
  const filter = slash === -1 ? '' : rest.slice(slash + 1)
  const problem = topicFilterProblem(filter)
  if (problem) throw new TopicError(`shared subscription ${JSON.stringify(topicFilter)} needs a topic filter after the ShareName: ${problem}`)
  return { group, filter }
}

export class TopicError extends Error {
  override name = 'TopicError'
}
