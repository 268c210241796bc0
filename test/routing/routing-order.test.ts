import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { Store } from '../../src/store/store.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect } from '../helpers/mqtt.js'

// One device mixes QoS 0, 1 and 2, retained and not, in bursts. aedes processes the packets of one
// socket read concurrently and a retained (or offline-queued) publish waits for its own fsync, yet
// the log must hold the device's records in the order it published them (appends start at admission).
describe('per-key order with mixed QoS and retain flags', () => {
  it("appends a client's publishes in wire order", async () => {
    const dir = tempDataDir('routing-order')
    const config = join(dir, 'culex.yaml')
    writeFileSync(config, 'admin-port: 0\nstreams:\n  t:\n    partitions: 2\nroutes:\n  - filter: devices/+/#\n    stream: t\n    key: topic-level:2\n')
    const dataDir = join(dir, 'data')
    const gw = await GatewayProcess.start(dataDir, ['--config', config])
    const expected: string[] = []
    try {
      // an offline persistent session makes QoS 1/2 publishes queue (and fsync) before publishing
      const offline = await connect(gw.url('mqtt'), { clientId: 'offline', clean: false })
      await offline.subscribeAsync('devices/#', { qos: 1 })
      await offline.endAsync()
      const device = await connect(gw.url('mqtt'), { clientId: 'mixer' })
      const kinds = [
        { qos: 1, retain: true },
        { qos: 0, retain: false },
        { qos: 2, retain: false },
        { qos: 1, retain: false },
        { qos: 0, retain: true }
      ] as const
      for (let burst = 0; burst < 20; burst++) {
        const acks = kinds.map((k, i) => {
          const payload = `${burst}:${i}`
          expected.push(payload)
          return device.publishAsync(`devices/mixer/${i}`, payload, { qos: k.qos, retain: k.retain })
        })
        await Promise.all(acks)
      }
      await closeAll(device)
    } finally {
      expect(await gw.stop()).toBe(0)
    }
    const store = await Store.open({ dataDir, durability: 'fsync' })
    try {
      const log = await RocksLog.open(store, [], { retentionIntervalMs: 0 })
      const info = await log.describeStream('t')
      const records = []
      for (const p of info.partitions) records.push(...(await log.read('t', p.partition, p.startOffset, { limit: 10_000 })))
      expect(new Set(records.map((r) => r.partition)).size).toBe(1)
      expect(records.map((r) => r.value.toString())).toEqual(expected)
      await log.close()
    } finally {
      await store.close()
    }
  })
})
