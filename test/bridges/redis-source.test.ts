import type { Redis } from 'ioredis'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SectionContext } from '../../src/config/values.js'
import { parseRedisSource, type RedisSourceOptions } from '../../src/bridges/redis/config.js'
import { redisDriver } from '../../src/bridges/redis/index.js'
import { InboundRefused, type InboundMessage, type Source, type SourceContext } from '../../src/bridges/types.js'
import type { ServerProcess } from '../helpers/servers/process.js'
import { redisClient, startRedis } from '../helpers/servers/redis.js'

// The redis source against a real redis-server: a consumer group read with XREADGROUP, XACK only
// after ctx.publish resolved, its own pending entries read again on the next run, refusals
// dropped or moved to a dead-letter key, idle entries of a dead consumer claimed.

const ctx = new SectionContext('test')
const logger = pino({ level: 'silent' })
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

type Publish = (m: InboundMessage) => Promise<void>

interface Running {
  done: Promise<void>
  stop: () => Promise<void>
  connected: Promise<void>
  published: InboundMessage[]
}

function run(source: Source, publish: Publish = () => Promise.resolve()): Running {
  const abort = new AbortController()
  const published: InboundMessage[] = []
  let onConnected = (): void => undefined
  const connected = new Promise<void>((res) => (onConnected = res))
  const context: SourceContext = {
    publish: async (m) => {
      await publish(m)
      published.push(m)
    },
    signal: abort.signal,
    logger,
    connected: () => onConnected()
  }
  const done = source.run(context)
  done.catch(() => undefined)
  return {
    done,
    connected,
    published,
    stop: async () => {
      abort.abort()
      await done
    }
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

describe('redis source', () => {
  let server: ServerProcess
  let client: Redis
  let n = 0

  beforeAll(async () => {
    server = await startRedis()
    client = await redisClient(server.port)
  })

  afterAll(async () => {
    client.disconnect()
    await server.dispose()
  })

  /** A fresh stream key per test, and a source reading it. */
  async function fresh(extra: Record<string, unknown> = {}): Promise<{ key: string; options: RedisSourceOptions; source: Source }> {
    const key = `in:${++n}`
    const options = parseRedisSource({ 'port': server.port, key, 'block': '200ms', 'command-timeout': '1s', ...extra }, ctx, 'source')
    const source = await redisDriver.createSource!(options, { logger, bridge: 'redis-in' })
    return { key, options, source }
  }

  async function pendingCount(key: string, group = 'culex'): Promise<number> {
    const [count] = (await client.call('XPENDING', key, group)) as [number]
    return count
  }

  it('publishes each new entry with its topic, payload, qos and retain, in order, and acks it', { timeout: 15_000 }, async () => {
    const { key, source } = await fresh({ qos: 2, retain: true })
    const r = run(source)
    await r.connected
    for (let i = 0; i < 50; i++) await client.xadd(key, '*', 'topic', `devices/d${i % 3}/cmd`, 'value', `p${i}`)
    await client.call('XADD', key, '*', 'topic', 'bin', 'value', Buffer.from([0, 1, 255]))
    await until('51 published', () => r.published.length === 51)
    expect(r.published.slice(0, 50).map((m) => [m.topic, m.payload.toString()])).toEqual(
      Array.from({ length: 50 }, (_, i) => [`devices/d${i % 3}/cmd`, `p${i}`])
    )
    expect(r.published[50]).toEqual({ topic: 'bin', payload: Buffer.from([0, 1, 255]), qos: 2, retain: true })
    await until('all acked', async () => (await pendingCount(key)) === 0)
    await r.stop()
  })

  it('start-id 0 reads what the stream held before the group existed; $ only what comes after', { timeout: 15_000 }, async () => {
    const a = await fresh({ 'start-id': 0 })
    const b = await fresh()
    await client.xadd(a.key, '*', 'topic', 't', 'value', 'old')
    await client.xadd(b.key, '*', 'topic', 't', 'value', 'old')
    const ra = run(a.source)
    const rb = run(b.source)
    await Promise.all([ra.connected, rb.connected])
    await client.xadd(b.key, '*', 'topic', 't', 'value', 'new')
    await until('both read', () => ra.published.length === 1 && rb.published.length === 1)
    expect(ra.published[0]!.payload.toString()).toBe('old')
    expect(rb.published[0]!.payload.toString()).toBe('new')
    await Promise.all([ra.stop(), rb.stop()])
  })

  it('maps the topic from a template with {key} and {field:<name>} and the payload from value-field', { timeout: 10_000 }, async () => {
    const { key, source } = await fresh({ 'topic': 'from/{key}/{field:device}/cmd', 'value-field': 'body' })
    const r = run(source)
    await r.connected
    await client.xadd(key, '*', 'device', 'd7', 'body', 'on')
    await until('published', () => r.published.length === 1)
    expect(r.published[0]).toMatchObject({ topic: `from/${key}/d7/cmd`, payload: Buffer.from('on'), qos: 1, retain: false })
    await r.stop()
  })

  it('acks only after publish resolved: an entry whose publish never resolves comes again after a restart', { timeout: 15_000 }, async () => {
    const { key, source } = await fresh()
    let reached = 0
    const hang = run(source, () => {
      reached++
      return new Promise(() => undefined)
    })
    await hang.connected
    await client.xadd(key, '*', 'topic', 't', 'value', 'once')
    await until('publish called', () => reached === 1)
    await sleep(300)
    expect(await pendingCount(key)).toBe(1)
    // stopping while publish hangs resolves run and acks nothing
    await hang.stop()
    expect(await pendingCount(key)).toBe(1)

    const again = run(source)
    await again.connected
    await until('redelivered', () => again.published.length === 1)
    expect(again.published[0]!.payload.toString()).toBe('once')
    await until('acked', async () => (await pendingCount(key)) === 0)
    await again.stop()
  })

  it('a publish that rejects (not InboundRefused) fails run without the ack; the next run redelivers', { timeout: 15_000 }, async () => {
    const { key, source } = await fresh()
    const failing = run(source, () => Promise.reject(new Error('Culex is stopping')))
    await failing.connected
    await client.xadd(key, '*', 'topic', 't', 'value', 'x')
    await expect(failing.done).rejects.toThrow('Culex is stopping')
    expect(await pendingCount(key)).toBe(1)
    const again = run(source)
    await until('redelivered', () => again.published.length === 1)
    await until('acked', async () => (await pendingCount(key)) === 0)
    await again.stop()
  })

  it('InboundRefused and unmappable entries are acked and dropped without a dead-letter key', { timeout: 10_000 }, async () => {
    const { key, source } = await fresh()
    const r = run(source, (m) => (m.topic === 'bad' ? Promise.reject(new InboundRefused('refused by a hook')) : Promise.resolve()))
    await r.connected
    await client.xadd(key, '*', 'topic', 'bad', 'value', 'x')
    await client.xadd(key, '*', 'value', 'no topic field')
    await client.xadd(key, '*', 'topic', 'a/+/b', 'value', 'wildcard')
    await client.xadd(key, '*', 'topic', 'ok', 'value', 'y')
    await until('ok published', () => r.published.length === 1)
    expect(r.published[0]!.topic).toBe('ok')
    await until('all acked', async () => (await pendingCount(key)) === 0)
    await r.stop()
  })

  it('with dead-letter-key, a refused entry is moved there (its fields and why) and acked', { timeout: 10_000 }, async () => {
    const { key, source } = await fresh({ 'dead-letter-key': 'in:dlq' })
    const r = run(source, () => Promise.reject(new InboundRefused('refused by a hook')))
    await r.connected
    const id = await client.xadd(key, '*', 'topic', 't', 'value', 'x')
    await until('dead-lettered', async () => (await client.xlen('in:dlq')) === 1)
    const [[, flat]] = (await client.xrange('in:dlq', '-', '+')) as [[string, string[]]]
    const fields = Object.fromEntries(flat.flatMap((_, i) => (i % 2 === 0 ? [[flat[i], flat[i + 1]]] : [])) as [string, string][])
    expect(fields).toEqual({
      'topic': 't',
      'value': 'x',
      'culex-dlq-error': 'refused by a hook',
      'culex-dlq-key': key,
      'culex-dlq-id': id,
      'culex-dlq-group': 'culex'
    })
    await until('acked', async () => (await pendingCount(key)) === 0)
    await r.stop()
  })

  it('claim-idle takes over the entries a dead consumer left pending', { timeout: 10_000 }, async () => {
    const { key, source } = await fresh({ 'claim-idle': '300ms' })
    await client.call('XGROUP', 'CREATE', key, 'culex', '$', 'MKSTREAM')
    await client.xadd(key, '*', 'topic', 't', 'value', 'orphan')
    // another consumer reads it and dies without XACK
    await client.call('XREADGROUP', 'GROUP', 'culex', 'dead-node', 'COUNT', '10', 'STREAMS', key, '>')
    const r = run(source)
    await until('claimed and published', () => r.published.length === 1, 5000)
    expect(r.published[0]!.payload.toString()).toBe('orphan')
    await until('acked', async () => (await pendingCount(key)) === 0)
    await r.stop()
  })

  it('a database the server does not have fails run', async () => {
    const { source } = await fresh({ db: 99 })
    await expect(run(source).done).rejects.toThrow(/DB index is out of range/)
  })

  it('stopping resolves run promptly while XREADGROUP blocks', { timeout: 10_000 }, async () => {
    const { source } = await fresh({ block: '30s' })
    const r = run(source)
    await r.connected
    await sleep(100)
    const started = Date.now()
    await r.stop()
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('the server killed with -9 rejects run in bounded time; after a restart a new run reads on', { timeout: 30_000 }, async () => {
    const { key, source } = await fresh()
    const r = run(source)
    await r.connected
    await client.xadd(key, '*', 'topic', 't', 'value', 'before')
    await until('before published', () => r.published.length === 1)
    const killed = Date.now()
    await server.kill9()
    await expect(r.done).rejects.toThrow()
    expect(Date.now() - killed).toBeLessThan(3000)
    // while down, run rejects at once instead of hanging
    const down = run(source)
    await expect(down.done).rejects.toThrow()
    await server.start()
    await until('client back', () => client.status === 'ready', 10_000)
    await client.xadd(key, '*', 'topic', 't', 'value', 'after')
    const again = run(source)
    // generous: under a loaded machine (the whole suite runs in parallel) a fresh connect and XGROUP take a while
    await until('after published', () => again.published.some((m) => m.payload.toString() === 'after'), 15_000)
    // 'before' comes again when the kill beat its XACK (at least once), and then first
    expect(again.published.map((m) => m.payload.toString())).toEqual(again.published.length === 1 ? ['after'] : ['before', 'after'])
    await again.stop()
  })
})
