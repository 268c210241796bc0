import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { ApiRecord } from '../../src/http/wire.js'
import type { PushServerFrame as ServerFrame } from '../../src/http/wire.js'
import type { GroupDescription, Membership } from '../../src/http/wire.js'
import { stream } from '../log/abstract-log.js'
import { api, sleep, startHarness, until, type Harness } from './harness.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function start(): Promise<Harness> {
  const h = await startHarness([stream('s', 2)])
  cleanups.push(() => h.close())
  return h
}

/** A push client: collects every frame the server sends. */
class PushClient {
  readonly frames: ServerFrame[] = []
  closeCode: number | null = null
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.frames.push(JSON.parse(data.toString()) as ServerFrame))
    ws.on('close', (code) => (this.closeCode = code))
  }

  static async connect(h: Harness, group: string, member: string, query = 'encoding=utf8'): Promise<PushClient> {
    const ws = new WebSocket(`ws://127.0.0.1:${h.server.port}/api/v1/groups/${group}/members/${member}/push?${query}`)
    const client = new PushClient(ws)
    cleanups.push(async () => {
      if (ws.readyState !== WebSocket.CLOSED) {
        ws.close()
        await new Promise((r) => ws.once('close', r))
      }
    })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return client
  }

  records(): ApiRecord[] {
    return this.frames.flatMap((f) => ('records' in f ? (f.records as ApiRecord[]) : []))
  }

  errors(): Array<Record<string, unknown>> {
    return this.frames.filter((f) => 'error' in f)
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }
}

async function join(h: Harness, group: string, sessionTimeoutMs = 10_000): Promise<Membership> {
  return (await api<Membership>(h.base, 'POST', `/api/v1/groups/${group}/members`, { streams: ['s'], sessionTimeoutMs })).body
}

async function produce(h: Harness, n: number, from = 0): Promise<void> {
  const res = await api(h.base, 'POST', '/api/v1/streams/s/records', {
    records: Array.from({ length: n }, (_, i) => ({ key: `k${(from + i) % 4}`, value: String(from + i) })),
    encoding: 'utf8'
  })
  expect(res.status).toBe(200)
}

describe('push delivery over WebSocket', () => {
  it('never sends more records than the credit granted', async () => {
    const h = await start()
    const m = await join(h, 'g', 1000)
    const client = await PushClient.connect(h, 'g', m.memberId)
    // the first frame tells the member its assignment, with no records
    await until(() => client.frames.length === 1)
    expect(client.frames[0]).toEqual({ records: [], generation: m.generation, assignments: m.assignments })

    // no credit yet: nothing is sent, and the open socket keeps the 1 s session alive
    await produce(h, 2)
    await sleep(1500)
    expect(client.records()).toHaveLength(0)

    client.send({ credit: 5 })
    await produce(h, 18, 2)
    await until(() => client.records().length >= 5)
    await sleep(500)
    expect(client.records()).toHaveLength(5)

    client.send({ credit: 3 })
    await until(() => client.records().length >= 8)
    await sleep(500)
    expect(client.records()).toHaveLength(8)
    // distinct records, each partition in offset order
    const seen = client.records().map((r) => `${r.partition}@${r.offset}`)
    expect(new Set(seen).size).toBe(8)
    for (const p of [0, 1]) {
      const offsets = client
        .records()
        .filter((r) => r.partition === p)
        .map((r) => r.offset)
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b))
    }
    expect(client.errors()).toEqual([])

    // the rest arrives as credit allows
    client.send({ credit: 100 })
    await until(() => client.records().length === 20)
    expect(
      client
        .records()
        .map((r) => Number(r.value))
        .sort((a, b) => a - b)
    ).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })

  it('commits over the socket and acknowledges once durable', async () => {
    const h = await start()
    const m = await join(h, 'g')
    const client = await PushClient.connect(h, 'g', m.memberId)
    await produce(h, 6)
    client.send({ credit: 6 })
    await until(() => client.records().length === 6)
    const next = new Map<number, number>()
    for (const r of client.records()) next.set(r.partition, r.offset + 1)
    const offsets = [...next].map(([partition, offset]) => ({ stream: 's', partition, offset }))
    client.send({ commit: offsets })
    await until(() => client.frames.some((f) => 'committed' in f))
    expect(client.frames.find((f) => 'committed' in f)).toEqual({ committed: offsets })
    const d = await api<GroupDescription>(h.base, 'GET', '/api/v1/groups/g')
    expect(d.body.partitions.reduce((n, p) => n + p.lag, 0)).toBe(0)
  })

  it('answers bad frames with an error naming the field, and keeps the session', async () => {
    const h = await start()
    const m = await join(h, 'g')
    const client = await PushClient.connect(h, 'g', m.memberId)
    client.send('not json')
    client.send({ credit: 0 })
    client.send({ credit: 2.5 })
    client.send({ credits: 1 })
    client.send({ commit: [{ stream: 's', partition: 0 }] })
    client.send({ credit: 60_000 })
    client.send({ credit: 60_000 })
    await until(() => client.errors().length === 6)
    expect(client.errors().map((e) => [e.error, e.field])).toEqual([
      ['INVALID_JSON', undefined],
      ['INVALID_ARGUMENT', 'credit'],
      ['INVALID_ARGUMENT', 'credit'],
      ['INVALID_ARGUMENT', 'credits'],
      ['INVALID_ARGUMENT', 'commit[0].offset'],
      ['INVALID_ARGUMENT', 'credit']
    ])
    expect(client.errors()[1]!.message).toMatch(/frame field credit must be >= 1/)
    expect(client.closeCode).toBeNull()
  })

  it('ends with an error frame and close code 4404 when the member leaves', async () => {
    const h = await start()
    const m = await join(h, 'g')
    const client = await PushClient.connect(h, 'g', m.memberId)
    client.send({ credit: 10 })
    await sleep(100)
    await api(h.base, 'DELETE', `/api/v1/groups/g/members/${m.memberId}`)
    await until(() => client.closeCode !== null)
    expect(client.closeCode).toBe(4404)
    expect(client.errors()).toEqual([expect.objectContaining({ error: 'UNKNOWN_MEMBER' })])
    await until(() => h.waitsInFlight() === 0)
  })

  it('refuses an unknown member with HTTP 404 before the upgrade, and plain HTTP with 426', async () => {
    const h = await start()
    await join(h, 'g')
    const ws = new WebSocket(`ws://127.0.0.1:${h.server.port}/api/v1/groups/g/members/nobody/push`)
    ws.on('error', () => {})
    const status = await new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (req, res) => {
        resolve(res.statusCode ?? 0)
        req.destroy()
      })
      ws.once('open', () => reject(new Error('upgraded')))
    })
    expect(status).toBe(404)
    const m = await join(h, 'g')
    const plain = await api(h.base, 'GET', `/api/v1/groups/g/members/${m.memberId}/push`)
    expect(plain).toMatchObject({ status: 426, body: { error: 'UPGRADE_REQUIRED' } })
  })
})
