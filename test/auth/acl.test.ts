import { describe, expect, it } from 'vitest'
import { parseAclFile } from '../../src/auth/acl-file.js'
import { Acl, aclFromGrants, type ClientAcl } from '../../src/auth/acl.js'
import { matches } from '../../src/mqtt/topics.js'

const acl = (text: string): Acl => new Acl(parseAclFile(text, 'acl.conf'))
const client = (text: string, clientId: string, username: string | null): ClientAcl => acl(text).forClient(clientId, username)

/** What the client may do on a topic: 'rw', 'r', 'w' or '-'. */
function access(c: ClientAcl, topic: string): string {
  const r = c.canReceive(topic)
  const w = c.canPublish(topic)
  return r && w ? 'rw' : r ? 'r' : w ? 'w' : '-'
}

describe('topic rules as written', () => {
  const FILE = `
topic read public/#
topic write inbox/anonymous
user alice
topic read a/#
topic write a/out
topic readwrite shared/+/data
topic deny a/secret/#
user bob
topic b/#
`
  const rules = acl(FILE)

  it.each([
    // anonymous clients: the lines before the first user line
    [null, 'public/news', 'r'],
    [null, 'public', 'r'],
    [null, 'inbox/anonymous', 'w'],
    [null, 'a/x', '-'],
    [null, 'b/x', '-'],
    // alice
    ['alice', 'a/x', 'r'],
    ['alice', 'a', 'r'],
    ['alice', 'a/out', 'rw'],
    ['alice', 'shared/1/data', 'rw'],
    ['alice', 'shared/1/data/x', '-'],
    ['alice', 'shared//data', 'rw'],
    ['alice', 'a/secret', '-'],
    ['alice', 'a/secret/x/y', '-'],
    ['alice', 'public/news', '-'],
    ['alice', 'b/x', '-'],
    // bob: `topic` without an access word is readwrite
    ['bob', 'b', 'rw'],
    ['bob', 'b/x/y', 'rw'],
    ['bob', 'a/x', '-'],
    // a username without a section has no topic rules (and no patterns here)
    ['carol', 'public/news', '-'],
    ['carol', 'a/x', '-'],
    // the empty username is a username, not an anonymous client
    ['', 'public/news', '-']
  ])('%s on %j: %s', (username, topic, expected) => {
    expect(access(rules.forClient('c1', username), topic)).toBe(expected)
  })

  it('allows nothing with an empty file', () => {
    const c = client('', 'c1', null)
    expect(access(c, 'a')).toBe('-')
    expect(c.canSubscribe('#')).toBe(false)
  })
})

describe('deny wins', () => {
  it('over a broader grant, whatever the order of the lines', () => {
    for (const text of ['topic readwrite a/#\ntopic deny a/b/+', 'topic deny a/b/+\ntopic readwrite a/#']) {
      const c = client(text, 'c', null)
      expect(access(c, 'a/b')).toBe('rw')
      expect(access(c, 'a/b/c')).toBe('-')
      expect(access(c, 'a/b/c/d')).toBe('rw')
    }
  })

  it("Culex: a pattern's deny wins over a user's grant (mosquitto stops at the user's grant)", () => {
    const c = client('user alice\ntopic readwrite devices/#\npattern deny devices/%c/config', 'd1', 'alice')
    expect(access(c, 'devices/d1/config')).toBe('-')
    expect(access(c, 'devices/d2/config')).toBe('rw')
  })

  it("and a user's deny wins over a pattern's grant", () => {
    const c = client('user alice\ntopic deny devices/d1/config\npattern readwrite devices/%c/#', 'd1', 'alice')
    expect(access(c, 'devices/d1/config')).toBe('-')
    expect(access(c, 'devices/d1/state')).toBe('rw')
  })

  it('a deny for one direction refuses both: deny has no direction', () => {
    const c = client('topic read a/#\ntopic write a/#\ntopic deny a/x', 'c', null)
    expect(access(c, 'a/x')).toBe('-')
    expect(access(c, 'a/y')).toBe('rw')
  })
})

describe('patterns', () => {
  const FILE = `
pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write users/%u/outbox/%c
pattern read status
user alice
topic read a/#
`
  const rules = acl(FILE)

  it('substitute %c and %u for each client', () => {
    const c = rules.forClient('d1', 'alice')
    expect(access(c, 'devices/d1/temp')).toBe('rw')
    expect(access(c, 'devices/d1')).toBe('rw')
    expect(access(c, 'devices/d2/temp')).toBe('-')
    expect(access(c, 'users/alice/inbox')).toBe('r')
    expect(access(c, 'users/bob/inbox')).toBe('-')
    expect(access(c, 'users/alice/outbox/d1')).toBe('w')
    expect(access(c, 'users/alice/outbox/d2')).toBe('-')
    // a pattern without %c or %u applies to everyone; the user's own lines too
    expect(access(c, 'status')).toBe('r')
    expect(access(c, 'a/x')).toBe('r')
  })

  it('apply to anonymous clients, except those with %u', () => {
    const c = rules.forClient('d9', null)
    expect(access(c, 'devices/d9/temp')).toBe('rw')
    expect(access(c, 'users//inbox')).toBe('-')
    expect(access(c, 'users/%u/inbox')).toBe('-')
    expect(access(c, 'users//outbox/d9')).toBe('-')
    expect(access(c, 'status')).toBe('r')
    expect(access(c, 'a/x')).toBe('-')
  })

  it('apply to usernames without a section', () => {
    const c = rules.forClient('d3', 'zoe')
    expect(access(c, 'users/zoe/inbox')).toBe('r')
    expect(access(c, 'devices/d3/x')).toBe('rw')
    expect(access(c, 'a/x')).toBe('-')
  })

  it('substitute inside a level, and only once (a value holding %u stays as it is)', () => {
    const c = client('pattern readwrite dev-%c/%u-in', '%u', 'bob')
    expect(access(c, 'dev-%u/bob-in')).toBe('rw')
    expect(access(c, 'dev-bob/bob-in')).toBe('-')
  })

  it("substitute mosquitto's bridge-state example", () => {
    const c = client('pattern write $SYS/broker/connection/%c/state', 'bridge-1', null)
    expect(access(c, '$SYS/broker/connection/bridge-1/state')).toBe('w')
    expect(access(c, '$SYS/broker/connection/bridge-2/state')).toBe('-')
  })

  it('are computed per client: two clients of one user do not share them', () => {
    const a = rules.forClient('d1', 'alice')
    const b = rules.forClient('d2', 'alice')
    expect(access(a, 'devices/d2/x')).toBe('-')
    expect(access(b, 'devices/d2/x')).toBe('rw')
  })
})

describe("client ids and usernames with '+', '#', '/' or a leading '$' (CVE-2017-7650)", () => {
  const FILE = `
pattern readwrite devices/%c/#
pattern read users/%u/#
pattern readwrite %c/own
topic read public/#
user evil/name
topic read public/#
`
  const rules = acl(FILE)

  it.each([
    ['+', 'devices/d1/x'],
    ['#', 'devices/d1/x'],
    ['a/b', 'devices/a/b'],
    ['x/#', 'devices/x/y']
  ])('a client id %j gets nothing from a pattern that substitutes it', (clientId, topic) => {
    const c = rules.forClient(clientId, null)
    expect(access(c, topic)).toBe('-')
    expect(access(c, `devices/${clientId}`)).toBe('-')
    expect(c.canSubscribe(`devices/${clientId.replace('#', '+')}`)).toBe(false)
    // other rules still apply
    expect(access(c, 'public/x')).toBe('r')
  })

  it.each(['+', '#', 'evil/name', 'a+b'])('a username %j gets nothing from a pattern that substitutes it', (username) => {
    const c = rules.forClient('d1', username)
    expect(access(c, 'users/x/y')).toBe('-')
    expect(access(c, `users/${username.replace(/[+#]/g, 'x')}`)).toBe('-')
    // the client id pattern still applies
    expect(access(c, 'devices/d1/x')).toBe('rw')
  })

  it("a user section for a name with '/' still applies: the name is not substituted into a filter", () => {
    expect(access(rules.forClient('d1', 'evil/name'), 'public/x')).toBe('r')
  })

  it("a client id starting with '$' does not reach '$' topics through a pattern's first level", () => {
    const c = rules.forClient('$SYS', null)
    expect(access(c, '$SYS/own')).toBe('-')
    expect(access(c, 'devices/$SYS/x')).toBe('rw')
  })

  it("a value starting with '$' still substitutes into a deny pattern: it denies no more than written", () => {
    const c = client('topic readwrite #\ntopic readwrite $x/#\npattern deny %c/secret', '$x', null)
    expect(access(c, '$x/secret')).toBe('-')
    expect(access(c, '$x/public')).toBe('rw')
    expect(access(c, 'b')).toBe('rw')
  })

  it('a deny pattern is widened, not dropped: it covers what lies under the levels before the substitution', () => {
    const text = 'topic readwrite #\npattern deny private/%c/#'
    expect(access(client(text, 'a', null), 'private/a/x')).toBe('-')
    expect(access(client(text, 'a', null), 'private/b/x')).toBe('rw')
    for (const id of ['+', '#', 'a/b']) {
      const c = client(text, id, null)
      expect(access(c, 'private/b/x')).toBe('-')
      expect(access(c, 'private')).toBe('-')
      expect(access(c, 'public')).toBe('rw')
      expect(c.canSubscribe('private/+')).toBe(false)
      expect(c.canSubscribe('#')).toBe(true)
    }
  })

  it('a deny pattern that substitutes the first level denies everything when it cannot be substituted', () => {
    const text = 'topic readwrite #\ntopic read $SYS/#\npattern deny %c/secret'
    expect(access(client(text, 'a', null), 'a/secret')).toBe('-')
    expect(access(client(text, 'a', null), 'b/secret')).toBe('rw')
    for (const id of ['a/b', '+', '#']) {
      const c = client(text, id, null)
      expect(access(c, 'b')).toBe('-')
      expect(access(c, '$SYS/x')).toBe('-')
      expect(c.canSubscribe('#')).toBe(false)
    }
  })
})

describe('SUBSCRIBE (Culex: checked, unlike mosquitto 2.0) over partly forbidden topics', () => {
  const FILE = `
user alice
topic read a/#
topic deny a/secret/#
topic write w/#
topic read $SYS/broker/load/#
user bob
topic readwrite #
topic deny x/y
topic deny x/z
user root
topic read #
topic read $SYS/#
`
  const rules = acl(FILE)

  it.each([
    ['alice', '#', true],
    ['alice', '+/+', true],
    ['alice', 'a/#', true],
    ['alice', 'a/+/c', true],
    ['alice', 'a', true],
    ['alice', 'b/#', false],
    ['alice', 'b', false],
    ['alice', 'a/secret/#', false],
    ['alice', 'a/secret/+', false],
    ['alice', 'a/secret', false],
    ['alice', 'a/+', true],
    // write rules are no read rules
    ['alice', 'w/#', false],
    // '$SYS' needs a rule that reaches it [MQTT-4.7.2-1]
    ['alice', '$SYS/#', true],
    ['alice', '$SYS/broker/+', true],
    ['alice', '$SYS/clients/#', false],
    ['bob', '#', true],
    ['bob', '$SYS/#', false],
    ['bob', '+/monitor/Clients', true],
    ['bob', 'x/y', false],
    ['bob', 'x/+', true],
    ['root', '$SYS/#', true],
    ['root', '#', true],
    // shared subscriptions are judged by their filter (MQTT 5.0 §4.8.2)
    ['alice', '$share/g/a/#', true],
    ['alice', '$share/g/b/#', false],
    ['alice', '$share/g', false],
    ['alice', '$share//a/#', false],
    // an invalid filter is refused (the broker refuses it before)
    ['alice', 'a/#/b', false]
  ])('%s subscribes to %j: %s', (username, filter, expected) => {
    expect(rules.forClient('c', username).canSubscribe(filter)).toBe(expected)
  })

  it('grants `#` with only `topic read a/#`, and then lets only a/... through', () => {
    const c = rules.forClient('c', 'alice')
    expect(c.canSubscribe('#')).toBe(true)
    expect(c.canReceive('a/b')).toBe(true)
    expect(c.canReceive('a/secret/b')).toBe(false)
    expect(c.canReceive('b/c')).toBe(false)
    expect(c.canReceive('$SYS/broker/load/1min')).toBe(true)
    expect(c.canReceive('$SYS/broker/uptime')).toBe(false)
  })

  it('refuses a filter whose every readable part one deny covers, even when no deny covers the whole filter', () => {
    const c = client('topic read a/b\ntopic deny a/b\ntopic read c/+/x\ntopic deny c/#', 'c', null)
    expect(c.canSubscribe('a/+')).toBe(false)
    expect(c.canSubscribe('+/+')).toBe(false)
    expect(c.canSubscribe('#')).toBe(false)
  })

  it('grants a filter whose readable part is denied only by several rules together (deliveries are still filtered)', () => {
    const c = client('topic read a/+\ntopic deny a/x\ntopic deny a/y', 'c', null)
    expect(c.canSubscribe('a/x')).toBe(false)
    expect(c.canSubscribe('a/+')).toBe(true)
    expect(c.canReceive('a/x')).toBe(false)
    expect(c.canReceive('a/z')).toBe(true)
  })

  it('counts substituted patterns', () => {
    const c = client('pattern read devices/%c/#\npattern deny devices/%c/private/#', 'd1', null)
    expect(c.canSubscribe('devices/+/status')).toBe(true)
    expect(c.canSubscribe('devices/d1/#')).toBe(true)
    expect(c.canSubscribe('devices/d2/#')).toBe(false)
    expect(c.canSubscribe('devices/d1/private/#')).toBe(false)
  })
})

describe('$SYS: only the matching rule for $ topics [MQTT-4.7.2-1]', () => {
  it('`#` and `+/...` do not reach $SYS; an explicit rule does', () => {
    const c = client('topic readwrite #\ntopic read +/broker/#', 'c', null)
    expect(access(c, '$SYS/broker/uptime')).toBe('-')
    expect(access(c, '$share/x')).toBe('-')
    const sys = client('topic read $SYS/#', 'c', null)
    expect(access(sys, '$SYS/broker/uptime')).toBe('r')
    expect(access(sys, '$SYS')).toBe('r')
    expect(access(sys, 'a')).toBe('-')
  })

  it('a rule below the first level matches $ levels like any other', () => {
    const c = client('topic read a/+/c\ntopic read b/#', 'c', null)
    expect(access(c, 'a/$x/c')).toBe('r')
    expect(access(c, 'b/$SYS')).toBe('r')
  })

  it('grants nothing to $SYS writes beyond what is written (the reserved-topics hook refuses them anyway)', () => {
    const c = client('topic write $SYS/#', 'c', null)
    expect(c.canPublish('$SYS/x')).toBe(true)
    expect(c.canPublish('x')).toBe(false)
  })
})

describe('stream rights', () => {
  const rules = acl(`
stream read public
stream read,replay metrics
user alice
stream read,produce orders
stream groups orders
stream read *
user admin
stream all *
user bob
topic read x
`)

  it('grants the rights of the user lines, merged', () => {
    const r = rules.streamRights('alice')
    expect(r.allows('read', 'orders')).toBe(true)
    expect(r.allows('produce', 'orders')).toBe(true)
    expect(r.allows('groups', 'orders')).toBe(true)
    expect(r.allows('replay', 'orders')).toBe(false)
    expect(r.allows('produce', 'invoices')).toBe(false)
    // '*' is every stream
    expect(r.allows('read', 'invoices')).toBe(true)
    expect(r.streams('read')).toBe('all')
    expect(r.streams('produce')).toEqual(new Set(['orders']))
    expect(r.streams('replay')).toEqual(new Set())
  })

  it('`all *` is every right on every stream', () => {
    const r = rules.streamRights('admin')
    for (const right of ['read', 'produce', 'groups', 'replay'] as const) {
      expect(r.allows(right, 'anything')).toBe(true)
      expect(r.streams(right)).toBe('all')
    }
  })

  it('anonymous clients get the lines before the first user line', () => {
    const r = rules.streamRights(null)
    expect(r.allows('read', 'public')).toBe(true)
    expect(r.allows('replay', 'metrics')).toBe(true)
    expect(r.allows('produce', 'public')).toBe(false)
    expect(r.allows('read', 'orders')).toBe(false)
    expect(r.streams('read')).toEqual(new Set(['public', 'metrics']))
  })

  it('users without stream lines, and unknown users, have none', () => {
    for (const user of ['bob', 'nobody', '']) {
      const r = rules.streamRights(user)
      expect(r.allows('read', 'public')).toBe(false)
      expect(r.streams('read')).toEqual(new Set())
    }
  })
})

describe('aclFromGrants (token claims)', () => {
  const c = aclFromGrants({ publish: ['devices/d1/#', 'events'], subscribe: ['devices/d1/cmd/+', 'broadcast/#', '$SYS/broker/uptime'] })

  it('publishes where a publish filter matches', () => {
    expect(c.canPublish('devices/d1/temp')).toBe(true)
    expect(c.canPublish('devices/d1')).toBe(true)
    expect(c.canPublish('events')).toBe(true)
    expect(c.canPublish('devices/d2/temp')).toBe(false)
    expect(c.canPublish('broadcast/x')).toBe(false)
  })

  it('receives where a subscribe filter matches', () => {
    expect(c.canReceive('devices/d1/cmd/reboot')).toBe(true)
    expect(c.canReceive('broadcast/a/b')).toBe(true)
    expect(c.canReceive('$SYS/broker/uptime')).toBe(true)
    expect(c.canReceive('devices/d1/temp')).toBe(false)
  })

  it('subscribes to a filter that meets a subscribe filter', () => {
    expect(c.canSubscribe('#')).toBe(true)
    expect(c.canSubscribe('devices/+/cmd/#')).toBe(true)
    expect(c.canSubscribe('devices/d2/#')).toBe(false)
    expect(c.canSubscribe('$SYS/#')).toBe(true)
    expect(c.canSubscribe('$SYS/broker/load')).toBe(false)
    expect(c.canSubscribe('$share/g/broadcast/x')).toBe(true)
  })

  it('grants nothing for an empty claim or an invalid filter', () => {
    const none = aclFromGrants({ publish: [], subscribe: ['a/#/b', ''] })
    expect(none.canPublish('a')).toBe(false)
    expect(none.canReceive('a/x/b')).toBe(false)
    expect(none.canSubscribe('#')).toBe(false)
  })
})

/** A deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let s = seed
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('the rule index agrees with topics.ts `matches`', () => {
  const LEVELS = ['a', 'b', '', '$s', 'ab']
  const ACCESS = ['read', 'write', 'readwrite', 'deny'] as const

  it('on 300 random rule sets and every topic of up to 4 levels', () => {
    const random = prng(7)
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
    let layer = LEVELS.slice()
    const topics = [...layer]
    for (let depth = 2; depth <= 4; depth++) {
      layer = layer.flatMap((t) => LEVELS.map((l) => `${t}/${l}`))
      topics.push(...layer)
    }
    for (let k = 0; k < 300; k++) {
      const rules: Array<{ access: (typeof ACCESS)[number]; filter: string }> = []
      const n = 1 + Math.floor(random() * 8)
      for (let i = 0; i < n; i++) {
        const depth = 1 + Math.floor(random() * 4)
        const levels = Array.from({ length: depth }, (_, j) => (j === depth - 1 && random() < 0.3 ? '#' : random() < 0.3 ? '+' : pick(LEVELS)))
        // an empty filter is no filter [MQTT-4.7.3-1]
        if (levels.join('/') !== '') rules.push({ access: pick(ACCESS), filter: levels.join('/') })
      }
      const c = client(rules.map((r) => `topic ${r.access} ${r.filter}`).join('\n'), 'c', null)
      const wrong: string[] = []
      for (const topic of topics) {
        const hit = rules.filter((r) => matches(r.filter, topic))
        const denied = hit.some((r) => r.access === 'deny')
        const read = !denied && hit.some((r) => r.access === 'read' || r.access === 'readwrite')
        const write = !denied && hit.some((r) => r.access === 'write' || r.access === 'readwrite')
        if (c.canReceive(topic) !== read || c.canPublish(topic) !== write) wrong.push(topic)
      }
      expect(wrong, JSON.stringify(rules)).toEqual([])
    }
  })

  it('with 20,000 rules for one user, fast', () => {
    const lines = ['user many']
    for (let i = 0; i < 10_000; i++) lines.push(`topic read site/${i}/+/temp`, `topic write site/${i}/cmd/#`)
    lines.push('topic deny site/42/+/temp')
    const c = acl(lines.join('\n')).forClient('c', 'many')
    expect(c.canReceive('site/9999/r1/temp')).toBe(true)
    expect(c.canReceive('site/42/r1/temp')).toBe(false)
    expect(c.canReceive('site/10000/r1/temp')).toBe(false)
    expect(c.canPublish('site/7/cmd')).toBe(true)
    expect(c.canPublish('site/7/cmd/a/b')).toBe(true)
    expect(c.canPublish('site/7/r1/temp')).toBe(false)
    const topics = Array.from({ length: 12_000 }, (_, i) => `site/${i}/r1/temp`)
    const expected = topics.filter((_, i) => i < 10_000 && i !== 42).length
    const start = performance.now()
    let n = 0
    for (let round = 0; round < 10; round++) for (const t of topics) if (c.canReceive(t)) n++
    expect(n).toBe(10 * expected)
    expect(performance.now() - start).toBeLessThan(2000)
  })
})
