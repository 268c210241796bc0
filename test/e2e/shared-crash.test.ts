import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { call } from './helpers.js'

// kill -9 of a gateway process while a shared group has records acquired, waiting for a retry,
// dead-lettered and acknowledged: after the restart none is lost, no acknowledged or
// dead-lettered record comes back, and the rest come back with their deliveries counted.

const CONFIG = `
streams:
  jobs:
    partitions: 2
`

const N = 200

interface Fetched {
  partition: number
  offset: number
  deliveryCount: number
  value: string
}

const running: GatewayProcess[] = []
afterAll(async () => {
  for (const gw of running) await gw.stop()
})

async function start(dataDir: string, configFile: string): Promise<GatewayProcess> {
  const gw = await GatewayProcess.start(dataDir, ['--config', configFile])
  running.push(gw)
  return gw
}

async function fetchAll(gw: GatewayProcess, consumer: string, max: number): Promise<Fetched[]> {
  const res = await call(gw.api, 'POST', '/api/v1/shared-groups/workers/fetch', { consumer, maxRecords: max, encoding: 'utf8' })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  return res.body.records as Fetched[]
}

async function answer(gw: GatewayProcess, consumer: string, records: Fetched[], action: string, more: Record<string, unknown> = {}): Promise<void> {
  if (records.length === 0) return
  const res = await call(gw.api, 'POST', '/api/v1/shared-groups/workers/acks', {
    consumer,
    acks: records.map((r) => ({ stream: 'jobs', partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, action, ...more }))
  })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  expect((res.body.results as Array<{ ok: boolean }>).every((r) => r.ok)).toBe(true)
}

describe('shared groups across kill -9', () => {
  it('loses nothing and brings back no acknowledged or dead-lettered record', async () => {
    const dir = tempDataDir('shared-crash')
    const configFile = join(dir, 'culex.yaml')
    writeFileSync(configFile, CONFIG)
    let gw = await start(join(dir, 'data'), configFile)
    const put = await call(gw.api, 'PUT', '/api/v1/shared-groups/workers', { streams: ['jobs'], ordering: 'none', backoff: [600_000], maxDeliveries: 5 })
    expect(put.status, JSON.stringify(put.body)).toBe(200)
    const produced = await call(gw.api, 'POST', '/api/v1/streams/jobs/records', {
      records: Array.from({ length: N }, (_, i) => ({ key: `k${i % 10}`, value: String(i) })),
      encoding: 'utf8'
    })
    expect(produced.status).toBe(200)

    // 160 of 200 handed out: 60 acked, 40 nacked (a 10 min backoff), 20 rejected, 40 left acquired
    const got = await fetchAll(gw, 'c1', 160)
    expect(got).toHaveLength(160)
    const [acked, nacked, rejected] = [got.slice(0, 60), got.slice(60, 100), got.slice(100, 120)]
    await answer(gw, 'c1', acked, 'ack')
    await answer(gw, 'c1', nacked, 'nack')
    await answer(gw, 'c1', rejected, 'reject', { error: 'bad job' })
    await gw.kill9()

    gw = await start(join(dir, 'data'), configFile)
    // the 40 still acquired and the 40 never fetched come now; the nacked wait for their backoff
    const after: Fetched[] = []
    for (let i = 0; i < 20; i++) {
      const more = await fetchAll(gw, 'c2', 1000)
      if (more.length === 0) break
      after.push(...more)
      await answer(gw, 'c2', more, 'ack')
    }
    const acquiredAtCrash = got.slice(120)
    // exactly: the 40 acquired at the crash (second delivery) and the 40 never fetched (first)
    expect(after).toHaveLength(80)
    const afterValues = new Set(after.map((r) => r.value))
    for (const r of acquiredAtCrash) expect(afterValues.has(r.value), `acquired ${r.value}`).toBe(true)
    for (const r of [...acked, ...nacked, ...rejected]) expect(afterValues.has(r.value), `finished or waiting ${r.value}`).toBe(false)
    const secondDeliveries = after.filter((r) => r.deliveryCount === 2).map((r) => r.value)
    expect(secondDeliveries.sort()).toEqual(acquiredAtCrash.map((r) => r.value).sort())
    expect(after.filter((r) => r.deliveryCount === 1)).toHaveLength(40)

    // the dead letters survived, exactly once each
    const dlq = await call(gw.api, 'GET', '/api/v1/streams/jobs.dlq')
    expect(dlq.status).toBe(200)
    expect((dlq.body as { records: number }).records).toBe(20)
    // what is left: the 40 nacked records, waiting out their backoff
    const view = await call(gw.api, 'GET', '/api/v1/shared-groups/workers')
    const partitions = (view.body as { partitions: Array<{ pending: number; acquired: number }> }).partitions
    expect(partitions.reduce((n, p) => n + p.pending, 0)).toBe(40)
    expect(partitions.reduce((n, p) => n + p.acquired, 0)).toBe(0)
    expect((view.body as { lag: number }).lag).toBeGreaterThanOrEqual(40)
  })
})
