import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectWithInbox, type Inbox } from '../helpers/mqtt.js'
import { natsClient, startNats, type NatsServer } from '../helpers/servers/nats.js'
import { Culex, checkOrder, keyedRecords, onlyDeadLetter, sleep } from './e2e.js'

// The nats bridge end to end: a real `culex start` process with nats bridges to and from a real
// nats-server with JetStream. Outbound: 10,000 records in per-key order; a kill -9 of nats-server
// and one of Culex mid-stream, after which JetStream holds every record exactly once (Nats-Msg-Id
// within the duplicate window); a record JetStream refuses (over max_msg_size) in the dead-letter
// stream. Inbound: messages reach an MQTT subscriber and the log; a message delivered but not
// acked when Culex died comes again after the restart.

const N = 10_000
const KEYS = 20
const retry = { initial: '100ms', max: '1s' }

let nats: NatsServer
let culex: Culex
/** The test's own connection; made again after nats-server restarts. */
let nc: NatsConnection | null = null

async function client(): Promise<NatsConnection> {
  if (nc === null || nc.isClosed()) nc = await natsClient(nats)
  return nc
}

function outbound(name: string, stream: string, jsStream: string, subject: string): Record<string, unknown> {
  return {
    name,
    'kind': 'nats',
    'direction': 'out',
    'streams': [stream],
    'batch-size': 500,
    retry,
    'target': { 'servers': nats.url, subject, 'stream': jsStream, 'ack-timeout': '2s', 'connect-timeout': '2s' }
  }
}

/** Messages stored in a JetStream stream (0 while the server is down). */
async function count(stream: string): Promise<number> {
  try {
    return (await (await jetstreamManager(await client(), { timeout: 1000 })).streams.info(stream)).state.messages
  } catch {
    return 0
  }
}

/** Every message of a JetStream stream in stream order: its value and its Nats-Msg-Id. */
async function read(stream: string): Promise<{ values: string[]; ids: string[] }> {
  const expected = await count(stream)
  const consumer = await jetstream(await client()).consumers.get(stream)
  const values: string[] = []
  const ids: string[] = []
  const deadline = Date.now() + 20_000
  while (values.length < expected && Date.now() < deadline) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 1000 })
    for await (const m of batch) {
      values.push(m.string())
      ids.push(m.headers?.get('Nats-Msg-Id') ?? '')
    }
  }
  return { values, ids }
}

async function until(what: string, test: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** Exactly once: every record once, per-key order, every Nats-Msg-Id once. */
async function expectExactlyOnce(stream: string, label: string): Promise<void> {
  const { values, ids } = await read(stream)
  const report = checkOrder(values, N, KEYS)
  console.log(`nats outbound, ${label}:`, report, `distinct Nats-Msg-Id: ${new Set(ids).size}`)
  expect(report).toEqual({ received: N, distinct: N, missing: 0, duplicates: 0, outOfOrder: 0 })
  expect(new Set(ids).size).toBe(N)
  expect(await count(stream)).toBe(N)
}

beforeAll(async () => {
  nats = await startNats()
  const jsm = await jetstreamManager(await client())
  await jsm.streams.add({ name: 'TELEMETRY', subjects: ['tele.>'] })
  await jsm.streams.add({ name: 'OUTAGE', subjects: ['outage.>'] })
  await jsm.streams.add({ name: 'CRASH', subjects: ['crash.>'] })
  // a record over 1 KiB is refused (10054): dead-lettered
  await jsm.streams.add({ name: 'ORDERS', subjects: ['orders.>'], max_msg_size: 1024 })
  await jsm.streams.add({ name: 'COMMANDS', subjects: ['cmd.>'] })
  culex = await Culex.start({
    streams: { telemetry: { partitions: 4 }, outage: { partitions: 4 }, crash: { partitions: 4 }, orders: { partitions: 2 }, commands: { partitions: 2 } },
    routes: [{ filter: 'cmd/#', stream: 'commands', key: 'topic-level:2' }],
    bridges: [
      outbound('telemetry-out', 'telemetry', 'TELEMETRY', 'tele.{partition}.{key}'),
      outbound('outage-out', 'outage', 'OUTAGE', 'outage.{key}'),
      outbound('crash-out', 'crash', 'CRASH', 'crash.{key}'),
      outbound('orders-out', 'orders', 'ORDERS', 'orders.{key}'),
      {
        name: 'commands-in',
        kind: 'nats',
        direction: 'in',
        retry,
        source: { 'servers': nats.url, 'stream': 'COMMANDS', 'filter': 'cmd/#', 'ack-wait': '2s', 'connect-timeout': '2s' }
      }
    ]
  })
}, 60_000)

afterAll(async () => {
  await culex?.dispose()
  await nc?.close().catch(() => undefined)
  await nats?.dispose()
})

describe('nats bridge, outbound', () => {
  it('delivers 10,000 records in per-key order, each once', { timeout: 60_000 }, async () => {
    await culex.produce('telemetry', keyedRecords(N, KEYS))
    await culex.waitForBridge('telemetry-out', (s) => s.lag === 0 && s.delivered === N, 45_000)
    await expectExactlyOnce('TELEMETRY', 'no fault')
  })

  it('nats-server killed -9 mid-stream and restarted: JetStream holds every record exactly once, in per-key order', { timeout: 60_000 }, async () => {
    const producing = culex.produce('outage', keyedRecords(N, KEYS))
    await until('part of the stream arrived', async () => (await count('OUTAGE')) > 1000)
    await nats.kill9()
    const status = await culex.waitForBridge('outage-out', (s) => s.state === 'retrying' && s.lastError !== null, 15_000)
    console.log('nats outbound, nats-server down:', status.lastError)
    await sleep(500)
    await nats.start()
    await producing
    await culex.waitForBridge('outage-out', (s) => s.lag === 0 && s.state === 'running', 45_000)
    await expectExactlyOnce('OUTAGE', 'nats-server killed -9')
  })

  it('Culex killed -9 mid-stream and restarted: JetStream holds every record exactly once, in per-key order', { timeout: 60_000 }, async () => {
    await culex.produce('crash', keyedRecords(N, KEYS))
    await until('part of the stream arrived', async () => (await count('CRASH')) > 1000)
    await culex.kill9()
    const atKill = await count('CRASH')
    await culex.restart()
    await culex.waitForBridge('crash-out', (s) => s.lag === 0, 45_000)
    await expectExactlyOnce('CRASH', `Culex killed -9 with ${atKill} of ${N} in JetStream`)
  })

  it('a record JetStream refuses (over max_msg_size) ends in the dead-letter stream; the others are delivered', { timeout: 30_000 }, async () => {
    await culex.produce('orders', [
      { key: 'good', value: 'g1' },
      { key: 'big', value: 'x'.repeat(2000) },
      { key: 'good', value: 'g2' }
    ])
    await culex.waitForBridge('orders-out', (s) => s.lag === 0 && s.deadLettered === 1 && s.delivered === 2, 15_000)
    expect((await read('ORDERS')).values).toEqual(['g1', 'g2'])
    const dead = await onlyDeadLetter(culex, 'orders', 'orders-out')
    expect(dead.key).toBe('big')
    expect(dead.headers).toMatchObject({
      'nats-subject': 'orders.big',
      'nats-code': '400',
      'nats-err-code': '10054'
    })
    expect(dead.headers['culex-dlq-error']).toMatch(/message size exceeds maximum/)
  })
})

describe('nats bridge, inbound', () => {
  let sub: MqttClient
  let inbox: Inbox

  afterAll(async () => {
    await sub?.endAsync()
  })

  async function pending(): Promise<number> {
    return (await (await jetstreamManager(await client())).consumers.info('COMMANDS', 'culex-commands-in')).num_ack_pending
  }

  async function logged(prefix: string): Promise<string[]> {
    return (await culex.readStream('commands')).filter((r) => r.topic?.startsWith(prefix)).map((r) => r.value)
  }

  it('messages reach an MQTT subscriber of Culex and, through a route, the log; each is acked', { timeout: 30_000 }, async () => {
    ;[sub, inbox] = await connectWithInbox(culex.mqttUrl, { clientId: 'nats-e2e-sub' })
    await sub.subscribeAsync('cmd/#', { qos: 1 })
    const js = jetstream(await client())
    for (let i = 0; i < 20; i++) await js.publish(`cmd.k${i % 2}.set`, `k${i % 2}:${Math.floor(i / 2)}`)
    await until('20 messages at the subscriber', () => inbox.messages.length >= 20, 15_000)
    expect(inbox.messages.slice(0, 20).map((m) => [m.topic, m.payload])).toEqual(
      Array.from({ length: 20 }, (_, i) => [`cmd/k${i % 2}/set`, `k${i % 2}:${Math.floor(i / 2)}`])
    )
    expect(checkOrder(await logged('cmd/k'), 20, 2)).toMatchObject({ missing: 0, duplicates: 0, outOfOrder: 0 })
    await until('all acked', async () => (await pending()) === 0)
    const info = await (await jetstreamManager(await client())).consumers.info('COMMANDS', 'culex-commands-in')
    expect(info.config.ack_policy).toBe(AckPolicy.Explicit)
    expect(info.config.filter_subject).toBe('cmd.>')
  })

  it('a message delivered but not acked when Culex is killed -9 comes again after the restart', { timeout: 60_000 }, async () => {
    await culex.kill9()
    // the state a kill between delivery and ack leaves: the message delivered to the bridge's
    // consumer and not acked (a one-message pull completes, so no pull request is left behind)
    const js = jetstream(await client())
    await js.publish('cmd.pending.set', 'pending:0')
    const consumer = await js.consumers.get('COMMANDS', 'culex-commands-in')
    const m = await consumer.next({ expires: 2000 })
    expect(m?.string()).toBe('pending:0')
    expect(await pending()).toBe(1)
    await culex.restart()
    await until('pending message published', async () => (await logged('cmd/pending/')).includes('pending:0'), 30_000)
    await until('acked', async () => (await pending()) === 0)

    // and a live kill while messages flow: each is in the log at least once after the restart
    const live = 300
    const adding = (async () => {
      for (let i = 0; i < live; i++) await js.publish(`cmd.live.k${i % 3}`, `k${i % 3}:${Math.floor(i / 3)}`)
    })()
    await until('part of the messages published', async () => (await logged('cmd/live/')).length > 30, 15_000)
    await culex.kill9()
    const pendingAtKill = await pending()
    await adding
    await culex.restart()
    await until('every live message in the log', async () => checkOrder(await logged('cmd/live/'), live, 3).missing === 0, 30_000)
    const report = checkOrder(await logged('cmd/live/'), live, 3)
    console.log(`nats inbound, Culex killed -9 with ${pendingAtKill} messages unacked: ${report.duplicates} duplicates`, report)
    expect(report.missing).toBe(0)
    expect(report.duplicates).toBeGreaterThanOrEqual(0)
    await until('acked', async () => (await pending()) === 0)
  })
})
