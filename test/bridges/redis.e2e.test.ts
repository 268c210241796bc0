import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { connectWithInbox, type Inbox } from '../helpers/mqtt.js'
import type { ServerProcess } from '../helpers/servers/process.js'
import { redisClient, startRedis } from '../helpers/servers/redis.js'
import { Culex, checkOrder, keyedRecords, onlyDeadLetter, sleep } from './e2e.js'

// The redis bridge end to end: a real `culex start` process with redis bridges to and from a real
// redis-server (AOF, appendfsync always). Outbound: 10,000 records in per-key order, a kill -9 of
// Redis and one of Culex mid-stream (at least once: every record, first arrivals in order, the
// duplicates counted), a refused XADD in the dead-letter stream. Inbound: entries reach an MQTT
// subscriber and the log; an entry read but not acked before Culex died is published after restart.

const N = 10_000
const KEYS = 20
const retry = { initial: '100ms', max: '1s' }

let redis: ServerProcess
let client: Redis
let culex: Culex

function outbound(name: string, stream: string, key: string): Record<string, unknown> {
  return {
    name,
    'kind': 'redis',
    'direction': 'out',
    'streams': [stream],
    'batch-size': 200,
    retry,
    'target': { 'port': redis.port, key, 'command-timeout': '2s' }
  }
}

/** The `value` field of every entry of a Redis stream, in stream order. */
async function values(key: string): Promise<string[]> {
  const out: string[] = []
  let start = '-'
  for (;;) {
    const page = (await client.callBuffer('XRANGE', key, start, '+', 'COUNT', 5000)) as [Buffer, Buffer[]][]
    for (const [, flat] of page) {
      const i = flat.findIndex((f, j) => j % 2 === 0 && f.toString() === 'value')
      out.push(flat[i + 1]!.toString())
    }
    if (page.length < 5000) return out
    start = `(${page[page.length - 1]![0].toString()}`
  }
}

async function until(what: string, test: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

async function clientReady(): Promise<void> {
  await until('the test client reconnects', () => client.status === 'ready', 15_000)
}

async function xlen(key: string): Promise<number> {
  return client.status === 'ready' ? client.xlen(key).catch(() => 0) : 0
}

beforeAll(async () => {
  redis = await startRedis()
  client = await redisClient(redis.port)
  // a key the bridge cannot XADD to (it holds a string): that record is dead-lettered
  await client.set('orders:bad', 'not a stream')
  culex = await Culex.start({
    streams: { telemetry: { partitions: 4 }, outage: { partitions: 4 }, crash: { partitions: 4 }, orders: { partitions: 2 }, commands: { partitions: 2 } },
    routes: [{ filter: 'cmd/#', stream: 'commands', key: 'topic-level:2' }],
    bridges: [
      outbound('telemetry-out', 'telemetry', 'out:telemetry'),
      outbound('outage-out', 'outage', 'out:outage'),
      outbound('crash-out', 'crash', 'out:crash'),
      outbound('orders-out', 'orders', 'orders:{key}'),
      {
        name: 'commands-in',
        kind: 'redis',
        direction: 'in',
        retry,
        source: {
          'port': redis.port,
          'key': 'in:commands',
          'group': 'culex',
          'start-id': '0',
          'topic': 'cmd/{field:device}',
          'block': '500ms',
          'command-timeout': '2s'
        }
      }
    ]
  })
}, 60_000)

afterAll(async () => {
  await culex?.dispose()
  client?.disconnect()
  await redis?.dispose()
})

describe('redis bridge, outbound', () => {
  it('delivers 10,000 records in per-key order, none lost, none twice', { timeout: 60_000 }, async () => {
    await culex.produce('telemetry', keyedRecords(N, KEYS))
    await culex.waitForBridge('telemetry-out', (s) => s.lag === 0 && s.delivered === N, 45_000)
    const report = checkOrder(await values('out:telemetry'), N, KEYS)
    console.log('redis outbound, no fault:', report)
    expect(report).toEqual({ received: N, distinct: N, missing: 0, duplicates: 0, outOfOrder: 0 })
  })

  it('Redis killed -9 mid-stream and restarted: everything arrives at least once, first arrivals in per-key order', { timeout: 60_000 }, async () => {
    await culex.produce('outage', keyedRecords(N / 2, KEYS))
    await until('part of the stream arrived', async () => (await xlen('out:outage')) > 1000)
    await redis.kill9()
    // the second half is appended while Redis is down: there is always something to retry
    await culex.produce('outage', keyedRecords(N / 2, KEYS, N / 2))
    const status = await culex.waitForBridge('outage-out', (s) => s.state === 'retrying' && s.lastError !== null, 15_000)
    console.log('redis outbound, Redis down:', status.lastError)
    await sleep(500)
    await redis.start()
    await clientReady()
    await culex.waitForBridge('outage-out', (s) => s.lag === 0 && s.state === 'running', 45_000)
    const report = checkOrder(await values('out:outage'), N, KEYS)
    console.log(`redis outbound, Redis killed -9: ${report.duplicates} duplicates`, report)
    expect(report.missing).toBe(0)
    expect(report.distinct).toBe(N)
    expect(report.outOfOrder).toBe(0)
    expect(report.duplicates).toBeGreaterThanOrEqual(0)
    expect(report.received).toBe(N + report.duplicates)
  })

  it('Culex killed -9 mid-stream and restarted: everything arrives at least once, first arrivals in per-key order', { timeout: 60_000 }, async () => {
    await culex.produce('crash', keyedRecords(N, KEYS))
    await until('part of the stream arrived', async () => (await xlen('out:crash')) > 1000)
    await culex.kill9()
    const atKill = await xlen('out:crash')
    expect(atKill).toBeLessThan(N)
    await culex.restart()
    await culex.waitForBridge('crash-out', (s) => s.lag === 0, 45_000)
    const report = checkOrder(await values('out:crash'), N, KEYS)
    console.log(`redis outbound, Culex killed -9 with ${atKill} of ${N} in Redis: ${report.duplicates} duplicates`, report)
    expect(report.missing).toBe(0)
    expect(report.distinct).toBe(N)
    expect(report.outOfOrder).toBe(0)
    expect(report.duplicates).toBeGreaterThanOrEqual(0)
    expect(report.received).toBe(N + report.duplicates)
  })

  it('a record Redis refuses (WRONGTYPE) ends in the dead-letter stream; the others are delivered', { timeout: 30_000 }, async () => {
    await culex.produce('orders', [
      { key: 'good', value: 'g1' },
      { key: 'bad', value: 'b1' },
      { key: 'good', value: 'g2' }
    ])
    await culex.waitForBridge('orders-out', (s) => s.lag === 0 && s.deadLettered === 1 && s.delivered === 2, 15_000)
    expect(await values('orders:good')).toEqual(['g1', 'g2'])
    const dead = await onlyDeadLetter(culex, 'orders', 'orders-out')
    expect(dead.value).toBe('b1')
    expect(dead.key).toBe('bad')
    expect(dead.headers).toMatchObject({
      'redis-error': 'WRONGTYPE'
    })
    expect(dead.headers['culex-dlq-error']).toMatch(/WRONGTYPE/)
  })
})

describe('redis bridge, inbound', () => {
  let sub: MqttClient
  let inbox: Inbox

  afterAll(async () => {
    await sub?.endAsync()
  })

  it('entries reach an MQTT subscriber of Culex and, through a route, the log; each is acked', { timeout: 30_000 }, async () => {
    ;[sub, inbox] = await connectWithInbox(culex.mqttUrl, { clientId: 'redis-e2e-sub' })
    await sub.subscribeAsync('cmd/#', { qos: 1 })
    for (let i = 0; i < 20; i++) await client.xadd('in:commands', '*', 'device', `k${i % 2}`, 'value', `k${i % 2}:${Math.floor(i / 2)}`)
    await until('20 messages at the subscriber', () => inbox.messages.length >= 20, 15_000)
    expect(inbox.messages.slice(0, 20).map((m) => [m.topic, m.payload])).toEqual(
      Array.from({ length: 20 }, (_, i) => [`cmd/k${i % 2}`, `k${i % 2}:${Math.floor(i / 2)}`])
    )
    const logged = (await culex.readStream('commands')).filter((r) => /^cmd\/k\d$/.test(r.topic ?? ''))
    expect(
      checkOrder(
        logged.map((r) => r.value),
        20,
        2
      )
    ).toMatchObject({ missing: 0, duplicates: 0, outOfOrder: 0 })
    expect(logged.every((r) => r.topic?.startsWith('cmd/'))).toBe(true)
    await until('all acked', async () => ((await client.call('XPENDING', 'in:commands', 'culex')) as [number])[0] === 0)
  })

  it('an entry read but not acked when Culex is killed -9 is published after the restart', { timeout: 60_000 }, async () => {
    await culex.kill9()
    // the state a kill between XREADGROUP and XACK leaves: the entry pending for the bridge's consumer
    await client.xadd('in:commands', '*', 'device', 'pending', 'value', 'pending:0')
    // (the killed process's XREADGROUP BLOCK may have taken it already: pending for the same consumer either way)
    await client.call('XREADGROUP', 'GROUP', 'culex', 'commands-in', 'COUNT', '10', 'STREAMS', 'in:commands', '>')
    const [pending, , , consumers] = (await client.call('XPENDING', 'in:commands', 'culex')) as [number, string, string, [string, string][]]
    expect(pending).toBe(1)
    expect(consumers).toEqual([['commands-in', '1']])
    await culex.restart()
    await until('pending entry published', async () => (await culex.readStream('commands')).some((r) => r.value === 'pending:0'), 30_000)
    await until('acked', async () => ((await client.call('XPENDING', 'in:commands', 'culex')) as [number])[0] === 0)

    // and a live kill while entries flow: each is in the log at least once after the restart
    const live = 300
    const adding = (async () => {
      for (let i = 0; i < live; i++) await client.xadd('in:commands', '*', 'device', `live/k${i % 3}`, 'value', `k${i % 3}:${Math.floor(i / 3)}`)
    })()
    await until(
      'part of the entries published',
      async () => (await culex.readStream('commands')).filter((r) => r.topic?.startsWith('cmd/live/')).length > 30,
      15_000
    )
    await culex.kill9()
    const pendingAtKill = ((await client.call('XPENDING', 'in:commands', 'culex')) as [number])[0]
    await adding
    await culex.restart()
    await until(
      'every live entry in the log',
      async () =>
        checkOrder(
          (await culex.readStream('commands')).filter((r) => r.topic?.startsWith('cmd/live/')).map((r) => r.value),
          live,
          3
        ).missing === 0,
      30_000
    )
    const report = checkOrder(
      (await culex.readStream('commands')).filter((r) => r.topic?.startsWith('cmd/live/')).map((r) => r.value),
      live,
      3
    )
    console.log(`redis inbound, Culex killed -9 with ${pendingAtKill} entries pending: ${report.duplicates} duplicates`, report)
    expect(report.missing).toBe(0)
    expect(report.outOfOrder).toBe(0)
    expect(report.duplicates).toBeGreaterThanOrEqual(0)
    await until('acked', async () => ((await client.call('XPENDING', 'in:commands', 'culex')) as [number])[0] === 0)
  })
})
