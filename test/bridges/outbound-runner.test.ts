import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { OutboundBridgeConfig } from '../../src/bridges/config.js'
import { OutboundBridge } from '../../src/bridges/outbound.js'
import type { Outcome, Sink } from '../../src/bridges/types.js'
import { DLQ_HEADERS } from '../../src/log/shared/shared-groups.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { LogRecord } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from '../log/abstract-log.js'

// The outbound runner over a real RocksLog, with a scripted sink: the runner's own rules (stored
// progress, order under retries, dead letters, backoff, Retry-After, pause) without any target.
// The real targets are driven in the per-kind tests (nats-*, redis-*, amqp-*, webhook-*, mqtt-*).

const logger = pino({ level: 'silent' })
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A sink whose answers the test scripts; it records every record it was handed. */
class ScriptedSink implements Sink {
  readonly handed: LogRecord[] = []
  readonly delivered: string[] = []
  connects = 0
  failConnects = 0
  /** Decides per record; default: delivered. */
  answer: (r: LogRecord, attempt: number) => Outcome | 'throw' = () => ({ status: 'delivered' })
  readonly attempts = new Map<number, number>()
  readonly deliverTimes: number[] = []

  connect(): Promise<void> {
    this.connects++
    if (this.failConnects > 0) {
      this.failConnects--
      return Promise.reject(new Error('connection refused'))
    }
    return Promise.resolve()
  }

  deliver(records: readonly LogRecord[]): Promise<Outcome[]> {
    this.deliverTimes.push(Date.now())
    const out: Outcome[] = []
    for (const r of records) {
      // as a target on one connection: after a failure it takes nothing more of this batch
      const failed = out.find((o) => o.status === 'retry')
      if (failed) {
        out.push(failed)
        continue
      }
      this.handed.push(r)
      const n = (this.attempts.get(r.offset) ?? 0) + 1
      this.attempts.set(r.offset, n)
      const a = this.answer(r, n)
      if (a === 'throw') return Promise.reject(new Error('socket closed'))
      if (a.status === 'delivered') this.delivered.push(r.value.toString())
      out.push(a)
    }
    return Promise.resolve(out)
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}

function config(overrides: Partial<OutboundBridgeConfig> = {}): OutboundBridgeConfig {
  return {
    name: 'b',
    kind: 'test',
    direction: 'out',
    streams: ['s'],
    startAt: 'earliest',
    batchSize: 10,
    retry: { backoff: { initialMs: 20, maxMs: 100, multiplier: 2, jitter: 0 }, maxAttempts: 0 },
    deadLetter: null,
    target: {},
    ...overrides
  }
}

async function openLog(dir = tempDataDir('bridge-run'), partitions = 1): Promise<{ log: RocksLog; dir: string; close: () => Promise<void> }> {
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('s', partitions)], { retentionIntervalMs: 0 })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await log.close()
    await store.close()
  }
  cleanups.push(close)
  return { log, dir, close }
}

async function appendValues(log: RocksLog, values: string[], key: string | null = null): Promise<void> {
  await log.append(
    's',
    values.map((v) => ({ key, value: Buffer.from(v), headers: {}, topic: 't', qos: 1 as const, clientId: null })),
    0
  )
}

function bridge(log: RocksLog, sink: Sink, c = config()): OutboundBridge {
  const b = new OutboundBridge(c, sink, log, logger, () => 0.5)
  cleanups.push(() => b.stop())
  return b
}

async function until(test: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

const values = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `v${from + i}`)

describe('outbound bridge runner', () => {
  it('delivers every record in offset order, commits its progress, and a new runner goes on from it', async () => {
    const { log } = await openLog()
    await appendValues(log, values(25))
    const sink = new ScriptedSink()
    const b = bridge(log, sink)
    b.start()
    await until(() => sink.delivered.length === 25)
    expect(sink.delivered).toEqual(values(25))
    await until(async () => (await log.committed('bridge.b', 's', 0)) === 25)
    expect((await b.status()).lag).toBe(0)
    await b.stop()

    await appendValues(log, values(5, 25))
    const again = new ScriptedSink()
    bridge(log, again).start()
    await until(() => again.delivered.length === 5)
    // nothing before the stored progress is sent again
    expect(again.handed.map((r) => r.value.toString())).toEqual(values(5, 25))
  })

  it('a record that must be retried holds back the ones after it: none overtakes, none is lost', async () => {
    const { log } = await openLog()
    await appendValues(log, values(10), 'k')
    const sink = new ScriptedSink()
    sink.answer = (r, n) => (r.offset === 3 && n <= 3 ? { status: 'retry', error: 'target busy' } : { status: 'delivered' })
    const b = bridge(log, sink)
    b.start()
    // the sink has them before the runner commits and counts them
    await until(async () => (await b.status()).delivered === 10)
    expect(sink.delivered).toEqual(values(10))
    const s = await b.status()
    expect(s.retries).toBe(3)
    expect(s.state).toBe('running')
    expect(s.lastError).toBeNull()
    expect(s.delivered).toBe(10)
  })

  it('reports retrying with the last error while the target fails, and backs off between attempts', async () => {
    const { log } = await openLog()
    await appendValues(log, ['a'])
    const sink = new ScriptedSink()
    let failing = true
    sink.answer = () => (failing ? { status: 'retry', error: 'HTTP 503' } : { status: 'delivered' })
    const b = bridge(log, sink)
    b.start()
    await until(async () => (await b.status()).retries >= 3)
    const s = await b.status()
    expect(s.state).toBe('retrying')
    expect(s.lastError).toBe('HTTP 503')
    expect(s.lag).toBe(1)
    // 20, 40, 80 ms (jitter 0): each gap at least the backoff
    const gaps = sink.deliverTimes.slice(1, 4).map((t, i) => t - (sink.deliverTimes[i] ?? t))
    expect(gaps[0]).toBeGreaterThanOrEqual(18)
    expect(gaps[1]).toBeGreaterThanOrEqual(38)
    failing = false
    await until(async () => (await b.status()).state === 'running')
    expect(sink.delivered).toEqual(['a'])
  })

  it("waits the target's Retry-After when it is longer than the backoff", async () => {
    const { log } = await openLog()
    await appendValues(log, ['a'])
    const sink = new ScriptedSink()
    sink.answer = (_r, n) => (n === 1 ? { status: 'retry', error: 'HTTP 429', retryAfterMs: 400 } : { status: 'delivered' })
    bridge(log, sink).start()
    await until(() => sink.delivered.length === 1)
    expect((sink.deliverTimes[1] ?? 0) - (sink.deliverTimes[0] ?? 0)).toBeGreaterThanOrEqual(390)
  })

  it('a record the target refuses goes to <stream>.dlq with its history and the response headers; the rest are delivered', async () => {
    const { log } = await openLog()
    await appendValues(log, values(5), 'k')
    const sink = new ScriptedSink()
    sink.answer = (r) =>
      r.offset === 2 ? { status: 'rejected', error: 'HTTP 400: bad payload', headers: { 'culex-webhook-status': '400' } } : { status: 'delivered' }
    const b = bridge(log, sink)
    b.start()
    await until(async () => (await b.status()).delivered === 4)
    const [dead] = await log.read('s.dlq', 0, 0, { limit: 10 })
    expect(dead?.value.toString()).toBe('v2')
    expect(dead?.key).toBe('k')
    expect(dead?.headers[DLQ_HEADERS.offset]).toBe('2')
    expect(dead?.headers[DLQ_HEADERS.group]).toBe('bridge.b')
    expect(dead?.headers[DLQ_HEADERS.reason]).toBe('rejected')
    expect(dead?.headers[DLQ_HEADERS.error]).toBe('HTTP 400: bad payload')
    expect(dead?.headers['culex-webhook-status']).toBe('400')
    const s = await b.status()
    expect(s.deadLettered).toBe(1)
    expect(s.delivered).toBe(4)
    expect(s.lag).toBe(0)
  })

  it('with max-attempts, a record that keeps failing is dead-lettered after that many attempts and the partition goes on', async () => {
    const { log } = await openLog()
    await appendValues(log, values(3))
    const sink = new ScriptedSink()
    sink.answer = (r) => (r.offset === 1 ? { status: 'retry', error: 'HTTP 500' } : { status: 'delivered' })
    bridge(log, sink, config({ retry: { backoff: { initialMs: 5, maxMs: 5, multiplier: 1, jitter: 0 }, maxAttempts: 4 } })).start()
    await until(() => sink.delivered.length === 2)
    expect(sink.attempts.get(1)).toBe(4)
    const [dead] = await log.read('s.dlq', 0, 0, { limit: 10 })
    expect(dead?.headers[DLQ_HEADERS.reason]).toBe('max-deliveries')
    expect(dead?.headers[DLQ_HEADERS.deliveries]).toBe('4')
  })

  it('connects again after a deliver threw, and keeps retrying a target that refuses connections', async () => {
    const { log } = await openLog()
    await appendValues(log, values(3))
    const sink = new ScriptedSink()
    sink.failConnects = 2
    sink.answer = (r, n) => (r.offset === 1 && n === 1 ? 'throw' : { status: 'delivered' })
    const b = bridge(log, sink)
    b.start()
    await until(() => sink.delivered.length === 4)
    // two refused + the first good one, then one more after the throw
    expect(sink.connects).toBe(4)
    // v0 reached the target before the connection broke, without an answer: sent again (at least once)
    expect(sink.delivered).toEqual(['v0', 'v0', 'v1', 'v2'])
    expect((await b.status()).retries).toBe(3)
  })

  it('pause stops deliveries (lag grows), resume goes on from the stored progress', async () => {
    const { log } = await openLog()
    await appendValues(log, values(3))
    const sink = new ScriptedSink()
    const b = bridge(log, sink)
    b.start()
    await until(() => sink.delivered.length === 3)
    await b.pause()
    expect((await b.status()).state).toBe('paused')
    await appendValues(log, values(4, 3))
    await new Promise((r) => setTimeout(r, 100))
    expect(sink.delivered.length).toBe(3)
    expect((await b.status()).lag).toBe(4)
    b.resume()
    await until(() => sink.delivered.length === 7)
    expect(sink.delivered).toEqual(values(7))
  })

  it("start-at latest skips what was there before the bridge's first start, and remembers where it started", async () => {
    const { log } = await openLog()
    await appendValues(log, values(5))
    const sink = new ScriptedSink()
    const b = bridge(log, sink, config({ startAt: 'latest' }))
    b.start()
    await until(async () => (await log.committed('bridge.b', 's', 0)) === 5)
    await b.stop()
    await appendValues(log, values(2, 5))
    const again = new ScriptedSink()
    bridge(log, again, config({ startAt: 'latest' })).start()
    await until(() => again.delivered.length === 2)
    expect(again.delivered).toEqual(['v5', 'v6'])
  })

  it('partitions go on independently: a stuck partition does not hold back another', async () => {
    const { log } = await openLog(tempDataDir('bridge-run'), 2)
    await log.append('s', [{ key: null, value: Buffer.from('p0'), headers: {}, topic: null, qos: 1, clientId: null }], 0)
    await log.append('s', [{ key: null, value: Buffer.from('p1'), headers: {}, topic: null, qos: 1, clientId: null }], 1)
    const sink = new ScriptedSink()
    sink.answer = (r) => (r.partition === 0 ? { status: 'retry', error: 'stuck' } : { status: 'delivered' })
    bridge(log, sink).start()
    await until(() => sink.delivered.length === 1)
    expect(sink.delivered).toEqual(['p1'])
  })
})
