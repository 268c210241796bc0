import { isUtf8 } from 'node:buffer'
import { readFile } from 'node:fs/promises'
import { CulexError } from '../errors.js'
import { isValidName, NAME_RULE } from '../log/names.js'
import { topicFilterProblem } from '../mqtt/topics.js'

// The ACL file, in mosquitto's acl_file format (mosquitto.conf(5), parsed as mosquitto 2.0's
// src/security_default.c does), plus one Culex line kind for the HTTP API. One rule a line:
//
//   # a comment (a whole line; '#' later in a line is part of a topic filter)
//   topic [read|write|readwrite|deny] <filter>    anonymous clients until the first `user` line
//   user <username>                               the lines below are this user's (spaces allowed)
//   topic [read|write|readwrite|deny] <filter>    the user's; the access defaults to readwrite
//   pattern [read|write|readwrite|deny] <filter>  every client, wherever it stands; %c is the
//                                                 client id, %u the username
//   stream <rights> <name>                        Culex: HTTP API rights of the section's user
//                                                 (anonymous before the first `user` line)
//
// `stream` rights are a comma-separated list of: read (describe a stream, read its records),
// produce (append records), groups (join its consumer groups, fetch, commit, reset offsets),
// replay (replay it into MQTT), or all. <name> is a stream name or '*' for every stream.
//
// As in mosquitto: a filter may contain spaces when the access word is given; a repeated `user`
// section adds to the first; an unknown keyword or access word is an error. Where Culex differs:
// words may be separated by tabs too, lines are trimmed on both sides (so an indented '#' is a
// comment), a leading BOM is skipped, and the file must be UTF-8. It refuses, rather than guess,
// a `topic read` with no filter (mosquitto reads it as readwrite on the topic "read"), %c/%u in a
// `topic` line (mosquitto matches them literally there, never what was meant), and, as mosquitto
// does, any filter that is no valid topic filter [MQTT-4.7.1-2, MQTT-4.7.1-3, MQTT-4.7.3-1].

export type AclAccess = 'read' | 'write' | 'readwrite' | 'deny'

export interface AclRule {
  access: AclAccess
  filter: string
  /** 1-based line in the file, for messages. */
  line: number
}

export type StreamRight = 'read' | 'produce' | 'groups' | 'replay'

export const STREAM_RIGHTS: readonly StreamRight[] = ['read', 'produce', 'groups', 'replay']

/** `*` as the stream name: every stream, present and future. */
export const EVERY_STREAM = '*'

export interface StreamGrant {
  rights: ReadonlySet<StreamRight>
  /** A stream name, or EVERY_STREAM. */
  stream: string
  line: number
}

export interface AclFile {
  /** `topic` lines before the first `user` line: clients without a username. */
  anonymous: AclRule[]
  /** Each user's `topic` lines; every user with a `user` line has an entry, a repeated section adds to it. */
  users: Map<string, AclRule[]>
  /** `pattern` lines, with %c and %u unsubstituted. */
  patterns: AclRule[]
  anonymousStreams: StreamGrant[]
  /** Each user's `stream` lines; every user with a `user` line has an entry. */
  userStreams: Map<string, StreamGrant[]>
}

export class AclFileError extends CulexError<'ACL_FILE'> {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('ACL_FILE', message, details)
  }
}

const ACCESS_WORDS: readonly AclAccess[] = ['read', 'write', 'readwrite', 'deny']
const ACCESS_LIST = 'read, write, readwrite or deny'
const RIGHTS_LIST = 'read, produce, groups, replay or all'
const SUBSTITUTION = /%[cu]/
const BLANK = /[ \t]/

const isAccess = (word: string): word is AclAccess => (ACCESS_WORDS as readonly string[]).includes(word)
const isRight = (word: string): word is StreamRight => (STREAM_RIGHTS as readonly string[]).includes(word)

/** The first blank-separated word of `s` (already trimmed) and the trimmed rest. */
function firstWord(s: string): [string, string] {
  const at = s.search(BLANK)
  return at === -1 ? [s, ''] : [s.slice(0, at), s.slice(at + 1).trim()]
}

export function parseAclFile(text: string, path: string): AclFile {
  const file: AclFile = { anonymous: [], users: new Map(), patterns: [], anonymousStreams: [], userStreams: new Map() }
  // the section being read: null for the anonymous one
  let user: string | null = null
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1
    const fail = (what: string): never => {
      throw new AclFileError(`${path} line ${line}: ${what}`, { path, line })
    }
    const content = (lines[i] ?? '').trim()
    if (content === '' || content.startsWith('#')) continue
    const [keyword, rest] = firstWord(content)
    switch (keyword) {
      case 'user': {
        if (rest === '') fail('missing username after "user"')
        user = rest
        if (!file.users.has(user)) file.users.set(user, [])
        if (!file.userStreams.has(user)) file.userStreams.set(user, [])
        break
      }
      case 'topic':
      case 'pattern': {
        const rule = parseRule(keyword, rest, line, fail)
        if (keyword === 'pattern') file.patterns.push(rule)
        else if (user === null) file.anonymous.push(rule)
        else file.users.get(user)?.push(rule)
        break
      }
      case 'stream': {
        const grant = parseStream(rest, line, fail)
        if (user === null) file.anonymousStreams.push(grant)
        else file.userStreams.get(user)?.push(grant)
        break
      }
      default:
        fail(`unknown keyword ${JSON.stringify(keyword)}; expected user, topic, pattern or stream`)
    }
  }
  return file
}

function parseRule(keyword: 'topic' | 'pattern', rest: string, line: number, fail: (what: string) => never): AclRule {
  if (rest === '') fail(`missing topic filter after "${keyword}"`)
  const [first, remainder] = firstWord(rest)
  let access: AclAccess = 'readwrite'
  let filter = first
  if (remainder !== '') {
    if (!isAccess(first)) fail(`unknown access ${JSON.stringify(first)}; expected ${ACCESS_LIST}`)
    access = first
    filter = remainder
  } else if (isAccess(first)) {
    fail(`missing topic filter after "${keyword} ${first}" (for a topic named "${first}", write "${keyword} readwrite ${first}")`)
  }
  if (keyword === 'topic' && SUBSTITUTION.test(filter)) {
    fail(`%c and %u are substituted in "pattern" lines only, not in "topic" lines: ${JSON.stringify(filter)}`)
  }
  // checked with a placeholder for %c and %u here; acl.ts checks each client's substitution again
  const problem = topicFilterProblem(keyword === 'pattern' ? filter.replace(/%[cu]/g, 'x') : filter)
  if (problem !== null) fail(`invalid topic filter ${JSON.stringify(filter)}: ${problem}`)
  return { access, filter, line }
}

function parseStream(rest: string, line: number, fail: (what: string) => never): StreamGrant {
  const [list, stream] = firstWord(rest)
  if (list === '') fail('missing rights and stream name after "stream"; expected e.g. "stream read,produce orders" or "stream all *"')
  if (stream === '') fail(`missing stream name (or * for every stream) after "stream ${list}"`)
  const rights = new Set<StreamRight>()
  for (const word of list.split(',')) {
    if (word === 'all') for (const r of STREAM_RIGHTS) rights.add(r)
    else if (isRight(word)) rights.add(word)
    else fail(`unknown stream right ${JSON.stringify(word)}; expected a comma-separated list of ${RIGHTS_LIST}`)
  }
  if (stream !== EVERY_STREAM && !isValidName(stream))
    fail(`invalid stream name ${JSON.stringify(stream)}: a stream name is ${NAME_RULE}, or * for every stream`)
  return { rights, stream, line }
}

/** Reads and parses an ACL file; every problem, a missing file included, is an AclFileError. */
export async function readAclFile(path: string): Promise<AclFile> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new AclFileError(`ACL file ${path} does not exist`, { path })
    throw new AclFileError(`cannot read ACL file ${path}: ${(err as Error).message}`, { path })
  }
  // a bad byte would decode to U+FFFD and the rule would silently match nothing
  if (!isUtf8(bytes)) {
    // a multi-byte sequence never holds 0x0a, so some line is ill-formed on its own
    let start = 0
    for (let line = 1; start <= bytes.length; line++) {
      const end = bytes.indexOf(0x0a, start)
      const stop = end === -1 ? bytes.length : end
      if (!isUtf8(bytes.subarray(start, stop))) throw new AclFileError(`${path} line ${line}: it is not well-formed UTF-8`, { path, line })
      start = stop + 1
    }
  }
  return parseAclFile(bytes.toString('utf8'), path)
}
