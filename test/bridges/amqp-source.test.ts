import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseSource, type AmqpSourceOptions } from '../../src/bridges/amqp/config.js'
import { amqpDriver } from '../../src/bridges/amqp/index.js'
import { InboundRefused, type InboundMessage, type Source, type SourceContext } from '../../src/bridges/types.js'
import { SectionContext } from '../../src/config/values.js'
import { sleep } from '../helpers/servers/process.js'
import { startRabbitMQ, type RabbitMQ } from '../helpers/servers/rabbitmq.js'

// The amqp source against a private RabbitMQ node: bindings from MQTT filters, routing key ->
// topic, acks only after ctx.publish resolved (and in delivery order), refusals rejected without
// requeue (into a dead-letter exchange), redelivery after a stop, a failure or a kill -9.

const ctx = new SectionContext('test')
const logger = pino({ level: 'silent' })

interface Run {
  source: Source
  ctx: SourceContext
  got: InboundMessage[]
  abort: AbortController
  connected: Promise<void>
  /** run()'s promise, settled: 'resolved' or the error. */
  done: Promise<'resolved' | Error>
}

/** Waits until `cond` holds (every 20 ms), at most `ms`. */
async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting')
    await sleep(20)
  }
}

describe('amqp source', () => {
  let rabbit: RabbitMQ
  let admin: ChannelModel
  let ch: Channel

  function options(extra: Record<string, unknown>): AmqpSourceOptions {
    return parseSource({ 'port': rabbit.port, 'connect-timeout': '3s', 'heartbeat': '5s', ...extra }, ctx, 'bridges[0].source')
  }

  /** Starts source.run with a publish that does what `publish` says (default: resolves at once). */
  async function start(o: AmqpSourceOptions, publish?: (m: InboundMessage, i: number) => Promise<void>): Promise<Run> {
    const source = await amqpDriver.createSource!(o, { logger, bridge: 'amqp-test' })
    const abort = new AbortController()
    const got: InboundMessage[] = []
    let connected: () => void = () => undefined
    const c: SourceContext = {
      publish: (m) => {
        got.push(m)
        return publish ? publish(m, got.length - 1) : Promise.resolve()
      },
      signal: abort.signal,
      logger,
      connected: () => connected()
    }
    const up = new Promise<void>((res) => (connected = res))
    const done = source.run(c).then(
      () => 'resolved' as const,
      (err: unknown) => (err instanceof Error ? err : new Error(String(err)))
    )
    await Promise.race([up, done.then((r) => Promise.reject(r instanceof Error ? r : new Error('run resolved before it connected')))])
    return { source, ctx: c, got, abort, connected: up, done }
  }

  async function stop(run: Run): Promise<void> {
    run.abort.abort()
    expect(await run.done).toBe('resolved')
  }

  async function openAdmin(): Promise<void> {
    admin = await connect(rabbit.url)
    admin.on('error', () => undefined)
    ch = await admin.createChannel()
    ch.on('error', () => undefined)
  }

  const publish = (exchange: string, routingKey: string, body: string): void => {
    ch.publish(exchange, routingKey, Buffer.from(body), { persistent: true })
  }

  /**
   * Ready (not unacked) messages in the queue once it settles: what the next consumer gets. The
   * requeue of a closed channel's unacked messages may trail the close by a moment.
   */
  async function ready(queue: string, expected: number): Promise<number> {
    let count = -1
    for (const deadline = Date.now() + 3_000; Date.now() < deadline; await sleep(50)) {
      count = (await ch.checkQueue(queue)).messageCount
      if (count === expected) break
    }
    return count
  }

  beforeAll(async () => {
    rabbit = await startRabbitMQ()
    console.log(`rabbitmq node started in ${rabbit.lastStartMs} ms`)
    await openAdmin()
    await ch.assertExchange('commands', 'topic', { durable: true })
  }, 120_000)

  afterAll(async () => {
    await admin?.close().catch(() => undefined)
    await rabbit?.dispose()
  }, 30_000)

  it('binds MQTT filters, maps routing keys to topics and acks 10,000 messages in order', { timeout: 60_000 }, async () => {
    const run = await start(
      options({ queue: 'in.order', bindings: [{ exchange: 'commands', filter: 'devices/+/cmd/#' }], topic: 'rabbit/{routing-key}', qos: 1 })
    )
    const n = 10_000
    const t0 = Date.now()
    for (let i = 0; i < n; i++) {
      publish('commands', `devices.d${i % 7}.cmd.set`, String(i))
      // not bound: never reaches the queue
      if (i % 1000 === 0) publish('commands', 'devices.d1.status', 'nope')
    }
    await until(() => run.got.length >= n, 40_000)
    console.log(`10,000 inbound messages published into the (test) Culex in ${Date.now() - t0} ms`)
    expect(run.got.map((m) => m.payload.toString())).toEqual(Array.from({ length: n }, (_, i) => String(i)))
    expect(run.got[3]).toEqual({ topic: 'rabbit/devices/d3/cmd/set', payload: Buffer.from('3'), qos: 1, retain: false })
    // all acked: nothing is ready or unacked once the consumer is gone
    await stop(run)
    expect(await ready('in.order', 0)).toBe(0)
  })

  it('acks only after publish resolved: a publish that never resolves, then stop and start => the message comes again', async () => {
    const o = options({ queue: 'in.hang', bindings: [{ exchange: 'commands', filter: 'hang/#' }] })
    const first = await start(o, () => new Promise<void>(() => undefined))
    publish('commands', 'hang.1', 'once')
    await until(() => first.got.length === 1)
    // stopping does not wait for the publish, and acks nothing
    await stop(first)
    expect(await ready('in.hang', 1)).toBe(1)
    const second = await start(o)
    await until(() => second.got.length === 1)
    expect(second.got[0]!.payload.toString()).toBe('once')
    await stop(second)
    expect(await ready('in.hang', 0)).toBe(0)
  })

  it('acks in delivery order: a later message settled first is not acked before the earlier one', async () => {
    const o = options({ queue: 'in.ack-order', bindings: [{ exchange: 'commands', filter: 'order/#' }] })
    // the first publish never resolves, the next two at once
    const run = await start(o, (_m, i) => (i === 0 ? new Promise<void>(() => undefined) : Promise.resolve()))
    for (const b of ['1', '2', '3']) publish('commands', 'order.x', b)
    await until(() => run.got.length === 3)
    await sleep(200)
    await stop(run)
    // none was acked: all three come again, in order
    expect(await ready('in.ack-order', 3)).toBe(3)
    const again = await start(o)
    await until(() => again.got.length === 3)
    expect(again.got.map((m) => m.payload.toString())).toEqual(['1', '2', '3'])
    await stop(again)
  })

  it('a publish that fails (Culex stopping): run rejects, nothing after it is acked, the next run gets it again', async () => {
    const o = options({ queue: 'in.fail', bindings: [{ exchange: 'commands', filter: 'fail/#' }] })
    const run = await start(o, () => Promise.reject(new Error('culex is stopping')))
    publish('commands', 'fail.1', 'again')
    const err = await run.done
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toContain('culex is stopping')
    expect(await ready('in.fail', 1)).toBe(1)
    const next = await start(o)
    await until(() => next.got.length === 1)
    expect(next.got[0]!.payload.toString()).toBe('again')
    await stop(next)
  })

  it('a message Culex refuses (or whose routing key makes no topic) is rejected without requeue: the dead-letter exchange has it', async () => {
    await ch.assertExchange('culex.dlx', 'fanout', { durable: true })
    await ch.assertQueue('refused', { durable: true })
    await ch.bindQueue('refused', 'culex.dlx', '')
    const o = options({
      'queue': 'in.refuse',
      'queue-arguments': { 'x-dead-letter-exchange': 'culex.dlx' },
      'bindings': [{ exchange: 'commands', filter: 'refuse/#' }]
    })
    const run = await start(o, (m) => (m.payload.toString() === 'bad' ? Promise.reject(new InboundRefused('not allowed')) : Promise.resolve()))
    publish('commands', 'refuse.a', 'good-1')
    publish('commands', 'refuse.b', 'bad')
    // '#' in a routing key is legal AMQP but no MQTT topic name: never handed to Culex
    publish('commands', 'refuse.#', 'wildcard')
    publish('commands', 'refuse.c', 'good-2')
    await until(() => run.got.length === 3)
    const c = await admin.createChannel()
    const dead: ConsumeMessage[] = []
    await c.consume('refused', (m) => m && dead.push(m), { noAck: true })
    await until(() => dead.length === 2)
    await c.close()
    expect(dead.map((m) => m.content.toString()).sort()).toEqual(['bad', 'wildcard'])
    expect(dead.map((m) => (m.properties.headers?.['x-death'] as Array<{ reason: string }>)[0]!.reason)).toEqual(['rejected', 'rejected'])
    expect(run.got.map((m) => m.payload.toString())).toEqual(['good-1', 'bad', 'good-2'])
    // the source went on: nothing left in its queue
    await stop(run)
    expect(await ready('in.refuse', 0)).toBe(0)
  })

  it('the queue is deleted under the consumer: run rejects', async () => {
    const run = await start(options({ queue: 'in.deleted' }))
    await ch.deleteQueue('in.deleted')
    const err = await run.done
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toMatch(/cancelled the consumer/)
  })

  it('declare-queue false: run rejects while the queue is missing', async () => {
    const source = await amqpDriver.createSource!(options({ 'queue': 'in.missing', 'declare-queue': false }), { logger, bridge: 'amqp-test' })
    const abort = new AbortController()
    await expect(source.run({ publish: () => Promise.resolve(), signal: abort.signal, logger, connected: () => undefined })).rejects.toThrow(/in\.missing/)
  })

  // last: it restarts the node
  it('kill -9 of the broker: run rejects in bounded time; after the restart the unacked message comes again', { timeout: 90_000 }, async () => {
    const o = options({ queue: 'in.outage', bindings: [{ exchange: 'commands', filter: 'outage/#' }] })
    const run = await start(o, () => new Promise<void>(() => undefined))
    // confirmed: on disk (a persistent message without a confirm may be lost with the node)
    const confirm = await admin.createConfirmChannel()
    confirm.publish('commands', 'outage.1', Buffer.from('survives'), { persistent: true })
    await confirm.waitForConfirms()
    await until(() => run.got.length === 1)
    const t0 = Date.now()
    await rabbit.kill9()
    const err = await run.done
    console.log(`run rejected ${Date.now() - t0} ms after kill -9: ${(err as Error).message}`)
    expect(err).toBeInstanceOf(Error)
    expect(Date.now() - t0).toBeLessThan(5_000)

    // down: run rejects (connect refused), bounded by connect-timeout
    const source = await amqpDriver.createSource!(o, { logger, bridge: 'amqp-test' })
    const c0 = Date.now()
    await expect(source.run({ publish: () => Promise.resolve(), signal: new AbortController().signal, logger, connected: () => undefined })).rejects.toThrow()
    expect(Date.now() - c0).toBeLessThan(5_000)

    await rabbit.start()
    console.log(`rabbitmq node restarted (same dir and ports) in ${rabbit.lastStartMs} ms`)
    await openAdmin()
    const again = await start(o)
    await until(() => again.got.length === 1)
    expect(again.got[0]!.payload.toString()).toBe('survives')
    await stop(again)
  })
})
