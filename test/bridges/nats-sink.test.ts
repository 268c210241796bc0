import { jetstream, jetstreamManager, type JetStreamManager, type JsMsg } from '@nats-io/jetstream'
import { nanos, type NatsConnection } from '@nats-io/transport-node'
import { readFileSync } from 'node:fs'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseTarget, type NatsTarget } from '../../src/bridges/nats/config.js'
import { natsDriver } from '../../src/bridges/nats/index.js'
import type { Outcome, Sink } from '../../src/bridges/types.js'
import { SectionContext } from '../../src/config/values.js'
import type { LogRecord } from '../../src/log/types.js'
import { natsClient, startNats, type NatsServer } from '../helpers/servers/nats.js'
import { sleep } from '../helpers/servers/process.js'

// The nats sink against a real nats-server with JetStream: subject/header mapping and order, the
// PubAck wait, exactly once through Nats-Msg-Id across a frozen and a killed (-9) server, and
// what JetStream refuses for good (dead letters) versus later (retry).

const ctx = new SectionContext('test')
const logger = pino({ level: 'silent' })
const never = new AbortController().signal
const BRIDGE = 'nats-test'

function target(server: NatsServer, extra: Record<string, unknown> = {}): NatsTarget {
  return parseTarget({ 'servers': server.url, 'subject': 'culex.{topic.}', 'ack-timeout': '1500ms', ...extra }, ctx, 'target')
}

function record(offset: number, extra: Partial<LogRecord> = {}): LogRecord {
  const device = `d${offset % 3}`
  return {
    stream: 'telemetry',
    partition: 0,
    offset,
    timestamp: 1_700_000_000_000 + offset,
    key: device,
    value: Buffer.from(`v${offset}`),
    headers: {},
    topic: `devices/${device}/temp`,
    qos: 1,
    clientId: 'c1',
    ...extra
  }
}

async function sinkFor(t: NatsTarget): Promise<Sink> {
  const sink = await natsDriver.createSink!(t, { logger, bridge: BRIDGE })
  await sink.connect(never)
  return sink
}

/** Every message of a stream, in stream order (an ordered consumer). */
async function readAll(nc: NatsConnection, stream: string, count: number): Promise<JsMsg[]> {
  const consumer = await jetstream(nc).consumers.get(stream)
  const out: JsMsg[] = []
  const deadline = Date.now() + 20_000
  while (out.length < count && Date.now() < deadline) {
    const batch = await consumer.fetch({ max_messages: Math.min(1000, count - out.length), expires: 1000 })
    for await (const m of batch) out.push(m)
  }
  return out
}

/** SIGSTOP, and wait until the kernel shows the process stopped (state T). */
async function freeze(server: NatsServer): Promise<void> {
  const pid = server.child!.pid!
  server.child!.kill('SIGSTOP')
  for (let i = 0; i < 100; i++) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return
    await sleep(10)
  }
  throw new Error('nats-server did not stop')
}

const statuses = (outcomes: Outcome[]): string[] => outcomes.map((o) => o.status)

describe('nats sink', () => {
  let server: NatsServer
  let nc: NatsConnection
  let jsm: JetStreamManager

  beforeAll(async () => {
    server = await startNats()
    nc = await natsClient(server)
    jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: 'CULEX', subjects: ['culex.>'], max_msg_size: 4096 })
  })

  afterAll(async () => {
    await nc.close().catch(() => undefined)
    await server.dispose()
  })

  async function reopen(): Promise<void> {
    if (!nc.isClosed()) await nc.close()
    nc = await natsClient(server)
    jsm = await jetstreamManager(nc)
  }

  it('publishes each partition in order, with the subject, key and headers, and resolves once JetStream stored them', { timeout: 20_000 }, async () => {
    await jsm.streams.purge('CULEX')
    const sink = await sinkFor(target(server, { stream: 'CULEX' }))
    try {
      const p0 = Array.from({ length: 300 }, (_, i) => record(i, { headers: { 'trace-id': `t${i}` } }))
      const p1 = Array.from({ length: 300 }, (_, i) => record(i, { partition: 1, key: null, topic: 'devices/p1/temp', clientId: null }))
      // two partitions at once, as the runner does
      const [o0, o1] = await Promise.all([sink.deliver(p0, never), sink.deliver(p1, never)])
      expect(new Set(statuses([...o0, ...o1]))).toEqual(new Set(['delivered']))
      // resolved = stored: JetStream sends the PubAck after the store
      expect((await jsm.streams.info('CULEX')).state.messages).toBe(600)

      const msgs = await readAll(nc, 'CULEX', 600)
      expect(msgs).toHaveLength(600)
      for (const partition of [0, 1]) {
        const mine = msgs.filter((m) => m.headers?.get('Culex-Partition') === String(partition))
        expect(mine.map((m) => Number(m.headers?.get('Culex-Offset')))).toEqual(Array.from({ length: 300 }, (_, i) => i))
      }
      const first = msgs.find((m) => m.headers?.get('Culex-Partition') === '0' && m.headers.get('Culex-Offset') === '4')!
      expect(first.subject).toBe('culex.devices.d1.temp')
      expect(first.string()).toBe('v4')
      expect(first.headers?.get('Nats-Msg-Id')).toBe(`${BRIDGE}/telemetry/0/4`)
      expect(first.headers?.get('Culex-Key')).toBe('d1')
      expect(first.headers?.get('Culex-Topic')).toBe('devices/d1/temp')
      expect(first.headers?.get('Culex-Stream')).toBe('telemetry')
      expect(first.headers?.get('Culex-Timestamp')).toBe(String(1_700_000_000_004))
      expect(first.headers?.get('Culex-Client-Id')).toBe('c1')
      expect(first.headers?.get('trace-id')).toBe('t4')
      const keyless = msgs.find((m) => m.headers?.get('Culex-Partition') === '1')!
      expect(keyless.subject).toBe('culex.devices.p1.temp')
      expect(keyless.headers?.has('Culex-Key')).toBe(false)
      expect(keyless.headers?.has('Culex-Client-Id')).toBe(false)
    } finally {
      await sink.close()
    }
  })

  it('renders {key}, {stream} and {partition} into the subject', async () => {
    await jsm.streams.purge('CULEX')
    const sink = await sinkFor(target(server, { subject: 'culex.{stream}.{partition}.{key}' }))
    try {
      expect(statuses(await sink.deliver([record(7, { partition: 3 })], never))).toEqual(['delivered'])
      const [m] = await readAll(nc, 'CULEX', 1)
      expect(m!.subject).toBe('culex.telemetry.3.d1')
    } finally {
      await sink.close()
    }
  })

  it('waits for the PubAck: a frozen server gives retry after ack-timeout, and the retry is a JetStream duplicate', { timeout: 20_000 }, async () => {
    await jsm.streams.purge('CULEX')
    const sink = await sinkFor(target(server, { 'ack-timeout': '800ms' }))
    const records = Array.from({ length: 20 }, (_, i) => record(1000 + i))
    try {
      await freeze(server)
      const t0 = Date.now()
      let outcomes: Outcome[]
      try {
        outcomes = await sink.deliver(records, never)
      } finally {
        server.child!.kill('SIGCONT')
      }
      expect(Date.now() - t0).toBeLessThan(5000)
      expect(new Set(statuses(outcomes))).toEqual(new Set(['retry']))
      // the server stores the publishes it had buffered; the retry finds their ids
      const again = await sink.deliver(records, never)
      expect(new Set(statuses(again))).toEqual(new Set(['delivered']))
      expect((await jsm.streams.info('CULEX')).state.messages).toBe(20)
    } finally {
      await sink.close()
    }
  })

  it(
    'gives retry (or throws) in bounded time when the server is killed -9 mid-batch; after a restart every record is in JetStream once',
    { timeout: 45_000 },
    async () => {
      await jsm.streams.add({ name: 'KILL', subjects: ['kill.>'] })
      const sink = await sinkFor(target(server, { subject: 'kill.{topic.}', stream: 'KILL' }))
      const total = 10_000
      const records = Array.from({ length: total }, (_, i) => record(i, { value: Buffer.alloc(256, i % 251) }))
      // kill the server once it has seen part of the batch (a core subscriber on the same subjects)
      const watch = await natsClient(server)
      let seen = 0
      watch.subscribe('kill.>', {
        callback: () => {
          if (++seen === 2000) void server.kill9()
        }
      })
      await watch.flush()
      const t0 = Date.now()
      // a throw counts as retry for all
      const first: Outcome[] | null = await sink.deliver(records, never).catch(() => null)
      expect(Date.now() - t0).toBeLessThan(10_000)
      expect(seen).toBeGreaterThanOrEqual(2000)
      const firstNotDelivered = first === null ? 0 : first.findIndex((o) => o.status !== 'delivered')
      expect(firstNotDelivered).toBeGreaterThanOrEqual(0)
      expect(first === null || first.slice(firstNotDelivered).some((o) => o.status === 'retry')).toBe(true)
      expect(first?.some((o) => o.status === 'rejected') ?? false).toBe(false)
      // while the server is down, connect fails (the runner backs off)
      await expect(sink.connect(never)).rejects.toThrow()

      await server.start()
      await reopen()
      // as the runner: connect, then deliver again from the first record not delivered
      let from = firstNotDelivered
      for (let attempt = 0; attempt < 10 && from < total; attempt++) {
        try {
          await sink.connect(never)
          const outcomes = await sink.deliver(records.slice(from), never)
          const i = outcomes.findIndex((o) => o.status !== 'delivered')
          from = i < 0 ? total : from + i
        } catch {
          await sleep(200)
        }
      }
      expect(from).toBe(total)
      await sink.close()

      // exactly once: every id once, in offset order
      const info = await jsm.streams.info('KILL')
      expect(info.state.messages).toBe(total)
      const msgs = await readAll(nc, 'KILL', total)
      const ids = msgs.map((m) => m.headers!.get('Nats-Msg-Id'))
      expect(new Set(ids).size).toBe(total)
      expect(msgs.map((m) => Number(m.headers!.get('Culex-Offset')))).toEqual(records.map((r) => r.offset))
      await watch.close().catch(() => undefined)
    }
  )

  it('exactly once holds within the duplicate window: a record published again after it is stored twice', { timeout: 10_000 }, async () => {
    await jsm.streams.add({ name: 'WINDOW', subjects: ['window.>'], duplicate_window: nanos(1000) })
    const sink = await sinkFor(target(server, { subject: 'window.{topic.}', stream: 'WINDOW' }))
    try {
      const r = record(1)
      expect(statuses(await sink.deliver([r], never))).toEqual(['delivered'])
      expect(statuses(await sink.deliver([r], never))).toEqual(['delivered'])
      expect((await jsm.streams.info('WINDOW')).state.messages).toBe(1)
      await sleep(1300)
      expect(statuses(await sink.deliver([r], never))).toEqual(['delivered'])
      expect((await jsm.streams.info('WINDOW')).state.messages).toBe(2)
    } finally {
      await sink.close()
    }
  })

  it('rejects what JetStream or the mapping refuses for good, and delivers the records around it', { timeout: 20_000 }, async () => {
    await jsm.streams.purge('CULEX')
    const sink = await sinkFor(target(server, { stream: 'CULEX' }))
    try {
      const records = [
        record(1),
        record(2, { value: Buffer.alloc(8192) }), // over the stream's max_msg_size (4096)
        record(3, { topic: 'devices/a.b/temp' }), // '.' in a level: no subject
        record(4, { topic: null }), // no topic for {topic.}
        record(5, { headers: { 'Nats-Rollup': 'all' } }), // would purge the stream
        record(6, { headers: { 'bad name': 'x' } }), // not a NATS header name
        record(7, { key: 'line\nbreak' }), // CR/LF in a header value
        record(8)
      ]
      const outcomes = await sink.deliver(records, never)
      expect(statuses(outcomes)).toEqual(['delivered', 'rejected', 'rejected', 'rejected', 'rejected', 'rejected', 'rejected', 'delivered'])
      const tooLarge = outcomes[1] as Extract<Outcome, { status: 'rejected' }>
      expect(tooLarge.error).toMatch(/message size exceeds maximum/)
      expect(tooLarge.headers).toEqual({ 'nats-subject': 'culex.devices.d2.temp', 'nats-code': '400', 'nats-err-code': '10054' })
      expect((outcomes[2] as { error: string }).error).toMatch(/a\.b/)
      expect((outcomes[4] as { error: string }).error).toMatch(/reserved by JetStream/)
      expect((await jsm.streams.info('CULEX')).state.messages).toBe(2)
    } finally {
      await sink.close()
    }
  })

  it('rejects a subject the configured stream does not capture; without a stream it is retried (no responders)', async () => {
    const withStream = await sinkFor(target(server, { stream: 'CULEX', subject: 'elsewhere.{topic.}' }))
    const without = await sinkFor(target(server, { subject: 'elsewhere.{topic.}' }))
    try {
      const [a] = await withStream.deliver([record(1)], never)
      expect(a).toMatchObject({ status: 'rejected', error: expect.stringMatching(/does not capture subject "elsewhere\.devices\.d1\.temp"/) as string })
      const [b] = await without.deliver([record(1)], never)
      expect(b).toMatchObject({ status: 'retry', error: expect.stringMatching(/no responders/) as string })
    } finally {
      await withStream.close()
      await without.close()
    }
  })

  it('rejects a record over the server max_payload before sending it', async () => {
    const sink = await sinkFor(target(server, { subject: 'kill.{topic.}' }))
    try {
      const [o] = await sink.deliver([record(1, { value: Buffer.alloc(1024 * 1024 + 1) })], never)
      expect(o).toMatchObject({ status: 'rejected', error: expect.stringMatching(/max_payload/) as string })
    } finally {
      await sink.close()
    }
  })

  it('an abort ends a deliver at once, with retry for what is not acknowledged', { timeout: 10_000 }, async () => {
    const sink = await sinkFor(target(server, { 'ack-timeout': '5s' }))
    try {
      await freeze(server)
      const ac = new AbortController()
      setTimeout(() => ac.abort(), 200)
      const t0 = Date.now()
      const outcomes = await sink.deliver([record(1), record(2)], ac.signal).finally(() => server.child!.kill('SIGCONT'))
      expect(Date.now() - t0).toBeLessThan(2000)
      expect(statuses(outcomes)).toEqual(['retry', 'retry'])
    } finally {
      await sink.close()
    }
  })

  it('connect fails when the stream does not exist, and on a closed connection deliver throws', async () => {
    const sink = await natsDriver.createSink!(target(server, { stream: 'MISSING' }), { logger, bridge: BRIDGE })
    await expect(sink.connect(never)).rejects.toThrow(/MISSING.*not found.*does not create it/)
    await expect(sink.deliver([record(1)], never)).rejects.toThrow(/not connected/)
    await sink.close()
  })
})

describe('nats sink with credentials', () => {
  let server: NatsServer

  beforeAll(async () => {
    server = await startNats({ user: 'bridge', pass: 's3cret' })
    const nc = await natsClient(server)
    await (await jetstreamManager(nc)).streams.add({ name: 'CULEX', subjects: ['culex.>'] })
    await nc.close()
  })

  afterAll(async () => {
    await server.dispose()
  })

  it('connects with user and password-env; a wrong password fails connect', async () => {
    process.env.NATS_TEST_PASSWORD = 's3cret'
    const good = await sinkFor(target(server, { 'user': 'bridge', 'password-env': 'NATS_TEST_PASSWORD' }))
    expect(statuses(await good.deliver([record(1)], never))).toEqual(['delivered'])
    await good.close()
    const bad = await natsDriver.createSink!(target(server, { user: 'bridge', password: 'wrong' }), { logger, bridge: BRIDGE })
    await expect(bad.connect(never)).rejects.toThrow(/Authorization/i)
    await bad.close()
  })

  it('hides the password when the target is serialised', () => {
    const t = target(server, { user: 'bridge', password: 's3cret' })
    expect(JSON.stringify(t)).not.toContain('s3cret')
    expect(t.password).toBe('s3cret')
  })
})

describe('nats sink with publish permissions', () => {
  let server: NatsServer

  beforeAll(async () => {
    const config = 'authorization { users = [ { user: bridge, password: s3cret, permissions: { publish: { deny: ["secret.>"] } } } ] }'
    server = await startNats({ user: 'bridge', pass: 's3cret' }, config)
    const nc = await natsClient(server)
    await (await jetstreamManager(nc)).streams.add({ name: 'ALL', subjects: ['secret.>', 'open.>'] })
    await nc.close()
  })

  afterAll(async () => {
    await server.dispose()
  })

  it('rejects a record whose subject the user may not publish to, and keeps the connection for the others', async () => {
    const sink = await sinkFor(target(server, { user: 'bridge', password: 's3cret', subject: '{key}.{topic.}' }))
    try {
      const outcomes = await sink.deliver([record(1, { key: 'open' }), record(2, { key: 'secret' }), record(3, { key: 'open' })], never)
      expect(statuses(outcomes)).toEqual(['delivered', 'rejected', 'delivered'])
      expect((outcomes[1] as { error: string }).error).toMatch(/Permissions Violation for Publish to "secret\.devices\.d2\.temp"/)
      expect(statuses(await sink.deliver([record(4, { key: 'open' })], never))).toEqual(['delivered'])
    } finally {
      await sink.close()
    }
  })
})
