import { afterEach, describe, expect, it } from 'vitest'
import { RocksLog } from '../../src/log/rocks-log.js'
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

abstractLogSuite('RocksLog', async () => RocksLog.open(await openStore(), [], { retentionIntervalMs: 0 }))

describe('RocksLog on disk', () => {
  it('restores end offsets, heads, commits and configs after a restart, and never reuses offsets', async () => {
    const dir = tempDataDir('log-restart')
    let store = await Store.open({ dataDir: dir, durability: 'fsync' })
    let log = await RocksLog.open(store, [stream('s', 2, { maxRecords: 5 })], { retentionIntervalMs: 0 })
    await log.append('s', Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 3}`, value: Buffer.from(String(i)) })))
    await log.applyRetention()
    await log.commit('g', [{ stream: 's', partition: 0, offset: log.describeStream('s').partitions[0]!.endOffset }])
    const before = log.describeStream('s')
    await log.close()
    await store.close()

    store = await openStore(dir)
    log = await RocksLog.open(store, [], { retentionIntervalMs: 0 })
    expect(log.describeStream('s')).toEqual(before)
    expect(await log.committed('g', 's', 0)).toBe(before.partitions[0]!.endOffset)
    const [r] = await log.append('s', [{ key: 'k0', value: Buffer.from('after') }])
    expect(r!.offset).toBe(before.partitions[r!.partition]!.endOffset)
    await log.close()
  })

  it('retention runs in the background on its own timer', async () => {
    const store = await openStore()
    const log = await RocksLog.open(store, [stream('s', 1, { maxRecords: 3 })], { retentionIntervalMs: 50 })
    await log.append('s', Array.from({ length: 10 }, () => ({ key: null, value: Buffer.from('x') })))
    const deadline = Date.now() + 5000
    while (log.describeStream('s').partitions[0]!.startOffset !== 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(log.describeStream('s').partitions[0]!.startOffset).toBe(7)
    await log.close()
  })
})
