import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ENTRIES, encodeEntry, entryKey } from '../../src/delayed/entry.js'
import { DelayedError, DelayedQueue, type DelayedOptions, type DelayedSinks } from '../../src/delayed/queue.js'
import type { DelayedMessage, DelayedRecord } from '../../src/delayed/entry.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { RecordInput } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'

// The delayed queue on a real store: due order, nothing before its time, a bounded batch in
// memory, the pending bound, restarts, and the record append that deletes its entry in the same
// store batch.

const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
const open: Array<{ close(): Promise<void> }> = []
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close()
})

async function openStore(dir = tempDataDir('delayed')): Promise<{ store: Store; dir: string }> {
  const store = await Store.open({ dataDir: dir, durability: 'none' })
  let closed = false
  open.push({ close: async () => void (closed ? undefined : ((closed = true), await store.close())) })
  return { store, dir }
}

async function openQueue(store: Store, options: Partial<DelayedOptions> = {}): Promise<DelayedQueue> {
  const queue = await DelayedQueue.open(store, { maxMessages: 0, maxDelayMs: 86_400_000, logger, ...options })
  open.push({ close: () => queue.stop() })
  return queue
}

interface Published {
  message: DelayedMessage
  at: number
}

/** Sinks that record what is published, and how many publishes were in flight at most. */
function recordingSinks(
  publishMs = 0
): DelayedSinks & { published: Published[]; appended: Array<{ stream: string; records: RecordInput[] }>; maxInFlight: number } {
  let inFlight = 0
  const sinks = {
    published: [] as Published[],
    appended: [] as Array<{ stream: string; records: RecordInput[] }>,
    maxInFlight: 0,
    appendSharesBatch: false,
    publish: async (message: DelayedMessage) => {
      inFlight++
      sinks.maxInFlight = Math.max(sinks.maxInFlight, inFlight)
      if (publishMs > 0) await new Promise((r) => setTimeout(r, publishMs))
      sinks.published.push({ message, at: Date.now() })
      inFlight--
    },
    append: async (stream: string, records: RecordInput[]) => {
      sinks.appended.push({ stream, records })
      return Promise.resolve()
    }
  }
  return sinks
}

function message(topic: string, payload = topic): DelayedMessage {
  return { kind: 'message', topic, payload: Buffer.from(payload), qos: 1, retain: false, clientId: 'c1' }
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function storedKeys(store: Store): Promise<number> {
  let n = 0
  for await (const _ of store.scanKeys(ENTRIES)) n++
  return n
}

describe('the delayed queue', () => {
  it('delivers each entry at its due time, in due order, never before, and deletes it', async () => {
    const { store } = await openStore()
    const queue = await openQueue(store)
    const sinks = recordingSinks()
    queue.start(sinks)
    const t0 = Date.now()
    // stored out of order; due 600, 300 and 900 ms from now
    await queue.schedule([{ dueAt: t0 + 600, entry: message('b') }])
    await queue.schedule([
      { dueAt: t0 + 300, entry: message('a') },
      { dueAt: t0 + 900, entry: message('c') }
    ])
    expect(queue.pending).toBe(3)
    await until('three delivered', () => sinks.published.length === 3)
    expect(sinks.published.map((p) => p.message.topic)).toEqual(['a', 'b', 'c'])
    const due = { a: t0 + 300, b: t0 + 600, c: t0 + 900 }
    for (const p of sinks.published) expect(p.at).toBeGreaterThanOrEqual(due[p.message.topic as 'a' | 'b' | 'c'])
    await until('deleted', () => queue.pending === 0)
    expect(await storedKeys(store)).toBe(0)
    expect(queue.stats()).toEqual({ pending: 0, delivered: 3, dropped: 0 })
  })

  it('keeps the order entries were accepted in when they are due at the same ms', async () => {
    const { store } = await openStore()
    const queue = await openQueue(store)
    const sinks = recordingSinks()
    const dueAt = Date.now() + 100
    for (let i = 0; i < 20; i++) await queue.schedule([{ dueAt, entry: message(`m${i}`) }])
    queue.start(sinks)
    await until('twenty delivered', () => sinks.published.length === 20)
    expect(sinks.published.map((p) => p.message.topic)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`))
  })

  it('reads a bounded batch from the front: never more entries in flight than batchEntries', async () => {
    const { store } = await openStore()
    const queue = await openQueue(store, { batchEntries: 8 })
    const past = Date.now() - 1000
    await queue.schedule(Array.from({ length: 200 }, (_, i) => ({ dueAt: past + i, entry: message(`m${i}`) })))
    const sinks = recordingSinks(2)
    queue.start(sinks)
    await until('all delivered', () => sinks.published.length === 200, 10_000)
    expect(sinks.maxInFlight).toBeGreaterThan(1)
    expect(sinks.maxInFlight).toBeLessThanOrEqual(8)
  })

  it('wakes for an entry due before the one its timer waits for', async () => {
    const { store } = await openStore()
    const queue = await openQueue(store)
    const sinks = recordingSinks()
    queue.start(sinks)
    const t0 = Date.now()
    await queue.schedule([{ dueAt: t0 + 60_000, entry: message('late') }])
    await queue.schedule([{ dueAt: t0 + 200, entry: message('early') }])
    await until('early delivered', () => sinks.published.length === 1, 2000)
    expect(sinks.published[0]?.message.topic).toBe('early')
    // the entry is counted out once its delete is committed, just after the publish
    await until('early counted out', () => queue.pending === 1, 2000)
    expect(sinks.published).toHaveLength(1)
  })

  it('refuses entries past maxMessages with DELAYED_FULL, storing none of them, and takes more once some are delivered', async () => {
    const { store } = await openStore()
    const queue = await openQueue(store, { maxMessages: 2 })
    const later = Date.now() + 60_000
    await queue.schedule([{ dueAt: later, entry: message('a') }])
    const refused = queue.schedule([
      { dueAt: later, entry: message('b') },
      { dueAt: later, entry: message('c') }
    ])
    await expect(refused).rejects.toBeInstanceOf(DelayedError)
    await expect(refused).rejects.toMatchObject({ code: 'DELAYED_FULL', retriable: true, details: { limit: 2, pending: 1 } })
    await expect(refused).rejects.toThrow(/1 delayed messages and records are pending, the most delayed-max-messages allows is 2 \(room for 1, 2 given\)/)
    expect(queue.pending).toBe(1)
    expect(await storedKeys(store)).toBe(1)
    await queue.schedule([{ dueAt: Date.now(), entry: message('now') }])
    await expect(queue.schedule([{ dueAt: later, entry: message('d') }])).rejects.toMatchObject({ code: 'DELAYED_FULL' })
    const sinks = recordingSinks()
    queue.start(sinks)
    await until('one delivered', () => queue.pending === 1)
    await queue.schedule([{ dueAt: later, entry: message('e') }])
    expect(queue.pending).toBe(2)
  })

  it('survives a restart: pending entries are counted again and delivered at their time; those due while down at once', async () => {
    const first = await openStore()
    const q1 = await openQueue(first.store)
    const t0 = Date.now()
    await q1.schedule([
      { dueAt: t0 + 100, entry: message('due-while-down') },
      { dueAt: t0 + 1200, entry: message('due-later') }
    ])
    await q1.stop()
    await first.store.close()
    await new Promise((r) => setTimeout(r, 300))
    const { store } = await openStore(first.dir)
    const q2 = await openQueue(store)
    expect(q2.pending).toBe(2)
    const sinks = recordingSinks()
    const started = Date.now()
    q2.start(sinks)
    await until('the past-due one', () => sinks.published.length === 1, 1000)
    expect(sinks.published[0]?.message.topic).toBe('due-while-down')
    expect(sinks.published[0]!.at - started).toBeLessThan(500)
    await until('the later one', () => sinks.published.length === 2, 3000)
    expect(sinks.published[1]!.at).toBeGreaterThanOrEqual(t0 + 1200)
    expect(sinks.published[1]?.message).toMatchObject({ topic: 'due-later', qos: 1, retain: false, clientId: 'c1' })
    expect(sinks.published[1]?.message.payload.toString()).toBe('due-later')
  })

  it('delivers nothing after stop; what is scheduled then waits for the next start', async () => {
    const { store } = await openStore()
    const queue = await openQueue(store)
    const sinks = recordingSinks()
    queue.start(sinks)
    await queue.stop()
    await queue.schedule([{ dueAt: Date.now(), entry: message('after-stop') }])
    await new Promise((r) => setTimeout(r, 200))
    expect(sinks.published).toEqual([])
    expect(queue.pending).toBe(1)
  })

  it('drops (and logs) an entry it cannot read instead of blocking the front', async () => {
    const { store } = await openStore()
    const id = Buffer.alloc(12, 1)
    await store.write([
      { type: 'put', key: entryKey(Date.now() - 10, id), value: Buffer.from([9, 0, 0, 0, 0]) },
      { type: 'put', key: entryKey(Date.now() - 5, Buffer.alloc(12, 2)), value: encodeEntry(message('fine')) }
    ])
    const queue = await openQueue(store)
    expect(queue.pending).toBe(2)
    const sinks = recordingSinks()
    queue.start(sinks)
    await until('the readable one delivered', () => sinks.published.length === 1)
    await until('both gone', () => queue.pending === 0)
    expect(queue.stats()).toMatchObject({ delivered: 1, dropped: 1 })
    expect(await storedKeys(store)).toBe(0)
  })
})

describe('delayed records on the embedded log', () => {
  async function withLog(): Promise<{ store: Store; log: RocksLog; queue: DelayedQueue }> {
    const { store } = await openStore()
    const log = await RocksLog.open(store, [{ name: 'jobs', partitions: 2, retention: { maxAgeMs: null, maxBytes: null, maxRecords: null } }], {
      retentionIntervalMs: 0
    })
    open.push({ close: () => log.close() })
    const queue = await openQueue(store)
    return { store, log, queue }
  }

  function record(value: string, partition: number | null = null, key: string | null = null): DelayedRecord {
    return { kind: 'record', stream: 'jobs', partition, key, value: Buffer.from(value), headers: { h: value } }
  }

  it('appends due records in order and deletes their entries in the same store batch', async () => {
    const { store, log, queue } = await withLog()
    const dueAt = Date.now() + 300
    await queue.schedule([
      { dueAt, entry: record('r0', 1) },
      { dueAt, entry: record('r1', 1) },
      { dueAt, entry: record('r2', 0) }
    ])
    const commits = (): number => store.writer.getStats().commits
    let appendedAtCommit = -1
    queue.start({
      publish: () => Promise.reject(new Error('no messages here')),
      append: (stream, records, partition) => {
        const p = log.append(stream, records, partition)
        appendedAtCommit = commits()
        return p
      },
      appendSharesBatch: true
    })
    await until('deleted', () => queue.pending === 0)
    // the two appends (partition 1, then 0) and the deletes: all issued in one turn, one commit
    expect(commits()).toBe(appendedAtCommit + 1)
    expect(await storedKeys(store)).toBe(0)
    const p1 = await log.read('jobs', 1, 0, { limit: 10 })
    expect(p1.map((r) => r.value.toString())).toEqual(['r0', 'r1'])
    expect(p1[0]).toMatchObject({ headers: { h: 'r0' }, topic: null, key: null })
    expect(p1[0]!.timestamp).toBeGreaterThanOrEqual(dueAt)
    expect((await log.read('jobs', 0, 0, { limit: 10 })).map((r) => r.value.toString())).toEqual(['r2'])
    expect(queue.stats()).toEqual({ pending: 0, delivered: 3, dropped: 0 })
  })

  it('drops (and logs) records whose stream is gone by their due time', async () => {
    const { log, queue } = await withLog()
    await queue.schedule([{ dueAt: Date.now(), entry: { ...record('lost'), stream: 'gone' } }])
    queue.start({ publish: () => Promise.resolve(), append: (s, r, p) => log.append(s, r, p), appendSharesBatch: true })
    await until('dropped', () => queue.pending === 0)
    expect(queue.stats()).toMatchObject({ delivered: 0, dropped: 1 })
  })

  it('appends first and deletes after when the log does not share the store (another backend): at least once', async () => {
    const { store, queue } = await withLog()
    const order: string[] = []
    await queue.schedule([{ dueAt: Date.now(), entry: record('x') }])
    queue.start({
      publish: () => Promise.resolve(),
      append: async () => {
        order.push(`append, ${await storedKeys(store)} stored`)
      },
      appendSharesBatch: false
    })
    await until('deleted', () => queue.pending === 0)
    expect(order).toEqual(['append, 1 stored'])
    expect(await storedKeys(store)).toBe(0)
  })
})
