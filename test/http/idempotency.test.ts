import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { startHttpServer, type HttpServer } from '../../src/http/server.js'
import type { ProduceResponse } from '../../src/http/wire.js'
import { GroupCoordinator } from '../../src/log/groups/coordinator.js'
import type { DedupOptions } from '../../src/log/rocks/dedup-index.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from '../log/abstract-log.js'

// POST /api/v1/streams/:stream/records with an Idempotency-Key: appended once within the dedup
// window, over a real RocksLog (with the window under test) and the real HTTP API on 127.0.0.1.

interface Api {
  base: string
  log: RocksLog
  close(): Promise<void>
}

const open: Api[] = []
afterEach(async () => {
  for (const a of open.splice(0)) await a.close()
})

async function start(dir = tempDataDir('idempotency'), dedup: DedupOptions = { windowMs: 60_000, maxKeys: 1000 }): Promise<Api> {
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('s', 2), stream('t', 1)], { retentionIntervalMs: 0, dedup: { ...dedup, sweepIntervalMs: 0 } })
  const groups = new GroupCoordinator(log)
  let server: HttpServer
  try {
    server = await startHttpServer({ log, groups, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }) })
  } catch (err) {
    await log.close()
    await store.close()
    throw err
  }
  let closed = false
  const api: Api = {
    base: `http://127.0.0.1:${server.port}`,
    log,
    close: async () => {
      if (closed) return
      closed = true
      await server.close()
      groups.close()
      await log.close()
      await store.close()
    }
  }
  open.push(api)
  return api
}

interface Answer<T> {
  status: number
  body: T
  headers: Headers
}

async function produce<T = ProduceResponse>(base: string, body: unknown, key?: string | string[], path = '/api/v1/streams/s/records'): Promise<Answer<T>> {
  const headers = new Headers({ 'content-type': 'application/json' })
  for (const k of key === undefined ? [] : Array.isArray(key) ? key : [key]) headers.append('idempotency-key', k)
  const res = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) })
  return { status: res.status, body: (await res.json()) as T, headers: res.headers }
}

async function recordCount(log: RocksLog, name = 's'): Promise<number> {
  return (await log.describeStream(name)).partitions.reduce((n, p) => n + p.endOffset - p.startOffset, 0)
}

const BATCH = {
  encoding: 'utf8',
  records: [
    { key: 'a', value: 'one' },
    { value: 'two', partition: 1 },
    { value: 'three', partition: 0, headers: { h: '1' } },
    { key: 'b', value: 'four' }
  ]
}

describe('Idempotency-Key', () => {
  it('appends a keyed request once: the repeat gets the first offsets, each marked duplicate', async () => {
    const { base, log } = await start()
    const first = await produce(base, BATCH, 'order-1')
    expect(first.status).toBe(200)
    expect(first.body.offsets).toHaveLength(4)
    expect(first.body.offsets.every((o) => o.duplicate === false)).toBe(true)
    expect(first.body.offsets.map((o) => o.partition).slice(1, 3)).toEqual([1, 0])
    expect(first.headers.get('idempotent-replayed')).toBeNull()

    const again = await produce(base, BATCH, 'order-1')
    expect(again.status).toBe(200)
    expect(again.body.offsets).toEqual(first.body.offsets.map((o) => ({ ...o, duplicate: true })))
    expect(again.headers.get('idempotent-replayed')).toBe('true')
    expect(await recordCount(log)).toBe(4)

    // another key is another request; no key, no duplicate field
    expect((await produce(base, BATCH, 'order-2')).body.offsets.every((o) => o.duplicate === false)).toBe(true)
    const plain = await produce(base, { value: 'x', encoding: 'utf8' })
    expect(plain.body.offsets[0]).not.toHaveProperty('duplicate')
    expect(await recordCount(log)).toBe(9)
  })

  it('takes the same records in another encoding, or the draft-standard quoted key, as the same request', async () => {
    const { base, log } = await start()
    const first = await produce(base, { value: 'hello', encoding: 'utf8' }, 'k1')
    const base64 = await produce(base, { value: Buffer.from('hello').toString('base64') }, '"k1"')
    expect(base64.body.offsets).toEqual([{ ...first.body.offsets[0], duplicate: true }])
    expect(await recordCount(log)).toBe(1)
  })

  it('appends concurrent repeats once', async () => {
    const { base, log } = await start()
    const answers = await Promise.all(Array.from({ length: 8 }, () => produce(base, BATCH, 'burst')))
    expect(answers.every((a) => a.status === 200)).toBe(true)
    expect(answers.filter((a) => a.body.offsets[0]?.duplicate === false)).toHaveLength(1)
    const offsets = answers.map((a) => JSON.stringify(a.body.offsets.map(({ partition, offset }) => [partition, offset])))
    expect(new Set(offsets).size).toBe(1)
    expect(await recordCount(log)).toBe(4)
  })

  it('refuses the key with another body (422 IDEMPOTENCY_CONFLICT), appending nothing', async () => {
    const { base, log } = await start()
    await produce(base, BATCH, 'k')
    for (const other of [
      { ...BATCH, records: BATCH.records.slice(0, 3) },
      { ...BATCH, records: BATCH.records.map((r, i) => (i === 1 ? { ...r, partition: 0 } : r)) },
      { ...BATCH, records: BATCH.records.map((r, i) => (i === 2 ? { ...r, headers: { h: '2' } } : r)) }
    ]) {
      const answer = await produce<{ error: string; message: string }>(base, other, 'k')
      expect(answer.status).toBe(422)
      expect(answer.body.error).toBe('IDEMPOTENCY_CONFLICT')
      expect(answer.body).toMatchObject({ field: 'Idempotency-Key', in: 'header' })
      expect(answer.body.message).toMatch(/^Idempotency-Key "k" was used on stream s within the dedup window for other records; nothing was appended/)
    }
    expect(await recordCount(log)).toBe(4)
  })

  it('keeps keys per stream', async () => {
    const { base, log } = await start()
    await produce(base, { value: 'x', encoding: 'utf8' }, 'k')
    const other = await produce(base, { value: 'x', encoding: 'utf8' }, 'k', '/api/v1/streams/t/records')
    expect(other.body.offsets[0]?.duplicate).toBe(false)
    expect(await recordCount(log, 't')).toBe(1)
  })

  it('appends the request again once the window has passed', async () => {
    const { base, log } = await start(undefined, { windowMs: 200, maxKeys: 1000 })
    const path = '/api/v1/streams/t/records'
    await produce(base, { value: 'x', encoding: 'utf8' }, 'k', path)
    expect((await produce(base, { value: 'x', encoding: 'utf8' }, 'k', path)).body.offsets[0]?.duplicate).toBe(true)
    await new Promise((r) => setTimeout(r, 300))
    const later = await produce(base, { value: 'x', encoding: 'utf8' }, 'k', path)
    expect(later.body.offsets[0]).toMatchObject({ duplicate: false, offset: 1 })
    expect(await recordCount(log, 't')).toBe(2)
  })

  it('remembers the key over a restart', async () => {
    const dir = tempDataDir('idempotency-restart')
    const before = await start(dir)
    const first = await produce(before.base, BATCH, 'k')
    await before.close()
    const after = await start(dir)
    const again = await produce(after.base, BATCH, 'k')
    expect(again.body.offsets).toEqual(first.body.offsets.map((o) => ({ ...o, duplicate: true })))
    expect(await recordCount(after.log)).toBe(4)
    expect((await produce(after.base, { value: 'y', encoding: 'utf8' }, 'k')).status).toBe(422)
  })

  it.each([
    ['empty', ''],
    ['longer than 255 characters', 'k'.repeat(256)],
    ['with a space', 'order 1'],
    ['with a quote inside', 'a"b'],
    ['with a backslash', 'a\\b'],
    ['with a non-ASCII character', 'caf\u00e9'],
    ['given twice', ['a', 'b']]
  ])('refuses a key %s with 400 naming the header, appending nothing', async (_, key) => {
    const { base, log } = await start()
    const answer = await produce<{ error: string; message: string; field: string; in: string }>(base, { value: 'x', encoding: 'utf8' }, key)
    expect(answer.status).toBe(400)
    expect(answer.body).toMatchObject({ error: 'INVALID_ARGUMENT', field: 'Idempotency-Key', in: 'header' })
    expect(answer.body.message).toMatch(/^header Idempotency-Key must be 1 to 255 printable ASCII characters/)
    expect(await recordCount(log)).toBe(0)
  })

  it('takes a key of 255 characters', async () => {
    const { base } = await start()
    expect((await produce(base, { value: 'x', encoding: 'utf8' }, 'k'.repeat(255))).status).toBe(200)
  })
})
