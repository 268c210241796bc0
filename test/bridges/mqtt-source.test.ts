import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseSource, type MqttSourceOptions } from '../../src/bridges/mqtt/config.js'
import { mqttDriver } from '../../src/bridges/mqtt/index.js'
import { InboundRefused, type InboundMessage, type SourceContext } from '../../src/bridges/types.js'
import { SectionContext } from '../../src/config/values.js'
import { startMosquitto, type MosquittoServer } from '../helpers/servers/mosquitto.js'
import { sleep } from '../helpers/servers/process.js'

// The mqtt source against a real mosquitto 2.0 (every packet logged): a persistent session, the
// topic mapping, and the acknowledgement to the remote (PUBACK, PUBREC) sent only after
// ctx.publish resolved. mosquitto's log lines "Received PUBACK from <client> (Mid: n, RC:c)" and
// "Received PUBREC from <client>" show when the bridge acknowledged.

const ctx = new SectionContext('test')
const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })

function options(raw: Record<string, unknown>): MqttSourceOptions {
  return parseSource(raw, ctx, 'source')
}

type Publish = (m: InboundMessage) => Promise<void>

/** A run of the source with `publish` as Culex; stop() aborts it and waits for run() to settle. */
function start(source: { run(c: SourceContext): Promise<void> }, publish: Publish) {
  const abort = new AbortController()
  let connected = false
  const run = source.run({ publish, signal: abort.signal, logger, connected: () => (connected = true) })
  // the outcome is checked by whoever awaits it
  run.catch(() => undefined)
  return {
    run,
    isConnected: () => connected,
    stop: async () => {
      abort.abort()
      await run
    }
  }
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await sleep(20)
  }
}

/** A gate: publish waits on it until open() (or fails with fail()). */
function gate(): { wait: Promise<void>; open(): void; fail(err: Error): void } {
  let open = (): void => undefined
  let fail = (_: Error): void => undefined
  const wait = new Promise<void>((res, rej) => {
    open = res
    fail = rej
  })
  return { wait, open, fail }
}

describe('mqtt source', () => {
  let broker: MosquittoServer
  let publisher: MqttClient
  let idSeq = 0
  const nextId = (): string => `culex-src-${++idSeq}`

  beforeAll(async () => {
    broker = await startMosquitto({
      users: { bridge: 'bridge-pw', device: 'device-pw' },
      acl: ['user bridge', 'topic deny secret/#', 'topic read #', 'user device', 'topic readwrite #', ''].join('\n'),
      verbose: true
    })
    publisher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, username: 'device', password: 'device-pw', reconnectPeriod: 0, clientId: 'device' })
  })

  afterAll(async () => {
    await publisher.endAsync()
    await broker.dispose()
  })

  const base = (clientId: string, extra: Record<string, unknown> = {}): MqttSourceOptions =>
    options({ 'url': broker.url, 'username': 'bridge', 'password': 'bridge-pw', 'client-id': clientId, ...extra })
  const create = (o: MqttSourceOptions) => mqttDriver.createSource!(o, { logger, bridge: 'src' })
  const acks = (clientId: string, kind = 'PUBACK'): string[] =>
    broker
      .output()
      .split('\n')
      .filter((l) => l.includes(`Received ${kind} from ${clientId} `))

  it('publishes into Culex in order, the topic mapped (strip-prefix, template), and acknowledges each', { timeout: 20_000 }, async () => {
    const id = nextId()
    const source = await create(base(id, { 'filters': ['site1/#'], 'strip-prefix': 'site1/', 'topic': 'remote/{topic}' }))
    const got: InboundMessage[] = []
    const run = start(source, async (m) => void got.push(m))
    await until(run.isConnected, 5000, 'connected')
    for (let i = 0; i < 50; i++) await publisher.publishAsync(`site1/devices/d${i % 2}/cmd`, `m${i}`, { qos: 1 })
    await until(() => got.length === 50, 5000, '50 messages')
    expect(got.map((m) => m.payload.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`))
    expect(got[1]).toMatchObject({ topic: 'remote/devices/d1/cmd', qos: 1, retain: false })
    await until(() => acks(id).length === 50, 5000, '50 PUBACKs')
    expect(acks(id).every((l) => l.endsWith('RC:0)'))).toBe(true)
    await run.stop()
    // acknowledged: a new run gets nothing again
    const again: InboundMessage[] = []
    const second = start(await create(base(id, { filters: ['site1/#'] })), async (m) => void again.push(m))
    await until(second.isConnected, 5000, 'connected again')
    await sleep(300)
    expect(again).toEqual([])
    await second.stop()
  })

  it('sends the PUBACK only after ctx.publish resolved', { timeout: 20_000 }, async () => {
    const id = nextId()
    const g = gate()
    let calls = 0
    const run = start(await create(base(id, { filters: ['gated/#'] })), async () => {
      calls++
      await g.wait
    })
    await until(run.isConnected, 5000, 'connected')
    await publisher.publishAsync('gated/1', 'x', { qos: 1 })
    await until(() => calls === 1, 5000, 'the publish into Culex')
    await sleep(500)
    expect(acks(id)).toEqual([])
    g.open()
    await until(() => acks(id).length === 1, 5000, 'the PUBACK')
    await run.stop()
  })

  it('a publish that never resolves: stopped and started again, the remote sends the message again', { timeout: 20_000 }, async () => {
    const id = nextId()
    const seen: string[] = []
    const first = start(await create(base(id, { filters: ['hang/#'] })), async (m) => {
      seen.push(m.payload.toString())
      await new Promise<void>(() => undefined)
    })
    await until(first.isConnected, 5000, 'connected')
    await publisher.publishAsync('hang/1', 'once', { qos: 1 })
    await until(() => seen.length === 1, 5000, 'the first delivery')
    // run() resolves on abort although the publish is still pending
    await first.stop()
    expect(acks(id)).toEqual([])
    const got: InboundMessage[] = []
    const second = start(await create(base(id, { filters: ['hang/#'] })), async (m) => void got.push(m))
    await until(() => got.length === 1, 5000, 'the message again')
    expect(got[0]!.payload.toString()).toBe('once')
    await until(() => acks(id).length === 1, 5000, 'the PUBACK')
    await second.stop()
  })

  it('a publish that fails (Culex stopping) is not acknowledged: run rejects, the next run gets the message again', { timeout: 20_000 }, async () => {
    const id = nextId()
    let n = 0
    const first = start(await create(base(id, { filters: ['fail/#'] })), async () => {
      n++
      throw new Error('Culex is stopping')
    })
    await until(first.isConnected, 5000, 'connected')
    await publisher.publishAsync('fail/1', 'x', { qos: 1 })
    await expect(first.run).rejects.toThrow(/publishing a message from fail\/1 into Culex failed: Culex is stopping/)
    expect(n).toBe(1)
    expect(acks(id)).toEqual([])
    const got: string[] = []
    const second = start(await create(base(id, { filters: ['fail/#'] })), async (m) => void got.push(m.payload.toString()))
    await until(() => got.length === 1, 5000, 'the message again')
    await second.stop()
  })

  it('a message Culex refuses is acknowledged with 0x80 (MQTT 5) and dropped; the next one goes on', { timeout: 20_000 }, async () => {
    const id = nextId()
    const got: string[] = []
    const run = start(await create(base(id, { filters: ['refused/#'] })), async (m) => {
      if (m.topic === 'refused/bad') throw new InboundRefused('no route')
      got.push(m.payload.toString())
    })
    await until(run.isConnected, 5000, 'connected')
    await publisher.publishAsync('refused/bad', 'x', { qos: 1 })
    await publisher.publishAsync('refused/good', 'y', { qos: 1 })
    await until(() => got.length === 1 && acks(id).length === 2, 5000, 'both acknowledged')
    expect(acks(id).map((l) => /RC:(\d+)/.exec(l)![1])).toEqual(['128', '0'])
    await run.stop()
    const again: string[] = []
    const second = start(await create(base(id, { filters: ['refused/#'] })), async (m) => void again.push(m.topic))
    await until(second.isConnected, 5000, 'connected')
    await sleep(300)
    expect(again).toEqual([])
    await second.stop()
  })

  it('keeps its session: what is published while the bridge is away arrives when it is back, in order', { timeout: 20_000 }, async () => {
    const id = nextId()
    const first = start(await create(base(id, { 'filters': [{ filter: 'away/#', qos: 1 }], 'session-expiry': '1h' })), async () => undefined)
    await until(first.isConnected, 5000, 'connected')
    await first.stop()
    for (let i = 0; i < 30; i++) await publisher.publishAsync(`away/${i}`, `m${i}`, { qos: 1 })
    const got: string[] = []
    const second = start(await create(base(id, { filters: ['away/#'] })), async (m) => void got.push(m.payload.toString()))
    await until(() => got.length === 30, 5000, '30 queued messages')
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`))
    await second.stop()
  })

  it('QoS 2: PUBREC only after the publish resolved; never resolved, the message comes again', { timeout: 20_000 }, async () => {
    const id = nextId()
    const g = gate()
    let calls = 0
    const first = start(await create(base(id, { filters: [{ filter: 'q2/#', qos: 2 }] })), async () => {
      calls++
      await g.wait
    })
    await until(first.isConnected, 5000, 'connected')
    await publisher.publishAsync('q2/1', 'exactly', { qos: 2 })
    await until(() => calls === 1, 5000, 'the publish into Culex')
    await sleep(300)
    expect(acks(id, 'PUBREC')).toEqual([])
    await first.stop()
    const got: InboundMessage[] = []
    const second = start(await create(base(id, { filters: [{ filter: 'q2/#', qos: 2 }] })), async (m) => void got.push(m))
    await until(() => got.length === 1 && acks(id, 'PUBCOMP').length + acks(id, 'PUBREC').length >= 1, 5000, 'the message again, acknowledged')
    expect(got[0]!.payload.toString()).toBe('exactly')
    await sleep(300)
    expect(got).toHaveLength(1)
    await second.stop()
  })

  it('MQTT 3.1.1: the PUBACK follows the publish, a pending one is sent again after a restart', { timeout: 20_000 }, async () => {
    const id = nextId()
    const seen: string[] = []
    const first = start(await create(base(id, { 'filters': ['v4/#'], 'protocol-version': 4 })), async (m) => {
      seen.push(m.payload.toString())
      await new Promise<void>(() => undefined)
    })
    await until(first.isConnected, 5000, 'connected')
    await publisher.publishAsync('v4/1', 'old', { qos: 1 })
    await until(() => seen.length === 1, 5000, 'the publish into Culex')
    await sleep(300)
    expect(acks(id)).toEqual([])
    await first.stop()
    const got: string[] = []
    const second = start(await create(base(id, { 'filters': ['v4/#'], 'protocol-version': 4 })), async (m) => void got.push(m.payload.toString()))
    await until(() => got.length === 1 && acks(id).length === 1, 5000, 'the message again, acknowledged')
    expect(got).toEqual(['old'])
    await second.stop()
  })

  it('retain as-published carries the retain flag; retained messages come once, not at every reconnect', { timeout: 20_000 }, async () => {
    const id = nextId()
    await publisher.publishAsync('state/d1', 'on', { qos: 1, retain: true })
    const got: InboundMessage[] = []
    const o = base(id, { filters: ['state/#'], retain: 'as-published' })
    const first = start(await create(o), async (m) => void got.push(m))
    await until(() => got.length === 1, 5000, 'the retained message')
    expect(got[0]).toMatchObject({ topic: 'state/d1', retain: true })
    await publisher.publishAsync('state/d2', 'off', { qos: 1, retain: true })
    await publisher.publishAsync('state/d3', 'live', { qos: 1 })
    await until(() => got.length === 3, 5000, 'two live messages')
    expect(got.slice(1).map((m) => [m.topic, m.retain])).toEqual([
      ['state/d2', true],
      ['state/d3', false]
    ])
    await first.stop()
    const second = start(await create(o), async (m) => void got.push(m))
    await until(second.isConnected, 5000, 'connected')
    await sleep(300)
    expect(got).toHaveLength(3)
    await second.stop()
    await publisher.publishAsync('state/d1', '', { qos: 1, retain: true })
    await publisher.publishAsync('state/d2', '', { qos: 1, retain: true })
  })

  it('run rejects when the connection is lost, and when it cannot connect', { timeout: 30_000 }, async () => {
    const other = await startMosquitto()
    try {
      const o = options({ 'url': other.url, 'client-id': nextId(), 'filters': ['x/#'] })
      const run = start(await create(o), async () => undefined)
      await until(run.isConnected, 5000, 'connected')
      await other.kill9()
      await expect(run.run).rejects.toThrow(/connection to .* lost/)
      const down = start(await create(o), async () => undefined)
      await expect(down.run).rejects.toThrow(/ECONNREFUSED/)
    } finally {
      await other.dispose()
    }
  })
})
