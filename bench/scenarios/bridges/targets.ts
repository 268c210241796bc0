// The five bridge targets of the `bridges` scenario, each a real server started by the bridge
// tests' own starters (test/helpers/servers/): how the bridge reaches it (its `target:` config),
// the target's own client writing the same records the way a bridge does (the ceiling), what the
// target stored (to find losses and duplicates after an outage), and kill -9 / start again.
// Every name a phase uses lives under a namespace `ns` (a JetStream subject prefix and stream, a
// Redis key, an AMQP routing key prefix and queue, an MQTT topic prefix).
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream'
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node'
import { connect as amqpConnect, type ChannelModel, type ConfirmChannel } from 'amqplib'
import type { ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import mqtt, { type MqttClient } from 'mqtt'
import type { LogRecord } from '../../../src/log/types.js'
import { startMosquitto, MOSQUITTO } from '../../../test/helpers/servers/mosquitto.js'
import { natsClient, NATS_SERVER, startNats } from '../../../test/helpers/servers/nats.js'
import { freePort, tempDir } from '../../../test/helpers/servers/process.js'
import { startRabbitMQ } from '../../../test/helpers/servers/rabbitmq.js'
import { REDIS_SERVER, startRedis } from '../../../test/helpers/servers/redis.js'
import { isAlive, nowMs, sleep, spawnTracked, waitForPort } from '../../lib/procs.js'

export const KINDS = ['nats', 'redis', 'amqp', 'webhook', 'mqtt'] as const
export type Kind = (typeof KINDS)[number]

/** The server binaries (the paths the test starters run); node test/provision.mjs --bench installs them. */
export const BINARIES: Record<Kind, { path: string; pkg: string } | null> = {
  nats: { path: NATS_SERVER, pkg: 'nats-server' },
  redis: { path: REDIS_SERVER, pkg: 'redis-server' },
  amqp: { path: '/usr/lib/rabbitmq/bin/rabbitmq-server', pkg: 'rabbitmq-server' },
  webhook: null,
  mqtt: { path: MOSQUITTO, pkg: 'mosquitto' }
}

/** The receiver child (webhook target, MQTT subscriber). */
const RECEIVER_JS = join(import.meta.dirname, 'receiver.js')

/** The target's own client: `write` resolves once the target acknowledged every record (durably, as configured). */
export interface DirectWriter {
  /** One lane per partition, as the bridge runner has one batch in flight per partition. */
  write(lane: number, records: readonly LogRecord[]): Promise<void>
  close(): Promise<void>
}

export interface Stored {
  /** Messages the target holds (or received, for a webhook receiver or an MQTT subscriber). */
  count: number
  /** Distinct record ids among them. */
  distinct: number
}

export interface Target {
  kind: Kind
  /** What an acknowledgement means here (written to the notes). */
  acks: string
  /** The server's pid now (CPU readings); it changes at a restart. */
  pid(): number
  /** The bridge's raw `target:` mapping (parsed by the driver) for namespace `ns`. */
  targetConfig(ns: string, window: number): Record<string, unknown>
  /** Creates what `ns` needs before anything is written (JetStream stream, queue and binding). */
  prepare(ns: string): Promise<void>
  direct(ns: string, lanes: number, window: number): Promise<DirectWriter>
  /** Starts counting what arrives in `ns` (where counting needs a live consumer: the MQTT subscriber). */
  watch(ns: string): Promise<void>
  /** What `ns` holds; reads until `expected` ids were seen or the target has no more. */
  stored(ns: string, expected: number, deadline: number): Promise<Stored>
  /** Frees what `ns` holds (memory, disk) for the next phases. */
  drop(ns: string): Promise<void>
  kill9(): Promise<void>
  start(): Promise<void>
  dispose(): Promise<void>
}

const id = (r: LogRecord): string => `${r.stream}/${r.partition}/${r.offset}`
const dotted = (topic: string | null): string => (topic ?? 'none').replaceAll('/', '.')

function countIds(ids: Iterable<string>): Stored {
  let count = 0
  const seen = new Set<string>()
  for (const i of ids) {
    count++
    seen.add(i)
  }
  return { count, distinct: seen.size }
}

// --- NATS JetStream: a file-backed stream per namespace; publishes with Nats-Msg-Id and headers, as the sink does

async function natsTarget(): Promise<Target> {
  const server = await startNats()
  let nc: NatsConnection | null = null
  const conn = async (): Promise<NatsConnection> => {
    if (nc === null || nc.isClosed()) nc = await natsClient(server)
    return nc
  }
  const streamName = (ns: string): string => `BENCH_${ns}`
  return {
    kind: 'nats',
    acks: 'JetStream PubAck: stored in the file store (written, not fsynced: nats-server syncs every 2 min by default)',
    pid: () => server.child?.pid ?? 0,
    targetConfig: (ns) => ({ servers: server.url, subject: `${ns}.{topic.}`, stream: streamName(ns) }),
    async prepare(ns) {
      const jsm = await jetstreamManager(await conn())
      await jsm.streams.add({ name: streamName(ns), subjects: [`${ns}.>`] })
    },
    async direct(ns) {
      const client = await natsClient(server)
      const js: JetStreamClient = jetstream(client, { timeout: 5000 })
      const publish = (r: LogRecord): Promise<unknown> => {
        const h = natsHeaders()
        h.set('Culex-Stream', r.stream)
        h.set('Culex-Partition', String(r.partition))
        h.set('Culex-Offset', String(r.offset))
        h.set('Culex-Timestamp', String(r.timestamp))
        if (r.key !== null) h.set('Culex-Key', r.key)
        if (r.topic !== null) h.set('Culex-Topic', r.topic)
        if (r.clientId !== null) h.set('Culex-Client-Id', r.clientId)
        return js.publish(`${ns}.${dotted(r.topic)}`, r.value, { msgID: `direct/${id(r)}`, headers: h, timeout: 5000 })
      }
      return {
        // pipelined: every publish of the batch on the wire, then the PubAcks
        write: async (_lane, records) => void (await Promise.all(records.map(publish))),
        close: () => client.close()
      }
    },
    watch: async () => undefined,
    async stored(ns, _expected, deadline) {
      const c = await conn()
      const info = await (await jetstreamManager(c)).streams.info(streamName(ns))
      const total = info.state.messages
      const consumer = await jetstream(c).consumers.get(streamName(ns))
      const ids: string[] = []
      while (ids.length < total && nowMs() < deadline) {
        const batch = await consumer.fetch({ max_messages: Math.min(1000, total - ids.length), expires: 1000 })
        let got = 0
        for await (const m of batch) {
          got++
          ids.push(`${m.headers?.get('Culex-Stream') ?? ''}/${m.headers?.get('Culex-Partition') ?? ''}/${m.headers?.get('Culex-Offset') ?? ''}`)
        }
        if (got === 0) break
      }
      return { count: total, distinct: countIds(ids).distinct }
    },
    async drop(ns) {
      const jsm = await jetstreamManager(await conn())
      await jsm.streams.delete(streamName(ns)).catch(() => undefined)
    },
    kill9: async () => {
      await nc?.close().catch(() => undefined)
      nc = null
      await server.kill9()
    },
    start: () => server.start(),
    async dispose() {
      await nc?.close().catch(() => undefined)
      await server.dispose()
    }
  }
}

// --- Redis Streams: XADD to one stream key per namespace; redis-server with appendfsync always

/** The sink's XADD fields (src/bridges/redis/sink.ts), so the direct writes cost Redis the same. */
function xadd(key: string, r: LogRecord): (string | Buffer)[] {
  const args: (string | Buffer)[] = [key, '*', 'value', r.value]
  if (r.key !== null) args.push('key', r.key)
  if (r.topic !== null) args.push('topic', r.topic)
  args.push('stream', r.stream, 'partition', String(r.partition), 'offset', String(r.offset), 'timestamp', String(r.timestamp))
  return args
}

async function redisTarget(): Promise<Target> {
  // no AOF rewrite in the background (a fork and a rewrite in the middle of one phase but not the other)
  const server = await startRedis(['--auto-aof-rewrite-percentage', '0'])
  const client = (): Redis => new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: false, maxRetriesPerRequest: 1 })
  let reader: Redis | null = null
  const read = (): Redis => (reader ??= client())
  // one stream key per namespace, the same for the sink (a template without placeholders) and the direct client
  const key = (ns: string): string => `${ns}:records`
  return {
    kind: 'redis',
    acks: 'the XADD (EXEC) reply: with appendfsync always, Redis writes and fsyncs the AOF before it replies',
    pid: () => server.child?.pid ?? 0,
    targetConfig: (ns) => ({ host: '127.0.0.1', port: server.port, key: key(ns) }),
    prepare: async () => undefined,
    async direct(ns) {
      const c = client()
      return {
        async write(_lane, records) {
          const pipeline = c.pipeline()
          for (const r of records) pipeline.call('XADD', ...xadd(key(ns), r))
          const results = (await pipeline.exec()) ?? []
          const failed = results.find(([err]) => err)
          if (failed?.[0]) throw failed[0]
        },
        close: async () => void (await c.quit())
      }
    },
    watch: async () => undefined,
    async stored(ns, _expected, deadline) {
      const r = read()
      const ids: string[] = []
      let start = '-'
      while (nowMs() < deadline) {
        const page = (await r.xrange(key(ns), start, '+', 'COUNT', 5000)) as Array<[string, string[]]>
        for (const [, fields] of page) {
          const f = new Map<string, string>()
          for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i] ?? '', fields[i + 1] ?? '')
          ids.push(`${f.get('stream')}/${f.get('partition')}/${f.get('offset')}`)
        }
        const last = page[page.length - 1]
        if (!last || page.length < 5000) break
        start = `(${last[0]}`
      }
      return countIds(ids)
    },
    async drop(ns) {
      const r = read()
      await r.del(key(ns))
      // rewrite the AOF (automatic rewrites are off): a restart after kill -9 replays only what is left
      await r.bgrewriteaof().catch(() => undefined)
      for (let i = 0; i < 300 && /aof_rewrite_in_progress:1|aof_rewrite_scheduled:1/.test(await r.info('persistence')); i++) await sleep(100)
    },
    kill9: async () => {
      reader?.disconnect()
      reader = null
      await server.kill9()
    },
    start: () => server.start(),
    async dispose() {
      reader?.disconnect()
      await server.dispose()
    }
  }
}

// --- RabbitMQ: a durable topic exchange; a durable classic queue per namespace bound to `<ns>.#`

const EXCHANGE = 'culex-bench'

async function amqpTarget(): Promise<Target> {
  const rabbit = await startRabbitMQ()
  // noDelay as the sink's connection has it (amqplib's default is false: Nagle would hold back small publishes)
  const open = (): Promise<ChannelModel> => amqpConnect(rabbit.url, { noDelay: true })
  const queue = (ns: string): string => `bench-${ns}`
  const admin = async <T>(f: (ch: ConfirmChannel) => Promise<T>): Promise<T> => {
    const conn = await open()
    try {
      return await f(await conn.createConfirmChannel())
    } finally {
      await conn.close().catch(() => undefined)
    }
  }
  return {
    kind: 'amqp',
    acks: 'publisher confirm of a persistent message routed to a durable classic queue: RabbitMQ confirms once the queue has written it to disk (fsync)',
    pid: () => {
      try {
        return rabbit.pid()
      } catch {
        return 0
      }
    },
    targetConfig: (ns) => ({ 'host': '127.0.0.1', 'port': rabbit.port, 'exchange': EXCHANGE, 'exchange-type': 'topic', 'routing-key': `${ns}.{topic.}` }),
    prepare: (ns) =>
      admin(async (ch) => {
        await ch.assertExchange(EXCHANGE, 'topic', { durable: true })
        await ch.assertQueue(queue(ns), { durable: true })
        await ch.bindQueue(queue(ns), EXCHANGE, `${ns}.#`)
      }),
    async direct(ns, lanes) {
      const conn = await open()
      // one confirm channel per lane: waitForConfirms waits for everything on its channel
      const channels = await Promise.all(Array.from({ length: lanes }, () => conn.createConfirmChannel()))
      return {
        async write(lane, records) {
          const ch = channels[lane] ?? channels[0]
          if (!ch) throw new Error('no channel')
          for (const r of records) {
            const headers: Record<string, string> = { 'culex-stream': r.stream, 'culex-partition': String(r.partition), 'culex-offset': String(r.offset) }
            if (r.key !== null) headers['culex-key'] = r.key
            if (r.topic !== null) headers['culex-topic'] = r.topic
            const options = { persistent: true, mandatory: true, messageId: id(r), timestamp: Math.floor(r.timestamp / 1000), appId: 'culex-bench', headers }
            if (!ch.publish(EXCHANGE, `${ns}.${dotted(r.topic)}`, r.value, options)) await new Promise((res) => ch.once('drain', res))
          }
          await ch.waitForConfirms()
        },
        close: () => conn.close()
      }
    },
    watch: async () => undefined,
    async stored(ns, expected, deadline) {
      const conn = await open()
      try {
        const ch = await conn.createChannel()
        const { messageCount } = await ch.checkQueue(queue(ns))
        await ch.prefetch(2000)
        const ids: string[] = []
        let last = nowMs()
        await ch.consume(
          queue(ns),
          (m) => {
            if (!m) return
            last = nowMs()
            const h = m.properties.headers ?? {}
            ids.push(`${String(h['culex-stream'])}/${String(h['culex-partition'])}/${String(h['culex-offset'])}`)
          },
          { noAck: true }
        )
        while (ids.length < Math.max(messageCount, expected) && nowMs() < deadline && nowMs() - last < 2000) await sleep(20)
        return { count: Math.max(messageCount, ids.length), distinct: countIds(ids).distinct }
      } finally {
        await conn.close().catch(() => undefined)
      }
    },
    drop: (ns) => admin(async (ch) => void (await ch.deleteQueue(queue(ns)))),
    kill9: () => rabbit.kill9(),
    start: () => rabbit.start(),
    dispose: () => rabbit.dispose()
  }
}

// --- webhook: the receiver child (receiver.ts), which appends every record id to a file before its 200

/** The sink's JSON for one record (src/bridges/webhook/sink.ts encodeRecord), for the direct POSTs. */
function webhookJson(r: LogRecord): string {
  return JSON.stringify({
    id: id(r),
    stream: r.stream,
    partition: r.partition,
    offset: r.offset,
    timestamp: new Date(r.timestamp).toISOString(),
    key: r.key,
    topic: r.topic,
    headers: r.headers,
    clientId: r.clientId,
    encoding: 'utf-8',
    value: r.value.toString('utf8')
  })
}

async function webhookTarget(): Promise<Target> {
  const dir = tempDir('bench-webhook')
  const port = await freePort()
  const file = (): string => join(dir, 'ids')
  let child: ChildProcess | null = null
  const start = async (): Promise<void> => {
    const c = spawnTracked(process.execPath, [RECEIVER_JS, 'webhook', String(port), file()], { stdio: ['ignore', 'inherit', 'inherit'] })
    child = c
    await waitForPort(port, c, 10_000, () => 'webhook receiver')
  }
  const kill9 = async (): Promise<void> => {
    const c = child
    child = null
    if (!c || !isAlive(c)) return
    const gone = new Promise<void>((res) => c.once('exit', () => res()))
    c.kill('SIGKILL')
    await gone
  }
  await start()
  const url = (ns: string): string => `http://127.0.0.1:${port}/${ns}`
  // one file for all namespaces: "<ns> <id>" lines (the URL path is the namespace)
  const ids = (ns: string): string[] =>
    existsSync(file())
      ? readFileSync(file(), 'utf8')
          .split('\n')
          .filter((l) => l.startsWith(`${ns} `))
          .map((l) => l.slice(ns.length + 1))
      : []
  return {
    kind: 'webhook',
    acks: "HTTP 200 from a Node receiver (another process) that parsed the JSON body and wrote the records' ids to a file (write(2), no fsync)",
    pid: () => child?.pid ?? 0,
    targetConfig: (ns) => ({ url: url(ns) }),
    prepare: async () => undefined,
    async direct(ns) {
      return {
        async write(lane, records) {
          const first = records[0]
          const last = records[records.length - 1]
          if (!first || !last) return
          const res = await fetch(url(ns), {
            method: 'POST',
            body: `{"records":[${records.map(webhookJson).join(',')}]}`,
            headers: { 'content-type': 'application/json', 'idempotency-key': `${first.stream}/${first.partition}/${first.offset}-${last.offset}` }
          })
          await res.arrayBuffer()
          if (!res.ok) throw new Error(`webhook receiver answered ${res.status} (lane ${lane})`)
        },
        close: async () => undefined
      }
    },
    watch: async () => undefined,
    stored: async (ns) => countIds(ids(ns)),
    drop: async () => undefined,
    kill9,
    start,
    async dispose() {
      await kill9()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

// --- MQTT: mosquitto (the test starter's config: persistence with autosave every second); QoS 1

async function mqttTarget(): Promise<Target> {
  // TCP_NODELAY on mosquitto's sockets (its default is off): else its small PUBACKs wait for the
  // client's delayed ACK, about 40 ms, and a client awaiting 10 at a time makes some 850 a second
  const broker = await startMosquitto({ extra: ['set_tcp_nodelay true'] })
  const dir = tempDir('bench-mqtt')
  const subscribers = new Map<string, ChildProcess>()
  const file = (ns: string): string => join(dir, `ids-${ns}`)
  const flushAll = async (): Promise<void> => {
    await Promise.all(
      [...subscribers.values()].filter(isAlive).map(
        (s) =>
          new Promise<void>((res) => {
            const timer = setTimeout(res, 2000)
            s.once('message', () => {
              clearTimeout(timer)
              res()
            })
            s.send({ type: 'flush' })
          })
      )
    )
  }
  return {
    kind: 'mqtt',
    acks: 'PUBACK (QoS 1) from mosquitto (set_tcp_nodelay true), which keeps messages in memory and saves them every second (autosave_interval 1): not durable across its kill -9',
    pid: () => broker.process.child?.pid ?? 0,
    targetConfig: (ns, window) => ({ 'url': broker.url, 'topic': `${ns}/{topic}`, 'qos': 1, 'max-inflight': window }),
    prepare: async () => undefined,
    async direct(ns, _lanes, window) {
      const client: MqttClient = await mqtt.connectAsync(broker.url, { clientId: `bench-direct-${ns}`, protocolVersion: 5, clean: true, reconnectPeriod: 0 })
      // MQTT.js leaves Nagle on; the ceiling is the client at its best
      ;(client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true)
      // the sink's window (max-inflight), shared by the lanes as the sink's is by the partitions
      let inFlight = 0
      const waiting: Array<() => void> = []
      const publish = async (r: LogRecord): Promise<void> => {
        while (inFlight >= window) await new Promise<void>((res) => waiting.push(res))
        inFlight++
        const userProperties: Record<string, string> = { 'culex-stream': r.stream, 'culex-partition': String(r.partition), 'culex-offset': String(r.offset) }
        if (r.key !== null) userProperties['culex-key'] = r.key
        try {
          await new Promise<void>((res, rej) =>
            client.publish(`${ns}/${r.topic ?? 'none'}`, r.value, { qos: 1, properties: { userProperties } }, (err) => (err ? rej(err) : res()))
          )
        } finally {
          inFlight--
          waiting.shift()?.()
        }
      }
      return {
        write: async (_lane, records) => void (await Promise.all(records.map(publish))),
        close: () => client.endAsync()
      }
    },
    async watch(ns) {
      const s = spawnTracked(process.execPath, [RECEIVER_JS, 'mqtt', broker.url, `${ns}/#`, file(ns), `bench-sub-${ns}`], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc']
      })
      subscribers.set(ns, s)
      await new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error('the MQTT subscriber did not subscribe in 10 s')), 10_000)
        s.once('message', () => {
          clearTimeout(timer)
          res()
        })
        s.once('exit', (code) => rej(new Error(`the MQTT subscriber exited (${code})`)))
      })
    },
    async stored(ns, expected, deadline) {
      // what mosquitto still has for the subscriber arrives after the bridge is done: wait for it
      let seen = { count: 0, distinct: 0 }
      let changed = nowMs()
      while (nowMs() < deadline) {
        await flushAll()
        const now = countIds(existsSync(file(ns)) ? readFileSync(file(ns), 'utf8').split('\n').filter(Boolean) : [])
        if (now.count !== seen.count) changed = nowMs()
        seen = now
        if (seen.distinct >= expected || nowMs() - changed > 3000) break
        await sleep(200)
      }
      return seen
    },
    drop: async (ns) => {
      const s = subscribers.get(ns)
      subscribers.delete(ns)
      if (s && isAlive(s)) s.kill('SIGKILL')
    },
    kill9: () => broker.kill9(),
    start: () => broker.start(),
    async dispose() {
      for (const s of subscribers.values()) if (isAlive(s)) s.kill('SIGKILL')
      await broker.dispose()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

export const START: Record<Kind, () => Promise<Target>> = {
  nats: natsTarget,
  redis: redisTarget,
  amqp: amqpTarget,
  webhook: webhookTarget,
  mqtt: mqttTarget
}
