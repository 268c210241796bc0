import { afterEach, describe, expect, it } from 'vitest'
import { dedupRange, type DedupOptions } from '../../src/log/rocks/dedup-index.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { AppendOnce } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { abstractDedupSuite } from './abstract-dedup.js'
import { stream } from './abstract-log.js'

// appendOnce on RocksDB: the contract suite, and what is particular to this backend (the id in
// the records' batch, the sweep, the bound at open).

interface Opened {
  dir: string
  store: Store
  dedup: DedupOptions
}

const opened = new Map<RocksLog, Opened>()
const stores: Store[] = []
afterEach(async () => {
  for (const s of stores.splice(0)) if (s.isOpen) await s.close()
  opened.clear()
})

async function openLog(dedup: DedupOptions, dir = tempDataDir('dedup')): Promise<RocksLog> {
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  stores.push(store)
  const log = await RocksLog.open(store, [], { retentionIntervalMs: 0, dedup })
  opened.set(log, { dir, store, dedup })
  return log
}

async function restart(log: RocksLog, dedup?: DedupOptions): Promise<RocksLog> {
  const o = opened.get(log)
  if (!o) throw new Error('not opened here')
  await log.close()
  await o.store.close()
  return openLog(dedup ?? o.dedup, o.dir)
}

abstractDedupSuite('RocksLog', {
  open: (dedup) => openLog({ ...dedup, sweepIntervalMs: 0 }),
  restart: (log) => restart(log)
})

async function storedIds(store: Store): Promise<string[]> {
  const out: string[] = []
  for await (const k of store.scanKeys(dedupRange())) out.push(k.toString('utf8', 2).split('\u0000').join('|'))
  return out
}

const once = (id: string): AppendOnce => ({ id, fingerprint: 'f', onConflict: 'reject' })
const record = (v: string): { key: null; value: Buffer } => ({ key: null, value: Buffer.from(v) })

describe('RocksLog appendOnce', () => {
  it('writes the id in the same commit as its records', async () => {
    const log = await openLog({ windowMs: 60_000, maxKeys: 100 })
    await log.ensureStream(stream('s'))
    const { store } = opened.get(log)!
    const before = store.writer.getStats()
    await log.appendOnce('s', [record('a'), record('b')], once('k'))
    const after = store.writer.getStats()
    expect(after.commits - before.commits).toBe(1)
    // two records, the id, the partition head, one time-index entry
    expect(after.ops - before.ops).toBe(2 + 1 + 1 + 1)
    expect(await storedIds(store)).toEqual(['s|k'])
    // a duplicate writes nothing
    const dup = store.writer.getStats()
    await log.appendOnce('s', [record('a'), record('b')], once('k'))
    expect(store.writer.getStats().ops).toBe(dup.ops)
    await log.close()
  })

  it('sweeps the ids whose window has passed out of memory and RocksDB', async () => {
    const log = await openLog({ windowMs: 100, maxKeys: 100, sweepIntervalMs: 0 })
    await log.ensureStream(stream('s'))
    const { store } = opened.get(log)!
    for (const id of ['a', 'b', 'c']) await log.appendOnce('s', [record(id)], once(id))
    expect(await log.sweepDedup()).toBe(0)
    expect(log.dedupSize).toBe(3)
    expect(await log.sweepDedup(Date.now() + 100)).toBe(3)
    expect(log.dedupSize).toBe(0)
    expect(await storedIds(store)).toEqual([])
    await log.close()
  })

  it('sweeps on its own timer', async () => {
    const log = await openLog({ windowMs: 50, maxKeys: 100, sweepIntervalMs: 20 })
    await log.ensureStream(stream('s'))
    await log.appendOnce('s', [record('a')], once('a'))
    const deadline = Date.now() + 3000
    while (log.dedupSize > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(log.dedupSize).toBe(0)
    const { store } = opened.get(log)!
    await store.barrier() // the deletes are on their way once memory has forgotten the id
    expect(await storedIds(store)).toEqual([])
    await log.close()
  })

  it('tells onEvicted when the bound forgets an id before its window has passed, and deletes it from RocksDB', async () => {
    const evicted: number[] = []
    const log = await openLog({ windowMs: 60_000, maxKeys: 2, onEvicted: (n) => evicted.push(n) })
    await log.ensureStream(stream('s'))
    for (const id of ['a', 'b', 'c', 'd']) await log.appendOnce('s', [record(id)], once(id))
    expect(evicted).toEqual([1, 1])
    expect(log.dedupSize).toBe(2)
    expect(await storedIds(opened.get(log)!.store)).toEqual(['s|c', 's|d'])
    await log.close()
  })

  it('at open, drops the ids past the window, keeps the newest within a smaller bound, and clears them all when off', async () => {
    let log = await openLog({ windowMs: 60_000, maxKeys: 100 })
    await log.ensureStream(stream('s'))
    for (const id of ['a', 'b', 'c']) {
      await log.appendOnce('s', [record(id)], once(id))
      await new Promise((r) => setTimeout(r, 5)) // distinct times: the order is by time, not by id
    }
    const evicted: number[] = []
    log = await restart(log, { windowMs: 60_000, maxKeys: 2, onEvicted: (n) => evicted.push(n) })
    expect(evicted).toEqual([1])
    expect(await storedIds(opened.get(log)!.store)).toEqual(['s|b', 's|c'])
    expect((await log.appendOnce('s', [record('a')], once('a'))).duplicate).toBe(false)
    // a shorter window: the ids already older than it are gone at open
    await new Promise((r) => setTimeout(r, 60))
    log = await restart(log, { windowMs: 50, maxKeys: 100 })
    expect(log.dedupSize).toBe(0)
    expect(await storedIds(opened.get(log)!.store)).toEqual([])
    await log.appendOnce('s', [record('z')], once('z'))
    log = await restart(log, { windowMs: 0, maxKeys: 100 })
    expect(await storedIds(opened.get(log)!.store)).toEqual([])
    await log.close()
  })

  it('keeps ids holding 0x00 (the MQTT ones) apart from each other and from other streams', async () => {
    let log = await openLog({ windowMs: 60_000, maxKeys: 100 })
    await log.ensureStream(stream('s'))
    await log.ensureStream(stream('s2'))
    await log.appendOnce('s', [record('1')], once('mqtt\u0000c\u00001'))
    await log.appendOnce('s', [record('2')], once('mqtt\u0000c\u00002'))
    await log.appendOnce('s2', [record('3')], once('mqtt\u0000c\u00001'))
    log = await restart(log)
    expect(await log.appendOnce('s', [record('1')], once('mqtt\u0000c\u00001'))).toMatchObject({ duplicate: true, results: [{ offset: 0 }] })
    expect(await log.appendOnce('s', [record('2')], once('mqtt\u0000c\u00002'))).toMatchObject({ duplicate: true, results: [{ offset: 1 }] })
    expect(await log.appendOnce('s2', [record('3')], once('mqtt\u0000c\u00001'))).toMatchObject({ duplicate: true, results: [{ offset: 0 }] })
    expect((await log.appendOnce('s', [record('3')], once('mqtt\u0000c'))).duplicate).toBe(false)
    await log.close()
  })

  it('refuses bad dedup options', async () => {
    await expect(openLog({ windowMs: -1, maxKeys: 1 })).rejects.toThrow(/windowMs/)
    await expect(openLog({ windowMs: 1000, maxKeys: 0 })).rejects.toThrow(/maxKeys/)
  })
})
