import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectWithInbox, type Inbox } from '../helpers/mqtt.js'
import { startRabbitMQ, type RabbitMQ } from '../helpers/servers/rabbitmq.js'
import { Culex, checkOrder, keyedRecords, onlyDeadLetter, sleep } from './e2e.js'

// The amqp bridge end to end: a real `culex start` process with amqp bridges to and from a private
// RabbitMQ node. Outbound: 10,000 records in per-key order; a kill -9 of RabbitMQ and one of Culex
// mid-stream (at least once: every record, first arrivals in order, the duplicates counted); an
// unroutable record (basic.return) in the dead-letter stream. Inbound: messages reach an MQTT
// subscriber and the log; messages Culex had not acked when it was killed -9 come again.

const N = 10_000
const KEYS = 20
const retry = { initial: '100ms', max: '1s' }

let rabbit: RabbitMQ
let admin: ChannelModel
let ch: Channel
let confirm: ConfirmChannel
let culex: Culex

function outbound(name: string, stream: string, exchange: string, routingKey = '{stream}.{key}'): Record<string, unknown> {
  return {
    name,
    'kind': 'amqp',
    'direction': 'out',
    'streams': [stream],
    'batch-size': 200,
    retry,
    'target': { 'port': rabbit.port, exchange, 'routing-key': routingKey, 'heartbeat': '5s', 'connect-timeout': '2s', 'confirm-timeout': '5s' }
  }
}

async function until(what: string, test: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

/** The test's own connection: declarations, counting, draining; opened again after a restart. */
async function openAdmin(): Promise<void> {
  admin = await connect(rabbit.url)
  // a kill -9 of the node closes it: not an unhandled 'error'
  admin.on('error', () => undefined)
  ch = await admin.createChannel()
  ch.on('error', () => undefined)
  confirm = await admin.createConfirmChannel()
  confirm.on('error', () => undefined)
}

async function ready(queue: string): Promise<number> {
  try {
    return (await ch.checkQueue(queue)).messageCount
  } catch {
    return 0
  }
}

/** Takes every message out of `queue` (acked), in queue order: the bodies. */
async function drain(queue: string): Promise<string[]> {
  const total = await ready(queue)
  const c = await admin.createChannel()
  await c.prefetch(2000)
  const out: string[] = []
  const { consumerTag } = await c.consume(queue, (m) => {
    if (m) {
      out.push(m.content.toString())
      c.ack(m)
    }
  })
  await until(`${total} messages from ${queue}`, () => out.length >= total, 20_000)
  await c.cancel(consumerTag)
  await c.close()
  return out
}

/** Publishes to the `commands` exchange and waits for the broker's confirms (on disk). */
async function command(messages: Array<[routingKey: string, body: string]>): Promise<void> {
  for (const [rk, body] of messages) confirm.publish('commands', rk, Buffer.from(body), { persistent: true })
  await confirm.waitForConfirms()
}

beforeAll(async () => {
  rabbit = await startRabbitMQ()
  console.log(`rabbitmq node started in ${rabbit.lastStartMs} ms`)
  await openAdmin()
  // the queues the outbound bridges feed (the exchanges are the ones the bridges declare)
  for (const name of ['telemetry', 'outage', 'crash']) {
    await ch.assertExchange(`out.${name}`, 'topic', { durable: true })
    await ch.assertQueue(`q.${name}`, { durable: true })
    await ch.bindQueue(`q.${name}`, `out.${name}`, '#')
  }
  // orders: only the key 'good' is routed; a record with another key is returned (NO_ROUTE)
  await ch.assertExchange('out.orders', 'topic', { durable: true })
  await ch.assertQueue('q.orders', { durable: true })
  await ch.bindQueue('q.orders', 'out.orders', 'good')
  await ch.assertExchange('commands', 'topic', { durable: true })
  culex = await Culex.start({
    streams: { telemetry: { partitions: 4 }, outage: { partitions: 4 }, crash: { partitions: 4 }, orders: { partitions: 2 }, commands: { partitions: 2 } },
    routes: [{ filter: 'cmd/#', stream: 'commands', key: 'topic-level:2' }],
    bridges: [
      outbound('telemetry-out', 'telemetry', 'out.telemetry'),
      outbound('outage-out', 'outage', 'out.outage'),
      outbound('crash-out', 'crash', 'out.crash'),
      outbound('orders-out', 'orders', 'out.orders', '{key}'),
      {
        name: 'commands-in',
        kind: 'amqp',
        direction: 'in',
        retry,
        source: {
          'port': rabbit.port,
          'queue': 'culex.commands',
          'bindings': [{ exchange: 'commands', filter: 'cmd/#' }],
          'topic': '{routing-key}',
          'heartbeat': '5s',
          'connect-timeout': '2s'
        }
      }
    ]
  })
}, 120_000)

afterAll(async () => {
  await culex?.dispose()
  await admin?.close().catch(() => undefined)
  await rabbit?.dispose()
}, 30_000)

describe('amqp bridge, outbound', () => {
  it('delivers 10,000 records in per-key order, none lost, none twice', { timeout: 60_000 }, async () => {
    const t0 = Date.now()
    await culex.produce('telemetry', keyedRecords(N, KEYS))
    await culex.waitForBridge('telemetry-out', (s) => s.lag === 0 && s.delivered === N, 45_000)
    console.log(`amqp outbound: 10,000 records produced and confirmed by RabbitMQ in ${Date.now() - t0} ms`)
    const report = checkOrder(await drain('q.telemetry'), N, KEYS)
    console.log('amqp outbound, no fault:', report)
    expect(report).toEqual({ received: N, distinct: N, missing: 0, duplicates: 0, outOfOrder: 0 })
  })

  it('a record no queue is bound for (basic.return NO_ROUTE) ends in the dead-letter stream; the others are delivered', { timeout: 30_000 }, async () => {
    await culex.produce('orders', [
      { key: 'good', value: 'g1' },
      { key: 'nowhere', value: 'n1' },
      { key: 'good', value: 'g2' }
    ])
    await culex.waitForBridge('orders-out', (s) => s.lag === 0 && s.deadLettered === 1 && s.delivered === 2, 15_000)
    expect(await drain('q.orders')).toEqual(['g1', 'g2'])
    const dead = await onlyDeadLetter(culex, 'orders', 'orders-out')
    expect(dead.value).toBe('n1')
    expect(dead.key).toBe('nowhere')
    expect(dead.headers).toMatchObject({
      'amqp-reply-code': '312',
      'amqp-reply-text': 'NO_ROUTE',
      'amqp-exchange': 'out.orders',
      'amqp-routing-key': 'nowhere'
    })
    expect(dead.headers['culex-dlq-error']).toMatch(/NO_ROUTE/)
  })

  it('Culex killed -9 mid-stream and restarted: everything arrives at least once, first arrivals in per-key order', { timeout: 60_000 }, async () => {
    await culex.produce('crash', keyedRecords(N, KEYS))
    await until('part of the stream arrived', async () => (await ready('q.crash')) > 1000)
    await culex.kill9()
    const atKill = await ready('q.crash')
    await culex.restart()
    await culex.waitForBridge('crash-out', (s) => s.lag === 0, 45_000)
    const report = checkOrder(await drain('q.crash'), N, KEYS)
    console.log(`amqp outbound, Culex killed -9 with ${atKill} of ${N} in RabbitMQ: ${report.duplicates} duplicates`, report)
    expect(report.missing).toBe(0)
    expect(report.distinct).toBe(N)
    expect(report.outOfOrder).toBe(0)
    expect(report.duplicates).toBeGreaterThanOrEqual(0)
    expect(report.received).toBe(N + report.duplicates)
  })
})

describe('amqp bridge, inbound', () => {
  let sub: MqttClient
  let inbox: Inbox

  afterAll(async () => {
    await sub?.endAsync()
  })

  const logged = async (prefix: string): Promise<string[]> =>
    (await culex.readStream('commands')).filter((r) => r.topic?.startsWith(prefix)).map((r) => r.value)

  it('messages reach an MQTT subscriber of Culex and, through a route, the log', { timeout: 30_000 }, async () => {
    await culex.waitForBridge('commands-in', (s) => s.state === 'running', 15_000)
    ;[sub, inbox] = await connectWithInbox(culex.mqttUrl, { clientId: 'amqp-e2e-sub' })
    await sub.subscribeAsync('cmd/#', { qos: 1 })
    await command(Array.from({ length: 20 }, (_, i) => [`cmd.k${i % 2}`, `k${i % 2}:${Math.floor(i / 2)}`]))
    await until('20 messages at the subscriber', () => inbox.messages.length >= 20, 15_000)
    expect(inbox.messages.slice(0, 20).map((m) => [m.topic, m.payload])).toEqual(
      Array.from({ length: 20 }, (_, i) => [`cmd/k${i % 2}`, `k${i % 2}:${Math.floor(i / 2)}`])
    )
    expect(checkOrder(await logged('cmd/k'), 20, 2)).toMatchObject({ received: 20, missing: 0, duplicates: 0, outOfOrder: 0 })
    // acked: nothing waits in the queue
    expect(await ready('culex.commands')).toBe(0)
  })

  it('messages Culex had not acked when it was killed -9 come again after the restart', { timeout: 60_000 }, async () => {
    // frozen, so that nothing of what follows can be acked: the state a kill before the ack leaves
    process.kill(culex.gw.child.pid!, 'SIGSTOP')
    await command(Array.from({ length: 5 }, (_, i) => [`cmd.pending.k${i}`, `k${i}:0`]))
    await sleep(300)
    await culex.kill9()
    await culex.restart()
    await until('the unacked messages in the log', async () => checkOrder(await logged('cmd/pending/'), 5, 5).missing === 0, 30_000)

    // and a live kill while messages flow: each is in the log at least once after the restart
    const live = 300
    const publishing = (async () => {
      for (let i = 0; i < live; i += 10) {
        await command(Array.from({ length: 10 }, (_, j) => [`cmd.live.k${(i + j) % 3}`, `k${(i + j) % 3}:${Math.floor((i + j) / 3)}`]))
        await sleep(5)
      }
    })()
    await until('part of the messages published', async () => (await logged('cmd/live/')).length > 30, 15_000)
    await culex.kill9()
    await publishing
    await culex.restart()
    await until('every live message in the log', async () => checkOrder(await logged('cmd/live/'), live, 3).missing === 0, 30_000)
    const report = checkOrder(await logged('cmd/live/'), live, 3)
    console.log(`amqp inbound, Culex killed -9 mid-stream: ${report.duplicates} duplicates`, report)
    expect(report.missing).toBe(0)
    expect(report.outOfOrder).toBe(0)
    expect(report.duplicates).toBeGreaterThanOrEqual(0)
  })
})

// last: it restarts the node
describe('amqp bridge, RabbitMQ outage', () => {
  it(
    'RabbitMQ killed -9 mid-stream and restarted: everything arrives at least once, in per-key order; the inbound side reconnects',
    { timeout: 90_000 },
    async () => {
      const producing = culex.produce('outage', keyedRecords(N, KEYS))
      await until('part of the stream arrived', async () => (await ready('q.outage')) > 1000)
      await rabbit.kill9()
      const status = await culex.waitForBridge('outage-out', (s) => s.state === 'retrying' && s.lastError !== null, 15_000)
      console.log('amqp outbound, RabbitMQ down:', status.lastError)
      await rabbit.start()
      console.log(`rabbitmq node restarted (same dir and ports) in ${rabbit.lastStartMs} ms`)
      await openAdmin()
      await producing
      await culex.waitForBridge('outage-out', (s) => s.lag === 0 && s.state === 'running', 45_000)
      const report = checkOrder(await drain('q.outage'), N, KEYS)
      console.log(`amqp outbound, RabbitMQ killed -9: ${report.duplicates} duplicates`, report)
      expect(report.missing).toBe(0)
      expect(report.distinct).toBe(N)
      expect(report.outOfOrder).toBe(0)
      expect(report.duplicates).toBeGreaterThanOrEqual(0)
      expect(report.received).toBe(N + report.duplicates)

      // the inbound bridge reconnected (its connection died with the node)
      await culex.waitForBridge('commands-in', (s) => s.state === 'running', 20_000)
      await command([['cmd.after.k0', 'k0:0']])
      await until('a message after the outage in the log', async () => (await culex.readStream('commands')).some((r) => r.topic === 'cmd/after/k0'), 15_000)
    }
  )
})
