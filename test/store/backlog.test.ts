import { afterEach, describe, expect, it } from 'vitest'
import { Backlog } from '../../src/store/backlog.js'
import { key, u64 } from '../../src/store/keys.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'

// The store's backlog (bytes written and not committed) and its watermarks: the signal that
// holds publishers and answers HTTP producers 429 (store-high-water / store-low-water).

let store: Store | undefined
afterEach(async () => {
  await store?.close()
  store = undefined
})

/** A put of `size` bytes of value (plus its key) under m/backlog/<i>. */
function put(i: number, size: number): { type: 'put'; key: Buffer; value: Buffer } {
  return { type: 'put', key: key('m', 'backlog', u64(i)), value: Buffer.alloc(size, i % 256) }
}

describe('Backlog', () => {
  it('goes over at the high-water mark and back only at the low-water mark (hysteresis)', () => {
    const b = new Backlog({ high: 1000, low: 400 })
    const events: boolean[] = []
    b.onChange((over) => events.push(over))
    b.update(999)
    expect(b.over).toBe(false)
    b.update(1000)
    expect(b.over).toBe(true)
    b.update(600) // under high, over low: still over
    b.update(1200)
    expect(b.over).toBe(true)
    b.update(400)
    expect(b.over).toBe(false)
    b.update(999)
    expect(events).toEqual([true, false])
    expect(b.peakBytes).toBe(1200)
  })

  it('never goes over without a high-water mark (0: no backpressure)', () => {
    const b = new Backlog()
    b.update(Number.MAX_SAFE_INTEGER)
    expect(b.over).toBe(false)
  })

  it('refuses a low-water mark that is not below the high-water mark', () => {
    expect(() => new Backlog({ high: 1000, low: 1000 })).toThrow(/low-water mark \(1000\).*below the high-water mark \(1000\)/)
    expect(() => new Backlog({ high: 1000, low: -1 })).toThrow(RangeError)
  })

  it('lets go when the store fails (release), since nothing will drain', () => {
    const b = new Backlog({ high: 10, low: 5 })
    const events: boolean[] = []
    b.onChange((over) => events.push(over))
    b.update(50)
    b.release()
    expect(b.over).toBe(false)
    expect(b.bytes).toBe(0)
    expect(events).toEqual([true, false])
  })
})

describe('the group-commit writer with watermarks', () => {
  it('reports over as soon as a write crosses the high-water mark, and under once the commits drain it', async () => {
    store = await Store.open({ dataDir: tempDataDir('backlog'), durability: 'fsync', watermarks: { high: 4096, low: 1024 } })
    const events: Array<{ over: boolean; bytes: number }> = []
    store.backlog.onChange((over, bytes) => events.push({ over, bytes }))
    const writes = [store.write([put(0, 2000)]), store.write([put(1, 2000)])]
    expect(store.backlog.over).toBe(false) // 2 x (2000 + key) < 4096
    writes.push(store.write([put(2, 2000)]))
    // synchronously, on the write that crossed it
    expect(store.backlog.over).toBe(true)
    expect(events).toHaveLength(1)
    expect(events[0]?.over).toBe(true)
    expect(events[0]?.bytes).toBeGreaterThanOrEqual(4096)
    await Promise.all(writes)
    expect(store.backlog.over).toBe(false)
    expect(store.backlog.bytes).toBe(0)
    expect(events.map((e) => e.over)).toEqual([true, false])
    expect(store.writer.getStats().backlogBytes).toBe(0)
  })

  it('counts the batch on the commit thread: still over while it is being written', async () => {
    // a slow disk: every commit waits 300 ms
    store = await Store.open({ dataDir: tempDataDir('backlog'), durability: 'fsync', watermarks: { high: 4096, low: 1024 }, testOnlyCommitDelayMs: () => 300 })
    const written = store.write([put(0, 8000)])
    expect(store.backlog.over).toBe(true)
    // the batch has gone to the commit thread: nothing is pending, and the backlog is the same
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(store.writer.getStats().pendingBytes).toBe(0)
    expect(store.backlog.bytes).toBeGreaterThan(8000)
    expect(store.backlog.over).toBe(true)
    // a write issued meanwhile waits for the next batch; the backlog is both
    const second = store.write([put(1, 100)])
    expect(store.backlog.bytes).toBeGreaterThan(8100)
    await written
    // the first batch is on disk: what is left (the second) is under the low-water mark
    expect(store.backlog.bytes).toBeLessThan(1024)
    expect(store.backlog.over).toBe(false)
    await second
    expect(store.backlog.peakBytes).toBeGreaterThan(8100)
  })

  it('stays over until the low-water mark, not just under the high-water mark', async () => {
    store = await Store.open({
      dataDir: tempDataDir('backlog'),
      durability: 'fsync',
      watermarks: { high: 10_000, low: 2_000 },
      testOnlyCommitDelayMs: () => 200
    })
    const first = store.write([put(0, 12_000)]) // over
    await new Promise((resolve) => setTimeout(resolve, 50)) // on the commit thread
    const second = store.write([put(1, 5_000)]) // pending for the next batch: under high, over low
    let overWhenFirstDone = false
    await first.then(() => (overWhenFirstDone = store!.backlog.over))
    expect(overWhenFirstDone).toBe(true)
    await second
    expect(store.backlog.over).toBe(false)
  })
})
