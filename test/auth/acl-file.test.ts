import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AclFileError, parseAclFile, readAclFile, type AclFile } from '../../src/auth/acl-file.js'
import { CulexError } from '../../src/errors.js'

const parse = (text: string): AclFile => parseAclFile(text, 'acl.conf')

/** The error parseAclFile throws for `text`. */
function failure(text: string): AclFileError {
  try {
    parse(text)
  } catch (err) {
    expect(err).toBeInstanceOf(AclFileError)
    return err as AclFileError
  }
  throw new Error('parsed without an error')
}

describe('parseAclFile: line kinds', () => {
  it('reads topic lines before any user line as the anonymous section, readwrite by default', () => {
    const file = parse('topic read $SYS/#\ntopic write a/b\ntopic readwrite c\ntopic deny c/secret\ntopic d/#\n')
    expect(file.anonymous).toEqual([
      { access: 'read', filter: '$SYS/#', line: 1 },
      { access: 'write', filter: 'a/b', line: 2 },
      { access: 'readwrite', filter: 'c', line: 3 },
      { access: 'deny', filter: 'c/secret', line: 4 },
      { access: 'readwrite', filter: 'd/#', line: 5 }
    ])
    expect(file.users.size).toBe(0)
    expect(file.patterns).toEqual([])
  })

  it('starts a section at each user line; the rest of the line, spaces included, is the username', () => {
    const file = parse('user alice\ntopic read a/#\nuser bob smith\ntopic write b/+\nuser  carol  \n')
    expect([...file.users.keys()]).toEqual(['alice', 'bob smith', 'carol'])
    expect(file.users.get('alice')).toEqual([{ access: 'read', filter: 'a/#', line: 2 }])
    expect(file.users.get('bob smith')).toEqual([{ access: 'write', filter: 'b/+', line: 4 }])
    expect(file.users.get('carol')).toEqual([])
    expect(file.anonymous).toEqual([])
  })

  it('adds a repeated user section to the first one (as mosquitto does)', () => {
    const file = parse('user alice\ntopic a\nuser bob\ntopic b\nuser alice\ntopic c\n')
    expect(file.users.get('alice')!.map((r) => r.filter)).toEqual(['a', 'c'])
  })

  it('collects pattern lines wherever they stand, %c and %u unsubstituted', () => {
    const file = parse('pattern read devices/%c/#\nuser alice\npattern write users/%u/out\ntopic x\npattern deny %c/secret\n')
    expect(file.patterns).toEqual([
      { access: 'read', filter: 'devices/%c/#', line: 1 },
      { access: 'write', filter: 'users/%u/out', line: 3 },
      { access: 'deny', filter: '%c/secret', line: 5 }
    ])
    expect(file.users.get('alice')).toEqual([{ access: 'readwrite', filter: 'x', line: 4 }])
  })

  it('accepts %c and %u inside a level, and a pattern without either', () => {
    const file = parse('pattern read dev-%c/%u-in\npattern read status\n')
    expect(file.patterns.map((p) => p.filter)).toEqual(['dev-%c/%u-in', 'status'])
  })

  it('ignores comments and blank lines, trims lines, and accepts tabs and CRLF', () => {
    const file = parse('\uFEFF# a comment\n\n   \n  # an indented comment\r\n\tuser\talice \r\n  topic\tread   a/#  \r\n')
    expect(file.users.get('alice')).toEqual([{ access: 'read', filter: 'a/#', line: 6 }])
  })

  it('keeps a filter with spaces when the access is given (as mosquitto does)', () => {
    expect(parse('topic read room 1/temp').anonymous).toEqual([{ access: 'read', filter: 'room 1/temp', line: 1 }])
  })

  it('reads stream lines: rights lists, all, and * for every stream, per section', () => {
    const file = parse('stream read public\nuser alice\nstream read,produce orders\nstream all *\nuser bob\nstream groups,replay metrics.v1\n')
    expect(file.anonymousStreams).toEqual([{ rights: new Set(['read']), stream: 'public', line: 1 }])
    expect(file.userStreams.get('alice')).toEqual([
      { rights: new Set(['read', 'produce']), stream: 'orders', line: 3 },
      { rights: new Set(['read', 'produce', 'groups', 'replay']), stream: '*', line: 4 }
    ])
    expect(file.userStreams.get('bob')).toEqual([{ rights: new Set(['groups', 'replay']), stream: 'metrics.v1', line: 6 }])
  })

  it('gives every user section an entry in both maps', () => {
    const file = parse('user alice\nstream read s\nuser bob\ntopic t\n')
    expect(file.users.get('alice')).toEqual([])
    expect(file.userStreams.get('bob')).toEqual([])
  })

  it('parses an empty file to no rules', () => {
    expect(parse('')).toEqual({ anonymous: [], users: new Map(), patterns: [], anonymousStreams: [], userStreams: new Map() })
  })
})

describe('parseAclFile: errors name the file, the line and the problem', () => {
  it.each([
    ['topic wirte a/b', 'acl.conf line 1: unknown access "wirte"; expected read, write, readwrite or deny'],
    ['pattern Read a/%c', 'acl.conf line 1: unknown access "Read"; expected read, write, readwrite or deny'],
    ['topic a b', 'acl.conf line 1: unknown access "a"; expected read, write, readwrite or deny'],
    ['topic', 'acl.conf line 1: missing topic filter after "topic"'],
    ['pattern   ', 'acl.conf line 1: missing topic filter after "pattern"'],
    ['topic read', 'acl.conf line 1: missing topic filter after "topic read" (for a topic named "read", write "topic readwrite read")'],
    ['pattern deny', 'acl.conf line 1: missing topic filter after "pattern deny"'],
    ['user', 'acl.conf line 1: missing username after "user"'],
    ['user   \t', 'acl.conf line 1: missing username after "user"'],
    ['users alice', 'acl.conf line 1: unknown keyword "users"; expected user, topic, pattern or stream'],
    ['Topic a', 'acl.conf line 1: unknown keyword "Topic"'],
    ['topic read a/#/b', 'acl.conf line 1: invalid topic filter "a/#/b": \'#\' must be a whole level and the last one [MQTT-4.7.1-2]'],
    ['topic a+', 'acl.conf line 1: invalid topic filter "a+": \'+\' must be a whole level [MQTT-4.7.1-3]'],
    ['topic read a/\u0000', 'acl.conf line 1: invalid topic filter "a/\\u0000": it contains U+0000 [MQTT-1.5.3-2]'],
    ['topic read devices/%c', 'acl.conf line 1: %c and %u are substituted in "pattern" lines only, not in "topic" lines: "devices/%c"'],
    ['topic users/%u/#', 'acl.conf line 1: %c and %u are substituted in "pattern" lines only'],
    ['pattern read devices/%c#', 'acl.conf line 1: invalid topic filter "devices/%c#": \'#\' must be a whole level'],
    ['pattern read %u+/x', 'acl.conf line 1: invalid topic filter "%u+/x": \'+\' must be a whole level'],
    ['stream', 'acl.conf line 1: missing rights and stream name after "stream"'],
    ['stream read', 'acl.conf line 1: missing stream name (or * for every stream) after "stream read"'],
    ['stream write orders', 'acl.conf line 1: unknown stream right "write"; expected a comma-separated list of read, produce, groups, replay or all'],
    ['stream read,,produce orders', 'acl.conf line 1: unknown stream right ""'],
    ['stream read, produce orders', 'acl.conf line 1: unknown stream right ""'],
    ['stream read orders/eu', 'acl.conf line 1: invalid stream name "orders/eu": a stream name is 1 to 128 letters'],
    ['stream read two names', 'acl.conf line 1: invalid stream name "two names"'],
    ['stream read orders*', 'acl.conf line 1: invalid stream name "orders*"']
  ])('%j', (text, message) => {
    const err = failure(text)
    expect(err.message.startsWith(message), err.message).toBe(true)
    expect(err.code).toBe('ACL_FILE')
    expect(err).toBeInstanceOf(CulexError)
    expect(err.details).toEqual({ path: 'acl.conf', line: 1 })
  })

  it('counts lines, comments and blank lines included', () => {
    const err = failure('# rules\n\nuser alice\ntopic read a/#\n\n# next\ntopic wirte b\n')
    expect(err.message).toBe('acl.conf line 7: unknown access "wirte"; expected read, write, readwrite or deny')
    expect(err.details).toEqual({ path: 'acl.conf', line: 7 })
  })

  it('takes a line that only looks like an inline comment as part of the filter', () => {
    expect(failure('topic read a/b # the b topic').message).toMatch(/line 1: invalid topic filter "a\/b # the b topic"/)
  })
})

describe('readAclFile', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'culex-acl-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('reads and parses a file', async () => {
    const path = join(dir, 'ok.conf')
    await writeFile(path, 'user alice\ntopic read a/#\n')
    expect((await readAclFile(path)).users.get('alice')).toEqual([{ access: 'read', filter: 'a/#', line: 2 }])
  })

  it('names the file in a parse error', async () => {
    const path = join(dir, 'bad.conf')
    await writeFile(path, 'user alice\nfoo bar\n')
    await expect(readAclFile(path)).rejects.toThrow(`${path} line 2: unknown keyword "foo"`)
  })

  it('says that a missing file is missing', async () => {
    const path = join(dir, 'absent.conf')
    const err = await readAclFile(path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AclFileError)
    expect((err as AclFileError).message).toBe(`ACL file ${path} does not exist`)
    expect((err as AclFileError).details).toEqual({ path })
  })

  it('reports other read failures as AclFileError', async () => {
    await expect(readAclFile(dir)).rejects.toThrow(new RegExp(`^cannot read ACL file ${dir}: .*EISDIR`))
  })

  it('refuses bytes that are not UTF-8, with their line, rather than match U+FFFD', async () => {
    const path = join(dir, 'latin1.conf')
    await writeFile(path, Buffer.concat([Buffer.from('user alice\ntopic read caf'), Buffer.from([0xe9]), Buffer.from('/#\n')]))
    await expect(readAclFile(path)).rejects.toThrow(`${path} line 2: it is not well-formed UTF-8`)
  })
})

describe("mosquitto's own example", () => {
  // aclfile.example in the mosquitto repository (eclipse/mosquitto, 2.0), verbatim
  const AclFileExample = `# This affects access control for clients with no username.
topic read $SYS/#

# This only affects clients with username "roger".
user roger
topic foo/bar

# This affects all clients.
pattern write $SYS/broker/connection/%c/state
`

  it('parses aclfile.example as mosquitto does', () => {
    const file = parse(AclFileExample)
    expect(file.anonymous).toEqual([{ access: 'read', filter: '$SYS/#', line: 2 }])
    expect(file.users).toEqual(new Map([['roger', [{ access: 'readwrite', filter: 'foo/bar', line: 6 }]]]))
    expect(file.patterns).toEqual([{ access: 'write', filter: '$SYS/broker/connection/%c/state', line: 9 }])
  })

  it('parses the pattern examples of mosquitto.conf(5)', () => {
    const file = parse('pattern write sensor/%u/data\npattern write $SYS/broker/connection/%c/state\n')
    expect(file.patterns.map((p) => [p.access, p.filter])).toEqual([
      ['write', 'sensor/%u/data'],
      ['write', '$SYS/broker/connection/%c/state']
    ])
  })
})
