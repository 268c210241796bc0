import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { PublishContext, PublishOrigin } from '../../src/broker/hooks.js'
import { LogAdmission } from '../../src/routing/log-admission.js'
import { Router } from '../../src/routing/router.js'
import type { RouteConfig } from '../../src/routing/routes.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
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
async function setup(r: RouteConfig[] = routes): Promise<{ log: RocksLog; appender: LogAdmission }> {
  const store = await Store.open({ dataDir: tempDataDir('appender'), durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('telemetry', 2), stream('audit', 1)], { retentionIntervalMs: 0 })
  cleanups.push(
    () => store.close(),
    () => log.close()
  )
  return { log, appender: new LogAdmission(new Router(r), log, pino({ level: 'silent' })) }
}

async function all(log: RocksLog, name: string): Promise<LogRecord[]> {
  const out: LogRecord[] = []
  for (const p of (await log.describeStream(name)).partitions) out.push(...(await log.read(name, p.partition, p.startOffset, { limit: 10_000 })))
  return out
}

let messageId = 0
function publish(topic: string, qos: 0 | 1 | 2, payload = 'v', more: Partial<PublishContext> = {}): PublishContext {
  const origin: PublishOrigin = 'client'
  return { topic, qos, payload: Buffer.from(payload), retain: false, messageId: ++messageId, clientId: 'c', principal: null, origin, duplicate: false, ...more }
}

describe('LogAdmission', () => {
  it('appends a routed QoS 1 publish to every matching stream; published resolves once the records are readable', async () => {
    const { log, appender } = await setup()
    const p = publish('devices/d7/telemetry', 1, '21.5', { clientId: 'sensor-7' })
    appender.admit(p)
    await appender.published(p)
    const [t] = await all(log, 'telemetry')
    expect(t).toMatchObject({ key: 'd7', topic: 'devices/d7/telemetry', qos: 1, clientId: 'sensor-7', headers: {} })
    expect(t?.value.toString()).toBe('21.5')
    expect((await all(log, 'audit'))[0]).toMatchObject({ key: 'sensor-7', topic: 'devices/d7/telemetry' })
  })

  it('keeps the admission order in the log whatever order aedes finishes the publishes in', async () => {
    const { log, appender } = await setup([{ filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'topic-level', level: 2 } }])
    const burst = [
      publish('devices/d1/telemetry', 1, 'a', { retain: true }),
      publish('devices/d1/telemetry', 0, 'b'),
      publish('devices/d1/telemetry', 2, 'c'),
      publish('devices/d1/telemetry', 1, 'd')
    ]
    for (const p of burst) appender.admit(p)
    // aedes finishes them in another order (a retained publish waits for its own fsync first)
    await Promise.all([...burst].reverse().map((p) => Promise.resolve(appender.published(p))))
    expect((await all(log, 'telemetry')).map((r) => r.value.toString())).toEqual(['a', 'b', 'c', 'd'])
  })

  it('does not append a QoS 2 duplicate (aedes answers it with PUBREC only)', async () => {
    const { log, appender } = await setup()
    const first = publish('devices/d1/telemetry', 2, 'once')
    appender.admit(first)
    appender.admit({ ...first, duplicate: true })
    await appender.published(first)
    expect((await all(log, 'telemetry')).map((r) => r.value.toString())).toEqual(['once'])
  })

  it('rejects published (so no ack) when an append fails, without an unhandled rejection at admission', async () => {
    const { appender } = await setup([{ filter: 'x/#', stream: 'missing', key: { kind: 'none' } }])
    const p = publish('x/1', 2)
    appender.admit(p)
    await new Promise((r) => setImmediate(r))
    await expect(appender.published(p)).rejects.toThrow(/unknown stream "missing"/)
    appender.admit(publish('x/2', 1)) // aedes may drop a publish (connection closed) and never call published
    await new Promise((r) => setTimeout(r, 20))
  })

  it('does not wait for QoS 0 appends, and appends publishes that were never admitted', async () => {
    const { log, appender } = await setup()
    expect(appender.published(publish('devices/d1/telemetry', 0))).toBeUndefined()
    await new Promise((r) => setTimeout(r, 20))
    expect(await all(log, 'telemetry')).toHaveLength(1)
  })

  it('skips $SYS/ topics, unrouted topics and replays of the log', async () => {
    const { log, appender } = await setup([{ filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'none' } }])
    await appender.published(publish('$SYS/broker/new/clients', 0, 'x', { origin: 'broker', clientId: null }))
    await appender.published(publish('b/c', 1))
    const replayed = publish('devices/d1/telemetry', 1, 'r', { origin: 'replay', clientId: null })
    appender.admit(replayed)
    await appender.published(replayed)
    expect(await all(log, 'telemetry')).toEqual([])
  })

  it('keeps the client id of a will published at start-up', async () => {
    const { log, appender } = await setup([{ filter: '#', stream: 'audit', key: { kind: 'client-id' } }])
    await appender.published(publish('status/x', 1, 'héllo', { clientId: 'dead-device', origin: 'will' }))
    await appender.published(publish('status/y', 1, '', { clientId: null, origin: 'broker' }))
    const records = await all(log, 'audit')
    expect(records.map((r) => [r.clientId, r.key, r.value.toString()])).toEqual([
      ['dead-device', 'dead-device', 'héllo'],
      [null, null, '']
    ])
  })
})
