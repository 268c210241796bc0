import { afterEach, describe, expect, it } from 'vitest'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { abstractLogSuite, stream } from './abstract-log.js'

const opened: Store[] = []
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close()
})

async function openStore(dir = tempDataDir('log')): Promise<Store> {
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  opened.push(store)
  return store
}

abstractLogSuite('RocksLog', {
  open: async () => RocksLog.open(await openStore(), [], { retentionIntervalMs: 0 }),
  enforceRetention: async (log, now) => void (await log.applyRetention(now))
})

describe('RocksLog appends', () => {
  it('writes a partition head once per commit, however many appends the commit holds', async () => {
    const store = await openStore()
    const log = await RocksLog.open(store, [stream('s', 2)], { retentionIntervalMs: 0 })
    const before = store.writer.getStats()
    // 500 appends in one event-loop turn: one commit
    await Promise.all(Array.from({ length: 500 }, (_, i) => log.append('s', [{ key: null, value: Buffer.from(String(i)) }], i % 2)))
    const after = store.writer.getStats()
    expect(after.commits - before.commits).toBe(1)
    // 500 records, one head per partition, one time-index entry per partition
    expect(after.ops - before.ops).toBe(500 + 2 + 2)
    await log.close()
    // the heads were stored: a reopened log has the same ends and bytes
    const info = await log.describeStream('s')
    const reopened = await RocksLog.open(store, [], { retentionIntervalMs: 0 })
    expect(await reopened.describeStream('s')).toEqual(info)
    await reopened.close()
  })
})

describe('RocksLog retention', () => {
  it('counts what it deletes', async () => {
    const log = await RocksLog.open(await openStore(), [stream('s', 1, { maxRecords: 10 })], { retentionIntervalMs: 0 })
    await log.append(
      's',
      Array.from({ length: 25 }, () => ({ key: null, value: Buffer.from('x') }))
    )
    expect(await log.applyRetention()).toBe(15)
    expect(await log.applyRetention()).toBe(0)
    await log.close()
  })
})

describe('RocksLog on disk', () => {
  it('restores end offsets, heads, commits and configs after a restart, and never reuses offsets', async () => {
    const dir = tempDataDir('log-restart')
    let store = await Store.open({ dataDir: dir, durability: 'fsync' })
    let log = await RocksLog.open(store, [stream('s', 2, { maxRecords: 5 })], { retentionIntervalMs: 0 })
    await log.append(
      's',
      Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 3}`, value: Buffer.from(String(i)) }))
    )
    await log.applyRetention()
    const before = await log.describeStream('s')
    const end0 = before.partitions[0]?.endOffset ?? -1
    await log.commit('g', [{ stream: 's', partition: 0, offset: end0 }])
    await log.close()
    await store.close()

    store = await openStore(dir)
    log = await RocksLog.open(store, [], { retentionIntervalMs: 0 })
    expect(await log.describeStream('s')).toEqual(before)
    expect(await log.committed('g', 's', 0)).toBe(end0)
    const [r] = await log.append('s', [{ key: 'k0', value: Buffer.from('after') }])
    expect(r!.offset).toBe(before.partitions[r!.partition]!.endOffset)
    await log.close()
  })

  it('retention runs in the background on its own timer', async () => {
    const store = await openStore()
    const log = await RocksLog.open(store, [stream('s', 1, { maxRecords: 3 })], { retentionIntervalMs: 50 })
    await log.append(
      's',
      Array.from({ length: 10 }, () => ({ key: null, value: Buffer.from('x') }))
    )
    const deadline = Date.now() + 5000
    const start = async (): Promise<number | undefined> => (await log.describeStream('s')).partitions[0]?.startOffset
    while ((await start()) !== 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(await start()).toBe(7)
    await log.close()
  })
})
