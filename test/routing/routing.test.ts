import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { partitionForKey } from '../../src/log/partitioner.js'
import type { LogRecord } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'

// End to end: MQTT publishes into a real gateway process, then the log as stored on disk
// (read with RocksLog on the same data dir once the gateway has stopped).

const CONFIG = `
admin-port: 0
streams:
  telemetry:
    partitions: 4
    retention:
      max-age: 7d
  audit:
    partitions: 2
routes:
  - filter: devices/+/telemetry
    stream: telemetry
    key: topic-level:2
  - filter: devices/#
    stream: audit
    key: client-id
`

const DEVICES = 6
const PER_DEVICE = 25

interface Sent {
  topic: string
  payload: string
  qos: 1 | 2
  clientId: string
}

const dir = tempDataDir('routing')
const dataDir = join(dir, 'data')
const sent: Sent[] = []
let sysMessages = 0
const streams = new Map<string, LogRecord[]>()

beforeAll(async () => {
  const configFile = join(dir, 'culex.yaml')
  writeFileSync(configFile, CONFIG)
  const gw = await GatewayProcess.start(dataDir, ['--config', configFile])
  const url = gw.url('mqtt')
  const watcher = await connect(url, { clientId: 'sys-watcher' })
  const sysInbox = new Inbox(watcher)
  await watcher.subscribeAsync('$SYS/#', { qos: 0 })
  const devices = await Promise.all(Array.from({ length: DEVICES }, (_, d) => connect(url, { clientId: `dev-${d}` })))
  try {
    await Promise.all(
      devices.map(async (client, d) => {
        const clientId = `dev-${d}`
        const publish = async (topic: string, payload: string, qos: 1 | 2): Promise<void> => {
          await client.publishAsync(topic, payload, { qos })
          sent.push({ topic, payload, qos, clientId }) // acked
        }
        // many in flight at once per device: the log must keep their order
        await Promise.all(Array.from({ length: PER_DEVICE }, (_, n) => publish(`devices/${clientId}/telemetry`, `${clientId}:${n}`, 1)))
        await publish(`devices/${clientId}/telemetry`, `${clientId}:${PER_DEVICE}`, 2)
        await publish(`devices/${clientId}/status`, `${clientId}:online`, 1)
        await publish(`misc/${clientId}`, `${clientId}:unrouted`, 1)
      })
    )
    sysMessages = (await sysInbox.settle(200)).filter((m) => m.topic.startsWith('$SYS/')).length
  } finally {
    await closeAll(watcher, ...devices)
  }
  expect(await gw.stop()).toBe(0)

  const store = await Store.open({ dataDir, durability: 'fsync' })
  try {
    const log = await RocksLog.open(store, [], { retentionIntervalMs: 0 })
    for (const info of await log.listStreams()) {
      const records: LogRecord[] = []
      for (const p of info.partitions) {
        for (let offset = p.startOffset; offset < p.endOffset;) {
          const chunk = await log.read(info.config.name, p.partition, offset, { limit: 1000 })
          records.push(...chunk)
          offset += chunk.length
        }
      }
      streams.set(info.config.name, records)
    }
    await log.close()
  } finally {
    await store.close()
  }
}, 60_000)

const payloads = (records: LogRecord[]): string[] => records.map((r) => r.value.toString()).sort()

describe('routing MQTT publishes into the log', () => {
  it('created the configured streams with their partitions', () => {
    expect([...streams.keys()].sort()).toEqual(['audit', 'telemetry'])
    expect(new Set(streams.get('telemetry')!.map((r) => r.partition)).size).toBeGreaterThan(1)
  })

  it('has every acknowledged telemetry message in the telemetry stream, once, with its metadata', () => {
    const telemetry = streams.get('telemetry')!
    const expected = sent.filter((s) => /^devices\/[^/]+\/telemetry$/.test(s.topic))
    expect(expected).toHaveLength(DEVICES * (PER_DEVICE + 1))
    expect(payloads(telemetry)).toEqual(expected.map((s) => s.payload).sort())
    for (const s of expected) {
      const r = telemetry.find((x) => x.value.toString() === s.payload)!
      expect(r).toMatchObject({ stream: 'telemetry', topic: s.topic, qos: s.qos, clientId: s.clientId, key: s.clientId, headers: {} })
    }
  })

  it('keeps the records of one device in one partition (by key hash), in publish order', () => {
    const telemetry = streams.get('telemetry')!
    for (let d = 0; d < DEVICES; d++) {
      const device = `dev-${d}`
      const records = telemetry.filter((r) => r.key === device)
      expect(new Set(records.map((r) => r.partition))).toEqual(new Set([partitionForKey(device, 4)]))
      const ordered = [...records].sort((a, b) => a.offset - b.offset)
      expect(ordered.map((r) => r.value.toString())).toEqual(Array.from({ length: PER_DEVICE + 1 }, (_, n) => `${device}:${n}`))
      // timestamps never decrease within a partition
      for (let i = 1; i < ordered.length; i++) expect(ordered[i]!.timestamp).toBeGreaterThanOrEqual(ordered[i - 1]!.timestamp)
    }
  })

  it('appends a publish matching routes to several streams to each of them, keyed per route', () => {
    const audit = streams.get('audit')!
    const expected = sent.filter((s) => s.topic.startsWith('devices/'))
    expect(payloads(audit)).toEqual(expected.map((s) => s.payload).sort())
    for (const r of audit) expect(r.partition).toBe(partitionForKey(r.clientId!, 2))
    expect(audit.every((r) => r.key === r.clientId)).toBe(true)
  })

  it('does not append unrouted topics, nor $SYS topics', () => {
    const all = [...streams.values()].flat()
    expect(sent.filter((s) => s.topic.startsWith('misc/'))).toHaveLength(DEVICES)
    expect(all.filter((r) => !r.topic!.startsWith('devices/'))).toEqual([])
    expect(sysMessages).toBeGreaterThan(0) // the broker did publish on $SYS during the test
    expect(all.filter((r) => r.topic!.startsWith('$'))).toEqual([])
  })
})

describe('routed publishes after kill -9', () => {
  it('keeps every acknowledged QoS 1 record: the ack waited for the log commit', async () => {
    const crashDir = tempDataDir('routing-crash')
    const configFile = join(crashDir, 'culex.yaml')
    writeFileSync(configFile, CONFIG)
    const gw = await GatewayProcess.start(join(crashDir, 'data'), ['--config', configFile])
    const client = await connect(gw.url('mqtt'), { clientId: 'dev-crash' })
    const acked: string[] = []
    try {
      await Promise.all(
        Array.from({ length: 200 }, async (_, n) => {
          await client.publishAsync('devices/dev-crash/telemetry', String(n), { qos: 1 })
          acked.push(String(n))
        })
      )
    } finally {
      await gw.kill9()
      client.end(true)
    }
    const store = await Store.open({ dataDir: join(crashDir, 'data'), durability: 'fsync' })
    try {
      const log = await RocksLog.open(store, [], { retentionIntervalMs: 0 })
      const partition = partitionForKey('dev-crash', 4)
      const records = await log.read('telemetry', partition, 0, { limit: 1000 })
      expect(records.map((r) => r.value.toString())).toEqual(Array.from({ length: 200 }, (_, n) => String(n)))
      expect(acked).toHaveLength(200)
      await log.close()
    } finally {
      await store.close()
    }
  })
})
