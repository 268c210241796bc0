import { afterEach, describe, expect, it, vi } from 'vitest'
import { ReplayJobs, type ReplayStatus } from '../../src/log/replay.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from './abstract-log.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  vi.useRealTimers()
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function setup(): Promise<{ log: RocksLog; published: Array<{ topic: string; payload: string; qos: number }>; jobs: ReplayJobs }> {
  const store = await Store.open({ dataDir: tempDataDir('replay'), durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('s', 3)], { retentionIntervalMs: 0 })
  cleanups.push(
    () => store.close(),
    () => log.close()
  )
  const published: Array<{ topic: string; payload: string; qos: number }> = []
  const jobs = new ReplayJobs(log, async (m) => {
    published.push({ topic: m.topic, payload: m.payload.toString(), qos: m.qos })
  })
  return { log, published, jobs }
}

async function finished(jobs: ReplayJobs, id: string): Promise<ReplayStatus> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const s = jobs.get(id)!
    if (s.state !== 'running' || Date.now() > deadline) return s
    await new Promise((r) => setTimeout(r, 10))
  }
}

describe('replay into MQTT', () => {
  it('republishes exactly the records from T on, across partitions in time order, under the prefix', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    const t0 = Date.UTC(2026, 5, 1)
    const { log, published, jobs } = await setup()
    for (let i = 0; i < 60; i++) {
      vi.setSystemTime(t0 + i * 1000)
      await log.append('s', [{ key: `dev-${i % 5}`, value: Buffer.from(String(i)), topic: `devices/dev-${i % 5}/t`, qos: 1 }])
    }
    vi.useRealTimers()
    const started = await jobs.start({ stream: 's', from: { timestamp: t0 + 20_000 }, to: { timestamp: t0 + 50_000 }, topicPrefix: 'replay/' })
    expect(started.total).toBe(30)
    const done = await finished(jobs, started.id)
    expect(done).toMatchObject({ state: 'done', published: 30, total: 30 })
    expect(published.map((m) => Number(m.payload))).toEqual(Array.from({ length: 30 }, (_, i) => 20 + i))
    expect(published[0]).toEqual({ topic: 'replay/devices/dev-0/t', payload: '20', qos: 1 })
  })

  it('refuses a prefix that could look live or match wildcards', async () => {
    const { jobs } = await setup()
    await expect(jobs.start({ stream: 's', from: 'earliest', topicPrefix: '' })).rejects.toThrow(/must not be empty/)
    await expect(jobs.start({ stream: 's', from: 'earliest', topicPrefix: 'a/#' })).rejects.toThrow(/wildcard/)
    await expect(jobs.start({ stream: 's', from: 'earliest', topicPrefix: 'a\u0000/' })).rejects.toThrow(/U\+0000/)
    await expect(jobs.start({ stream: 's', from: 'earliest', topicPrefix: '$x/' })).rejects.toThrow(/must not start with \$/)
    await expect(jobs.start({ stream: 'nope', from: 'earliest', topicPrefix: 'r/' })).rejects.toThrow(/unknown stream/)
  })

  it('can be cancelled', async () => {
    const store = await Store.open({ dataDir: tempDataDir('replay'), durability: 'fsync' })
    const log = await RocksLog.open(store, [stream('s', 1)], { retentionIntervalMs: 0 })
    cleanups.push(
      () => store.close(),
      () => log.close()
    )
    await log.append(
      's',
      Array.from({ length: 100 }, (_, i) => ({ key: null, value: Buffer.from(String(i)) }))
    )
    let count = 0
    const jobs = new ReplayJobs(log, async () => {
      count++
      await new Promise((r) => setTimeout(r, 5))
    })
    const { id } = await jobs.start({ stream: 's', from: 'earliest', topicPrefix: 'r/' })
    await new Promise((r) => setTimeout(r, 50))
    jobs.cancel(id)
    const s = await finished(jobs, id)
    expect(s.state).toBe('cancelled')
    expect(s.published).toBeLessThan(100)
    expect(count).toBe(s.published)
  })
})
