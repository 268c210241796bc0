import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { startHttpServer } from '../../src/http/server.js'
import { GroupCoordinator } from '../../src/log/groups/coordinator.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from '../log/abstract-log.js'

// HTTP producers and store-high-water: while the store's backlog is over the mark, POST
// /api/v1/streams/:stream/records answers 429 with Retry-After and a JSON body, and appends
// nothing; once the store has drained, the same request succeeds.

const KiB = 1024
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function start(): Promise<{ base: string; store: Store; log: RocksLog }> {
  // a slow disk: a commit of more than 64 KiB takes a second
  const store = await Store.open({
    dataDir: tempDataDir('http-backpressure'),
    durability: 'none',
    watermarks: { high: 64 * KiB, low: 16 * KiB },
    testOnlyCommitDelayMs: (bytes) => (bytes > 64 * KiB ? 1000 : 0)
  })
  cleanups.push(() => store.close())
  const log = await RocksLog.open(store, [stream('s', 1)], { retentionIntervalMs: 0 })
  cleanups.push(() => log.close())
  const groups = new GroupCoordinator(log)
  cleanups.push(async () => groups.close())
  const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
  const server = await startHttpServer({ log, groups, host: '127.0.0.1', port: 0, logger, backpressure: store.backlog })
  cleanups.push(() => server.close())
  return { base: `http://127.0.0.1:${server.port}`, store, log }
}

function produce(base: string, value: string): Promise<Response> {
  return fetch(`${base}/api/v1/streams/s/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ value, encoding: 'utf8' })
  })
}

async function records(log: RocksLog): Promise<string[]> {
  return (await log.read('s', 0, 0, { limit: 100, maxBytes: 1024 * KiB })).map((r) => r.value.toString().slice(0, 20))
}

describe('HTTP produce and store-high-water', () => {
  it('answers 429 with Retry-After while the store is over its high-water mark, and 200 once it has drained', async () => {
    const { base, store, log } = await start()
    expect((await produce(base, 'first')).status).toBe(200)

    // a 100 KiB record takes the store over the mark while it is written (a second, on this disk)
    const big = produce(base, 'big'.padEnd(100 * KiB, '.'))
    const deadline = Date.now() + 5000
    while (!store.backlog.over && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    expect(store.backlog.over).toBe(true)

    const refused = await produce(base, 'refused')
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('1')
    expect(refused.headers.get('content-type')).toMatch(/^application\/json/)
    const body = (await refused.json()) as Record<string, unknown>
    expect(body).toMatchObject({ error: 'STORE_BACKPRESSURE', retriable: true, retryAfterSeconds: 1, highWater: 64 * KiB })
    expect(body.message).toMatch(/store-high-water/)
    expect(Number(body.backlogBytes)).toBeGreaterThanOrEqual(64 * KiB)

    // the big one is stored and answered; the store is back under; the refused one was never stored
    expect((await big).status).toBe(200)
    expect(store.backlog.over).toBe(false)
    expect(await records(log)).toEqual(['first', 'big'.padEnd(20, '.')])

    const retried = await produce(base, 'refused')
    expect(retried.status).toBe(200)
    expect(((await retried.json()) as { offsets: Array<{ offset: number }> }).offsets[0]?.offset).toBe(2)
    expect(await records(log)).toEqual(['first', 'big'.padEnd(20, '.'), 'refused'])
  }, 30_000)
})
