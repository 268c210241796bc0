import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseTarget, type AmqpTarget } from '../../src/bridges/amqp/config.js'
import { amqpDriver } from '../../src/bridges/amqp/index.js'
import type { Outcome, Sink } from '../../src/bridges/types.js'
import { SectionContext } from '../../src/config/values.js'
import type { LogRecord } from '../../src/log/types.js'
import { sleep } from '../helpers/servers/process.js'
import { startRabbitMQ, type RabbitMQ } from '../helpers/servers/rabbitmq.js'

// The amqp sink against a private RabbitMQ node: mapping and order of 10,000 records, publisher
// confirms (deliver waits for them; a confirmed message survives kill -9), basic.return of an
// unroutable message (rejected), basic.nack (retry), a broker that stops answering, an outage.

const ctx = new SectionContext('test')
const logger = pino({ level: 'silent' })
const never = new AbortController().signal

let offsetSeq = 0
function record(partition: number, key: string | null, topic: string | null, value: string | Buffer, extra: Partial<LogRecord> = {}): LogRecord {
  return {
    stream: 'telemetry',
    partition,
    offset: offsetSeq++,
    timestamp: 1_700_000_000_123 + offsetSeq,
    key,
    value: Buffer.isBuffer(value) ? value : Buffer.from(value),
    headers: {},
    topic,
    qos: 1,
    clientId: 'c1',
    ...extra
  }
}

describe('amqp sink', () => {
  let rabbit: RabbitMQ
  let admin: ChannelModel
  let ch: Channel
  const sinks: Sink[] = []

  function target(extra: Record<string, unknown>): AmqpTarget {
    return parseTarget({ 'port': rabbit.port, 'connect-timeout': '3s', 'heartbeat': '5s', ...extra }, ctx, 'bridges[0].target')
  }

  async function sinkFor(t: AmqpTarget): Promise<Sink> {
    const sink = await amqpDriver.createSink!(t, { logger, bridge: 'amqp-test' })
    sinks.push(sink)
    await sink.connect(never)
    return sink
  }

  async function queue(name: string, exchange: string, bindingKey: string, args: Record<string, unknown> = {}): Promise<void> {
    await ch.assertQueue(name, { durable: true, arguments: args })
    await ch.bindQueue(name, exchange, bindingKey)
  }

  /** Everything in `name` (acked), until `count` messages or `ms` passed. */
  async function drain(name: string, count: number, ms = 15_000): Promise<ConsumeMessage[]> {
    const c = await admin.createChannel()
    await c.prefetch(2000)
    const got: ConsumeMessage[] = []
    const { consumerTag } = await c.consume(name, (m) => {
      if (m) {
        got.push(m)
        c.ack(m)
      }
    })
    const deadline = Date.now() + ms
    while (got.length < count && Date.now() < deadline) await sleep(20)
    // a little longer: anything past `count` is a duplicate the test wants to see
    await sleep(200)
    await c.cancel(consumerTag)
    await c.close()
    return got
  }

  /** The test's own connection (declarations, consuming); again after a restart. */
  async function openAdmin(): Promise<void> {
    admin = await connect(rabbit.url)
    // the kill -9 closes it: that must not be an unhandled 'error'
    admin.on('error', () => undefined)
    ch = await admin.createChannel()
    ch.on('error', () => undefined)
  }

  beforeAll(async () => {
    rabbit = await startRabbitMQ()
    console.log(`rabbitmq node started in ${rabbit.lastStartMs} ms`)
    await openAdmin()
  }, 120_000)

  afterAll(async () => {
    for (const s of sinks) await s.close()
    await admin?.close().catch(() => undefined)
    await rabbit?.dispose()
  }, 30_000)

  it('carries 10,000 records in order per partition with routing key, headers and properties', { timeout: 60_000 }, async () => {
    const sink = await sinkFor(target({ exchange: 'culex.telemetry' }))
    // the sink declared the exchange (topic, durable)
    await ch.checkExchange('culex.telemetry')
    await queue('all', 'culex.telemetry', '#')

    const perPartition = 5_000
    const records: LogRecord[][] = [[], []]
    for (let p = 0; p < 2; p++) {
      for (let i = 0; i < perPartition; i++) {
        const key = `d${i % 10}`
        records[p]!.push(record(p, key, `devices/${key}/temp`, `p${p}-${i}`, { headers: { unit: 'C' } }))
      }
    }
    const t0 = Date.now()
    // as the runner does: batches of 100, the two partitions concurrently
    await Promise.all(
      records.map(async (list) => {
        for (let i = 0; i < list.length; i += 100) {
          const outcomes = await sink.deliver(list.slice(i, i + 100), never)
          expect(outcomes.every((o) => o.status === 'delivered')).toBe(true)
        }
      })
    )
    const deliverMs = Date.now() - t0
    const got = await drain('all', 2 * perPartition)
    console.log(`10,000 records delivered (confirmed) in ${deliverMs} ms; consumed ${got.length}`)
    expect(got).toHaveLength(2 * perPartition)

    const lastOffset = [-1, -1]
    const ids = new Set<string>()
    for (const m of got) {
      const h = m.properties.headers as Record<string, unknown>
      const partition = Number(h['culex-partition'])
      const offset = Number(h['culex-offset'])
      // per-partition (and so per-key) order
      expect(offset).toBeGreaterThan(lastOffset[partition]!)
      lastOffset[partition] = offset
      ids.add(m.properties.messageId as string)
      expect(m.properties.messageId).toBe(`telemetry/${partition}/${offset}`)
      expect(m.fields.routingKey).toBe(`devices.${h['culex-key'] as string}.temp`)
      expect(h['culex-topic']).toBe(`devices/${h['culex-key'] as string}/temp`)
      expect(h['culex-stream']).toBe('telemetry')
      expect(h.unit).toBe('C')
      expect(m.properties.deliveryMode).toBe(2)
      expect(m.content.toString()).toMatch(new RegExp(`^p${partition}-\\d+$`))
    }
    expect(ids.size).toBe(2 * perPartition)
    const first = got.find((m) => m.properties.messageId === `telemetry/0/${records[0]![0]!.offset}`)!
    // AMQP timestamps are seconds
    expect(first.properties.timestamp).toBe(Math.floor(records[0]![0]!.timestamp / 1000))
  })

  it('respects flow control: a batch larger than the write buffer waits for drain and is confirmed whole', { timeout: 30_000 }, async () => {
    const lines: string[] = []
    const debug = pino({ level: 'debug' }, { write: (l: string) => void lines.push(l) })
    const sink = await amqpDriver.createSink!(target({ exchange: 'culex.flow' }), { logger: debug, bridge: 'amqp-test' })
    sinks.push(sink)
    await sink.connect(never)
    await queue('flow', 'culex.flow', '#')
    // amqplib's channel buffer holds 1024 frames: 3,000 messages in one deliver overflow it
    const batch = Array.from({ length: 3_000 }, (_, i) => record(0, 'k', 'flow/x', `m${i}`))
    const outcomes = await sink.deliver(batch, never)
    expect(outcomes.every((o) => o.status === 'delivered')).toBe(true)
    expect(lines.some((l) => l.includes('waiting for drain'))).toBe(true)
    const got = await drain('flow', 3_000)
    expect(got.map((m) => m.content.toString())).toEqual(batch.map((r) => r.value.toString()))
  })

  it('rejects a record no queue is bound for (basic.return) with the reply code and text', async () => {
    const sink = await sinkFor(target({ exchange: 'culex.returns' }))
    await queue('bound-only', 'culex.returns', 'bound.#')
    const outcomes = await sink.deliver([record(0, 'a', 'bound/a', '1'), record(0, 'b', 'unbound/b', '2'), record(0, 'c', 'bound/c', '3')], never)
    expect(outcomes[0]).toEqual({ status: 'delivered' })
    expect(outcomes[2]).toEqual({ status: 'delivered' })
    const rejected = outcomes[1]!
    expect(rejected.status).toBe('rejected')
    if (rejected.status !== 'rejected') return
    expect(rejected.error).toContain('NO_ROUTE')
    expect(rejected.headers).toEqual({
      'amqp-reply-code': '312',
      'amqp-reply-text': 'NO_ROUTE',
      'amqp-exchange': 'culex.returns',
      'amqp-routing-key': 'unbound.b'
    })
    const got = await drain('bound-only', 2, 3_000)
    expect(got.map((m) => m.content.toString())).toEqual(['1', '3'])
  })

  it('rejects records it cannot map or encode; the ones around them are delivered', async () => {
    const sink = await sinkFor(target({ exchange: 'culex.refusals' }))
    await queue('refusals', 'culex.refusals', '#')
    const outcomes = await sink.deliver(
      [
        record(0, 'a', 'ok/1', '1'),
        record(0, 'b', null, 'no topic'),
        record(0, 'c', 'a/b.c', 'a dot in a level'),
        record(0, 'd', `long/${'x'.repeat(300)}`, 'routing key over 255 bytes'),
        record(0, 'e', 'big/headers', 'headers over 64 KiB', { headers: { big: 'x'.repeat(70_000) } }),
        record(0, 'f', 'ok/2', '2')
      ],
      never
    )
    expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'rejected', 'rejected', 'rejected', 'rejected', 'delivered'])
    expect((outcomes[1] as { error: string }).error).toContain('no topic')
    expect((outcomes[4] as { error: string }).error).toContain('not encodable')
    const got = await drain('refusals', 2, 3_000)
    expect(got.map((m) => m.content.toString())).toEqual(['1', '2'])
  })

  it('a basic.nack (queue full, overflow reject-publish) is a retry', async () => {
    const sink = await sinkFor(target({ exchange: 'culex.full' }))
    await queue('full', 'culex.full', '#', { 'x-max-length': 2, 'x-overflow': 'reject-publish' })
    const outcomes = await sink.deliver(
      [1, 2, 3, 4].map((i) => record(0, 'k', 'full/x', String(i))),
      never
    )
    expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'delivered', 'retry', 'retry'])
    expect((outcomes[2] as { error: string }).error).toContain('nack')
    // the channel stays usable: after the queue has room, the same records go through
    await ch.purgeQueue('full')
    expect((await sink.deliver([record(0, 'k', 'full/x', '3')], never)).map((o) => o.status)).toEqual(['delivered'])
  })

  it('publishes to the default exchange with a routing key template naming the queue', async () => {
    const sink = await sinkFor(target({ 'exchange': '', 'routing-key': 'q.{key}' }))
    await ch.assertQueue('q.alpha', { durable: true })
    const outcomes = await sink.deliver([record(0, 'alpha', 't/1', 'x'), record(0, 'beta', 't/2', 'y')], never)
    // no queue q.beta: returned
    expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'rejected'])
    const got = await drain('q.alpha', 1, 3_000)
    expect(got.map((m) => m.content.toString())).toEqual(['x'])
  })

  it('declare-exchange false: connect fails while the exchange is missing, naming it', async () => {
    const sink = await amqpDriver.createSink!(target({ 'exchange': 'culex.missing', 'declare-exchange': false }), { logger, bridge: 'amqp-test' })
    sinks.push(sink)
    await expect(sink.connect(never)).rejects.toThrow(/culex\.missing/)
    await ch.assertExchange('culex.missing', 'topic', { durable: true })
    await sink.connect(never)
    await queue('was-missing', 'culex.missing', '#')
    expect((await sink.deliver([record(0, 'k', 'a/b', 'x')], never)).map((o) => o.status)).toEqual(['delivered'])
  })

  it('a broker that stops answering: deliver gives retry at the confirm timeout, then reconnects', { timeout: 30_000 }, async () => {
    const sink = await sinkFor(target({ 'exchange': 'culex.frozen', 'confirm-timeout': '1500ms' }))
    await queue('frozen', 'culex.frozen', '#')
    process.kill(rabbit.pid(), 'SIGSTOP')
    let outcomes: Outcome[]
    const t0 = Date.now()
    try {
      outcomes = await sink.deliver([record(0, 'k', 'f/1', '1'), record(0, 'k', 'f/2', '2')], never)
    } finally {
      process.kill(rabbit.pid(), 'SIGCONT')
    }
    const took = Date.now() - t0
    expect(outcomes.map((o) => o.status)).toEqual(['retry', 'retry'])
    expect((outcomes[0] as { error: string }).error).toContain('no publisher confirm within 1500 ms')
    expect(took).toBeGreaterThanOrEqual(1400)
    expect(took).toBeLessThan(5_000)
    // a new connection (the old one was dropped at the timeout)
    const again = await sink.deliver([record(0, 'k', 'f/3', '3')], never)
    expect(again.map((o) => o.status)).toEqual(['delivered'])
  })

  // last: it restarts the node
  it(
    'kill -9 of the broker mid-batch: retry in bounded time; confirmed messages survive; after the restart connect + deliver work',
    { timeout: 90_000 },
    async () => {
      const sink = await sinkFor(target({ 'exchange': 'culex.outage', 'confirm-timeout': '20s' }))
      await queue('outage', 'culex.outage', '#')
      const before = Array.from({ length: 200 }, (_, i) => record(0, `k${i % 5}`, 'o/before', `before-${i}`))
      expect((await sink.deliver(before, never)).every((o) => o.status === 'delivered')).toBe(true)

      // frozen, so that none of the next batch can be confirmed: deliver must not resolve
      process.kill(rabbit.pid(), 'SIGSTOP')
      const during = Array.from({ length: 200 }, (_, i) => record(0, `k${i % 5}`, 'o/during', `during-${i}`))
      let settled = false
      const pending = sink.deliver(during, never).finally(() => (settled = true))
      await sleep(500)
      expect(settled).toBe(false)

      const t0 = Date.now()
      await rabbit.kill9()
      const outcomes = await pending
      const took = Date.now() - t0
      console.log(`deliver answered ${took} ms after kill -9`)
      expect(took).toBeLessThan(5_000)
      expect(outcomes).toHaveLength(200)
      expect(outcomes.every((o) => o.status === 'retry')).toBe(true)

      // down: connect fails (bounded by connect-timeout)
      const c0 = Date.now()
      await expect(sink.connect(never)).rejects.toThrow()
      expect(Date.now() - c0).toBeLessThan(5_000)

      await rabbit.start()
      console.log(`rabbitmq node restarted (same dir and ports) in ${rabbit.lastStartMs} ms`)
      await openAdmin()
      await sink.connect(never)
      const retried = await sink.deliver(during, never)
      expect(retried.every((o) => o.status === 'delivered')).toBe(true)

      // the durable queue kept every confirmed message across the kill -9
      const got = await drain('outage', 400)
      const bodies = got.map((m) => m.content.toString())
      const distinct = new Set(bodies)
      console.log(`after the outage: ${got.length} messages, ${got.length - distinct.size} duplicates`)
      for (const r of [...before, ...during]) expect(distinct.has(r.value.toString())).toBe(true)
      expect(distinct.size).toBe(400)
      // the "before" ones (confirmed before the kill) come first, in order
      expect(bodies.slice(0, 200)).toEqual(before.map((r) => r.value.toString()))
    }
  )
})
