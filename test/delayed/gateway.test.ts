import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { DEFAULTS, type CulexConfig } from '../../src/config/index.js'
import { Gateway } from '../../src/gateway.js'
import type { ApiRecord, ScheduledResponse } from '../../src/http/wire.js'
import { call } from '../e2e/helpers.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'

// Delayed delivery through a whole gateway (in-process): HTTP produce with deliverAt / delayMs
// (202, appended only at the due time), its validation and its bound (507), a `$delayed/`
// publish routed into the log at its due time, and delayed-enabled: false.

const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
const running: Gateway[] = []
afterEach(async () => {
  for (const g of running.splice(0)) await g.stop()
})

const KEEP = { maxAgeMs: null, maxBytes: null, maxRecords: null }

async function gateway(more: Partial<CulexConfig> = {}): Promise<{ g: Gateway; api: string; mqtt: string }> {
  const config: CulexConfig = {
    ...DEFAULTS,
    dataDir: tempDataDir('delayed-gw'),
    durability: 'none',
    mqttPort: 0,
    wsPort: null,
    adminPort: 0,
    streams: [
      { name: 'jobs', partitions: 2, retention: KEEP },
      { name: 'telemetry', partitions: 1, retention: KEEP }
    ],
    routes: [{ filter: 'devices/#', stream: 'telemetry', key: { kind: 'client-id' } }],
    ...more
  }
  const g = await Gateway.start(config, logger)
  running.push(g)
  const port = (kind: string): number => g.addresses().find((a) => a.kind === kind)?.port ?? -1
  return { g, api: `http://127.0.0.1:${port('admin')}`, mqtt: `mqtt://127.0.0.1:${port('mqtt')}` }
}

async function records(api: string, stream: string, partition: number): Promise<ApiRecord[]> {
  const res = await call(api, 'GET', `/api/v1/streams/${stream}/partitions/${partition}/records?encoding=utf8`)
  expect(res.status).toBe(200)
  return res.body.records as ApiRecord[]
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('HTTP produce with deliverAt / delayMs', () => {
  it('answers 202 with an id and the due time per record, and appends them only then', async () => {
    const { api } = await gateway()
    const t0 = Date.now()
    const res = await call(api, 'POST', '/api/v1/streams/jobs/records', {
      delayMs: 1000,
      encoding: 'utf8',
      records: [
        { value: 'first', key: 'k', headers: { h: '1' }, partition: 1 },
        { value: 'second', partition: 1 }
      ]
    })
    expect(res.status).toBe(202)
    const { scheduled } = res.body as unknown as ScheduledResponse
    expect(scheduled).toHaveLength(2)
    expect(scheduled[0]!.id).toMatch(/^[0-9a-f]{24}$/)
    expect(scheduled[0]!.id).not.toBe(scheduled[1]!.id)
    expect(scheduled[0]!.deliverAt).toBeGreaterThanOrEqual(t0 + 1000)
    expect(scheduled[1]!.deliverAt).toBe(scheduled[0]!.deliverAt)
    await new Promise((r) => setTimeout(r, 700))
    expect(await records(api, 'jobs', 1)).toEqual([])
    await until('appended', async () => (await records(api, 'jobs', 1)).length === 2, 3000)
    const got = await records(api, 'jobs', 1)
    expect(got.map((r) => r.value)).toEqual(['first', 'second'])
    expect(got[0]).toMatchObject({ key: 'k', headers: { h: '1' }, topic: null })
    expect(got[0]!.timestamp).toBeGreaterThanOrEqual(scheduled[0]!.deliverAt)
  })

  it('takes deliverAt as an ISO 8601 time or ms since the epoch; a time in the past is due at once', async () => {
    const { api } = await gateway()
    const at = Date.now() + 1000
    const iso = await call(api, 'POST', '/api/v1/streams/jobs/records', { value: 'iso', encoding: 'utf8', partition: 0, deliverAt: new Date(at).toISOString() })
    expect(iso.status).toBe(202)
    expect((iso.body as unknown as ScheduledResponse).scheduled[0]!.deliverAt).toBe(at)
    const ms = await call(api, 'POST', '/api/v1/streams/jobs/records', { value: 'ms', encoding: 'utf8', partition: 0, deliverAt: at + 200 })
    expect((ms.body as unknown as ScheduledResponse).scheduled[0]!.deliverAt).toBe(at + 200)
    const past = await call(api, 'POST', '/api/v1/streams/jobs/records', { value: 'past', encoding: 'utf8', partition: 0, deliverAt: '2020-01-01T00:00:00Z' })
    expect(past.status).toBe(202)
    await until('the past one appended', async () => (await records(api, 'jobs', 0)).length === 1, 1000)
    expect((await records(api, 'jobs', 0)).map((r) => r.value)).toEqual(['past'])
    await until('all appended', async () => (await records(api, 'jobs', 0)).length === 3, 3000)
    const got = await records(api, 'jobs', 0)
    expect(got.map((r) => r.value)).toEqual(['past', 'iso', 'ms'])
    expect(got[1]!.timestamp).toBeGreaterThanOrEqual(at)
  })

  it.each([
    [{ value: 'x', delayMs: 10, deliverAt: Date.now() + 10 }, 'deliverAt', /cannot be given with delayMs/],
    [{ value: 'x', deliverAt: 'tomorrow' }, 'deliverAt', /must be ms since the epoch or an ISO 8601 time/],
    [{ value: 'x', deliverAt: '' }, 'deliverAt', /must be ms since the epoch or an ISO 8601 time/],
    [{ value: 'x', deliverAt: -5 }, 'deliverAt', /must be ms since the epoch/],
    [{ value: 'x', deliverAt: true }, 'deliverAt', /must be string,integer/],
    [{ value: 'x', delayMs: -1 }, 'delayMs', /must be >= 0/],
    [{ value: 'x', delayMs: 1.5 }, 'delayMs', /must be integer/],
    [{ value: 'x', delayMs: '100' }, 'delayMs', /must be integer/],
    [{ value: 'x', delayMs: 60_001 }, 'delayMs', /must be at most 60000 \(delayed-max-delay, 1m\)/],
    [{ value: 'x', deliverAt: Date.now() + 120_000 }, 'deliverAt', /must be at most delayed-max-delay \(1m\) from now/],
    [{ records: [{ value: 'x', delayMs: 5 }] }, 'records[0].delayMs', /is not allowed here/],
    [{ value: 'x', partition: 2, delayMs: 5 }, 'partition', /must be below 2/]
  ])('refuses %j with 400 naming %s', async (body, field, message) => {
    const { api } = await gateway({ delayedMaxDelayMs: 60_000 })
    const res = await call(api, 'POST', '/api/v1/streams/jobs/records', { encoding: 'utf8', ...body })
    expect(res.status).toBe(400)
    expect(res.body).toMatchObject({ error: 'INVALID_ARGUMENT', field })
    expect(res.body.message).toMatch(message)
  })

  it('refuses an unknown stream with 404 and stores nothing', async () => {
    const { api } = await gateway()
    const res = await call(api, 'POST', '/api/v1/streams/nope/records', { value: 'x', delayMs: 10 })
    expect(res.status).toBe(404)
  })

  it('refuses a request past delayed-max-messages with 507 DELAYED_FULL, storing none of its records', async () => {
    const { api } = await gateway({ delayedMaxMessages: 3 })
    const ok = await call(api, 'POST', '/api/v1/streams/jobs/records', { records: [{ value: 'YQ==' }, { value: 'Yg==' }], delayMs: 60_000 })
    expect(ok.status).toBe(202)
    const full = await call(api, 'POST', '/api/v1/streams/jobs/records', { records: [{ value: 'Yw==' }, { value: 'ZA==' }], delayMs: 500 })
    expect(full.status).toBe(507)
    expect(full.body).toMatchObject({ error: 'DELAYED_FULL', limit: 3, pending: 2, retriable: true })
    expect(full.body.message).toMatch(/2 delayed messages and records are pending, the most delayed-max-messages allows is 3 \(room for 1, 2 given\)/)
    const one = await call(api, 'POST', '/api/v1/streams/jobs/records', { value: 'ZQ==', delayMs: 200 })
    expect(one.status).toBe(202)
    await new Promise((r) => setTimeout(r, 800))
    // only the one that fitted was stored (and is appended by now)
    const all = [...(await records(api, 'jobs', 0)), ...(await records(api, 'jobs', 1))]
    expect(all.map((r) => r.value)).toEqual(['e'])
  })

  it('refuses deliverAt with an Idempotency-Key header (400), rather than ignoring either', async () => {
    const { api } = await gateway()
    const res = await fetch(`${api}/api/v1/streams/jobs/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k-1' },
      body: JSON.stringify({ value: 'eA==', delayMs: 10 })
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ field: 'delayMs', message: expect.stringMatching(/Idempotency-Key/) as unknown })
  })
})

describe('$delayed through the gateway', () => {
  it('routes a delayed publish into the log at its due time, as its publisher (client-id key)', async () => {
    const { api, mqtt } = await gateway()
    const pub = await connect(mqtt, { clientId: 'device-7' })
    const t0 = Date.now()
    await pub.publishAsync('$delayed/1/devices/7/temp', '21.5', { qos: 1 })
    await new Promise((r) => setTimeout(r, 700))
    expect(await records(api, 'telemetry', 0)).toEqual([])
    await until('appended', async () => (await records(api, 'telemetry', 0)).length === 1, 3000)
    const [r] = await records(api, 'telemetry', 0)
    expect(r).toMatchObject({ topic: 'devices/7/temp', value: '21.5', key: 'device-7', clientId: 'device-7', qos: 1 })
    expect(r!.timestamp - t0).toBeGreaterThanOrEqual(1000)
    await closeAll(pub)
  })
})

describe('delayed-enabled: false', () => {
  it('publishes $delayed/ topics as plain topics, answers 501 to deliverAt', async () => {
    const { api, mqtt } = await gateway({ delayedEnabled: false })
    const sub = await connect(mqtt)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('$delayed/#', { qos: 1 })
    const pub = await connect(mqtt)
    await pub.publishAsync('$delayed/60/a/x', 'plain', { qos: 1 })
    const [m] = await inbox.waitFor(1, 1000)
    expect(m).toMatchObject({ topic: '$delayed/60/a/x', payload: 'plain' })
    const res = await call(api, 'POST', '/api/v1/streams/jobs/records', { value: 'eA==', deliverAt: Date.now() + 10 })
    expect(res.status).toBe(501)
    expect(res.body).toMatchObject({ error: 'NOT_AVAILABLE', field: 'deliverAt' })
    expect(res.body.message).toMatch(/delayed-enabled is false/)
    await closeAll(sub, pub)
  })
})
