import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino, type Logger } from 'pino'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import { newApiToken } from '../../src/auth/api-tokens.js'
import { Authentication } from '../../src/auth/authentication.js'
import type * as PasswordFile from '../../src/auth/password-file.js'
import { hashPassword, verifyPassword, writePasswordFile } from '../../src/auth/password-file.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { apiCredentialsRequired, ConfigError, DEFAULTS, loadConfig, type CulexConfig } from '../../src/config/index.js'
import type { BridgeControl, StreamRight } from '../../src/http/server.js'
import type { BridgeStatus } from '../../src/bridges/types.js'
import type { Membership, PushServerFrame, ReplayStatus } from '../../src/http/wire.js'
import type { GroupSummary } from '../../src/log/groups/types.js'
import { ReplayJobs } from '../../src/log/replay.js'
import { stream } from '../log/abstract-log.js'
import { harnessesClosedAfterEach, sleep, type Harness } from './harness.js'

// Authentication and stream rights of the HTTP API (src/http/auth.ts), with the ApiAccess built
// the real way: a password file, an ACL file and api tokens on disk, Authentication.load(config).

// every scrypt check goes through this spy, so the tests can count them (the verified caches)
vi.mock('../../src/auth/password-file.js', async (importOriginal) => {
  const original = await importOriginal<typeof PasswordFile>()
  return { ...original, verifyPassword: vi.fn(original.verifyPassword) }
})
const scryptChecks = vi.mocked(verifyPassword)

const start = harnessesClosedAfterEach()

// The cheapest scrypt parameters the bounds allow: Basic checks stay fast.
const FAST = { ln: 10, r: 1, p: 1 }

/** Password file users; `nobody` has no section in the ACL file. */
const USERS = ['admin', 'reader', 'producer', 'grouper', 'replayer', 'tele', 'nobody'] as const
type User = (typeof USERS)[number]
const passwordOf = (user: string): string => `pw of ${user}: ${user.length}`

// `ops` and `ci` are api tokens (their names are ACL users too)
const ACL = `# the HTTP API's rights, next to the MQTT ones
user admin
topic readwrite #
stream all *
user reader
stream read orders
user producer
stream produce orders
user grouper
stream groups orders
user replayer
stream replay orders
user tele
stream all telemetry
user ops
stream all *
user ci
stream read,produce telemetry
`

const STREAMS = [stream('orders', 1), stream('telemetry', 2), stream('audit', 1)]

let dir: string
let passwordFile: string
let aclFile: string
let tokens: Record<'ops' | 'ci' | 'intruder', { token: string; hash: string }>

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'culex-api-auth-'))
  passwordFile = join(dir, 'passwords')
  aclFile = join(dir, 'acl')
  const users = new Map<string, string>()
  for (const user of USERS) users.set(user, await hashPassword(passwordOf(user), FAST))
  await writePasswordFile(passwordFile, users)
  writeFileSync(aclFile, ACL)
  // `intruder` is a well-formed token whose name the config does not know
  const [ops, ci, intruder] = await Promise.all([newApiToken('ops'), newApiToken('ci'), newApiToken('intruder')])
  tokens = { ops, ci, intruder }
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

function configWith(overrides: Partial<CulexConfig> = {}): CulexConfig {
  return {
    ...DEFAULTS,
    passwordFile,
    aclFile,
    apiTokens: { ops: tokens.ops.hash, ci: tokens.ci.hash },
    // no throttle unless a test is about it: the 401 tests fail on purpose many times
    loginFailuresPerMinute: 0,
    ...overrides
  }
}

const silent = (): Logger => pino({ level: 'silent' })

/** A harness whose API access is `Authentication.load(config).api()`, with a replay service that publishes nowhere. */
async function serve(overrides: Partial<CulexConfig> = {}, logger: Logger = silent()): Promise<Harness> {
  const auth = await Authentication.load(configWith(overrides), logger, new BrokerCounters(logger))
  const h = await start(STREAMS, { access: auth.api(), replay: (log) => new ReplayJobs(log, async () => {}), logger })
  for (const s of ['orders', 'telemetry', 'audit']) {
    await h.rocks.append(s, [{ key: 'k', value: Buffer.from(`${s} record`), headers: {}, topic: null }])
  }
  return h
}

const bearer = (token: string): string => `Bearer ${token}`
const basic = (user: string, password = passwordOf(user)): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** The Authorization header of a password file user or of an api token. */
function as(caller: User | 'ops' | 'ci'): string {
  return caller === 'ops' || caller === 'ci' ? bearer(tokens[caller].token) : basic(caller)
}

interface Answer {
  status: number
  headers: Headers
  text: string
  body: Record<string, unknown>
}

async function call(h: Harness, method: string, path: string, options: { auth?: string; body?: unknown } = {}): Promise<Answer> {
  const headers: Record<string, string> = {}
  if (options.auth !== undefined) headers.authorization = options.auth
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(h.base + path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) })
  const text = await res.text()
  const json = text !== '' && (res.headers.get('content-type') ?? '').includes('json')
  return { status: res.status, headers: res.headers, text, body: json ? (JSON.parse(text) as Record<string, unknown>) : {} }
}

function expectUnauthenticated(a: Answer, what: string): void {
  expect(a.status, `${what}: ${a.text}`).toBe(401)
  expect(a.body.error, what).toBe('UNAUTHENTICATED')
  const challenge = a.headers.get('www-authenticate') ?? ''
  expect(challenge, what).toMatch(/\bBearer realm="culex"/)
  expect(challenge, what).toMatch(/\bBasic realm="culex"/)
}

function expectForbidden(a: Answer, user: string, right: StreamRight, streamName: string, what = ''): void {
  expect(a.status, `${user} ${what}: ${a.text}`).toBe(403)
  expect(a.body).toMatchObject({ error: 'FORBIDDEN', right, stream: streamName })
  expect(a.body.message).toBe(`user "${user}" has no ${right} right on stream "${streamName}"`)
  expect(a.headers.get('www-authenticate')).toBeNull()
}

async function joinGroup(h: Harness, auth: string | undefined, group: string, streams: string[], memberId?: string): Promise<Membership> {
  const res = await call(h, 'POST', `/api/v1/groups/${group}/members`, { auth, body: { streams, memberId } })
  expect(res.status, res.text).toBe(200)
  return res.body as unknown as Membership
}

async function startReplay(h: Harness, auth: string | undefined, streamName: string): Promise<ReplayStatus> {
  const res = await call(h, 'POST', `/api/v1/streams/${streamName}/replay`, { auth, body: { from: 'earliest', topicPrefix: 'replay/' } })
  expect(res.status, res.text).toBe(202)
  return res.body as unknown as ReplayStatus
}

interface Route {
  right: StreamRight
  method: string
  path: string
  body?: unknown
  /** The status when allowed. */
  ok: number
}

/**
 * Every route that needs a right on `s`, in an order that can run once: `member` must be a member of
 * group `group` on `s` alone (it leaves at the end) and `replay` a replay of `s`.
 */
function routesOn(s: string, group: string, member: string, replay: string): Route[] {
  const m = `/api/v1/groups/${group}/members/${member}`
  return [
    { right: 'read', method: 'GET', path: `/api/v1/streams/${s}`, ok: 200 },
    { right: 'read', method: 'GET', path: `/api/v1/streams/${s}/partitions/0/records`, ok: 200 },
    { right: 'read', method: 'GET', path: `/api/v1/streams/${s}/partitions/0/frames`, ok: 200 },
    { right: 'produce', method: 'POST', path: `/api/v1/streams/${s}/records`, body: { value: 'v', encoding: 'utf8' }, ok: 200 },
    // another group: a new member of `group` would take the partition from `member`
    { right: 'groups', method: 'POST', path: `/api/v1/groups/${group}-2/members`, body: { streams: [s] }, ok: 200 },
    { right: 'groups', method: 'GET', path: `/api/v1/groups/${group}`, ok: 200 },
    { right: 'groups', method: 'POST', path: `${m}/heartbeat`, ok: 200 },
    { right: 'groups', method: 'POST', path: `${m}/fetch`, body: { maxRecords: 10 }, ok: 200 },
    { right: 'groups', method: 'POST', path: `${m}/commit`, body: { offsets: [{ stream: s, partition: 0, offset: 1 }] }, ok: 200 },
    { right: 'groups', method: 'POST', path: `/api/v1/groups/${group}-idle/reset`, body: { stream: s, to: 'earliest' }, ok: 200 },
    { right: 'groups', method: 'DELETE', path: m, ok: 204 },
    { right: 'replay', method: 'POST', path: `/api/v1/streams/${s}/replay`, body: { from: 'earliest', topicPrefix: 'r/' }, ok: 202 },
    { right: 'replay', method: 'GET', path: `/api/v1/replays/${replay}`, ok: 200 },
    { right: 'replay', method: 'DELETE', path: `/api/v1/replays/${replay}`, ok: 200 }
  ]
}

interface PushAttempt {
  /** 101 when the socket opened. */
  status: number
  headers: IncomingHttpHeaders
  /** The first frame after the upgrade (the assignment). */
  frame?: PushServerFrame
}

/** Opens the push socket of a member; the HTTP answer when the upgrade is refused. */
async function push(h: Harness, group: string, member: string, auth?: string): Promise<PushAttempt> {
  const url = `ws://127.0.0.1:${h.server.port}/api/v1/groups/${group}/members/${member}/push?encoding=utf8`
  const ws = new WebSocket(url, auth === undefined ? {} : { headers: { authorization: auth } })
  ws.on('error', () => {})
  try {
    return await new Promise<PushAttempt>((resolve, reject) => {
      ws.once('unexpected-response', (req, res) => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers })
        req.destroy()
      })
      ws.once('message', (data: Buffer) => resolve({ status: 101, headers: {}, frame: JSON.parse(data.toString()) as PushServerFrame }))
      ws.once('error', reject)
    })
  } finally {
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      const closed = new Promise((resolve) => ws.once('close', resolve))
      ws.terminate()
      await closed
    }
  }
}

describe('credentials required', () => {
  it('is what the config says: beyond loopback, or whenever MQTT clients must authenticate', async () => {
    const cases: Array<[Partial<CulexConfig>, boolean]> = [
      // a password file turns anonymous MQTT access off, and so requires API credentials
      [{}, true],
      [{ allowAnonymous: true }, false],
      [{ passwordFile: null }, false],
      [{ passwordFile: null, host: '::1' }, false],
      // api tokens alone do not make MQTT clients authenticate: on loopback they are optional
      [{ passwordFile: null, aclFile: null }, false],
      [{ passwordFile: null, allowAnonymous: false }, true],
      [{ passwordFile: null, jwtSecretFile: join(dir, 'never-read') }, true],
      [{ passwordFile: null, useIdentityAsUsername: true }, true],
      [{ host: '0.0.0.0', allowAnonymous: true }, true],
      [{ host: '192.0.2.7', passwordFile: null, allowAnonymous: true }, true]
    ]
    for (const [overrides, required] of cases) {
      expect(apiCredentialsRequired(configWith(overrides)), JSON.stringify(overrides)).toBe(required)
    }
    // and the access Authentication builds carries it
    const logger = silent()
    expect((await Authentication.load(configWith(), logger, new BrokerCounters(logger))).api().required).toBe(true)
    expect((await Authentication.load(configWith({ allowAnonymous: true }), logger, new BrokerCounters(logger))).api().required).toBe(false)
  })

  it('answers 401 with a Bearer and Basic challenge on every route, for every missing or bad credential', async () => {
    const h = await serve()
    const member = await joinGroup(h, as('admin'), 'g', ['orders'])
    const replay = await startReplay(h, as('admin'), 'orders')
    const routes: Array<Pick<Route, 'method' | 'path' | 'body'>> = [
      { method: 'GET', path: '/api/v1/streams' },
      { method: 'GET', path: '/api/v1/groups' },
      { method: 'GET', path: '/api/v1/replays' },
      ...routesOn('orders', 'g', member.memberId, replay.id),
      // the push route answered over plain HTTP: 401 comes before its 426
      { method: 'GET', path: `/api/v1/groups/g/members/${member.memberId}/push` },
      // no route: not even a 404 without credentials
      { method: 'GET', path: '/api/v1/nothing' }
    ]
    const wrongSecret = tokens.ops.token.replace(/_[A-Za-z0-9_-]{43}$/, `_${randomBytes(32).toString('base64url')}`)
    expect(wrongSecret).not.toBe(tokens.ops.token)
    const bad: Array<[string, string | undefined]> = [
      ['no Authorization header', undefined],
      ['an empty Authorization header', ''],
      ['a wrong token of a known name', bearer(wrongSecret)],
      ['a token of an unknown name', bearer(tokens.intruder.token)],
      ['a bearer value that is no token', bearer('not-a-token')],
      ['a scheme without a credential', 'Bearer'],
      ['a scheme with blanks only', 'Basic    '],
      ['Basic without a colon', `Basic ${Buffer.from('admin').toString('base64')}`],
      ['Basic with an empty user name', basic('', passwordOf('admin'))],
      ['Basic that is no base64', 'Basic !!!'],
      ['an unknown scheme', `Digest username="admin"`],
      ['a token without its scheme', tokens.ops.token],
      ['a wrong Basic password', basic('admin', 'wrong')],
      ['the password of another user', basic('admin', passwordOf('reader'))],
      ['an unknown Basic user', basic('mallory', passwordOf('admin'))]
    ]
    for (const route of routes) {
      for (const [what, auth] of bad) {
        expectUnauthenticated(await call(h, route.method, route.path, { auth, body: route.body }), `${route.method} ${route.path} with ${what}`)
      }
    }
    // nothing was done: the member is still there, the replay not cancelled, no record was produced
    expect((await call(h, 'POST', `/api/v1/groups/g/members/${member.memberId}/heartbeat`, { auth: as('admin') })).status).toBe(200)
    expect((await call(h, 'GET', `/api/v1/replays/${replay.id}`, { auth: as('admin') })).body.state).not.toBe('cancelled')
    expect((await h.rocks.describeStream('orders')).partitions[0]!.endOffset).toBe(1)
    const messages = await call(h, 'GET', '/api/v1/streams', { auth: 'Digest x' })
    expect(messages.body.message).toBe('unknown authorization scheme "digest"; use Bearer or Basic')
  })

  it('refuses a WebSocket upgrade of the push route without valid credentials, with 401 before the upgrade', async () => {
    const h = await serve()
    const member = await joinGroup(h, as('grouper'), 'g', ['orders'])
    for (const auth of [undefined, bearer(tokens.intruder.token), basic('grouper', 'wrong')]) {
      const attempt = await push(h, 'g', member.memberId, auth)
      expect(attempt.status, String(auth)).toBe(401)
      expect(attempt.headers['www-authenticate']).toMatch(/Bearer .*Basic/)
    }
    const opened = await push(h, 'g', member.memberId, as('grouper'))
    expect(opened.status).toBe(101)
    expect(opened.frame).toMatchObject({ records: [], assignments: [{ stream: 'orders', partition: 0 }] })
  })
})

describe('rights', () => {
  it('accepts a valid bearer token and valid Basic credentials', async () => {
    const h = await serve()
    const viaToken = await call(h, 'POST', '/api/v1/streams/telemetry/records', { auth: as('ci'), body: { value: 'from ci', encoding: 'utf8' } })
    expect(viaToken.status, viaToken.text).toBe(200)
    const viaBasic = await call(h, 'GET', '/api/v1/streams/orders', { auth: as('reader') })
    expect(viaBasic.status, viaBasic.text).toBe(200)
    expect(viaBasic.body).toMatchObject({ name: 'orders', records: 1 })
    // the scheme is case-insensitive, and blanks around the credential do not matter
    expect((await call(h, 'GET', '/api/v1/streams/telemetry', { auth: `bEaReR   ${tokens.ci.token}  ` })).status).toBe(200)
    expect((await call(h, 'GET', '/api/v1/streams/orders', { auth: as('reader').replace('Basic', 'basic') })).status).toBe(200)
    // a password may hold ':' (only the first one splits user and password)
    expect((await call(h, 'GET', '/api/v1/streams/orders', { auth: basic('reader') })).status).toBe(200)
    expect(passwordOf('reader')).toContain(':')
  })

  it('needs, on each route, the right the route names, on that stream; 403 FORBIDDEN names both', async () => {
    const h = await serve()
    const member = await joinGroup(h, as('grouper'), 'g', ['orders'])
    expect(member.assignments).toEqual([{ stream: 'orders', partition: 0 }])
    const replay = await startReplay(h, as('replayer'), 'orders')
    const holder: Record<StreamRight, User> = { read: 'reader', produce: 'producer', groups: 'grouper', replay: 'replayer' }
    const others = (right: StreamRight): Array<User | 'ci'> =>
      [...(['reader', 'producer', 'grouper', 'replayer', 'tele', 'nobody'] as const), 'ci' as const].filter((u) => u !== holder[right])
    for (const route of routesOn('orders', 'g', member.memberId, replay.id)) {
      const what = `${route.method} ${route.path}`
      for (const user of others(route.right)) {
        expectForbidden(await call(h, route.method, route.path, { auth: as(user), body: route.body }), user, route.right, 'orders', what)
      }
      const allowed = await call(h, route.method, route.path, { auth: as(holder[route.right]), body: route.body })
      expect(allowed.status, `${holder[route.right]} ${what}: ${allowed.text}`).toBe(route.ok)
    }
    // the refused produce and commits changed nothing; the allowed ones did
    expect((await h.rocks.describeStream('orders')).partitions[0]!.endOffset).toBe(2)
  })

  it('needs the groups right on the streams of the join body, all of them', async () => {
    const h = await serve()
    const both = await call(h, 'POST', '/api/v1/groups/g/members', { auth: as('grouper'), body: { streams: ['orders', 'telemetry'] } })
    expectForbidden(both, 'grouper', 'groups', 'telemetry')
    const reverse = await call(h, 'POST', '/api/v1/groups/g/members', { auth: as('tele'), body: { streams: ['telemetry', 'orders'] } })
    expectForbidden(reverse, 'tele', 'groups', 'orders')
    expect((await call(h, 'GET', '/api/v1/groups', { auth: as('admin') })).body).toEqual({ groups: [] })
  })

  it('commits only on streams the caller has the groups right on', async () => {
    const h = await serve()
    // a member of admin on telemetry: tele passes the member check, but may not commit orders
    const member = await joinGroup(h, as('admin'), 'g', ['telemetry'])
    const commit = (auth: string, s: string): Promise<Answer> =>
      call(h, 'POST', `/api/v1/groups/g/members/${member.memberId}/commit`, { auth, body: { offsets: [{ stream: s, partition: 0, offset: 0 }] } })
    expect((await commit(as('tele'), 'telemetry')).status).toBe(200)
    // the member's streams pass, the body's do not
    expectForbidden(await commit(as('tele'), 'orders'), 'tele', 'groups', 'orders')
  })

  it('refuses the push upgrade with 403 to a user without the groups right on the member streams', async () => {
    const h = await serve()
    const member = await joinGroup(h, as('grouper'), 'g', ['orders'])
    for (const user of ['reader', 'producer', 'replayer', 'tele', 'nobody'] as const) {
      const attempt = await push(h, 'g', member.memberId, as(user))
      expect(attempt.status, user).toBe(403)
    }
    expect((await push(h, 'g', member.memberId, as('admin'))).status).toBe(101)
    expect((await push(h, 'g', member.memberId, as('grouper'))).status).toBe(101)
  })

  it('lets a user with `stream all *`, by Basic or by token, do everything on every stream', async () => {
    const h = await serve()
    for (const caller of ['admin', 'ops'] as const) {
      for (const s of ['orders', 'telemetry', 'audit']) {
        const group = `${caller}-${s}`
        const member = await joinGroup(h, as(caller), group, [s])
        const replay = await startReplay(h, as(caller), s)
        for (const route of routesOn(s, group, member.memberId, replay.id)) {
          const res = await call(h, route.method, route.path, { auth: as(caller), body: route.body })
          expect(res.status, `${caller} ${route.method} ${route.path}: ${res.text}`).toBe(route.ok)
        }
        const member2 = await joinGroup(h, as(caller), group, [s])
        expect((await push(h, group, member2.memberId, as(caller))).status).toBe(101)
      }
    }
  })

  it('lists only the streams, groups and replays the caller has rights on', async () => {
    const h = await serve()
    await joinGroup(h, as('grouper'), 'g-orders', ['orders'])
    await joinGroup(h, as('tele'), 'g-telemetry', ['telemetry'])
    await joinGroup(h, as('admin'), 'g-both', ['orders', 'telemetry'])
    const ordersReplay = await startReplay(h, as('replayer'), 'orders')
    const telemetryReplay = await startReplay(h, as('tele'), 'telemetry')

    const streams = async (user: User | 'ci' | 'ops'): Promise<string[]> => {
      const res = await call(h, 'GET', '/api/v1/streams', { auth: as(user) })
      expect(res.status).toBe(200)
      return (res.body.streams as Array<{ name: string }>).map((s) => s.name).sort()
    }
    // any right on a stream shows it
    expect(await streams('admin')).toEqual(['audit', 'orders', 'telemetry'])
    expect(await streams('ops')).toEqual(['audit', 'orders', 'telemetry'])
    for (const user of ['reader', 'producer', 'grouper', 'replayer'] as const) expect(await streams(user), user).toEqual(['orders'])
    expect(await streams('tele')).toEqual(['telemetry'])
    expect(await streams('ci')).toEqual(['telemetry'])
    expect(await streams('nobody')).toEqual([])

    // a group shows to whoever has the groups right on every stream it consumes
    const groups = async (user: User | 'ci' | 'ops'): Promise<string[]> => {
      const res = await call(h, 'GET', '/api/v1/groups', { auth: as(user) })
      expect(res.status).toBe(200)
      return (res.body.groups as GroupSummary[]).map((g) => g.group).sort()
    }
    expect(await groups('admin')).toEqual(['g-both', 'g-orders', 'g-telemetry'])
    expect(await groups('grouper')).toEqual(['g-orders'])
    expect(await groups('tele')).toEqual(['g-telemetry'])
    for (const user of ['reader', 'producer', 'replayer', 'ci', 'nobody'] as const) expect(await groups(user), user).toEqual([])

    const replays = async (user: User | 'ci' | 'ops'): Promise<string[]> => {
      const res = await call(h, 'GET', '/api/v1/replays', { auth: as(user) })
      expect(res.status).toBe(200)
      return (res.body.replays as ReplayStatus[]).map((r) => r.id).sort()
    }
    expect(await replays('admin')).toEqual([ordersReplay.id, telemetryReplay.id].sort())
    expect(await replays('replayer')).toEqual([ordersReplay.id])
    expect(await replays('tele')).toEqual([telemetryReplay.id])
    for (const user of ['reader', 'producer', 'grouper', 'ci', 'nobody'] as const) expect(await replays(user), user).toEqual([])

    // and describing a group needs the groups right on each of its streams
    expectForbidden(await call(h, 'GET', '/api/v1/groups/g-both', { auth: as('grouper') }), 'grouper', 'groups', 'telemetry')
    expectForbidden(await call(h, 'GET', '/api/v1/groups/g-both', { auth: as('tele') }), 'tele', 'groups', 'orders')
  })
})

describe('shared groups and redrive', () => {
  it('needs the groups right on the streams and produce on the dead-letter stream to create a group', async () => {
    const h = await serve()
    expectForbidden(await call(h, 'PUT', '/api/v1/shared-groups/w', { auth: as('tele'), body: { streams: ['orders'] } }), 'tele', 'groups', 'orders')
    // grouper may consume orders, but rejecting would write orders.dlq, where it may not produce
    expectForbidden(await call(h, 'PUT', '/api/v1/shared-groups/w', { auth: as('grouper'), body: { streams: ['orders'] } }), 'grouper', 'produce', 'orders.dlq')
    expectForbidden(await call(h, 'PUT', '/api/v1/shared-groups/w', { auth: as('tele'), body: { streams: ['telemetry'] } }), 'tele', 'produce', 'telemetry.dlq')
    expect((await call(h, 'PUT', '/api/v1/shared-groups/w', { auth: as('admin'), body: { streams: ['telemetry'] } })).status).toBe(200)
    expectForbidden(await call(h, 'POST', '/api/v1/shared-groups/w/fetch', { auth: as('grouper'), body: { consumer: 'x' } }), 'grouper', 'groups', 'telemetry')
    expect((await call(h, 'POST', '/api/v1/shared-groups/w/fetch', { auth: as('tele'), body: { consumer: 'x' } })).status).toBe(200)
  })

  it('refuses to redrive a forged dead letter into a stream the caller may not produce to', async () => {
    const h = await serve()
    // tele may do everything on telemetry only; it writes a record that claims to come from orders
    const forged = { value: 'injected', encoding: 'utf8', headers: { 'culex-dlq-stream': 'orders', 'culex-dlq-partition': '0' } }
    expect((await call(h, 'POST', '/api/v1/streams/telemetry/records', { auth: as('tele'), body: forged })).status).toBe(200)
    const before = (await h.rocks.describeStream('orders')).partitions[0]!.endOffset
    expectForbidden(await call(h, 'POST', '/api/v1/streams/telemetry/redrive', { auth: as('tele'), body: { requestId: 'r' } }), 'tele', 'produce', 'orders')
    expect((await h.rocks.describeStream('orders')).partitions[0]!.endOffset).toBe(before)
    expectForbidden(await call(h, 'POST', '/api/v1/streams/orders/redrive', { auth: as('producer'), body: {} }), 'producer', 'read', 'orders')
  })
})

describe('bridges', () => {
  /** Two bridges as the API sees them: one carries orders out, one brings messages in. */
  function bridges(): BridgeControl & { paused: string[] } {
    const status = (name: string, direction: 'out' | 'in', streams: string[]): BridgeStatus => ({
      name,
      kind: 'webhook',
      direction,
      streams,
      state: 'running',
      lastError: null,
      lastErrorAt: null,
      delivered: 0,
      deadLettered: 0,
      retries: 0,
      lag: direction === 'out' ? 0 : null
    })
    const all = [status('orders-out', 'out', ['orders']), status('cmd-in', 'in', [])]
    const paused: string[] = []
    const one = (name: string): Promise<BridgeStatus | null> => Promise.resolve(all.find((b) => b.name === name) ?? null)
    return {
      paused,
      list: () => Promise.resolve(all),
      describe: one,
      pause: (name) => {
        paused.push(name)
        return one(name)
      },
      resume: one
    }
  }

  async function serveWith(control: BridgeControl): Promise<Harness> {
    const logger = silent()
    const auth = await Authentication.load(configWith(), logger, new BrokerCounters(logger))
    return start(STREAMS, { access: auth.api(), bridges: control, logger })
  }

  it('shows and controls an outbound bridge with the groups right on its streams, an inbound one with the groups right on every stream', async () => {
    const control = bridges()
    const h = await serveWith(control)
    const names = async (user: User | 'ops'): Promise<string[]> => {
      const res = await call(h, 'GET', '/api/v1/bridges', { auth: as(user) })
      expect(res.status).toBe(200)
      return (res.body.bridges as BridgeStatus[]).map((b) => b.name).sort()
    }
    expect(await names('admin')).toEqual(['cmd-in', 'orders-out'])
    expect(await names('grouper')).toEqual(['orders-out'])
    expect(await names('reader')).toEqual([])
    expect(await names('tele')).toEqual([])
    expectUnauthenticated(await call(h, 'GET', '/api/v1/bridges'), 'no credentials')

    expectForbidden(await call(h, 'GET', '/api/v1/bridges/orders-out', { auth: as('reader') }), 'reader', 'groups', 'orders')
    expectForbidden(await call(h, 'POST', '/api/v1/bridges/orders-out/pause', { auth: as('tele') }), 'tele', 'groups', 'orders')
    expectForbidden(await call(h, 'POST', '/api/v1/bridges/cmd-in/pause', { auth: as('grouper') }), 'grouper', 'groups', '*')
    expect(control.paused).toEqual([])
    expect((await call(h, 'POST', '/api/v1/bridges/orders-out/pause', { auth: as('grouper') })).status).toBe(200)
    expect((await call(h, 'POST', '/api/v1/bridges/cmd-in/pause', { auth: as('ops') })).status).toBe(200)
    expect(control.paused).toEqual(['orders-out', 'cmd-in'])
  })
})

describe('member ids', () => {
  it("cannot be used by another user without the groups right on the member's streams", async () => {
    const h = await serve()
    const member = await joinGroup(h, as('grouper'), 'g', ['orders'])
    const path = `/api/v1/groups/g/members/${member.memberId}`
    await call(h, 'POST', '/api/v1/streams/orders/records', { auth: as('producer'), body: { value: 'secret order', encoding: 'utf8' } })
    // tele has the groups right, on telemetry only; reader may read orders, but not consume them in a group
    for (const user of ['tele', 'reader'] as const) {
      expectForbidden(await call(h, 'POST', `${path}/fetch`, { auth: as(user), body: { encoding: 'utf8' } }), user, 'groups', 'orders', 'fetch')
      expectForbidden(await call(h, 'POST', `${path}/heartbeat`, { auth: as(user) }), user, 'groups', 'orders', 'heartbeat')
      const commit = { offsets: [{ stream: 'orders', partition: 0, offset: 2 }] }
      expectForbidden(await call(h, 'POST', `${path}/commit`, { auth: as(user), body: commit }), user, 'groups', 'orders', 'commit')
      expectForbidden(await call(h, 'DELETE', path, { auth: as(user) }), user, 'groups', 'orders', 'leave')
      expect((await push(h, 'g', member.memberId, as(user))).status).toBe(403)
    }
    // the member is untouched: its owner fetches from the start, nothing was committed
    const fetched = await call(h, 'POST', `${path}/fetch`, { auth: as('grouper'), body: { encoding: 'utf8' } })
    expect(fetched.status).toBe(200)
    expect((fetched.body.records as Array<{ value: string }>).map((r) => r.value)).toEqual(['orders record', 'secret order'])
    // another user with the groups right on orders may use it (rights, not ownership, decide)
    expect((await call(h, 'POST', `${path}/heartbeat`, { auth: as('admin') })).status).toBe(200)
  })

  it('cannot be used by another user while it has no partition assigned', async () => {
    const h = await serve()
    const a = await joinGroup(h, as('grouper'), 'g', ['orders'])
    const b = await joinGroup(h, as('grouper'), 'g', ['orders'])
    // the assignor gives orders' one partition to the member whose (random) id sorts first
    const [first, idle] = a.memberId.localeCompare(b.memberId) < 0 ? [a, b] : [b, a]
    const rejoined = await joinGroup(h, as('grouper'), 'g', ['orders'], idle.memberId)
    expect(rejoined.assignments).toEqual([])
    // tele fetches with the idle member's id; grouper's first member leaves meanwhile
    const fetching = call(h, 'POST', `/api/v1/groups/g/members/${idle.memberId}/fetch`, { auth: as('tele'), body: { waitMs: 3000, encoding: 'utf8' } })
    await sleep(200)
    expect((await call(h, 'DELETE', `/api/v1/groups/g/members/${first.memberId}`, { auth: as('grouper') })).status).toBe(204)
    const fetched = await fetching
    expectForbidden(fetched, 'tele', 'groups', 'orders')
  })

  it("cannot be taken over by a join naming it, without the groups right on the member's streams", async () => {
    const h = await serve()
    const member = await joinGroup(h, as('grouper'), 'g', ['orders'])
    const takeover = await call(h, 'POST', '/api/v1/groups/g/members', { auth: as('tele'), body: { streams: ['telemetry'], memberId: member.memberId } })
    expectForbidden(takeover, 'tele', 'groups', 'orders')
  })
})

describe('without an ACL file', () => {
  it('gives every authenticated user every right, and still requires credentials', async () => {
    const h = await serve({ aclFile: null })
    for (const caller of ['nobody', 'ci'] as const) {
      const group = `g-${caller}`
      const member = await joinGroup(h, as(caller), group, ['orders'])
      const replay = await startReplay(h, as(caller), 'orders')
      for (const route of routesOn('orders', group, member.memberId, replay.id)) {
        const res = await call(h, route.method, route.path, { auth: as(caller), body: route.body })
        expect(res.status, `${caller} ${route.method} ${route.path}: ${res.text}`).toBe(route.ok)
      }
      const listed = await call(h, 'GET', '/api/v1/streams', { auth: as(caller) })
      expect((listed.body.streams as unknown[]).length).toBe(3)
    }
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams'), 'no credentials')
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: basic('nobody', 'wrong') }), 'wrong password')
  })
})

describe('credentials not required', () => {
  // anonymous callers get what the ACL's anonymous `stream` lines grant; this file grants all
  let openAcl: string
  beforeAll(() => {
    openAcl = join(dir, 'acl-open')
    writeFileSync(openAcl, `stream all *\n${ACL}`)
  })

  const anonymousCanDoEverything = async (h: Harness): Promise<void> => {
    const member = await joinGroup(h, undefined, 'g', ['orders'])
    const replay = await startReplay(h, undefined, 'orders')
    for (const route of routesOn('orders', 'g', member.memberId, replay.id)) {
      const res = await call(h, route.method, route.path, { body: route.body })
      expect(res.status, `anonymous ${route.method} ${route.path}: ${res.text}`).toBe(route.ok)
    }
    const member2 = await joinGroup(h, undefined, 'g', ['orders'])
    expect((await push(h, 'g', member2.memberId)).status).toBe(101)
    for (const list of ['streams', 'groups', 'replays']) expect((await call(h, 'GET', `/api/v1/${list}`)).status).toBe(200)
    expect(((await call(h, 'GET', '/api/v1/streams')).body.streams as unknown[]).length).toBe(3)
  }

  it('on loopback without a password file: anonymous requests work as the ACL grants, a wrong credential gets 401', async () => {
    for (const allowAnonymous of [null, true]) {
      const h = await serve({ passwordFile: null, allowAnonymous, aclFile: openAcl })
      await anonymousCanDoEverything(h)
      expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: bearer(tokens.intruder.token) }), 'unknown token')
      expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: 'Token abc' }), 'unknown scheme')
      expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: 'Bearer' }), 'no credential')
      // no password file: no Basic credential is valid
      expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: basic('admin') }), 'Basic without a password file')
      // a valid token is checked against the ACL: ci may not produce to orders
      expect((await call(h, 'GET', '/api/v1/streams/telemetry', { auth: as('ci') })).status).toBe(200)
      expectForbidden(
        await call(h, 'POST', '/api/v1/streams/orders/records', { auth: as('ci'), body: { value: 'x', encoding: 'utf8' } }),
        'ci',
        'produce',
        'orders'
      )
      // the push upgrade too
      const member = await joinGroup(h, undefined, 'g2', ['orders'])
      expect((await push(h, 'g2', member.memberId, bearer(tokens.intruder.token))).status).toBe(401)
    }
  })

  it('on loopback with a password file and allow-anonymous true: anonymous requests work as the ACL grants, a wrong password gets 401', async () => {
    const h = await serve({ allowAnonymous: true, aclFile: openAcl })
    await anonymousCanDoEverything(h)
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: basic('admin', 'wrong') }), 'wrong password')
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: basic('mallory') }), 'unknown user')
    expect((await call(h, 'POST', '/api/v1/streams/orders/records', { auth: as('producer'), body: { value: 'x', encoding: 'utf8' } })).status).toBe(200)
  })

  it('is not the case beyond loopback, even with allow-anonymous true', async () => {
    // the server binds 127.0.0.1 here; `host` only decides what the access requires
    const h = await serve({ host: '0.0.0.0', allowAnonymous: true })
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams'), 'no credentials')
    expect((await call(h, 'GET', '/api/v1/streams', { auth: as('admin') })).status).toBe(200)
  })

  it('without an ACL file, lets anonymous callers do everything, as before', async () => {
    const h = await serve({ passwordFile: null, aclFile: null })
    await anonymousCanDoEverything(h)
  })

  it('holds anonymous callers to the anonymous `stream` lines of the ACL file', async () => {
    const anonymousAcl = join(dir, 'acl-anonymous')
    writeFileSync(anonymousAcl, `stream read orders\n${ACL}`)
    const h = await serve({ passwordFile: null, aclFile: anonymousAcl })
    expect((await call(h, 'GET', '/api/v1/streams/orders')).status).toBe(200)
    const produced = await call(h, 'POST', '/api/v1/streams/orders/records', { body: { value: 'x', encoding: 'utf8' } })
    expect(produced.status, produced.text).toBe(403)
    expect(produced.body).toMatchObject({ error: 'FORBIDDEN', right: 'produce', stream: 'orders' })
    expect(produced.body.message).toBe('anonymous callers have no produce right on stream "orders"')
    // with no anonymous lines at all, an anonymous caller may read nothing
    const closed = await serve({ passwordFile: null })
    expect((await call(closed, 'GET', '/api/v1/streams/orders')).status).toBe(403)
  })
})

describe('failed-login throttle', () => {
  it('after the budget of failures from an address, refuses even valid credentials with 429 and retry-after', async () => {
    const h = await serve({ loginFailuresPerMinute: 3 })
    const member = await joinGroup(h, as('ops'), 'g', ['orders'])
    // requests without any credential are no failed logins
    for (let i = 0; i < 5; i++) expectUnauthenticated(await call(h, 'GET', '/api/v1/streams'), `anonymous ${i}`)
    expect((await call(h, 'GET', '/api/v1/streams', { auth: as('ops') })).status).toBe(200)
    // a refusal (403) is no failed login either
    expect((await call(h, 'POST', '/api/v1/streams/orders/records', { auth: as('reader'), body: { value: 'x', encoding: 'utf8' } })).status).toBe(403)

    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: basic('admin', 'wrong') }), 'failure 1')
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: bearer(tokens.intruder.token) }), 'failure 2')
    // two failures of three: valid credentials still work
    expect((await call(h, 'GET', '/api/v1/streams', { auth: as('ops') })).status).toBe(200)
    expectUnauthenticated(await call(h, 'GET', '/api/v1/streams', { auth: 'Digest x' }), 'failure 3')

    const checksBefore = scryptChecks.mock.calls.length
    for (const auth of [as('admin'), as('ops'), basic('admin', 'wrong'), undefined]) {
      const res = await call(h, 'GET', '/api/v1/streams', { auth })
      expect(res.status, String(auth)).toBe(429)
      expect(res.body.error).toBe('TOO_MANY_FAILED_LOGINS')
      const retryAfter = Number(res.headers.get('retry-after'))
      // 3 a minute: one more attempt after about 20 s
      expect(retryAfter).toBeGreaterThan(15)
      expect(retryAfter).toBeLessThanOrEqual(20)
      expect(res.body.message).toBe(`too many failed logins from this address; retry in ${retryAfter} s`)
    }
    // refused before any password is checked
    expect(scryptChecks.mock.calls.length).toBe(checksBefore)
    // the push upgrade too
    const attempt = await push(h, 'g', member.memberId, as('ops'))
    expect(attempt.status).toBe(429)
    expect(Number(attempt.headers['retry-after'])).toBeGreaterThan(0)
  })
})

describe('token secrecy and cost', () => {
  it('never shows a token or a password in an answer or in the log, and keeps only its hash in the config', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) })
    const h = await serve({}, logger)
    const secrets = [tokens.ops.token, tokens.ci.token, tokens.intruder.token, ...USERS.map(passwordOf)]
    const texts: string[] = []
    const member = await joinGroup(h, as('ops'), 'g', ['orders'])
    const replay = await startReplay(h, as('ops'), 'orders')
    const wrongCi = tokens.ci.token.slice(0, -1) + (tokens.ci.token.endsWith('A') ? 'B' : 'A')
    for (const route of routesOn('orders', 'g', member.memberId, replay.id)) {
      for (const auth of [as('ops'), as('ci'), as('reader'), bearer(tokens.intruder.token), bearer(wrongCi), basic('admin', 'wrong'), basic('mallory')]) {
        texts.push((await call(h, route.method, route.path, { auth, body: route.body })).text)
      }
    }
    for (const list of ['streams', 'groups', 'replays']) texts.push((await call(h, 'GET', `/api/v1/${list}`, { auth: as('ops') })).text)
    expect(texts.some((t) => t.includes('FORBIDDEN'))).toBe(true)
    expect(texts.some((t) => t.includes('UNAUTHENTICATED'))).toBe(true)
    expect(lines.length).toBeGreaterThan(0)
    for (const secret of secrets) {
      for (const text of [...texts, ...lines]) expect(text.includes(secret), text).toBe(false)
    }

    // the config file holds the hash `culex token` printed; the loaded config holds nothing else
    const file = join(dir, 'culex.yaml')
    writeFileSync(file, `password-file: ${passwordFile}\napi-tokens:\n  ops: "${tokens.ops.hash}"\n`)
    const config = loadConfig({ flags: { config: file }, env: {} })
    expect(config.apiTokens).toEqual({ ops: tokens.ops.hash })
    expect(JSON.stringify(config)).not.toContain(tokens.ops.token)
    // a token put where its hash belongs is refused, without showing it
    writeFileSync(file, `api-tokens:\n  ops: "${tokens.ops.token}"\n`)
    const refused = refusal(() => loadConfig({ flags: { config: file }, env: {} }))
    expect(refused.message).toMatch(/api-tokens\.ops/)
    expect(refused.message).not.toContain(tokens.ops.token)
  })

  it('does not show a token pasted as the value of api-tokens in the config error', async () => {
    const file = join(dir, 'culex-token-value.yaml')
    writeFileSync(file, `api-tokens: "${tokens.ops.token}"\n`)
    expect(refusal(() => loadConfig({ flags: { config: file }, env: {} })).message).not.toContain(tokens.ops.token)
  })

  it('does not show a token pasted as a name under api-tokens in the config error', async () => {
    const file = join(dir, 'culex-token-name.yaml')
    writeFileSync(file, `api-tokens:\n  "${tokens.ops.token}": "${tokens.ops.hash}"\n`)
    expect(refusal(() => loadConfig({ flags: { config: file }, env: {} })).message).not.toContain(tokens.ops.token)
  })

  it('checks a token with scrypt once while it is cached, and a Basic password once', async () => {
    const h = await serve()
    const checks = (): number => scryptChecks.mock.calls.length
    const times = async (n: number, auth: string): Promise<number> => {
      const before = checks()
      for (let i = 0; i < n; i++) expect((await call(h, 'GET', '/api/v1/streams/telemetry', { auth })).status).toBe(200)
      return checks() - before
    }
    expect(await times(20, as('ops'))).toBe(1)
    expect(await times(20, as('ops'))).toBe(0)
    // another token is another check, once
    expect(await times(20, as('ci'))).toBe(1)
    expect(await times(20, as('tele'))).toBe(1)
    expect(await times(5, as('tele'))).toBe(0)

    const refusals = async (n: number, auth: string): Promise<number> => {
      const before = checks()
      for (let i = 0; i < n; i++) expectUnauthenticated(await call(h, 'GET', '/api/v1/streams/telemetry', { auth }), auth)
      return checks() - before
    }
    // a failure is not cached: each wrong token of a known name costs its check
    const wrongOps = `culex_ops_${randomBytes(32).toString('base64url')}`
    expect(await refusals(3, bearer(wrongOps))).toBe(3)
    // an unknown name or a malformed token costs none
    expect(await refusals(3, bearer(tokens.intruder.token))).toBe(0)
    expect(await refusals(3, bearer('culex_ops_short'))).toBe(0)
    // an unknown user costs one, as a wrong password does (same time for both)
    expect(await refusals(3, basic('mallory'))).toBe(3)
    expect(await refusals(3, basic('tele', 'wrong'))).toBe(3)
    // and the valid ones are still cached
    expect(await times(3, as('ops'))).toBe(0)
    // checks hash the token itself
    expect(scryptChecks.mock.calls.some(([password]) => password === tokens.ops.token)).toBe(true)
  })
})

/** The ConfigError that `f` throws. */
function refusal(f: () => unknown): ConfigError {
  try {
    f()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return err as ConfigError
  }
  throw new Error('no error thrown')
}
