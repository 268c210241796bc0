import type { IPublishPacket } from 'mqtt-packet'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { anonymousAccess } from '../../src/auth/anonymous.js'
import { admission } from '../../src/broker/admission.js'
import { createBroker } from '../../src/broker/broker.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { HookChain, type PublishContext } from '../../src/broker/hooks.js'
import { startListeners } from '../../src/broker/listeners.js'
import { DEFAULTS } from '../../src/config/index.js'
import type { DedupOptions } from '../../src/log/rocks/dedup-index.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { LogAdmission } from '../../src/routing/log-admission.js'
import { Router } from '../../src/routing/router.js'
import type { RouteConfig } from '../../src/routing/routes.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { RawClient } from '../helpers/raw-mqtt.js'
import { stream } from '../log/abstract-log.js'

// MQTT 3.1.1 QoS 1 retransmissions (DUP, same client id and packet id, same topic and payload)
// are appended to the log once: the log admission hook over a real RocksLog, then a broker in this
// process with raw MQTT clients that drop the connection and resend.

const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
const ROUTES: RouteConfig[] = [
  { filter: 'devices/#', stream: 'telemetry', key: { kind: 'client-id' } },
  { filter: 'devices/+/alarm', stream: 'alarms', key: { kind: 'none' } }
]
const STREAMS = [stream('telemetry', 2), stream('alarms', 1)]

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function count(log: RocksLog, name = 'telemetry'): Promise<number> {
  return (await log.describeStream(name)).partitions.reduce((n, p) => n + p.endOffset - p.startOffset, 0)
}

async function payloads(log: RocksLog, name = 'telemetry'): Promise<string[]> {
  const out: string[] = []
  for (const p of (await log.describeStream(name)).partitions) {
    for (const r of await log.read(name, p.partition, p.startOffset, { limit: 1000 })) out.push(r.value.toString())
  }
  return out.sort()
}

describe('LogAdmission and QoS 1 retransmissions', () => {
  async function setup(dedup: DedupOptions = { windowMs: 60_000, maxKeys: 1000 }): Promise<{ log: RocksLog; hook: LogAdmission }> {
    const store = await Store.open({ dataDir: tempDataDir('publish-dedup'), durability: 'fsync' })
    const log = await RocksLog.open(store, STREAMS, { retentionIntervalMs: 0, dedup: { ...dedup, sweepIntervalMs: 0 } })
    cleanups.push(
      () => store.close(),
      () => log.close()
    )
    return { log, hook: new LogAdmission(new Router(ROUTES), log, logger) }
  }

  const publish = (more: Partial<PublishContext> = {}): PublishContext => ({
    topic: 'devices/d1/temp',
    payload: Buffer.from('21.5'),
    qos: 1,
    retain: false,
    messageId: 7,
    clientId: 'd1',
    principal: null,
    origin: 'client',
    duplicate: false,
    ...more
  })

  async function admitted(hook: LogAdmission, p: PublishContext): Promise<void> {
    hook.admit(p)
    await hook.published(p)
  }

  it('does not append a DUP resend of a remembered publish, on every stream it was routed to', async () => {
    const { log, hook } = await setup()
    const alarm = { topic: 'devices/d1/alarm', payload: Buffer.from('smoke') }
    await admitted(hook, publish(alarm))
    await admitted(hook, publish({ ...alarm, dupFlag: true }))
    expect(await count(log)).toBe(1)
    expect(await count(log, 'alarms')).toBe(1)
  })

  it('does not append a DUP resend that arrives while the first copy is still being appended; both wait for it', async () => {
    const { log, hook } = await setup()
    const first = publish()
    const resend = publish({ dupFlag: true })
    hook.admit(first)
    hook.admit(resend) // same turn: the first append is not committed yet
    await Promise.all([hook.published(first), hook.published(resend)])
    expect(await count(log)).toBe(1)
  })

  it('appends a packet id reused without DUP (a new publish), and then deduplicates against that one', async () => {
    const { log, hook } = await setup()
    await admitted(hook, publish())
    await admitted(hook, publish()) // same id, same payload, no DUP: the id was acked and reused
    expect(await count(log)).toBe(2)
    await admitted(hook, publish({ dupFlag: true }))
    expect(await count(log)).toBe(2)
  })

  it('appends a DUP publish whose topic or payload differs, or that comes from another client or packet id', async () => {
    const { log, hook } = await setup()
    await admitted(hook, publish())
    await admitted(hook, publish({ dupFlag: true, payload: Buffer.from('22.0') }))
    await admitted(hook, publish({ dupFlag: true, topic: 'devices/d1/humidity' }))
    await admitted(hook, publish({ dupFlag: true, clientId: 'd2' }))
    await admitted(hook, publish({ dupFlag: true, messageId: 8 }))
    expect(await count(log)).toBe(5)
    // the differing one took the packet id over: its own resend is deduplicated
    await admitted(hook, publish({ dupFlag: true, topic: 'devices/d1/humidity' }))
    expect(await count(log)).toBe(5)
  })

  it('leaves QoS 0 and QoS 2 alone (QoS 2 resends are the broker’s: src/broker/qos2-admissions.ts)', async () => {
    const { log, hook } = await setup()
    await admitted(hook, publish({ qos: 2 }))
    await admitted(hook, publish({ qos: 2, dupFlag: true })) // a new QoS 2 message after PUBCOMP, say
    await admitted(hook, publish({ qos: 0, messageId: undefined }))
    await admitted(hook, publish({ qos: 0, messageId: undefined, dupFlag: true }))
    await new Promise((r) => setTimeout(r, 20)) // QoS 0 is not awaited
    expect(await count(log)).toBe(4)
  })

  it('appends a DUP resend again once the window has passed', async () => {
    const { log, hook } = await setup({ windowMs: 100, maxKeys: 1000 })
    await admitted(hook, publish())
    await new Promise((r) => setTimeout(r, 150))
    await admitted(hook, publish({ dupFlag: true }))
    expect(await count(log)).toBe(2)
  })

  it('appends everything with the window off', async () => {
    const { log, hook } = await setup({ windowMs: 0, maxKeys: 1000 })
    await admitted(hook, publish())
    await admitted(hook, publish({ dupFlag: true }))
    expect(await count(log)).toBe(2)
  })
})

/** A broker and its log on one RocksDB in `dir`, on a free port of 127.0.0.1. */
async function startNode(dir: string): Promise<{ log: RocksLog; port: number; stop: () => Promise<void> }> {
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  const log = await RocksLog.open(store, STREAMS, { retentionIntervalMs: 0, dedup: { windowMs: 60_000, maxKeys: 1000 } })
  const counters = new BrokerCounters(logger)
  const hooks = new HookChain([anonymousAccess(true), new LogAdmission(new Router(ROUTES), log, logger)])
  const broker = await createBroker({ store, logger, hooks, counters, maxClientIdLength: 64, limits: DEFAULTS, brokerId: null })
  const config = { ...DEFAULTS, mqttPort: 0, wsPort: null }
  const listeners = await startListeners(
    config,
    admission(config, counters, (s, r) => broker.aedes.handle(s, r))
  )
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await Promise.all(listeners.map((l) => l.close()))
    await broker.close()
    await log.close()
    await store.close()
  }
  cleanups.push(stop)
  return { log, port: listeners[0]?.port ?? 0, stop }
}

async function until(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const PUBLISH: IPublishPacket = { cmd: 'publish', topic: 'devices/d1/temp', payload: Buffer.from('21.5'), qos: 1, messageId: 42, retain: false, dup: false }

describe('a broker with raw MQTT 3.1.1 clients', () => {
  const clients: RawClient[] = []
  afterEach(() => {
    for (const c of clients.splice(0)) c.end()
  })
  const connect = async (port: number, clean = false): Promise<RawClient> => {
    const c = await RawClient.connected(port, 'd1', { clean })
    clients.push(c)
    return c
  }

  it('appends once a QoS 1 publish resent with DUP after the connection dropped before its PUBACK', async () => {
    const { log, port } = await startNode(tempDataDir('dup-before-ack'))
    const first = await connect(port)
    first.send(PUBLISH)
    first.end() // gone before the PUBACK could arrive
    await until(async () => (await count(log)) === 1)
    const second = await connect(port)
    second.send({ ...PUBLISH, dup: true })
    expect(await second.next((p) => p.cmd === 'puback' && p.messageId === 42)).toMatchObject({ cmd: 'puback' })
    expect(await count(log)).toBe(1)
  })

  it('appends once a QoS 1 publish resent with DUP after its PUBACK was sent, and acks the resend', async () => {
    const { log, port } = await startNode(tempDataDir('dup-after-ack'))
    const first = await connect(port)
    first.send(PUBLISH)
    await first.next((p) => p.cmd === 'puback' && p.messageId === 42)
    first.end() // as if the PUBACK had been lost with the connection
    const second = await connect(port)
    second.send({ ...PUBLISH, dup: true })
    await second.next((p) => p.cmd === 'puback' && p.messageId === 42)
    expect(await count(log)).toBe(1)
    // a new publish reusing the acknowledged packet id (no DUP) is a new record
    second.send(PUBLISH)
    await second.next((p) => p.cmd === 'puback' && p.messageId === 42)
    second.send({ ...PUBLISH, messageId: 43, payload: Buffer.from('other') })
    await second.next((p) => p.cmd === 'puback' && p.messageId === 43)
    expect(await payloads(log)).toEqual(['21.5', '21.5', 'other'])
  })

  it('still knows the publish after a restart of the broker', async () => {
    const dir = tempDataDir('dup-restart')
    const before = await startNode(dir)
    const first = await connect(before.port)
    first.send(PUBLISH)
    await first.next((p) => p.cmd === 'puback' && p.messageId === 42)
    first.end()
    await before.stop()
    const after = await startNode(dir)
    const second = await connect(after.port)
    second.send({ ...PUBLISH, dup: true })
    await second.next((p) => p.cmd === 'puback' && p.messageId === 42)
    expect(await count(after.log)).toBe(1)
  })
})
