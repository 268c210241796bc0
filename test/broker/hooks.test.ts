import mqttPacket from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { HookChain, type BrokerHook, type PublishContext } from '../../src/broker/hooks.js'
import { brokersClosedAfterEach } from '../helpers/broker.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-mqtt.js'

const start = brokersClosedAfterEach()
const allowAll: BrokerHook = { name: 'allow-all', stage: 'authenticate', authenticate: () => ({ allow: true }) }

describe('the hook chain', () => {
  it('runs authenticate -> authorize -> quota -> admit -> published, then the broker acks, whatever order the hooks are listed in', async () => {
    const events: string[] = []
    const record = (stage: string) => (p?: PublishContext) => void (p === undefined || p.topic === 'a/b' ? events.push(stage) : undefined)
    const chain = new HookChain([
      {
        name: 'observer',
        stage: 'observe',
        published: async (p) => {
          if (p.topic !== 'a/b') return
          await new Promise((r) => setTimeout(r, 100))
          events.push('published')
        }
      },
      { name: 'admitter', stage: 'admit', admit: record('admit') },
      { name: 'quota', stage: 'quota', authorizePublish: (p) => record('quota')(p) },
      { name: 'acl', stage: 'authorize', authorizePublish: (p) => record('authorize')(p) },
      { name: 'login', stage: 'authenticate', authenticate: () => (events.push('authenticate'), { allow: true }) }
    ])
    expect(chain.hooks.map((h) => h.stage)).toEqual(['authenticate', 'authorize', 'quota', 'admit', 'observe'])
    const b = await start(chain)
    const client = await connect(b.url)
    await client.publishAsync('a/b', 'x', { qos: 1 })
    events.push('ack')
    await closeAll(client)
    expect(events).toEqual(['authenticate', 'authorize', 'quota', 'admit', 'published', 'ack'])
  })

  it('stops a refused publish before quota and admit: nothing is delivered and the connection closes', async () => {
    const later: string[] = []
    const b = await start(
      new HookChain([
        allowAll,
        { name: 'acl', stage: 'authorize', authorizePublish: (p) => (p.topic.startsWith('secret/') ? { reason: 'no' } : undefined) },
        { name: 'quota', stage: 'quota', authorizePublish: (p) => void later.push(`quota ${p.topic}`) },
        { name: 'log', stage: 'admit', admit: (p) => void later.push(`admit ${p.topic}`) }
      ])
    )
    const sub = await connect(b.url)
    await sub.subscribeAsync('#', { qos: 1 })
    const inbox = new Inbox(sub)
    const raw = await RawClient.connected(b.port, 'refused')
    raw.send({ cmd: 'publish', topic: 'secret/x', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false })
    expect(await raw.closedWithin(2000)).toBe(true)
    expect(raw.received.filter((p) => p.cmd === 'puback')).toEqual([])
    const ok = await connect(b.url)
    await ok.publishAsync('open/x', 'y', { qos: 1 })
    await inbox.waitFor(1)
    expect((await inbox.settle(100)).map((m) => m.topic)).toEqual(['open/x'])
    expect(later).toEqual(['quota open/x', 'admit open/x'])
    await closeAll(sub, ok)
  })

  it('lets the first authenticator with an opinion decide, and refuses a client no one accepted (CONNACK 5)', async () => {
    const b = await start(
      new HookChain([
        { name: 'no-opinion', stage: 'authenticate', authenticate: () => undefined },
        {
          name: 'passwords',
          stage: 'authenticate',
          authenticate: async (c) =>
            c.username === 'good' ? { allow: true } : c.username === 'bad' ? { allow: false, returnCode: 4, reason: 'wrong password' } : undefined
        }
      ])
    )
    const good = await connect(b.url, { username: 'good', password: 'x' })
    await closeAll(good)
    await expect(connect(b.url, { username: 'bad', password: 'x' })).rejects.toMatchObject({ code: 4 })
    await expect(connect(b.url)).rejects.toMatchObject({ code: 5 })
  })

  it('marks QoS 2 resends aedes will not publish again as duplicates [MQTT-4.3.3-2], and frees the id after PUBREL', async () => {
    const admitted: Array<[number | undefined, boolean]> = []
    const published: string[] = []
    const b = await start(
      new HookChain([
        allowAll,
        { name: 'admit', stage: 'admit', admit: (p) => void (p.origin === 'client' && admitted.push([p.messageId, p.duplicate])) },
        { name: 'seen', stage: 'observe', published: (p) => void (p.origin === 'client' && published.push(p.payload.toString())) }
      ])
    )
    const sub = await connect(b.url)
    await sub.subscribeAsync('t', { qos: 2 })
    const inbox = new Inbox(sub)
    const raw = await RawClient.connected(b.port, 'q2')
    const publish = (payload: string, dup: boolean): Buffer =>
      mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.from(payload), qos: 2, messageId: 7, retain: false, dup })
    // the first and a resend in the same socket read, then one more while it awaits PUBREL
    raw.write(Buffer.concat([publish('one', false), publish('one', true)]))
    await raw.next((p) => p.cmd === 'pubrec')
    await raw.next((p) => p.cmd === 'pubrec')
    raw.write(publish('one', true))
    await raw.next((p) => p.cmd === 'pubrec')
    raw.send({ cmd: 'pubrel', messageId: 7 })
    await raw.next((p) => p.cmd === 'pubcomp')
    raw.write(publish('two', false))
    await raw.next((p) => p.cmd === 'pubrec')
    raw.end()
    expect(admitted).toEqual([
      [7, false],
      [7, true],
      [7, true],
      [7, false]
    ])
    // delivered once: plain aedes 1.2 publishes the resend of the same read a second time
    expect(published).toEqual(['one', 'two'])
    await inbox.waitFor(2)
    expect((await inbox.settle(200)).map((m) => m.payload)).toEqual(['one', 'two'])
    await closeAll(sub)
  })

  it('tells hooks where a publish came from: a client, a will, a replay', async () => {
    const seen: string[] = []
    const b = await start(
      new HookChain([
        allowAll,
        { name: 'origins', stage: 'observe', published: (p) => void (p.topic.startsWith('o/') && seen.push(`${p.origin} ${p.topic} ${p.clientId}`)) }
      ])
    )
    const c = await connect(b.url, { clientId: 'dev', will: { topic: 'o/will', payload: Buffer.from('gone'), qos: 1, retain: false } })
    await c.publishAsync('o/live', 'x', { qos: 1 })
    c.stream.destroy() // no DISCONNECT: the will is published
    await b.broker.publishReplay({ topic: 'o/replayed', payload: Buffer.from('r'), qos: 1 })
    const deadline = Date.now() + 3000
    while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(seen.sort()).toEqual(['client o/live dev', 'replay o/replayed null', 'will o/will dev'])
  })

  it('refuses a chain with the same hook twice, or a method outside its stage', () => {
    expect(() => new HookChain([allowAll, allowAll])).toThrow(/twice/)
    expect(() => new HookChain([{ name: 'x', stage: 'observe', admit: () => {} }])).toThrow(/admit belongs to the admit stage/)
    expect(() => new HookChain([{ name: 'y', stage: 'admit', authenticate: () => undefined }])).toThrow(/authenticate stage/)
  })
})
