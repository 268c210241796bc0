import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Authentication } from '../../src/auth/authentication.js'
import { hashPassword, writePasswordFile } from '../../src/auth/password-file.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { DEFAULTS, type CulexConfig } from '../../src/config/index.js'
import type { ApiClientInfo, ReadinessCheck, StatusResponse } from '../../src/http/wire.js'
import { startHttpServer, type ApiAccess, type BrokerAdmin, type HttpServer, type Readiness } from '../../src/http/server.js'
import { GroupCoordinator } from '../../src/log/groups/coordinator.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { SharedGroups } from '../../src/log/shared/shared-groups.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from '../log/abstract-log.js'

// Probes (/healthz, /readyz) and the admin API's rules in-process: the rights rule (every stream
// right on every stream), the refusals of bad input, and the probes answering without credentials.
// The broker behind the admin API is a fake here; test/http/admin.e2e.test.ts uses a real gateway.

const silent = pino({ level: 'silent' })

const CLIENT: ApiClientInfo = {
  id: 'dev-1',
  username: null,
  listener: 'mqtt',
  address: '127.0.0.1:5000',
  protocolVersion: 4,
  keepalive: 60,
  cleanSession: true,
  connectedAt: new Date(0).toISOString(),
  subscriptions: [],
  queued: 0,
  outgoingBytes: 0
}

/** A broker with one client (dev-1) and one retained message (a/b); records what was asked. */
function fakeBroker(calls: string[] = []): BrokerAdmin {
  return {
    clients: (page) => {
      calls.push(`clients ${page.after} ${page.limit}`)
      return { clients: [CLIENT], total: 1, next: null }
    },
    client: (id) => (id === 'dev-1' ? CLIENT : null),
    kick: (id) => id === 'dev-1',
    sessions: async (page) => {
      calls.push(`sessions ${page.after} ${page.limit}`)
      return { sessions: [], total: 0, next: null }
    },
    retained: async (filter, page) => {
      calls.push(`retained ${filter} ${page.after} ${page.limit}`)
      return { retained: [], total: 0, next: null }
    },
    readRetained: async (topic) => (topic === 'a/b' ? { topic, qos: 1, payload: Buffer.from('hi') } : null),
    deleteRetained: async (topic) => topic === 'a/b',
    summary: async () => ({ connected: 1, sessions: 0, subscriptions: 0, retained: 1, messages: null })
  }
}

interface Served {
  base: string
  close(): Promise<void>
}

const open: Served[] = []
afterEach(async () => {
  for (const s of open.splice(0)) await s.close()
})

async function serve(options: { access?: ApiAccess; readiness?: Readiness; broker?: BrokerAdmin } = {}): Promise<Served> {
  const store = await Store.open({ dataDir: tempDataDir('admin-api'), durability: 'none' })
  const log = await RocksLog.open(store, [stream('orders', 2)], { retentionIntervalMs: 0 })
  const groups = new GroupCoordinator(log)
  const shared = await SharedGroups.open(log)
  const server: HttpServer = await startHttpServer({
    log,
    groups,
    shared,
    host: '127.0.0.1',
    port: 0,
    logger: silent,
    access: options.access,
    readiness: options.readiness,
    admin: { broker: options.broker ?? fakeBroker(), gateway: { version: '9.9.9', startedAt: Date.now() - 61_000, listeners: () => [] } }
  })
  const served = {
    base: `http://127.0.0.1:${server.port}`,
    close: async () => {
      await server.close()
      groups.close()
      shared.close()
      await log.close()
      await store.close()
    }
  }
  open.push(served)
  return served
}

interface Answer {
  status: number
  body: Record<string, unknown>
}

async function call(s: Served, method: string, path: string, auth?: string): Promise<Answer> {
  const res = await fetch(s.base + path, { method, headers: auth === undefined ? {} : { authorization: auth } })
  const text = await res.text()
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }
}

const readiness = (checks: ReadinessCheck[]): Readiness => ({ checks: () => Promise.resolve(checks) })

describe('probes', () => {
  it('/healthz answers 200 {status: ok}', async () => {
    const s = await serve()
    expect(await call(s, 'GET', '/healthz')).toEqual({ status: 200, body: { status: 'ok' } })
  })

  it('/readyz answers 200 when every check passes, 503 with the checks when one fails', async () => {
    const good = { name: 'store', ok: true, detail: 'open and writable' }
    const bad = { name: 'bridge:hook', ok: false, detail: 'retrying: connect ECONNREFUSED' }
    expect(await call(await serve({ readiness: readiness([good]) }), 'GET', '/readyz')).toEqual({ status: 200, body: { status: 'ok', checks: [good] } })
    expect(await call(await serve({ readiness: readiness([good, bad]) }), 'GET', '/readyz')).toEqual({
      status: 503,
      body: { status: 'unavailable', checks: [good, bad] }
    })
  })

  it('/readyz answers 503 when the checks themselves fail', async () => {
    const s = await serve({ readiness: { checks: () => Promise.reject(new Error('boom')) } })
    const r = await call(s, 'GET', '/readyz')
    expect(r.status).toBe(503)
    expect(r.body).toEqual({ status: 'unavailable', checks: [{ name: 'checks', ok: false, detail: 'the checks failed: boom' }] })
  })
})

// --- rights, with a real password file and ACL file -----------------------------------------------

const FAST = { ln: 10, r: 1, p: 1 }
const USERS = ['admin', 'almost', 'tele', 'reader'] as const
const ACL = `user admin
stream all *
user almost
stream read,produce,groups *
user tele
stream all telemetry
user reader
stream read orders
`
let dir: string
let passwordFile: string
let aclFile: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'culex-admin-auth-'))
  passwordFile = join(dir, 'passwords')
  aclFile = join(dir, 'acl')
  const users = new Map<string, string>()
  for (const u of USERS) users.set(u, await hashPassword(`pw-${u}`, FAST))
  await writePasswordFile(passwordFile, users)
  writeFileSync(aclFile, ACL)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function access(overrides: Partial<CulexConfig>): Promise<ApiAccess> {
  const config: CulexConfig = { ...DEFAULTS, passwordFile, loginFailuresPerMinute: 0, ...overrides }
  return (await Authentication.load(config, silent, new BrokerCounters(silent))).api()
}

const basic = (user: string): string => `Basic ${Buffer.from(`${user}:pw-${user}`).toString('base64')}`

const ADMIN_ROUTES: Array<[string, string]> = [
  ['GET', '/api/v1/clients'],
  ['GET', '/api/v1/clients/dev-1'],
  ['DELETE', '/api/v1/clients/dev-1'],
  ['GET', '/api/v1/sessions'],
  ['GET', '/api/v1/retained?filter=%23'],
  ['GET', '/api/v1/retained/a/b'],
  ['DELETE', '/api/v1/retained/a/b'],
  ['GET', '/api/v1/status']
]

describe('rights', () => {
  it('the probes answer without credentials where credentials are required; the admin API does not', async () => {
    const s = await serve({ access: await access({ aclFile }), readiness: readiness([{ name: 'store', ok: true, detail: 'ok' }]) })
    expect((await call(s, 'GET', '/healthz')).status).toBe(200)
    expect((await call(s, 'GET', '/readyz')).status).toBe(200)
    // a wrong credential does not matter to a probe either
    expect((await call(s, 'GET', '/healthz', 'Basic Zm9vOmJhcg==')).status).toBe(200)
    for (const [method, path] of ADMIN_ROUTES) {
      const r = await call(s, method, path)
      expect(r.status, `${method} ${path}`).toBe(401)
    }
  })

  it('every admin route needs every stream right on every stream (`stream all *`)', async () => {
    const s = await serve({ access: await access({ aclFile }) })
    for (const [method, path] of ADMIN_ROUTES) {
      for (const user of ['tele', 'reader', 'almost']) {
        const r = await call(s, method, path, basic(user))
        expect(r.status, `${user} ${method} ${path}`).toBe(403)
        expect(r.body).toMatchObject({ error: 'FORBIDDEN', stream: '*' })
      }
      // `almost` has every right but replay on every stream: the one it lacks is named
      expect((await call(s, method, path, basic('almost'))).body).toMatchObject({ right: 'replay' })
      const r = await call(s, method, path, basic('admin'))
      expect(r.status, `admin ${method} ${path}: ${JSON.stringify(r.body)}`).toBeLessThan(300)
    }
  })

  it('without an ACL file any authenticated caller may use the admin API', async () => {
    const s = await serve({ access: await access({}) })
    expect((await call(s, 'GET', '/api/v1/clients', basic('reader'))).status).toBe(200)
    expect((await call(s, 'GET', '/api/v1/clients')).status).toBe(401)
  })
})

describe('refusals', () => {
  it('answers 404 UNKNOWN_CLIENT for a client that is not connected (show and kick)', async () => {
    const s = await serve()
    for (const method of ['GET', 'DELETE']) {
      const r = await call(s, method, '/api/v1/clients/nobody')
      expect(r.status).toBe(404)
      expect(r.body).toMatchObject({ error: 'UNKNOWN_CLIENT', clientId: 'nobody' })
      expect(r.body.message).toMatch(/no client with id "nobody"/)
    }
    expect((await call(s, 'GET', '/api/v1/clients/dev-1')).body).toEqual(CLIENT)
    expect((await call(s, 'DELETE', '/api/v1/clients/dev-1')).status).toBe(204)
  })

  it('refuses a filter that is not an MQTT topic filter, naming `filter`', async () => {
    const s = await serve()
    for (const filter of ['a/#/b', 'a+', 'a/b#', '', 'x\u0000y']) {
      const r = await call(s, 'GET', `/api/v1/retained?filter=${encodeURIComponent(filter)}`)
      expect(r.status, filter).toBe(400)
      expect(r.body, filter).toMatchObject({ error: 'INVALID_ARGUMENT', field: 'filter', in: 'query' })
      expect(r.body.message).toMatch(/^query parameter filter /)
    }
  })

  it('refuses a limit outside 1..1000 or not a whole number, naming `limit`', async () => {
    const s = await serve()
    for (const path of ['/api/v1/clients', '/api/v1/sessions', '/api/v1/retained']) {
      for (const limit of ['0', '1001', 'abc', '1.5', '-1']) {
        const r = await call(s, 'GET', `${path}?limit=${limit}`)
        expect(r.status, `${path} ${limit}`).toBe(400)
        expect(r.body).toMatchObject({ error: 'INVALID_ARGUMENT', field: 'limit', in: 'query' })
      }
    }
    // an unknown parameter is refused rather than ignored
    expect((await call(s, 'GET', '/api/v1/clients?lmit=5')).body).toMatchObject({ field: 'lmit' })
  })

  it('passes the page (limit, default 100, and the cursor) to the broker', async () => {
    const calls: string[] = []
    const s = await serve({ broker: fakeBroker(calls) })
    await call(s, 'GET', '/api/v1/clients')
    await call(s, 'GET', '/api/v1/clients?limit=5&after=dev-0')
    await call(s, 'GET', '/api/v1/sessions?limit=1000')
    await call(s, 'GET', '/api/v1/retained?filter=a/%2B/c&limit=7')
    expect(calls).toEqual(['clients null 100', 'clients dev-0 5', 'sessions null 1000', 'retained a/+/c null 7'])
  })

  it('refuses a retained topic that is no topic name, naming `topic`; 404 where nothing is retained', async () => {
    const s = await serve()
    for (const path of ['/api/v1/retained/a/%23', '/api/v1/retained/a/+/b', '/api/v1/retained/']) {
      for (const method of ['GET', 'DELETE']) {
        const r = await call(s, method, path)
        expect(r.status, `${method} ${path}`).toBe(400)
        expect(r.body).toMatchObject({ error: 'INVALID_ARGUMENT', field: 'topic', in: 'path' })
      }
    }
    for (const method of ['GET', 'DELETE']) {
      const r = await call(s, method, '/api/v1/retained/a/c')
      expect(r.status).toBe(404)
      expect(r.body).toMatchObject({ error: 'NO_RETAINED_MESSAGE', topic: 'a/c' })
    }
    expect((await call(s, 'GET', '/api/v1/retained/a/b?encoding=utf8')).body).toEqual({ topic: 'a/b', qos: 1, bytes: 2, encoding: 'utf8', payload: 'hi' })
    expect((await call(s, 'GET', '/api/v1/retained/a/b')).body).toMatchObject({ encoding: 'base64', payload: Buffer.from('hi').toString('base64') })
    expect((await call(s, 'GET', '/api/v1/retained/a/b?encoding=hex')).body).toMatchObject({ field: 'encoding' })
    expect((await call(s, 'DELETE', '/api/v1/retained/a/b')).status).toBe(204)
  })

  it('GET /api/v1/status sums up the gateway', async () => {
    const s = await serve({ readiness: readiness([{ name: 'store', ok: true, detail: 'ok' }]) })
    const r = await call(s, 'GET', '/api/v1/status')
    expect(r.status).toBe(200)
    const body = r.body as unknown as StatusResponse
    expect(body).toMatchObject({
      version: '9.9.9',
      clients: { connected: 1, sessions: 0 },
      retained: 1,
      messages: null,
      groups: [],
      sharedGroups: [],
      bridges: []
    })
    expect(body.uptimeSeconds).toBeGreaterThanOrEqual(61)
    expect(body.streams.map((st) => [st.name, st.partitions.length])).toEqual([['orders', 2]])
    expect(body.ready.status).toBe('ok')
  })
})
