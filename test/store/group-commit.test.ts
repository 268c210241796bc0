import { afterEach, describe, expect, it } from 'vitest'
import { Store } from '../../src/store/store.js'
import { key, prefixRange, u64 } from '../../src/store/keys.js'
import { tempDataDir } from '../helpers/gateway-process.js'

let store: Store | undefined
afterEach(async () => {
  await store?.close()
  store = undefined
})

describe('group commit', () => {
  it('shares one commit among the writes issued in one event-loop turn', async () => {
    store = await Store.open({ dataDir: tempDataDir('gc'), durability: 'fsync' })
    const before = store.writer.getStats().commits
    const writes = Array.from({ length: 500 }, (_, i) => store!.write([{ type: 'put', key: key('m', 'test', u64(i)), value: Buffer.from(String(i)) }]))
    await Promise.all(writes)
    const stats = store.writer.getStats()
    expect(stats.commits - before).toBe(1)
    expect(stats.pendingOps).toBe(0)
    const stored = []
    for await (const [, v] of store.scan(prefixRange('m', 'test'))) stored.push(Number(v.toString()))
    expect(stored).toEqual(Array.from({ length: 500 }, (_, i) => i))
  })

  it('resolves a write only once it is readable, and keeps later writes in order', async () => {
    store = await Store.open({ dataDir: tempDataDir('gc'), durability: 'fsync' })
    const k = key('m', 'order')
    const first = store.write([{ type: 'put', key: k, value: Buffer.from('1') }])
    await new Promise((r) => setImmediate(r))
    const second = store.write([{ type: 'put', key: k, value: Buffer.from('2') }])
    await first
    await second
    expect((await store.get(k))?.toString()).toBe('2')
    expect(store.writer.getStats().commits).toBeGreaterThanOrEqual(2)
  })

  it('survives a reopen and refuses a data dir of another schema version', async () => {
    const dir = tempDataDir('gc')
    store = await Store.open({ dataDir: dir, durability: 'fsync' })
    await store.write([{ type: 'put', key: key('m', 'schema'), value: Buffer.from('99') }])
    await store.close()
    store = undefined
    await expect(Store.open({ dataDir: dir, durability: 'fsync' })).rejects.toThrow(/schema version 99/)
  })
})
