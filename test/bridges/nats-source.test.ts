import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseSource, type NatsSourceOptions } from '../../src/bridges/nats/config.js'
import { natsDriver } from '../../src/bridges/nats/index.js'
import { InboundRefused, type InboundMessage, type SourceContext } from '../../src/bridges/types.js'
import { SectionContext } from '../../src/config/values.js'
import { natsClient, startNats, type NatsServer } from '../helpers/servers/nats.js'
import { sleep } from '../helpers/servers/process.js'

// The nats source against a real nats-server: a durable pull consumer, messages into Culex in
// stream order with the subject mapped to a topic, acks only after ctx.publish resolved, terminated
// refusals, redelivery of what was not acked, and outages of the server.

const ctx = new SectionContext('test')
const logger = pino({ level: 'silent' })

function options(server: NatsServer, stream: string, extra: Record<string, unknown> = {}): NatsSourceOptions {
  return parseSource({ servers: server.url, stream, ...extra }, ctx, 'source')
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** One run of a source with a publish the test controls; `stop` aborts and awaits run. */
function harness(source: { run(ctx: SourceContext): Promise<void> }, publish: (m: InboundMessage, n: number) => Promise<void> = async () => undefined) {
  const ac = new AbortController()
  const got: InboundMessage[] = []
  let calls = 0
  let connected = false
  const run = source.run({
    publish: async (m) => {
      await publish(m, calls++)
      got.push(m)
    },
    signal: ac.signal,
    logger,
    connected: () => {
      connected = true
    }
  })
  // a run that rejects is awaited by the test; keep node from reporting it early
  run.catch(() => undefined)
  return {
    got,
    run,
    isConnected: () => connected,
    calls: () => calls,
    stop: async () => {
      ac.abort()
      await run
    }
  }
}

const texts = (got: InboundMessage[]): string[] => got.map((m) => m.payload.toString())

describe('nats source', () => {
  let server: NatsServer
  let nc: NatsConnection
  let jsm: JetStreamManager

  beforeAll(async () => {
    server = await startNats()
    nc = await natsClient(server)
    jsm = await jetstreamManager(nc)
  })

  afterAll(async () => {
    await nc.close().catch(() => undefined)
    await server.dispose()
  })

  async function stream(name: string, subjects: string[]): Promise<void> {
    await jsm.streams.add({ name, subjects })
  }

  async function produce(subject: string, ...payloads: string[]): Promise<void> {
    const js = jetstream(nc)
    for (const p of payloads) await js.publish(subject, p)
  }

  it('publishes in stream order to the mapped topic, and acks each message only after publish resolved', { timeout: 20_000 }, async () => {
    await stream('IN1', ['in1.>'])
    for (let i = 0; i < 30; i++) await produce(`in1.devices.d${i % 3}.cmd`, `m${i}`)
    await produce('in1.other.x', 'not in the filter')
    const source = await natsDriver.createSource!(options(server, 'IN1', { 'filter': 'in1/devices/#', 'strip-prefix': 'in1', 'topic': 'nats/{subject}' }), {
      logger,
      bridge: 'src.one'
    })
    let floorWhilePublishing = -1
    const h = harness(source, async (_m, n) => {
      if (n === 10) {
        // the 11th message is held: JetStream has the first 10 acked, not it
        const info = await jsm.consumers.info('IN1', 'culex-src_one')
        floorWhilePublishing = info.ack_floor.consumer_seq
      }
    })
    await waitFor('30 messages', () => h.got.length === 30)
    // consumer sequences: the stream's message outside the filter has none
    await waitFor('the acks', async () => (await jsm.consumers.info('IN1', 'culex-src_one')).ack_floor.consumer_seq === 30)
    await h.stop()
    expect(h.isConnected()).toBe(true)
    expect(floorWhilePublishing).toBe(10)
    expect(texts(h.got)).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`))
    expect(h.got[4]).toEqual({ topic: 'nats/devices/d1/cmd', payload: Buffer.from('m4'), qos: 1, retain: false })
    const info = await jsm.consumers.info('IN1', 'culex-src_one')
    expect(info.config.ack_policy).toBe(AckPolicy.Explicit)
    expect(info.config.filter_subject).toBe('in1.devices.>')
    expect(info.num_ack_pending).toBe(0)
    expect(info.num_pending).toBe(0)
  })

  it('a publish that never resolves: stopped and started again, that message and the ones after it come again, in order', { timeout: 20_000 }, async () => {
    await stream('IN2', ['in2.>'])
    await produce('in2.a', 'a1', 'a2', 'a3', 'a4')
    // ack-wait 30 s: coming again at once shows the nak, not the ack_wait expiry
    const source = await natsDriver.createSource!(options(server, 'IN2', { 'ack-wait': '30s' }), { logger, bridge: 'src2' })
    const first = harness(source, (_m, n) => (n === 1 ? new Promise<void>(() => undefined) : Promise.resolve()))
    await waitFor('the second publish', () => first.calls() === 2)
    await sleep(100)
    const t0 = Date.now()
    await first.stop()
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(texts(first.got)).toEqual(['a1'])

    const second = harness(source)
    await waitFor('a2..a4 again', () => second.got.length === 3, 5000)
    await second.stop()
    expect(texts(second.got)).toEqual(['a2', 'a3', 'a4'])
    expect(second.got[0]!.topic).toBe('in2/a')
  })

  it('a publish that rejects (Culex stopping): run rejects, nothing is acked, the next run gets it again', { timeout: 20_000 }, async () => {
    await stream('IN3', ['in3.>'])
    await produce('in3.x', 'x1', 'x2')
    const source = await natsDriver.createSource!(options(server, 'IN3'), { logger, bridge: 'src3' })
    const first = harness(source, (_m, n) => (n === 1 ? Promise.reject(new Error('culex is stopping')) : Promise.resolve()))
    await expect(first.run).rejects.toThrow(/culex is stopping/)
    expect(texts(first.got)).toEqual(['x1'])
    const second = harness(source)
    await waitFor('x2 again', () => second.got.length === 1, 5000)
    await second.stop()
    expect(texts(second.got)).toEqual(['x2'])
  })

  it('terminates what Culex refuses and what has no MQTT topic; the messages after them go on', { timeout: 20_000 }, async () => {
    await stream('IN4', ['in4.>'])
    await produce('in4.ok', 'r1')
    await produce('in4.refused', 'r2')
    await produce('in4.a+b', 'r3') // '+' is an MQTT wildcard: no topic
    await produce('in4.ok', 'r4')
    const source = await natsDriver.createSource!(options(server, 'IN4', { 'ack-wait': '1s' }), { logger, bridge: 'src4' })
    const h = harness(source, async (m) => {
      if (m.topic === 'in4/refused') throw new InboundRefused('refused by a hook')
    })
    await waitFor('r1 and r4', () => h.got.length === 2)
    // longer than ack_wait: a terminated message does not come again
    await sleep(1500)
    await h.stop()
    expect(texts(h.got)).toEqual(['r1', 'r4'])
    expect(h.calls()).toBe(3)
    const info = await jsm.consumers.info('IN4', 'culex-src4')
    expect(info.ack_floor.stream_seq).toBe(4)
    expect(info.num_ack_pending).toBe(0)
    expect(info.num_redelivered).toBe(0)
  })

  it('the server killed -9: run rejects in bounded time; after a restart the durable consumer resumes where it was', { timeout: 30_000 }, async () => {
    await stream('IN5', ['in5.>'])
    await produce('in5.k', 'k1', 'k2')
    const source = await natsDriver.createSource!(options(server, 'IN5', { 'ack-wait': '2s' }), { logger, bridge: 'src5' })
    const first = harness(source)
    await waitFor('k1, k2', () => first.got.length === 2)
    const t0 = Date.now()
    await server.kill9()
    await expect(first.run).rejects.toThrow()
    expect(Date.now() - t0).toBeLessThan(5000)

    await server.start()
    await nc.close().catch(() => undefined)
    nc = await natsClient(server)
    jsm = await jetstreamManager(nc)
    await produce('in5.k', 'k3')
    const second = harness(source)
    await waitFor('k3', () => second.got.length === 1)
    await sleep(300)
    await second.stop()
    expect(texts(second.got)).toEqual(['k3'])
  })

  it('refuses an existing consumer with another filter, and updates ack_wait of a matching one', { timeout: 20_000 }, async () => {
    await stream('IN6', ['in6.>'])
    await jsm.consumers.add('IN6', { durable_name: 'theirs', ack_policy: AckPolicy.Explicit, filter_subject: 'in6.a.>' })
    const wrong = await natsDriver.createSource!(options(server, 'IN6', { 'consumer': 'theirs', 'filter-subject': 'in6.b.>' }), { logger, bridge: 'src6' })
    const h = harness(wrong)
    await expect(h.run).rejects.toThrow(/filters "in6\.a\.>".*"in6\.b\.>".*delete it/)
    expect(h.isConnected()).toBe(false)

    const right = await natsDriver.createSource!(options(server, 'IN6', { 'consumer': 'theirs', 'filter': 'in6/a/#', 'ack-wait': '7s' }), {
      logger,
      bridge: 'src6'
    })
    const h2 = harness(right)
    await waitFor('connected', () => h2.isConnected())
    await h2.stop()
    expect((await jsm.consumers.info('IN6', 'theirs')).config.ack_wait).toBe(7_000_000_000)
  })

  it('run rejects when the stream does not exist', async () => {
    const source = await natsDriver.createSource!(options(server, 'NOPE'), { logger, bridge: 'src7' })
    await expect(harness(source).run).rejects.toThrow(/NOPE.*stream not found/)
  })
})
