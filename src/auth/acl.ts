import {
  filterCovers,
  filterIntersection,
  LEVEL_SEPARATOR,
  MULTI_LEVEL_WILDCARD,
  parseSharedSubscription,
  SINGLE_LEVEL_WILDCARD,
  topicFilterProblem
} from '../mqtt/topics.js'
import { EVERY_STREAM, type AclAccess, type AclFile, type AclRule, type StreamGrant, type StreamRight } from './acl-file.js'

// What a client may do, from the ACL file (acl-file.ts) or from a token's grants. It follows
// mosquitto 2.0's default ACL check (src/security_default.c) except where marked "Culex:":
// - a client's rules are its user's `topic` lines (the anonymous ones without a username) and
//   every `pattern` line with %c and %u substituted; a %u pattern does not apply without a username;
// - publish needs a matching write/readwrite rule, receive a matching read/readwrite rule;
// - Culex: a matching deny rule always wins. mosquitto checks the user's lines before the patterns
//   and stops at the first match, so there a user's grant beats a pattern's deny;
// - Culex: SUBSCRIBE is checked. mosquitto 2.0 grants every subscription and filters deliveries;
//   Culex refuses (SUBACK 0x80) a filter that could never deliver anything readable, and the broker
//   still filters each delivery with canReceive;
// - a substituted client id or username holding '+', '#' or '/' could reach other clients' topics
//   (CVE-2017-7650): the pattern grants nothing then. Culex: mosquitto checks '+' and '#' only;
//   Culex adds '/' (its own comment names it), and a value starting with '$' grants nothing where it
//   would start the filter (a client id "$SYS" in "%c/#"); an unsafe value widens a deny pattern
//   instead of dropping it, so that a deny cannot be escaped;
// - '$' topics follow the matching rule alone [MQTT-4.7.2-1]: '#' does not reach '$SYS/...', so
//   reading '$SYS' needs a rule such as `topic read $SYS/#`.

export interface ClientAcl {
  /** Whether the client may publish to this (valid) topic name. */
  canPublish(topic: string): boolean
  /** Whether a message on this (valid) topic name may be delivered to the client. */
  canReceive(topic: string): boolean
  /** Whether the client may subscribe to this (valid) filter; `$share/<group>/<filter>` is judged by its filter. */
  canSubscribe(filter: string): boolean
}

export interface StreamRights {
  allows(right: StreamRight, stream: string): boolean
  /** The streams this right is granted on: 'all' for `*`. */
  streams(right: StreamRight): 'all' | ReadonlySet<string>
}

const READ = 1
const WRITE = 2
const DENY = 4

const ACCESS_BITS: Record<AclAccess, number> = { read: READ, write: WRITE, readwrite: READ | WRITE, deny: DENY }

/** A level of a topic name hashed from its characters, so a trie node is found without slicing the topic. */
function levelHash(s: string, from: number, to: number): number {
  let h = 0x811c9dc5
  for (let i = from; i < to; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  // a small integer key: no heap number per lookup
  return h & 0x3fffffff
}

interface Child {
  level: string
  node: Node
}

interface Node {
  /** Literal levels by levelHash; a list for collisions. */
  literal: Map<number, Child[]> | null
  plus: Node | null
  /** Access bits of the rules whose filter ends here. */
  exact: number
  /** Access bits of the rules whose filter is this node's path followed by '#'. */
  rest: number
}

const newNode = (): Node => ({ literal: null, plus: null, exact: 0, rest: 0 })

/**
 * A client's rules, ready for the per-message checks: a trie of filter levels holding access
 * bits, walked over the topic string by index (no split, no substring, no closure), so
 * canPublish and canReceive allocate nothing. The filters are kept too, for canSubscribe.
 */
class RuleSet {
  readonly #root = newNode()
  /** Filters of read and readwrite rules. */
  readonly reads: string[] = []
  readonly denies: string[] = []
  #size = 0

  add(filter: string, access: AclAccess): void {
    const bits = ACCESS_BITS[access]
    if (bits & READ) this.reads.push(filter)
    if (bits & DENY) this.denies.push(filter)
    this.#size++
    let node = this.#root
    for (const level of filter.split(LEVEL_SEPARATOR)) {
      if (level === MULTI_LEVEL_WILDCARD) {
        node.rest |= bits
        return
      }
      node = level === SINGLE_LEVEL_WILDCARD ? (node.plus ??= newNode()) : literalChild(node, level)
    }
    node.exact |= bits
  }

  /** The union of the access bits of every rule whose filter matches the topic name. */
  bits(topic: string): number {
    if (this.#size === 0) return 0
    return walk(this.#root, topic, 0, topic.charCodeAt(0) === 0x24)
  }
}

function literalChild(node: Node, level: string): Node {
  const hash = levelHash(level, 0, level.length)
  node.literal ??= new Map()
  let list = node.literal.get(hash)
  if (!list) {
    list = []
    node.literal.set(hash, list)
  }
  for (const c of list) if (c.level === level) return c.node
  const child = { level, node: newNode() }
  list.push(child)
  return child.node
}

/**
 * The bits under `node` for the topic's levels from index `pos` on (pos > topic.length: no level
 * left). As topics.ts `matches`: '+' matches one level, an empty one too; '#' matches the parent
 * level too [MQTT-4.7.1-2]; a wildcard at the first level never matches a '$' topic [MQTT-4.7.2-1].
 */
function walk(node: Node, topic: string, pos: number, dollar: boolean): number {
  const wildcards = pos > 0 || !dollar
  let bits = wildcards ? node.rest : 0
  if (pos > topic.length) return bits | node.exact
  let end = topic.indexOf(LEVEL_SEPARATOR, pos)
  if (end === -1) end = topic.length
  if (node.literal !== null) {
    const list = node.literal.get(levelHash(topic, pos, end))
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const c = list[i] as Child
        if (c.level.length === end - pos && topic.startsWith(c.level, pos)) bits |= walk(c.node, topic, end + 1, dollar)
      }
    }
  }
  if (wildcards && node.plus !== null) bits |= walk(node.plus, topic, end + 1, dollar)
  return bits
}

/** The rules of one connection: the shared ones of its user (or of anonymous clients), and its own substituted patterns. */
class RulesAcl implements ClientAcl {
  readonly #shared: RuleSet
  readonly #own: RuleSet | null
  /** A deny pattern could not be substituted safely and its prefix is the whole tree: nothing is allowed. */
  readonly #denyAll: boolean

  constructor(shared: RuleSet, own: RuleSet | null, denyAll: boolean) {
    this.#shared = shared
    this.#own = own
    this.#denyAll = denyAll
  }

  #bits(topic: string): number {
    if (this.#denyAll) return DENY
    return this.#own === null ? this.#shared.bits(topic) : this.#shared.bits(topic) | this.#own.bits(topic)
  }

  canPublish(topic: string): boolean {
    return (this.#bits(topic) & (WRITE | DENY)) === WRITE
  }

  canReceive(topic: string): boolean {
    return (this.#bits(topic) & (READ | DENY)) === READ
  }

  canSubscribe(filter: string): boolean {
    if (this.#denyAll) return false
    const sets = this.#own === null ? [this.#shared] : [this.#shared, this.#own]
    return subscribable(
      filter,
      sets.flatMap((s) => s.reads),
      sets.flatMap((s) => s.denies)
    )
  }
}

/**
 * Culex: a subscription is granted when some topic it matches may be readable: a read rule's filter
 * meets it, and no single deny rule covers where they meet. Everything it is granted is still
 * filtered by canReceive, so `#` with only `topic read a/#` delivers a/... alone, while `b/#` is
 * refused. Denies that cover the meeting only together are not seen: such a filter is granted
 * and receives nothing.
 */
function subscribable(requested: string, reads: readonly string[], denies: readonly string[]): boolean {
  const filter = sharedFilter(requested)
  if (filter === null) return false
  for (const read of reads) {
    const meet = filterIntersection(read, filter)
    if (meet !== null && !denies.some((deny) => filterCovers(deny, meet))) return true
  }
  return false
}

/** The filter of `$share/<group>/<filter>` (MQTT 5.0 §4.8.2), the filter itself otherwise, null when it is not valid. */
function sharedFilter(filter: string): string | null {
  try {
    const filterOf = parseSharedSubscription(filter)?.filter ?? filter
    return topicFilterProblem(filterOf) === null ? filterOf : null
  } catch {
    return null
  }
}

const SUBSTITUTED = /%[cu]/g
const HAS_SUBSTITUTION = /%[cu]/
/** A value holding one of these would widen the filter or move it to another level (CVE-2017-7650). */
const UNSAFE_VALUE = /[+#/]/

interface Pattern {
  rule: AclRule
  usesUsername: boolean
  /** The filter's levels before the first one with %c or %u: what a deny still covers when it cannot be substituted. */
  denyPrefix: string | null
}

/** Substitutes %c and %u in one pass (a value holding "%u" stays as it is), or null when a value is unsafe there. */
function substitute(filter: string, clientId: string, username: string | null): string | null {
  let out = ''
  let from = 0
  for (const m of filter.matchAll(SUBSTITUTED)) {
    const value = m[0] === '%c' ? clientId : (username ?? '')
    if (UNSAFE_VALUE.test(value)) return null
    out += filter.slice(from, m.index) + value
    from = m.index + m[0].length
  }
  out += filter.slice(from)
  // e.g. too long [MQTT-4.7.3-3], or U+0000 in a value that was not checked before
  return topicFilterProblem(out) === null ? out : null
}

const EMPTY_STREAMS: ReadonlySet<string> = new Set()

class GrantedStreams implements StreamRights {
  readonly #everywhere = new Set<StreamRight>()
  readonly #named = new Map<StreamRight, Set<string>>()

  constructor(grants: readonly StreamGrant[]) {
    for (const grant of grants) {
      for (const right of grant.rights) {
        if (grant.stream === EVERY_STREAM) {
          this.#everywhere.add(right)
        } else {
          let names = this.#named.get(right)
          if (!names) {
            names = new Set()
            this.#named.set(right, names)
          }
          names.add(grant.stream)
        }
      }
    }
  }

  allows(right: StreamRight, stream: string): boolean {
    return this.#everywhere.has(right) || (this.#named.get(right)?.has(stream) ?? false)
  }

  streams(right: StreamRight): 'all' | ReadonlySet<string> {
    return this.#everywhere.has(right) ? 'all' : (this.#named.get(right) ?? EMPTY_STREAMS)
  }
}

const NO_STREAMS = new GrantedStreams([])

/** The rules of an ACL file, compiled: the user sections once, the patterns once per connection. */
export class Acl {
  readonly #anonymous: RuleSet
  readonly #users = new Map<string, RuleSet>()
  /** For a username without a `user` section: the patterns alone. */
  readonly #noSection: RuleSet
  /** Patterns with %c or %u, substituted per connection. */
  readonly #patterns: Pattern[] = []
  readonly #anonymousStreams: StreamRights
  readonly #userStreams = new Map<string, StreamRights>()

  constructor(file: AclFile) {
    // patterns without %c or %u are the same for every client: part of each shared set
    const fixed = file.patterns.filter((p) => !HAS_SUBSTITUTION.test(p.filter))
    for (const rule of file.patterns) {
      if (!HAS_SUBSTITUTION.test(rule.filter)) continue
      const levels = rule.filter.split(LEVEL_SEPARATOR)
      const first = levels.findIndex((l) => HAS_SUBSTITUTION.test(l))
      this.#patterns.push({
        rule,
        usesUsername: rule.filter.includes('%u'),
        denyPrefix: first === 0 ? null : levels.slice(0, first).join(LEVEL_SEPARATOR)
      })
    }
    const compile = (rules: readonly AclRule[]): RuleSet => {
      const set = new RuleSet()
      for (const r of [...rules, ...fixed]) set.add(r.filter, r.access)
      return set
    }
    this.#anonymous = compile(file.anonymous)
    this.#noSection = compile([])
    for (const [user, rules] of file.users) this.#users.set(user, compile(rules))
    this.#anonymousStreams = new GrantedStreams(file.anonymousStreams)
    for (const [user, grants] of file.userStreams) this.#userStreams.set(user, new GrantedStreams(grants))
  }

  /** A connection's rules; call once per connection (it substitutes the patterns). */
  forClient(clientId: string, username: string | null): ClientAcl {
    const shared = username === null ? this.#anonymous : (this.#users.get(username) ?? this.#noSection)
    let own: RuleSet | null = null
    let denyAll = false
    for (const { rule, usesUsername, denyPrefix } of this.#patterns) {
      if (usesUsername && username === null) continue
      const filter = substitute(rule.filter, clientId, username)
      if (filter === null) {
        // Culex: an unsafe value must not lift a deny: it covers everything under the levels before
        // the substitution instead, or everything at all when the substitution is the first level
        if (rule.access !== 'deny') continue
        if (denyPrefix === null) denyAll = true
        else (own ??= new RuleSet()).add(`${denyPrefix}${LEVEL_SEPARATOR}${MULTI_LEVEL_WILDCARD}`, 'deny')
        continue
      }
      // Culex: a value starting with '$' must not carry a grant into '$' topics (a client id "$SYS" in "%c/#")
      if (rule.access !== 'deny' && filter.startsWith('$') && !rule.filter.startsWith('$')) continue
      ;(own ??= new RuleSet()).add(filter, rule.access)
    }
    return new RulesAcl(shared, own, denyAll)
  }

  /** The HTTP API rights of a user (of anonymous clients for null); a username without a section has none. */
  streamRights(username: string | null): StreamRights {
    if (username === null) return this.#anonymousStreams
    return this.#userStreams.get(username) ?? NO_STREAMS
  }
}

/**
 * The rules of a token that lists the filters its client may publish to and subscribe to (JWT
 * claims): publish where a publish filter matches, receive where a subscribe filter matches,
 * subscribe to a filter that meets a subscribe filter. There is no deny. A filter that is no valid
 * topic filter grants nothing (the token's verifier refuses such tokens before).
 */
export function aclFromGrants(grants: { publish: readonly string[]; subscribe: readonly string[] }): ClientAcl {
  const set = new RuleSet()
  for (const f of grants.publish) if (topicFilterProblem(f) === null) set.add(f, 'write')
  for (const f of grants.subscribe) if (topicFilterProblem(f) === null) set.add(f, 'read')
  return new RulesAcl(set, null, false)
}

export type { StreamRight }
