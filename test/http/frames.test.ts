import { request } from 'node:http'
import { describe, expect, it } from 'vitest'
import { FRAMES_CONTENT_TYPE, decodeFrames } from '../../src/http/wire.js'
import type { LogRecord, RecordInput } from '../../src/log/types.js'
import { stream } from '../log/abstract-log.js'
import { api, harnessesClosedAfterEach } from './harness.js'

const start = harnessesClosedAfterEach()

interface Framed {
  status: number
  type: string | undefined
  startOffset: number
  endOffset: number
  records: LogRecord[]
}

async function frames(base: string, path: string): Promise<Framed> {
  const res = await fetch(base + path)
  const body = Buffer.from(await res.arrayBuffer())
  if (res.status !== 200) return { status: res.status, type: res.headers.get('content-type') ?? undefined, startOffset: -1, endOffset: -1, records: [] }
  const { records, rest } = decodeFrames(body, 's', 0)
  expect(rest.length).toBe(0)
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? undefined,
    startOffset: Number(res.headers.get('x-culex-start-offset')),
    endOffset: Number(res.headers.get('x-culex-end-offset')),
    records
  }
}

describe('bulk reads as frames (the records binary form)', () => {
  it('streams exactly the records the log holds, every field and byte intact', async () => {
    const h = await start([stream('s', 1)])
    const inputs = Array.from({ length: 2500 }, (_, i): RecordInput => ({
      key: i % 3 === 0 ? null : `k${i % 7}`,
      value: Buffer.from([i & 0xff, 0, 0xff, (i >> 8) & 0xff]),
      headers: i % 5 === 0 ? { 'h': `v${i}`, 'x-ü': 'é' } : {},
      topic: i % 2 === 0 ? `t/${i}` : null,
      qos: (i % 3) as 0 | 1 | 2,
      clientId: i % 4 === 0 ? null : 'c'
    }))
    await h.rocks.append('s', inputs, 0)
    const all = await frames(h.base, '/api/v1/streams/s/partitions/0/frames?offset=10')
    expect(all).toMatchObject({ status: 200, type: FRAMES_CONTENT_TYPE, startOffset: 10, endOffset: 2500 })
    expect(all.records).toEqual(await h.rocks.read('s', 0, 10, { limit: 5000 }))

    const window = await frames(h.base, '/api/v1/streams/s/partitions/0/frames?offset=100&end=1600&limit=1000')
    expect(window.records.map((r) => r.offset)).toEqual(Array.from({ length: 1000 }, (_, i) => 100 + i))
    const ts = all.records[0]!.timestamp
    const fromTime = await frames(h.base, `/api/v1/streams/s/partitions/0/frames?timestamp=${ts}&limit=3`)
    expect(fromTime.records.map((r) => r.offset)).toEqual([0, 1, 2].map((i) => i + fromTime.startOffset))
    expect(fromTime.startOffset).toBe(await h.rocks.offsetForTime('s', 0, ts))
  })

  it('refuses what the JSON reads refuse, with the same errors', async () => {
    const h = await start([stream('s', 1)])
    await h.rocks.append('s', [{ key: null, value: Buffer.from('x') }])
    const beyond = await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/frames?offset=9')
    expect(beyond).toMatchObject({ status: 400, body: { error: 'OFFSET_OUT_OF_RANGE', earliest: 0, latest: 1 } })
    expect((await api(h.base, 'GET', '/api/v1/streams/nope/partitions/0/frames')).status).toBe(404)
    expect((await api(h.base, 'GET', '/api/v1/streams/s/partitions/3/frames')).status).toBe(404)
    const both = await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/frames?offset=0&timestamp=1')
    expect(both).toMatchObject({ status: 400, body: { field: 'timestamp' } })
    expect(await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/frames?limit=0')).toMatchObject({ status: 400, body: { field: 'limit' } })
  })

  it('stops reading when the client goes away mid-stream', async () => {
    const h = await start([stream('s', 1)])
    const big = Buffer.alloc(16 * 1024, 1)
    for (let i = 0; i < 10; i++)
      await h.rocks.append(
        's',
        Array.from({ length: 100 }, () => ({ key: null, value: big }))
      )
    const port = new URL(h.base).port
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/api/v1/streams/s/partitions/0/frames' }, (res) => {
        res.once('data', () => {
          req.destroy() // read one chunk of 16 MB, then leave
          resolve()
        })
      })
      req.on('error', () => {})
      req.once('error', reject)
      req.end()
    })
    // the server is fine and answers the next request in full
    const again = await frames(h.base, '/api/v1/streams/s/partitions/0/frames?offset=990')
    expect(again.records.length).toBe(10)
  })
})
