import { describe, expect, it } from 'vitest'
import type { SharedAckResponse, SharedFetchResponse } from '../../src/http/wire.js'
import { DLQ_HEADERS } from '../../src/log/shared/shared-groups.js'
import { stream } from '../log/abstract-log.js'
import { api, harnessesClosedAfterEach, sleep, type Harness } from './harness.js'

// Shared groups over the HTTP API, on a real log: PUT the config, fetch, answer each record.

const start = harnessesClosedAfterEach()

async function produce(h: Harness, records: Array<{ key: string; value: string }>): Promise<void> {
  const res = await api(h.base, 'POST', '/api/v1/streams/orders/records', { records, encoding: 'utf8' })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
}

async function fetchAs(h: Harness, consumer: string, body: Record<string, unknown> = {}): Promise<SharedFetchResponse['records']> {
  const res = await api<SharedFetchResponse>(h.base, 'POST', '/api/v1/shared-groups/workers/fetch', { consumer, encoding: 'utf8', ...body })
  expect(res.status, JSON.stringify(res.body)).toBe(200)
  return res.body.records
}

async function answer(h: Harness, consumer: string, records: SharedFetchResponse['records'], action: string, more: Record<string, unknown> = {}) {
  return api<SharedAckResponse>(h.base, 'POST', '/api/v1/shared-groups/workers/acks', {
    consumer,
    acks: records.map((r) => ({ stream: r.stream, partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, action, ...more }))
  })
}

describe('shared groups over HTTP', () => {
  it('creates a group from one config object, splits records between consumers, and finishes them by ack', async () => {
    const h = await start([stream('orders', 2)])
    const put = await api(h.base, 'PUT', '/api/v1/shared-groups/workers', { streams: ['orders'], ackWaitMs: 5000, maxDeliveries: 3, ordering: 'none' })
    expect(put.status, JSON.stringify(put.body)).toBe(200)
    expect(put.body).toMatchObject({
      group: 'workers',
      config: { streams: ['orders'], ackWaitMs: 5000, maxDeliveries: 3, maxAckPending: 1000, ordering: 'none' }
    })
    await produce(
      h,
      Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }))
    )
    const a = await fetchAs(h, 'a', { maxRecords: 4 })
    const b = await fetchAs(h, 'b', { maxRecords: 100 })
    expect(a).toHaveLength(4)
    expect(b).toHaveLength(6)
    expect(new Set([...a, ...b].map((r) => r.value)).size).toBe(10)
    expect(a[0]).toMatchObject({ deliveryCount: 1 })
    expect(a[0]!.lockedUntil).toBeGreaterThan(Date.now())
    // b may not answer for a's records
    expect((await answer(h, 'b', a, 'ack')).body.results.every((r) => !r.ok && r.error === 'LOCK_LOST')).toBe(true)
    expect((await answer(h, 'a', a, 'ack')).body.results.every((r) => r.ok)).toBe(true)
    expect((await answer(h, 'b', b, 'ack')).body.results.every((r) => r.ok)).toBe(true)
    const d = await api<{ lag: number; partitions: Array<{ pending: number }> }>(h.base, 'GET', '/api/v1/shared-groups/workers')
    expect(d.body.lag).toBe(0)
    expect((await api<{ groups: unknown[] }>(h.base, 'GET', '/api/v1/shared-groups')).body.groups).toEqual([
      { group: 'workers', streams: ['orders'], lag: 0, deadLettered: 0, lagAlert: false }
    ])
  })

  it('nack, then reject: the record is redelivered, then lands in orders.dlq with its error', async () => {
    const h = await start([stream('orders', 1)])
    await api(h.base, 'PUT', '/api/v1/shared-groups/workers', { streams: ['orders'], backoff: [0] })
    await produce(h, [{ key: 'k', value: 'poison' }])
    const first = await fetchAs(h, 'a')
    await answer(h, 'a', first, 'nack', { error: 'timeout calling the ERP' })
    const second = await fetchAs(h, 'a')
    expect(second.map((r) => r.deliveryCount)).toEqual([2])
    const rejected = await answer(h, 'a', second, 'reject', { error: 'invalid order' })
    expect(rejected.body.results).toEqual([{ stream: 'orders', partition: 0, offset: 0, ok: true, deadLettered: true }])
    const dead = await api<{ records: Array<{ value: string; headers: Record<string, string> }> }>(
      h.base,
      'GET',
      '/api/v1/streams/orders.dlq/partitions/0/records?offset=0&encoding=utf8'
    )
    expect(dead.body.records.map((r) => [r.value, r.headers[DLQ_HEADERS.reason], r.headers[DLQ_HEADERS.error], r.headers[DLQ_HEADERS.deliveries]])).toEqual([
      ['poison', 'rejected', 'invalid order', '2']
    ])
  })

  it('long-polls until a record is produced', async () => {
    const h = await start([stream('orders', 1)])
    await api(h.base, 'PUT', '/api/v1/shared-groups/workers', { streams: ['orders'] })
    const waiting = fetchAs(h, 'a', { waitMs: 5000 })
    await sleep(100)
    await produce(h, [{ key: 'k', value: 'late' }])
    expect((await waiting).map((r) => r.value)).toEqual(['late'])
  })

  it('refuses bad input with 4xx naming the field', async () => {
    const h = await start([stream('orders', 1)])
    const cases: Array<[string, string, unknown, number, string | RegExp]> = [
      ['PUT', '/api/v1/shared-groups/workers', { streams: ['orders'], ackWaitMs: -1 }, 400, /ackWaitMs/],
      ['PUT', '/api/v1/shared-groups/workers', { streams: ['orders'], backoff: 'fast' }, 400, /backoff/],
      ['PUT', '/api/v1/shared-groups/workers', { streams: ['missing'] }, 404, /missing/],
      ['PUT', '/api/v1/shared-groups/bad%20name', { streams: ['orders'] }, 400, /group/],
      ['PUT', '/api/v1/shared-groups/workers', { streams: ['orders'], deadLetter: 'orders' }, 400, /deadLetter/],
      ['POST', '/api/v1/shared-groups/nobody/fetch', { consumer: 'a' }, 404, /nobody/],
      ['POST', '/api/v1/shared-groups/nobody/acks', { consumer: 'a', acks: [{ stream: 'orders', partition: 0, offset: 0, action: 'ack' }] }, 404, /nobody/]
    ]
    for (const [method, path, body, status, message] of cases) {
      const res = await api<{ message: string }>(h.base, method, path, body)
      expect(res.status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`).toBe(status)
      expect(res.body.message).toMatch(message)
    }
    await api(h.base, 'PUT', '/api/v1/shared-groups/workers', { streams: ['orders'] })
    for (const body of [{}, { consumer: '' }, { consumer: 'a', maxRecords: 0 }]) {
      expect((await api(h.base, 'POST', '/api/v1/shared-groups/workers/fetch', body)).status).toBe(400)
    }
    const badAck = await api<{ message: string }>(h.base, 'POST', '/api/v1/shared-groups/workers/acks', {
      consumer: 'a',
      acks: [{ stream: 'orders', partition: 0, offset: 0, action: 'commit' }]
    })
    expect(badAck.status).toBe(400)
    expect(badAck.body.message).toMatch(/action/)
  })

  it('redrives dead letters back into their stream once per request id, by filter', async () => {
    const h = await start([stream('orders', 1)])
    await api(h.base, 'PUT', '/api/v1/shared-groups/workers', { streams: ['orders'] })
    await produce(h, [
      { key: 'a', value: 'a1' },
      { key: 'b', value: 'b1' },
      { key: 'c', value: 'c1' }
    ])
    const got = await fetchAs(h, 'w')
    await answer(h, 'w', got.slice(0, 2), 'reject', { error: 'downstream was down' })
    await answer(h, 'w', got.slice(2), 'reject', { error: 'bad schema' })
    const redriven = await api<{ redriven: number; duplicates: number; skipped: number; scanned: number; next: unknown[] }>(
      h.base,
      'POST',
      '/api/v1/streams/orders.dlq/redrive',
      { requestId: 'r-1', filter: { error: 'down' } }
    )
    expect(redriven.status, JSON.stringify(redriven.body)).toBe(200)
    expect(redriven.body).toMatchObject({ scanned: 3, redriven: 2, duplicates: 0, skipped: 1, next: [{ partition: 0, offset: 3 }] })
    // the same request again (a retry): nothing twice
    const again = await api(h.base, 'POST', '/api/v1/streams/orders.dlq/redrive', { requestId: 'r-1', filter: { error: 'down' } })
    expect(again.body).toMatchObject({ redriven: 0, duplicates: 2 })
    const back = await api<{ records: Array<{ offset: number; key: string; value: string; headers: Record<string, string> }> }>(
      h.base,
      'GET',
      '/api/v1/streams/orders/partitions/0/records?offset=3&encoding=utf8'
    )
    expect(back.body.records.map((r) => [r.offset, r.key, r.value])).toEqual([
      [3, 'a', 'a1'],
      [4, 'b', 'b1']
    ])
    expect(back.body.records[0]!.headers).toEqual({ 'culex-redriven-from': 'orders.dlq/0/0' })
    // and the group consumes them again
    expect((await fetchAs(h, 'w')).map((r) => r.value)).toEqual(['a1', 'b1'])
    // bad input
    expect((await api(h.base, 'POST', '/api/v1/streams/orders.dlq/redrive', { filter: { reason: 'bored' } })).status).toBe(400)
    expect((await api(h.base, 'POST', '/api/v1/streams/orders.dlq/redrive', { partition: 7 })).status).toBe(400)
    expect((await api(h.base, 'POST', '/api/v1/streams/none/redrive', {})).status).toBe(404)
  })
})
