import { describe, expect, it, vi } from 'vitest'
import type { ApiRecord } from '../../src/http/wire.js'
import type { ReadResponse } from '../../src/http/wire.js'
import type { GroupDescription, Membership } from '../../src/http/wire.js'
import type { AppendResult } from '../../src/log/types.js'
import { stream } from '../log/abstract-log.js'
import { api, harnessesClosedAfterEach, sleep, until } from './harness.js'

const start = harnessesClosedAfterEach()

const b64 = (s: string): string => Buffer.from(s).toString('base64')

interface Produced {
  offsets: AppendResult[]
}

/** Produces records '0', '1', ... to stream s one by one, 5 ms apart; returns their timestamps. */
async function produceSpaced(base: string, count: number): Promise<number[]> {
  const stamps: number[] = []
  for (let i = 0; i < count; i++) {
    const r = await api<Produced>(base, 'POST', '/api/v1/streams/s/records', { value: String(i), encoding: 'utf8' })
    stamps.push(r.body.offsets[0]!.timestamp)
    await sleep(5)
  }
  return stamps
}

describe('streams', () => {
  it('lists and describes streams; 404 for an unknown one', async () => {
    const h = await start([stream('s', 2, { maxRecords: 100 }), stream('t')])
    await api(h.base, 'POST', '/api/v1/streams/s/records', { records: [{ key: 'a', value: b64('x') }] })
    const list = await api<{ streams: Array<Record<string, unknown>> }>(h.base, 'GET', '/api/v1/streams')
    expect(list.status).toBe(200)
    expect(list.body.streams.map((s) => s.name)).toEqual(['s', 't'])
    const s = await api(h.base, 'GET', '/api/v1/streams/s')
    expect(s.body).toMatchObject({ name: 's', partitionCount: 2, records: 1, retention: { maxRecords: 100, maxAgeMs: null, maxBytes: null } })
    expect((s.body.bytes as number) > 0).toBe(true)
    expect(s.body.partitions).toHaveLength(2)

    for (const [method, path, body] of [
      ['GET', '/api/v1/streams/nope', undefined],
      ['GET', '/api/v1/streams/nope/partitions/0/records', undefined],
      ['POST', '/api/v1/streams/nope/records', { value: b64('x') }]
    ] as const) {
      const res = await api(h.base, method, path, body)
      expect(res.status).toBe(404)
      expect(res.body).toMatchObject({ error: 'UNKNOWN_STREAM' })
      expect(res.body.message).toMatch(/unknown stream "nope"/)
    }
    const badPartition = await api(h.base, 'GET', '/api/v1/streams/s/partitions/2/records')
    expect(badPartition).toMatchObject({ status: 404, body: { error: 'UNKNOWN_PARTITION' } })
    const noRoute = await api(h.base, 'GET', '/api/v1/nothing')
    expect(noRoute).toMatchObject({ status: 404, body: { error: 'NOT_FOUND' } })
  })

  it('produces (after the append is durable) and reads back by offset, in base64 or UTF-8', async () => {
    const h = await start([stream('s', 1)])
    const produced = await api<Produced>(h.base, 'POST', '/api/v1/streams/s/records', {
      records: [
        { key: 'k1', value: b64('héllo'), headers: { 'content-type': 'text/plain' } },
        { key: null, value: Buffer.from([0, 255, 1]).toString('base64') },
        { value: b64('third') }
      ]
    })
    expect(produced.status).toBe(200)
    expect(produced.body.offsets.map((o) => o.offset)).toEqual([0, 1, 2])
    // the answer came after the append resolved: the records are visible to readers already
    expect((await h.rocks.describeStream('s')).partitions[0]?.endOffset).toBe(3)

    const single = await api<Produced>(h.base, 'POST', '/api/v1/streams/s/records?encoding=utf8', { key: 'k2', value: 'plain text' })
    expect(single.body.offsets).toEqual([{ partition: 0, offset: 3, timestamp: expect.any(Number) as number }])
    const viaBody = await api<Produced>(h.base, 'POST', '/api/v1/streams/s/records', { records: [{ value: 'more text' }], encoding: 'utf8' })
    expect(viaBody.body.offsets[0]!.offset).toBe(4)

    const read = await api<ReadResponse>(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?offset=0')
    expect(read.status).toBe(200)
    expect(read.body).toMatchObject({ nextOffset: 5, startOffset: 0, endOffset: 5 })
    const [first, second] = read.body.records
    expect(first).toMatchObject({ stream: 's', partition: 0, offset: 0, key: 'k1', headers: { 'content-type': 'text/plain' }, topic: null })
    expect(Buffer.from(first!.value, 'base64').toString()).toBe('héllo')
    expect([...Buffer.from(second!.value, 'base64')]).toEqual([0, 255, 1])

    const text = await api<ReadResponse>(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?offset=3&limit=1&encoding=utf8')
    expect(text.body.records.map((r) => r.value)).toEqual(['plain text'])
    expect(text.body.nextOffset).toBe(4)
    const atEnd = await api<ReadResponse>(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?offset=5')
    expect(atEnd.body).toMatchObject({ records: [], nextOffset: 5 })
  })

  it('replays by timestamp: exactly the records from T on (ms or ISO 8601)', async () => {
    const h = await start([stream('s', 1)])
    const stamps = await produceSpaced(h.base, 8)
    const t = stamps[5]!
    expect(stamps[4]!).toBeLessThan(t)
    for (const q of [String(t), encodeURIComponent(new Date(t).toISOString())]) {
      const res = await api<ReadResponse>(h.base, 'GET', `/api/v1/streams/s/partitions/0/records?timestamp=${q}&encoding=utf8`)
      expect(res.status).toBe(200)
      expect(res.body.records.map((r: ApiRecord) => r.value)).toEqual(['5', '6', '7'])
      expect(res.body.nextOffset).toBe(8)
    }
    const future = await api<ReadResponse>(h.base, 'GET', `/api/v1/streams/s/partitions/0/records?timestamp=${stamps[7]! + 1}`)
    expect(future.body).toMatchObject({ records: [], nextOffset: 8 })
    const bad = await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?timestamp=yesterday')
    expect(bad).toMatchObject({ status: 400, body: { error: 'INVALID_ARGUMENT', field: 'timestamp' } })
    const both = await api(h.base, 'GET', `/api/v1/streams/s/partitions/0/records?timestamp=${t}&offset=1`)
    expect(both).toMatchObject({ status: 400, body: { field: 'timestamp' } })
  })

  it('answers OFFSET_OUT_OF_RANGE with earliest and latest after retention', async () => {
    const h = await start([stream('s', 1, { maxRecords: 5 })])
    await api(h.base, 'POST', '/api/v1/streams/s/records', { records: Array.from({ length: 20 }, (_, i) => ({ value: String(i) })), encoding: 'utf8' })
    expect(await h.rocks.applyRetention()).toBe(15)
    const below = await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?offset=0')
    expect(below.status).toBe(400)
    expect(below.body).toMatchObject({ error: 'OFFSET_OUT_OF_RANGE', earliest: 15, latest: 20 })
    expect(below.body.message).toMatch(/out of range/)
    const beyond = await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?offset=21')
    expect(beyond.body).toMatchObject({ error: 'OFFSET_OUT_OF_RANGE', earliest: 15, latest: 20 })
    const fromHead = await api<ReadResponse>(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?encoding=utf8')
    expect(fromHead.body.records.map((r) => r.value)).toEqual(['15', '16', '17', '18', '19'])
    expect(fromHead.body.startOffset).toBe(15)
  })

  it('answers 400 naming the bad field, and 413 for a body over the limit', async () => {
    const h = await start([stream('s', 2)])
    const cases: Array<[unknown, string, RegExp]> = [
      [{ records: [{ value: 5 }] }, 'records[0].value', /body field records\[0\]\.value must be string/],
      [{ records: [{ key: 'a' }] }, 'records[0].value', /records\[0\]\.value is required/],
      [{ key: 'a' }, 'value', /body field value is required/],
      [{ valeu: 'x', value: 'eA==' }, 'valeu', /valeu is not allowed/],
      [{ records: [{ value: 'eA==', headers: { h: 1 } }] }, 'records[0].headers.h', /must be string/],
      [{ records: [{ value: 'not base64!' }] }, 'records[0].value', /not valid base64/],
      [{ records: [{ value: 'eA==', partition: 2 }] }, 'records[0].partition', /must be below 2/],
      [{ records: [], encoding: 'utf8' }, 'records', /must NOT have fewer than 1 items/],
      [{ value: 'x', encoding: 'latin1' }, 'encoding', /must be one of: base64, utf8/],
      [{ records: [{ value: 'eA==' }], value: 'eA==' }, 'value', /cannot be given next to records/],
      [{ records: Array.from({ length: 1001 }, () => ({ value: '' })) }, 'records', /more than 1000/]
    ]
    for (const [body, field, message] of cases) {
      const res = await api(h.base, 'POST', '/api/v1/streams/s/records', body)
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400)
      expect(res.body).toMatchObject({ error: 'INVALID_ARGUMENT', field })
      expect(res.body.message).toMatch(message)
    }
    const query = await api(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?limit=abc')
    expect(query).toMatchObject({ status: 400, body: { error: 'INVALID_ARGUMENT', field: 'limit', in: 'query' } })
    expect(query.body.message).toMatch(/query parameter limit must be integer/)
    const param = await api(h.base, 'GET', '/api/v1/streams/s/partitions/x/records')
    expect(param).toMatchObject({ status: 400, body: { field: 'p', in: 'path' } })
    const json = await api(h.base, 'POST', '/api/v1/streams/s/records', '{"value":')
    expect(json).toMatchObject({ status: 400, body: { error: 'INVALID_JSON' } })

    const big = await api(h.base, 'POST', '/api/v1/streams/s/records', { value: 'a'.repeat(1024 * 1024 + 10), encoding: 'utf8' })
    expect(big).toMatchObject({ status: 413, body: { error: 'PAYLOAD_TOO_LARGE' } })
    expect((await h.rocks.describeStream('s')).partitions.every((p) => p.endOffset === 0)).toBe(true)
  })
})

describe('consumer groups', () => {
  const g = '/api/v1/groups/g'

  it('join, fetch, commit, describe with lag, leave', async () => {
    const h = await start([stream('s', 2)])
    await api(h.base, 'POST', '/api/v1/streams/s/records', {
      records: Array.from({ length: 10 }, (_, i) => ({ value: `v${i}`, partition: i % 2 })),
      encoding: 'utf8'
    })
    const joined = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'], clientId: 'test' })
    expect(joined.status).toBe(200)
    const { memberId } = joined.body
    expect(joined.body.assignments).toEqual([
      { stream: 's', partition: 0 },
      { stream: 's', partition: 1 }
    ])
    const fetched = await api<{ records: ApiRecord[]; generation: number }>(h.base, 'POST', `${g}/members/${memberId}/fetch`, {
      maxRecords: 7,
      encoding: 'utf8'
    })
    expect(fetched.status).toBe(200)
    expect(fetched.body.records).toHaveLength(7)
    expect(fetched.body.generation).toBe(joined.body.generation)
    expect(fetched.body.records.slice(0, 5).map((r) => r.value)).toEqual(['v0', 'v2', 'v4', 'v6', 'v8'])

    const commit = await api(h.base, 'POST', `${g}/members/${memberId}/commit`, {
      offsets: [
        { stream: 's', partition: 0, offset: 5 },
        { stream: 's', partition: 1, offset: 2 }
      ]
    })
    expect(commit.status).toBe(200)
    const d = await api<GroupDescription>(h.base, 'GET', g)
    expect(d.status).toBe(200)
    expect(d.body.members.map((m) => m.memberId)).toEqual([memberId])
    expect(d.body.partitions.map((p) => [p.partition, p.committed, p.endOffset, p.lag])).toEqual([
      [0, 5, 5, 0],
      [1, 2, 5, 3]
    ])
    const list = await api<{ groups: Array<Record<string, unknown>> }>(h.base, 'GET', '/api/v1/groups')
    expect(list.body.groups).toEqual([{ group: 'g', state: 'stable', generation: d.body.generation, members: 1, streams: ['s'], lag: 3 }])

    expect((await api(h.base, 'POST', `${g}/members/${memberId}/heartbeat`)).status).toBe(200)
    const beyond = await api(h.base, 'POST', `${g}/members/${memberId}/commit`, { offsets: [{ stream: 's', partition: 0, offset: 99 }] })
    expect(beyond).toMatchObject({ status: 400, body: { error: 'OFFSET_OUT_OF_RANGE', latest: 5 } })
    const badBody = await api(h.base, 'POST', `${g}/members/${memberId}/commit`, { offsets: [{ stream: 's', partition: 0, offset: -1 }] })
    expect(badBody).toMatchObject({ status: 400, body: { field: 'offsets[0].offset' } })

    // a second member takes a partition; the first may no longer commit it
    const other = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'] })
    const lost = joined.body.memberId < other.body.memberId ? 1 : 0
    const stale = await api(h.base, 'POST', `${g}/members/${memberId}/commit`, { offsets: [{ stream: 's', partition: lost, offset: 5 }] })
    expect(stale).toMatchObject({ status: 409, body: { error: 'NOT_ASSIGNED' } })

    expect((await api(h.base, 'DELETE', `${g}/members/${memberId}`)).status).toBe(204)
    const gone = await api(h.base, 'POST', `${g}/members/${memberId}/fetch`, {})
    expect(gone).toMatchObject({ status: 404, body: { error: 'UNKNOWN_MEMBER' } })
    expect(await api(h.base, 'GET', '/api/v1/groups/never')).toMatchObject({ status: 404, body: { error: 'UNKNOWN_GROUP' } })
    expect(await api(h.base, 'POST', `${g}/members`, { streams: ['nope'] })).toMatchObject({ status: 404, body: { error: 'UNKNOWN_STREAM' } })
    expect(await api(h.base, 'POST', `${g}/members`, { streams: [] })).toMatchObject({ status: 400, body: { field: 'streams' } })
    expect(await api(h.base, 'POST', `${g}/members`, { streams: ['s'], sessionTimeoutMs: 10 })).toMatchObject({
      status: 400,
      body: { field: 'sessionTimeoutMs' }
    })
  })

  it('a long-poll fetch returns as soon as a record is appended', async () => {
    const h = await start([stream('s', 1)])
    const { body: m } = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'], sessionTimeoutMs: 1000 })
    const started = Date.now()
    const poll = api<{ records: ApiRecord[] }>(h.base, 'POST', `${g}/members/${m.memberId}/fetch`, { waitMs: 10_000, encoding: 'utf8' })
    await until(() => h.waitsInFlight() === 1)
    await sleep(1500) // longer than the session timeout: the held request keeps the member alive
    const appended = Date.now()
    await api(h.base, 'POST', '/api/v1/streams/s/records', { value: 'now', encoding: 'utf8' })
    const res = await poll
    expect(res.status).toBe(200)
    expect(res.body.records.map((r) => r.value)).toEqual(['now'])
    // answered right after the append (which includes an fsync), not at waitMs (10 s)
    expect(Date.now() - appended).toBeLessThan(1000)
    expect(Date.now() - started).toBeLessThan(3000)
    expect(h.waitsInFlight()).toBe(0)

    // an empty poll waits waitMs and answers with no records
    const t0 = Date.now()
    const empty = await api<{ records: ApiRecord[] }>(h.base, 'POST', `${g}/members/${m.memberId}/fetch`, { waitMs: 300 })
    expect(empty.body.records).toEqual([])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
  })

  it('a long-poll whose client disconnects stops waiting and leaks nothing', async () => {
    const h = await start([stream('s', 1)])
    const { body: m } = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'], sessionTimeoutMs: 1000 })
    const controller = new AbortController()
    const poll = api(h.base, 'POST', `${g}/members/${m.memberId}/fetch`, { waitMs: 20_000 }, controller.signal)
    await until(() => h.waitsInFlight() === 1)
    const part = api(h.base, 'GET', '/api/v1/streams/s/partitions/0/records?waitMs=20000', undefined, controller.signal)
    await until(() => h.waitsInFlight() === 2)
    controller.abort()
    await expect(poll).rejects.toThrow()
    await expect(part).rejects.toThrow()
    // the server side ends its waits at once, long before waitMs
    await until(() => h.waitsInFlight() === 0, 2000)
    // and stops heartbeating for the member: with no client, its 1 s session times out
    const deadline = Date.now() + 4000
    let members = 1
    while (members > 0 && Date.now() < deadline) {
      await sleep(50)
      const d = await api<GroupDescription>(h.base, 'GET', g)
      members = d.status === 404 ? 0 : d.body.members.length
    }
    expect(members).toBe(0)
  })

  it('a long-poll ends when its member leaves', async () => {
    const h = await start([stream('s', 1)])
    const { body: m } = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'] })
    const t0 = Date.now()
    const poll = api(h.base, 'POST', `${g}/members/${m.memberId}/fetch`, { waitMs: 20_000 })
    await until(() => h.waitsInFlight() === 1)
    await api(h.base, 'DELETE', `${g}/members/${m.memberId}`)
    const res = await poll
    expect(res).toMatchObject({ status: 404, body: { error: 'UNKNOWN_MEMBER' } })
    expect(Date.now() - t0).toBeLessThan(3000)
  })

  it('resets committed offsets to earliest, latest, an offset or a time; only when the group is empty', async () => {
    const h = await start([stream('s', 1)])
    const stamps = await produceSpaced(h.base, 6)
    const { body: m } = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'] })
    const active = await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: 'earliest' })
    expect(active).toMatchObject({ status: 409, body: { error: 'GROUP_ACTIVE' } })
    await api(h.base, 'DELETE', `${g}/members/${m.memberId}`)

    const committed = async (): Promise<number | null> => (await api<GroupDescription>(h.base, 'GET', g)).body.partitions[0]?.committed ?? null
    expect(await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: 'latest' })).toMatchObject({
      status: 200,
      body: { offsets: [{ stream: 's', partition: 0, offset: 6 }] }
    })
    expect(await committed()).toBe(6)
    await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: { offset: 2 } })
    expect(await committed()).toBe(2)
    await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: { timestamp: new Date(stamps[4]!).toISOString() } })
    expect(await committed()).toBe(4)
    await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: 'earliest' })
    expect(await committed()).toBe(0)

    // a member that joins now starts at the reset offset
    await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: { offset: 3 } })
    const { body: again } = await api<Membership>(h.base, 'POST', `${g}/members`, { streams: ['s'] })
    const f = await api<{ records: ApiRecord[] }>(h.base, 'POST', `${g}/members/${again.memberId}/fetch`, { encoding: 'utf8' })
    expect(f.body.records.map((r) => r.value)).toEqual(['3', '4', '5'])
    await api(h.base, 'DELETE', `${g}/members/${again.memberId}`)

    expect(await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: 'first' })).toMatchObject({ status: 400, body: { field: 'to' } })
    expect(await api(h.base, 'POST', `${g}/reset`, { stream: 's', to: { offset: 99 } })).toMatchObject({ status: 400, body: { error: 'OFFSET_OUT_OF_RANGE' } })
    expect(await api(h.base, 'POST', `${g}/reset`, { stream: 'nope', to: 'earliest' })).toMatchObject({ status: 404 })
  })
})

describe('names and groups at their limits', () => {
  it('serves stream and group names of 101 to 128 characters (not fastify 414s), and refuses 129 with a clear 400', async () => {
    const long = 's'.repeat(128)
    const h = await start([stream(long, 1)])
    const produced = await api(h.base, 'POST', `/api/v1/streams/${long}/records`, { value: 'x', encoding: 'utf8' })
    expect(produced.status).toBe(200)
    expect((await api(h.base, 'GET', `/api/v1/streams/${long}`)).status).toBe(200)
    const group = 'g'.repeat(128)
    const joined = await api(h.base, 'POST', `/api/v1/groups/${group}/members`, { streams: [long] })
    expect(joined.status).toBe(200)
    expect((await api(h.base, 'GET', `/api/v1/groups/${group}`)).status).toBe(200)
    const tooLong = await api(h.base, 'GET', `/api/v1/streams/${'s'.repeat(129)}`)
    expect(tooLong).toMatchObject({ status: 400, body: { error: 'INVALID_ARGUMENT', field: 'stream', in: 'path' } })
  })

  it('answers 404 for an unknown group, and a failed join (unknown stream) leaves no group behind', async () => {
    const h = await start([stream('s', 1)])
    expect(await api(h.base, 'GET', '/api/v1/groups/nobody')).toMatchObject({ status: 404, body: { error: 'UNKNOWN_GROUP' } })
    expect((await api(h.base, 'POST', '/api/v1/groups/ghost/members', { streams: ['missing'] })).status).toBe(404)
    expect(await api(h.base, 'GET', '/api/v1/groups/ghost')).toMatchObject({ status: 404, body: { error: 'UNKNOWN_GROUP' } })
    expect(await api(h.base, 'GET', '/api/v1/groups')).toMatchObject({ status: 200, body: { groups: [] } })
  })

  it('lists thousands of groups from one read of the commits (it was one read per group: O(groups^2))', async () => {
    const h = await start([stream('s', 1)])
    await h.rocks.append('s', [{ key: null, value: Buffer.from('x') }])
    for (let i = 0; i < 2000; i++) await h.rocks.commit(`g${i}`, [{ stream: 's', partition: 0, offset: i % 2 }])
    const listCommitted = vi.spyOn(h.rocks, 'listCommitted')
    const list = await api<{ groups: Array<{ group: string; lag: number }> }>(h.base, 'GET', '/api/v1/groups')
    expect(list.body.groups).toHaveLength(2000)
    expect(list.body.groups.filter((g) => g.lag === 1)).toHaveLength(1000)
    expect(listCommitted).toHaveBeenCalledTimes(1)
  })
})
