import { createServer } from 'node:net'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ApiClientInfo, ClientList, ReadinessResponse, RetainedList, RetainedMessage, SessionList, StatusResponse } from '../../src/http/wire.js'
import { Culex, sleep } from '../bridges/e2e.js'
import { runCli } from '../e2e/helpers.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'

// The admin API, the probes and `culex status` against a real gateway process (`culex start` with
// a config file, free ports) and MQTT.js clients on 127.0.0.1. The gateway has a webhook bridge
// to a closed port: it retries, so /readyz answers 503 until the bridge is paused.

let culex: Culex
const clients: MqttClient[] = []

/** A port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

beforeAll(async () => {
  culex = await Culex.start({
    streams: { telemetry: { partitions: 2 }, orders: null },
    routes: [{ filter: 'dev/+/t', stream: 'telemetry', key: 'topic-level:2' }],
    bridges: [
      {
        'name': 'dead-hook',
        'kind': 'webhook',
        'direction': 'out',
        'streams': ['orders'],
        'start-at': 'earliest',
        'retry': { initial: '100ms', max: '500ms' },
        'target': { url: `http://127.0.0.1:${await closedPort()}/hook`, timeout: '1s' }
      }
    ]
  })
}, 30_000)

afterAll(async () => {
  await closeAll(...clients)
  await culex.dispose()
})

async function client(id: string, options: Record<string, unknown> = {}): Promise<MqttClient> {
  const c = await connect(culex.mqttUrl, { clientId: id, ...options })
  clients.push(c)
  return c
}

async function until<T>(what: string, probe: () => Promise<T>, test: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T = await probe()
  while (!test(last)) {
    if (Date.now() > deadline) throw new Error(`${what}: not met in ${timeoutMs} ms; last: ${JSON.stringify(last)}`)
    await sleep(50)
    last = await probe()
  }
  return last
}

describe('probes with a real gateway', () => {
  it('/readyz answers 503 while a bridge retries and 200 once it is paused; /healthz 200 throughout', async () => {
    await culex.produce('orders', [{ key: 'k', value: 'v' }])
    const retrying = await until(
      'readyz 503',
      () => culex.call<ReadinessResponse>('GET', '/readyz'),
      (r) => r.status === 503
    )
    expect(retrying.body.status).toBe('unavailable')
    const names = retrying.body.checks.map((c) => c.name)
    expect(names).toEqual(['store', 'listeners', 'bridge:dead-hook'])
    expect(retrying.body.checks.find((c) => c.name === 'bridge:dead-hook')).toMatchObject({ ok: false, detail: expect.stringMatching(/^retrying/) as unknown })
    expect(retrying.body.checks.filter((c) => c.name !== 'bridge:dead-hook').every((c) => c.ok)).toBe(true)
    expect((await culex.call('GET', '/healthz')).body).toEqual({ status: 'ok' })

    expect((await culex.call('POST', '/api/v1/bridges/dead-hook/pause')).status).toBe(200)
    const ready = await culex.call<ReadinessResponse>('GET', '/readyz')
    expect(ready.status).toBe(200)
    expect(ready.body.status).toBe('ok')
    expect(ready.body.checks.find((c) => c.name === 'bridge:dead-hook')).toEqual({ name: 'bridge:dead-hook', ok: true, detail: 'paused' })
    expect(ready.body.checks.find((c) => c.name === 'listeners')?.detail).toMatch(/^mqtt 127\.0\.0\.1:\d+/)
  })
})

describe('clients', () => {
  it('lists connected clients with their details, in pages, and shows one', async () => {
    const a = await client('adm-a', { keepalive: 30 })
    await a.subscribeAsync({ 'dev/+/t': { qos: 1 }, 'cmd/#': { qos: 0 } })
    await client('adm-b', { keepalive: 0, clean: false, protocolVersion: 3, protocolId: 'MQIsdp' })
    await client('adm-c')
    const all = await culex.call<ClientList>('GET', '/api/v1/clients')
    expect(all.status).toBe(200)
    expect(all.body.clients.map((c) => c.id)).toEqual(['adm-a', 'adm-b', 'adm-c'])
    expect(all.body).toMatchObject({ total: 3, next: null })
    const info = all.body.clients[0] as ApiClientInfo
    expect(info).toMatchObject({ id: 'adm-a', username: null, listener: 'mqtt', protocolVersion: 4, keepalive: 30, cleanSession: true, queued: 0 })
    expect(info.address).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(Date.now() - Date.parse(info.connectedAt)).toBeLessThan(60_000)
    expect(info.subscriptions).toEqual([
      { filter: 'dev/+/t', qos: 1 },
      { filter: 'cmd/#', qos: 0 }
    ])
    expect(all.body.clients[1]).toMatchObject({ id: 'adm-b', protocolVersion: 3, keepalive: 0, cleanSession: false })

    // pages of one: the cursor is the last id of the page
    const seen: string[] = []
    let after: string | null = null
    for (let i = 0; i < 5; i++) {
      const query: string = after === null ? '' : `&after=${encodeURIComponent(after)}`
      const page = await culex.call<ClientList>('GET', `/api/v1/clients?limit=1${query}`)
      seen.push(...page.body.clients.map((c) => c.id))
      after = page.body.next
      if (after === null) break
    }
    expect(seen).toEqual(['adm-a', 'adm-b', 'adm-c'])

    const one = await culex.call<ApiClientInfo>('GET', '/api/v1/clients/adm-b')
    expect(one.status).toBe(200)
    expect(one.body.id).toBe('adm-b')
  })

  it('kicks a client: its connection closes, it is gone from the list, a second kick is 404', async () => {
    const victim = await client('adm-kick')
    const closed = new Promise<void>((resolve) => victim.once('close', () => resolve()))
    const r = await culex.call('DELETE', '/api/v1/clients/adm-kick')
    expect(r.status).toBe(204)
    await closed
    await until(
      'kicked client gone',
      () => culex.call('GET', '/api/v1/clients/adm-kick'),
      (x) => x.status === 404
    )
    const again = await culex.call<Record<string, unknown>>('DELETE', '/api/v1/clients/adm-kick')
    expect(again.status).toBe(404)
    expect(again.body.error).toBe('UNKNOWN_CLIENT')
  })
})

describe('sessions', () => {
  it('lists stored sessions online and offline, with subscriptions and the offline queue length', async () => {
    const sleeper = await connect(culex.mqttUrl, { clientId: 'adm-sleeper', clean: false })
    await sleeper.subscribeAsync('alerts/#', { qos: 1 })
    await sleeper.endAsync()
    const publisher = await client('adm-pub')
    for (let i = 0; i < 3; i++) await publisher.publishAsync('alerts/fire', `a${i}`, { qos: 1 })
    const sessions = await until(
      'sleeper session queued',
      () => culex.call<SessionList>('GET', '/api/v1/sessions'),
      (r) => r.body.sessions.some((s) => s.clientId === 'adm-sleeper' && s.queued === 3)
    )
    expect(sessions.body.sessions.find((s) => s.clientId === 'adm-sleeper')).toEqual({
      clientId: 'adm-sleeper',
      connected: false,
      subscriptions: [{ filter: 'alerts/#', qos: 1 }],
      queued: 3
    })
    // back online: connected, and the queue drains
    const [back, inbox] = await connectWithInbox(culex.mqttUrl, { clientId: 'adm-sleeper', clean: false })
    clients.push(back)
    await inbox.waitFor(3)
    const online = await until(
      'sleeper drained',
      () => culex.call<SessionList>('GET', '/api/v1/sessions?limit=1000'),
      (r) => r.body.sessions.some((s) => s.clientId === 'adm-sleeper' && s.connected && s.queued === 0)
    )
    expect(online.body.total).toBeGreaterThanOrEqual(1)
  })
})

describe('retained messages', () => {
  it('browses by filter, reads (utf8 / base64), deletes (204, then 404) what clients retained', async () => {
    const pub = await client('adm-retain')
    await pub.publishAsync('site/1/temp', '21.5', { qos: 1, retain: true })
    await pub.publishAsync('site/2/temp', Buffer.from([0, 1, 2, 255]), { qos: 0, retain: true })
    await pub.publishAsync('site//odd', 'empty level', { qos: 1, retain: true })
    await pub.publishAsync('other/x', 'x', { qos: 1, retain: true })

    const list = await until(
      'retained stored',
      () => culex.call<RetainedList>('GET', `/api/v1/retained?filter=${encodeURIComponent('site/+/temp')}`),
      (r) => r.body.total === 2
    )
    expect(list.body.retained).toEqual([
      { topic: 'site/1/temp', qos: 1, bytes: 4 },
      { topic: 'site/2/temp', qos: 0, bytes: 4 }
    ])
    const page = await culex.call<RetainedList>('GET', '/api/v1/retained?filter=site/%23&limit=2')
    expect(page.body).toMatchObject({ total: 3, next: 'site/1/temp' })
    expect(page.body.retained.map((r) => r.topic)).toEqual(['site//odd', 'site/1/temp'])
    const rest = await culex.call<RetainedList>('GET', `/api/v1/retained?filter=site/%23&limit=2&after=${encodeURIComponent('site/1/temp')}`)
    expect(rest.body).toMatchObject({ total: 3, next: null, retained: [{ topic: 'site/2/temp' }] })

    const text = await culex.call<RetainedMessage>('GET', '/api/v1/retained/site/1/temp?encoding=utf8')
    expect(text.body).toEqual({ topic: 'site/1/temp', qos: 1, bytes: 4, encoding: 'utf8', payload: '21.5' })
    const binary = await culex.call<RetainedMessage>('GET', '/api/v1/retained/site/2/temp')
    expect(Buffer.from(binary.body.payload, 'base64')).toEqual(Buffer.from([0, 1, 2, 255]))
    expect((await culex.call<RetainedMessage>('GET', '/api/v1/retained/site//odd?encoding=utf8')).body.payload).toBe('empty level')

    expect((await culex.call('DELETE', '/api/v1/retained/site/1/temp')).status).toBe(204)
    expect((await culex.call('DELETE', '/api/v1/retained/site/1/temp')).status).toBe(404)
    expect((await culex.call('GET', '/api/v1/retained/site/1/temp')).status).toBe(404)
    // a new subscriber gets no retained message there any more; the others stay
    const [sub, inbox] = await connectWithInbox(culex.mqttUrl, { clientId: 'adm-retain-sub' })
    clients.push(sub)
    await sub.subscribeAsync('site/+/temp', { qos: 1 })
    await inbox.waitFor(1)
    await sleep(200)
    expect(inbox.messages.map((m) => m.topic)).toEqual(['site/2/temp'])
  })
})

describe('culex status', () => {
  it('prints one screen (human) and the status answer (--json) of the running gateway', async () => {
    await culex.produce('telemetry', [
      { key: 'a', value: '1' },
      { key: 'b', value: '2' }
    ])
    const json = await runCli(['status', '--json', '--url', culex.api])
    expect(json.code, json.stderr).toBe(0)
    const status = JSON.parse(json.stdout) as StatusResponse
    expect(status.version).toMatch(/^\d+\.\d+\.\d+/)
    expect(status.listeners.map((l) => l.kind)).toEqual(expect.arrayContaining(['mqtt', 'ws', 'admin']))
    expect(status.clients.connected).toBeGreaterThan(0)
    expect(status.streams.find((s) => s.name === 'telemetry')?.records).toBe(2)
    expect(status.bridges.map((b) => [b.name, b.state])).toEqual([['dead-hook', 'paused']])
    expect(status.messages?.received).toBeGreaterThan(0)

    const human = await runCli(['status', '--url', culex.api])
    expect(human.code, human.stderr).toBe(0)
    console.log(human.stdout)
    expect(human.stdout).toMatch(/^Culex \d+\.\d+\.\d+, up .*, ready$/m)
    expect(human.stdout).toMatch(/^listeners +mqtt 127\.0\.0\.1:\d+/m)
    expect(human.stdout).toMatch(/^clients +\d+ connected/m)
    expect(human.stdout).toMatch(/^messages +in \d+ \([\d.]+\/s\), out \d+/m)
    expect(human.stdout).toMatch(/^telemetry +2 +2 /m)
    expect(human.stdout).toMatch(/^dead-hook +webhook +out +paused/m)
    expect(human.stdout.split('\n').length).toBeLessThan(40)
  })

  it('says what is wrong when the gateway cannot be reached', async () => {
    const r = await runCli(['status', '--url', `http://127.0.0.1:${await closedPort()}`])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot reach the Culex API/)
  })
})
