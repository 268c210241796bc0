import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { LogAppender, isReplay, markReplay } from '../../src/broker/log-appender.js'
import { Router } from '../../src/broker/router.js'
import type { RouteConfig } from '../../src/config.js'
import { RocksLog } from '../../src/log/rocks-log.js'
import type { LogRecord } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from '../log/abstract-log.js'

const routes: RouteConfig[] = [
  { filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'topic-level', level: 2 } },
  { filter: '#', stream: 'audit', key: { kind: 'client-id' } }
]

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A real RocksLog with the streams of `routes` (and the appender on it). */
async function setup(r: RouteConfig[] = routes): Promise<{ log: RocksLog; appender: LogAppender }> {
  const store = await Store.open({ dataDir: tempDataDir('appender'), durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('telemetry', 2), stream('audit', 1)], { retentionIntervalMs: 0 })
  cleanups.push(() => store.close(), () => log.close())
  return { log, appender: new LogAppender(new Router(r), log, pino({ level: 'silent' })) }
}

async function all(log: RocksLog, name: string): Promise<LogRecord[]> {
  const out: LogRecord[] = []
  for (const p of log.describeStream(name).partitions) out.push(...(await log.read(name, p.partition, p.startOffset, { limit: 10_000 })))
  return out
}

let messageId = 0
const packet = (topic: string, qos: 0 | 1 | 2, payload: Buffer | string = 'v', extra: object = {}) => ({
  cmd: 'publish' as const,
  topic,
  qos,
  payload,
  retain: false,
  dup: false,
  messageId: ++messageId,
  ...extra
})

describe('LogAppender', () => {
  it('appends a routed QoS 1 publish to every matching stream; published resolves once the records are readable', async () => {
    const { log, appender } = await setup()
    const p = packet('devices/d7/telemetry', 1, Buffer.from('21.5'))
    appender.admit(p, 'sensor-7', false)
    await appender.published(p, 'sensor-7')
    const [t] = await all(log, 'telemetry')
    expect(t).toMatchObject({ key: 'd7', topic: 'devices/d7/telemetry', qos: 1, clientId: 'sensor-7', headers: {} })
    expect(t!.value.toString()).toBe('21.5')
    expect((await all(log, 'audit'))[0]).toMatchObject({ key: 'sensor-7', topic: 'devices/d7/telemetry' })
  })

  it('keeps the admission order in the log whatever order aedes finishes the publishes in', async () => {
    const { log, appender } = await setup([{ filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'topic-level', level: 2 } }])
    const burst = [packet('devices/d1/telemetry', 1, 'a', { retain: true }), packet('devices/d1/telemetry', 0, 'b'), packet('devices/d1/telemetry', 2, 'c'), packet('devices/d1/telemetry', 1, 'd')]
    for (const p of burst) appender.admit(p, 'c1', false)
    // aedes finishes them in another order (a retained publish waits for its own fsync first)
    await Promise.all([...burst].reverse().map((p) => appender.published(p, 'c1')))
    expect((await all(log, 'telemetry')).map((r) => r.value.toString())).toEqual(['a', 'b', 'c', 'd'])
  })

  it('appends a QoS 2 publish once: not for a duplicate awaiting PUBREL, nor for a resend before it was published', async () => {
    const { log, appender } = await setup()
    const first = packet('devices/d1/telemetry', 2, 'once')
    const resend = { ...first, dup: true }
    appender.admit(first, 'c', false)
    appender.admit(resend, 'c', false) // same id, same read: aedes will treat it as a duplicate
    await appender.published(first, 'c')
    const later = { ...first, dup: true }
    appender.admit(later, 'c', true) // the broker says it awaits PUBREL
    expect((await all(log, 'telemetry')).map((r) => r.value.toString())).toEqual(['once'])
    // after PUBREL the id is free again: a new message with it is appended
    const next = { ...first, payload: 'again' }
    appender.admit(next, 'c', false)
    await appender.published(next, 'c')
    expect((await all(log, 'telemetry')).map((r) => r.value.toString())).toEqual(['once', 'again'])
  })

  it('rejects published (so no ack) when an append fails, without an unhandled rejection at admission', async () => {
    const { appender } = await setup([{ filter: 'x/#', stream: 'missing', key: { kind: 'none' } }])
    const p = packet('x/1', 2)
    appender.admit(p, 'c', false)
    await new Promise((r) => setImmediate(r))
    await expect(appender.published(p, 'c')).rejects.toThrow(/unknown stream "missing"/)
    const dropped = packet('x/2', 1)
    appender.admit(dropped, 'c', false) // aedes may drop a publish (connection closed) and never call published
    await new Promise((r) => setTimeout(r, 20))
  })

  it('does not wait for QoS 0 appends, and appends publishes that were never admitted', async () => {
    const { log, appender } = await setup()
    await expect(appender.published(packet('devices/d1/telemetry', 0), 'c')).resolves.toBeUndefined()
    await new Promise((r) => setTimeout(r, 20))
    expect(await all(log, 'telemetry')).toHaveLength(1)
  })

  it('skips $SYS/ topics, unrouted topics and packets marked as replays', async () => {
    const { log, appender } = await setup([{ filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'none' } }])
    await appender.published(packet('$SYS/broker/new/clients', 0), null)
    await appender.published(packet('b/c', 1), 'c')
    const replayed = packet('devices/d1/telemetry', 1)
    markReplay(replayed)
    expect(isReplay(replayed)).toBe(true)
    expect(isReplay(packet('devices/d1/telemetry', 1))).toBe(false)
    appender.admit(replayed, null, false)
    await appender.published(replayed, null)
    expect(await all(log, 'telemetry')).toEqual([])
  })

  it('keeps the client id of a will published at start-up, and turns string payloads into bytes', async () => {
    const { log, appender } = await setup([{ filter: '#', stream: 'audit', key: { kind: 'client-id' } }])
    await appender.published(packet('status/x', 1, 'héllo'), 'dead-device')
    await appender.published(packet('status/y', 1, ''), null)
    const records = await all(log, 'audit')
    expect(records.map((r) => [r.clientId, r.key, r.value.toString()])).toEqual([
      ['dead-device', 'dead-device', 'héllo'],
      [null, null, '']
    ])
    expect(records[0]!.value).toEqual(Buffer.from('héllo', 'utf8'))
  })
})
