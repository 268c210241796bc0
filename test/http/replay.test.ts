import { describe, expect, it } from 'vitest'
import type { ReplayStatus } from '../../src/http/wire.js'
import { ReplayJobs } from '../../src/log/replay.js'
import type { AppendResult } from '../../src/log/types.js'
import { stream } from '../log/abstract-log.js'
import { api, harnessesClosedAfterEach, sleep } from './harness.js'

// POST /api/v1/streams/:stream/replay and GET /api/v1/replays/:id on a real ReplayJobs whose
// publish function (the broker's, in the gateway) collects the messages.

const start = harnessesClosedAfterEach()

interface Produced {
  offsets: AppendResult[]
}

describe('replay into MQTT', () => {
  it('starts a replay job from a time and reports its progress', async () => {
    const published: Array<{ topic: string; payload: string }> = []
    const h = await start([stream('s', 2)], {
      replay: (log) =>
        new ReplayJobs(log, async (m) => {
          published.push({ topic: m.topic, payload: m.payload.toString() })
        })
    })
    const stamps: number[] = []
    for (let i = 0; i < 6; i++) {
      const r = await api<Produced>(h.base, 'POST', '/api/v1/streams/s/records', { key: `k${i}`, value: String(i), encoding: 'utf8' })
      stamps.push(r.body.offsets[0]!.timestamp)
      await sleep(5)
    }
    const started = await api<ReplayStatus>(h.base, 'POST', '/api/v1/streams/s/replay', {
      from: { timestamp: new Date(stamps[2]!).toISOString() },
      topicPrefix: 'replay/'
    })
    expect(started.status).toBe(202)
    expect(started.body).toMatchObject({ stream: 's', total: 4 })
    let status = started.body
    for (let i = 0; i < 200 && status.state === 'running'; i++) {
      await sleep(10)
      status = (await api<ReplayStatus>(h.base, 'GET', `/api/v1/replays/${started.body.id}`)).body
    }
    expect(status).toMatchObject({ state: 'done', published: 4, total: 4 })
    expect(published.map((m) => m.payload)).toEqual(['2', '3', '4', '5'])
    expect(published[0]!.topic).toBe('replay/s')
    const list = await api<{ replays: ReplayStatus[] }>(h.base, 'GET', '/api/v1/replays')
    expect(list.body.replays.map((r) => r.id)).toEqual([started.body.id])

    const prefix = await api(h.base, 'POST', '/api/v1/streams/s/replay', { from: 'earliest', topicPrefix: 'a/#' })
    expect(prefix).toMatchObject({ status: 400, body: { error: 'INVALID_ARGUMENT', field: 'topicPrefix' } })
    const from = await api(h.base, 'POST', '/api/v1/streams/s/replay', { from: { offset: -1 }, topicPrefix: 'r/' })
    expect(from).toMatchObject({ status: 400, body: { field: 'from.offset' } })
    expect(await api(h.base, 'GET', '/api/v1/replays/nope')).toMatchObject({ status: 404, body: { error: 'UNKNOWN_REPLAY' } })
  })

  it('answers 501 when the server has no replay', async () => {
    const h = await start([stream('s', 1)])
    const res = await api(h.base, 'POST', '/api/v1/streams/s/replay', { from: 'earliest', topicPrefix: 'r/' })
    expect(res).toMatchObject({ status: 501, body: { error: 'NOT_AVAILABLE' } })
  })
})
