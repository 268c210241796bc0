import mqttPacket from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { HookChain, type BrokerHook } from '../../src/broker/hooks.js'
import { brokersClosedAfterEach, type InProcessBroker } from '../helpers/broker.js'
import { Inbox, closeAll, connect } from '../helpers/mqtt.js'
import { RawClient } from '../helpers/raw-mqtt.js'

// Hostile and heavy input against a broker in the test process: every refusal closes the
// connection (or answers with the spec's code) before anything is stored, and is counted.

const start = brokersClosedAfterEach()
const anyone: BrokerHook = { name: 'anyone', stage: 'authenticate', authenticate: () => ({ allow: true }) }
const broker = (limits = {}): Promise<InProcessBroker> => start(new HookChain([anyone]), limits)

/** A CONNECT, then raw bytes; resolves whether the broker closed the connection within `ms`. */
async function closesAfter(b: InProcessBroker, bytes: Buffer, ms = 2000, clientId = 'raw'): Promise<boolean> {
  const c = await RawClient.connected(b.port, clientId)
  c.write(bytes)
  const closed = await c.closedWithin(ms)
  c.end()
  return closed
}

/** A CONNECT with hand-made fields (any bytes); CleanSession 1 unless `clean` is false. */
function connectBytes(clientId: Buffer, willTopic?: Buffer, clean = true): Buffer {
  const flags = (clean ? 0x02 : 0) | (willTopic ? 0x04 : 0)
  const proto = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, 0, 0])
  const str = (x: Buffer): Buffer => Buffer.concat([Buffer.from([x.length >> 8, x.length & 0xff]), x])
  const body = Buffer.concat([proto, str(clientId), ...(willTopic ? [str(willTopic), str(Buffer.from('m'))] : [])])
  return Buffer.concat([Buffer.from([0x10, body.length]), body])
}

/** A PUBLISH with a hand-made topic field (any bytes). */
function publishWithTopicBytes(topic: Buffer, qos: 0 | 1 = 0, messageId = 1, payload = Buffer.from('x'), retain = true): Buffer {
  const body = Buffer.concat([
    Buffer.from([topic.length >> 8, topic.length & 0xff]),
    topic,
    qos > 0 ? Buffer.from([messageId >> 8, messageId & 0xff]) : Buffer.alloc(0),
    payload
  ])
  return Buffer.concat([Buffer.from([0x30 | (qos << 1) | (retain ? 1 : 0), body.length]), body])
}

describe('packet size and framing', () => {
  it('closes a connection whose packet claims more than max-packet-size, before reading the body', async () => {
    const b = await broker({ maxPacketSize: 64 * 1024 })
    // 256 MiB claimed: remaining length 0x0fffffff
    expect(await closesAfter(b, Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f, 0x00]))).toBe(true)
    expect(b.counters.get('packet-too-large')).toBe(1)
    // before any CONNECT too
    const c = await RawClient.open(b.port)
    c.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]))
    expect(await c.closedWithin(2000)).toBe(true)
    expect(b.counters.get('packet-too-large')).toBe(2)
  })

  it('refuses a retained publish over the limit and stores nothing', async () => {
    const b = await broker({ maxPacketSize: 64 * 1024 })
    const big = mqttPacket.generate({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(100 * 1024), qos: 0, retain: true, dup: false })
    expect(await closesAfter(b, big)).toBe(true)
    expect(b.broker.persistence.retainedCount).toBe(0)
    // one byte under the limit is fine
    const ok = await connect(b.url)
    await ok.publishAsync('fits', Buffer.alloc(64 * 1024 - 20), { qos: 1, retain: true })
    expect(b.broker.persistence.retainedCount).toBe(1)
    await closeAll(ok)
  })

  it('closes a malformed remaining length (a fifth length byte)', async () => {
    const b = await broker()
    expect(await closesAfter(b, Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]))).toBe(true)
    expect(b.counters.get('malformed-length')).toBe(1)
  })

  it('closes a packet trickled slower than packet-timeout, and keeps a steady stream of large packets open', async () => {
    const b = await broker({ packetTimeoutMs: 400 })
    const c = await RawClient.connected(b.port, 'trickle')
    const packet = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(200), qos: 0, retain: false, dup: false })
    c.write(packet.subarray(0, 10))
    expect(await c.closedWithin(1500)).toBe(true)
    expect(b.counters.get('packet-timeout')).toBe(1)

    // packets that keep straddling chunk boundaries, each completed in time, are fine
    const steady = await RawClient.connected(b.port, 'steady')
    for (let i = 0; i < 12; i++) {
      steady.write(packet.subarray(0, 100))
      await new Promise((r) => setTimeout(r, 50))
      steady.write(Buffer.concat([packet.subarray(100), packet.subarray(0, 50)]))
      await new Promise((r) => setTimeout(r, 50))
      steady.write(packet.subarray(50))
    }
    expect(await steady.closedWithin(300)).toBe(false)
    steady.end()
  })
})

describe('spec-forbidden input: the connection closes and nothing is stored', () => {
  it.each([
    ['a topic with U+0000 [MQTT-1.5.3-2]', publishWithTopicBytes(Buffer.from('a\u0000b'))],
    ['a topic that is ill-formed UTF-8 (ED A0 80, a surrogate) [MQTT-1.5.3-1]', publishWithTopicBytes(Buffer.from([0x61, 0xed, 0xa0, 0x80]))],
    ['a topic that is ill-formed UTF-8 (C0 80, overlong) [MQTT-1.5.3-1]', publishWithTopicBytes(Buffer.from([0x61, 0xc0, 0x80]))],
    ['a QoS 1 PUBLISH with packet id 0 [MQTT-2.3.1-1]', publishWithTopicBytes(Buffer.from('q'), 1, 0)],
    ['a PUBLISH with QoS 3 [MQTT-3.3.1-4]', Buffer.from([0x36, 0x05, 0x00, 0x01, 0x71, 0x00, 0x01])],
    ['an UNSUBSCRIBE with no filters [MQTT-3.10.3-2]', Buffer.from([0xa2, 0x02, 0x00, 0x07])],
    ['a SUBSCRIBE with no filters [MQTT-3.8.3-3]', Buffer.from([0x82, 0x02, 0x00, 0x07])],
    ['a SUBSCRIBE with reserved flags 0000 [MQTT-3.8.1-1]', Buffer.from([0x80, 0x06, 0x00, 0x07, 0x00, 0x01, 0x61, 0x00])],
    ['a SUBSCRIBE asking QoS 3 [MQTT-3-8.3-4]', Buffer.from([0x82, 0x06, 0x00, 0x07, 0x00, 0x01, 0x61, 0x03])],
    ['a SUBSCRIBE filter with U+0000', Buffer.from([0x82, 0x07, 0x00, 0x07, 0x00, 0x02, 0x61, 0x00, 0x00])],
    [
      'a SUBSCRIBE filter with # in the middle [MQTT-4.7.1-2]',
      mqttPacket.generate({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'a/#/b', qos: 0 }] })
    ]
  ])('%s', async (_, bytes) => {
    const b = await broker()
    expect(await closesAfter(b, bytes)).toBe(true)
    expect(b.broker.persistence.retainedCount).toBe(0)
    expect(b.counters.get('protocol-violation')).toBe(1)
  })

  it('checks a PUBLISH topic split over several socket reads as one in a single read, and lets well-formed UTF-8 through', async () => {
    const b = await broker()
    const c = await RawClient.connected(b.port, 'split')
    const bad = publishWithTopicBytes(Buffer.from('abc\u0000def'), 1, 9)
    c.write(bad.subarray(0, 6))
    await new Promise((r) => setTimeout(r, 50))
    c.write(bad.subarray(6))
    expect(await c.closedWithin(2000)).toBe(true)
    expect(b.broker.persistence.retainedCount).toBe(0)

    const ok = await RawClient.connected(b.port, 'utf8')
    ok.write(publishWithTopicBytes(Buffer.from('häuser/😀'), 1, 3))
    expect((await ok.next((p) => p.cmd === 'puback')).messageId).toBe(3)
    expect(b.broker.persistence.retainedCount).toBe(1)
    ok.end()
  })

  it.each([
    ['a wildcard', 'will/+'],
    ['an empty topic', ''],
    ['#', '#']
  ])('closes a CONNECT whose will topic is %s [MQTT-3.1.3-10, MQTT-4.7.1-1], and publishes no will', async (_, topic) => {
    const b = await broker()
    const watcher = await connect(b.url)
    await watcher.subscribeAsync('#', { qos: 0 })
    const inbox = new Inbox(watcher)
    const c = await RawClient.open(b.port)
    c.write(connectBytes(Buffer.from('w'), Buffer.from(topic)))
    expect(await c.closedWithin(2000)).toBe(true)
    expect(c.received.filter((p) => p.cmd === 'connack')).toEqual([])
    expect(await inbox.settle(200)).toEqual([])
    expect(b.broker.persistence.retainedCount).toBe(0)
    await closeAll(watcher)
  })

  it('closes a CONNECT whose client id or will topic holds U+0000 [MQTT-1.5.3-2]', async () => {
    const b = await broker()
    for (const bytes of [connectBytes(Buffer.from('a\u0000b')), connectBytes(Buffer.from('ok'), Buffer.from('w\u0000t'))]) {
      const c = await RawClient.open(b.port)
      c.write(bytes)
      expect(await c.closedWithin(2000)).toBe(true)
      expect(c.received.filter((p) => p.cmd === 'connack')).toEqual([])
    }
    expect(b.counters.get('protocol-violation')).toBe(2)
  })

  it('answers a zero-length client id with CleanSession 0 with CONNACK 2 [MQTT-3.1.3-8], and a too long id too', async () => {
    const b = await broker()
    const raw = await RawClient.open(b.port)
    raw.write(connectBytes(Buffer.alloc(0), undefined, false))
    expect(await raw.next((p) => p.cmd === 'connack')).toMatchObject({ returnCode: 2 })
    expect(await raw.closedWithin(2000)).toBe(true)
    // the default limit (256 bytes) holds for MQTT 3.1.1 too, not only 3.1
    await expect(connect(b.url, { clientId: 'x'.repeat(257), protocolVersion: 4 })).rejects.toMatchObject({ code: 2 })
    const ok = await connect(b.url, { clientId: 'x'.repeat(64) })
    await closeAll(ok)
    const anonymous = await connect(b.url, { clientId: '', clean: true })
    await closeAll(anonymous)
  })
})

describe('subscriptions', () => {
  it('stores a SUBSCRIBE of many filters with one write per filter, not one per filter per filter', async () => {
    const b = await broker({ maxSubscriptions: 10_000 })
    const filters = Array.from({ length: 2000 }, (_, i) => `f/${i}/#`)
    const before = b.store.writer.getStats().ops
    const c = await connect(b.url, { clientId: 'many', clean: false })
    const granted = await c.subscribeAsync(filters, { qos: 1 })
    expect(granted.filter((g) => g.qos === 1)).toHaveLength(2000)
    // 2,000 subscriptions plus a few session writes, where aedes alone made 2,000 x 2,000
    expect(b.store.writer.getStats().ops - before).toBeLessThan(2100)
    expect((await b.broker.persistence.subscriptionsByClient({ id: 'many' })).length).toBe(2000)
    await closeAll(c)
  })

  it('grants at most max-subscriptions per client: the rest get 0x80 [MQTT-3.9.3-2] and are not stored', async () => {
    const b = await broker({ maxSubscriptions: 3 })
    const c = await RawClient.connected(b.port, 'limited', { clean: false })
    const subscribe = async (messageId: number, topics: string[], qos: 0 | 1): Promise<number[]> => {
      c.send({ cmd: 'subscribe', messageId, subscriptions: topics.map((topic) => ({ topic, qos })) })
      const ack = await c.next((p) => p.cmd === 'suback' && p.messageId === messageId)
      return ack.cmd === 'suback' ? ack.granted.map((g) => (typeof g === 'number' ? g : (g as { qos: number }).qos)) : []
    }
    expect(await subscribe(1, ['a', 'b', 'c', 'd', 'e'], 1)).toEqual([1, 1, 1, 128, 128])
    const stored = async (): Promise<string[]> => (await b.broker.persistence.subscriptionsByClient({ id: 'limited' })).map((s) => s.topic).sort()
    expect(await stored()).toEqual(['a', 'b', 'c'])
    // a filter held already does not count twice; an unsubscribe frees a place
    expect(await subscribe(2, ['a'], 0)).toEqual([0])
    c.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['b'] })
    await c.next((p) => p.cmd === 'unsuback')
    expect(await subscribe(4, ['z'], 1)).toEqual([1])
    expect(await stored()).toEqual(['a', 'c', 'z'])
    expect(b.counters.get('subscription-limit')).toBe(2)
    c.end()
  })

  it('delivers at the lower of the message and subscription QoS, retained and live, to wildcard subscriptions [MQTT-3.8.4-6, MQTT-3.3.5-1]', async () => {
    const b = await broker()
    const pub = await connect(b.url)
    await pub.publishAsync('r/a', 'kept', { qos: 1, retain: true })
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('r/+', { qos: 0 })
    await sub.subscribeAsync('l/#', { qos: 1 })
    await pub.publishAsync('l/x', 'live', { qos: 2 })
    const got = await inbox.waitFor(2)
    expect(got.map((m) => [m.topic, m.qos]).sort()).toEqual([
      ['l/x', 1],
      ['r/a', 0]
    ])
    await closeAll(pub, sub)
  })
})

describe('slow readers', () => {
  it('never makes a publisher wait for a subscriber that stops reading; drops its QoS 0 and disconnects it when stuck', async () => {
    const b = await broker({ maxOutgoingBytes: 64 * 1024, maxPacketSize: 64 * 1024, stuckClientTimeoutMs: 1000 })
    // two subscribers that never read: one at QoS 0, one at QoS 1
    const stuck = await Promise.all(
      [0, 1].map(async (qos) => {
        const c = await RawClient.connected(b.port, `stuck-${qos}`)
        c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: qos as 0 | 1 }] })
        await c.next((p) => p.cmd === 'suback')
        c.socket.pause()
        return c
      })
    )
    const healthy = await connect(b.url)
    const inbox = new Inbox(healthy)
    await healthy.subscribeAsync('flood/#', { qos: 0 })
    // 24 MB of QoS 1 publishes: more than loopback's kernel buffers take for the stuck readers
    const count = 12_000
    const pub = await RawClient.connected(b.port, 'flooder')
    const payload = Buffer.alloc(2048, 1)
    let acked = 0
    let longestGap = 0
    let last = Date.now()
    for (let sent = 0; sent < count;) {
      const batch: Buffer[] = []
      for (let i = 0; i < 64 && sent < count; i++, sent++) {
        batch.push(mqttPacket.generate({ cmd: 'publish', topic: 'flood/x', payload, qos: 1, messageId: (sent % 65_000) + 1, retain: false, dup: false }))
      }
      pub.write(Buffer.concat(batch))
      while (acked < sent) {
        await pub.next((p) => p.cmd === 'puback', 5000)
        acked++
        longestGap = Math.max(longestGap, Date.now() - last)
        last = Date.now()
      }
    }
    // every PUBACK came promptly (aedes alone held them until the stuck readers drained, up to 60 s)
    expect(longestGap).toBeLessThan(1000)
    await inbox.waitFor(count, 15_000)
    expect(b.counters.get('outgoing-full')).toBeGreaterThan(0)
    // stuck past stuck-client-timeout: disconnected (read what the kernel holds to see the close)
    await new Promise((r) => setTimeout(r, 1500))
    for (const c of stuck) c.socket.resume()
    for (const c of stuck) expect(await c.closedWithin(10_000)).toBe(true)
    expect(b.counters.get('stuck-client')).toBeGreaterThanOrEqual(1)
    pub.end()
    await closeAll(healthy)
  }, 60_000)
})

describe('offline queues', () => {
  it.each([
    ['drop-new', [0, 1, 2, 3, 4]],
    ['drop-oldest', [5, 6, 7, 8, 9]]
  ] as const)('hold at most max-queued-messages per session, with %s', async (policy, kept) => {
    const b = await broker({ maxQueuedMessages: 5, queueFullPolicy: policy })
    const sub = await connect(b.url, { clientId: 'offline', clean: false })
    await sub.subscribeAsync('q/#', { qos: 1 })
    await sub.endAsync()
    const pub = await connect(b.url)
    for (let i = 0; i < 10; i++) await pub.publishAsync('q/x', String(i), { qos: 1 })
    expect(b.counters.get('queue-full')).toBe(5)
    const again = await connect(b.url, { clientId: 'offline', clean: false })
    const inbox = new Inbox(again)
    const got = await inbox.waitFor(5)
    expect((await inbox.settle(200)).map((m) => Number(m.payload))).toEqual(kept)
    expect(got.length).toBe(5)
    await closeAll(pub, again)
  })

  it('holds max-queued-bytes per session', async () => {
    const b = await broker({ maxQueuedMessages: 0, maxQueuedBytes: 4096 })
    const sub = await connect(b.url, { clientId: 'bytes', clean: false })
    await sub.subscribeAsync('q/#', { qos: 1 })
    await sub.endAsync()
    const pub = await connect(b.url)
    for (let i = 0; i < 10; i++) await pub.publishAsync('q/x', Buffer.alloc(1000, i), { qos: 1 })
    expect(b.counters.get('queue-full')).toBeGreaterThan(0)
    const again = await connect(b.url, { clientId: 'bytes', clean: false })
    const inbox = new Inbox(again)
    const got = await inbox.settle(500)
    expect(got.length).toBeGreaterThan(0)
    expect(got.length).toBeLessThan(5)
    await closeAll(pub, again)
  })
})

describe('publish rate', () => {
  it('slows a client over publish-rate down by pausing its socket, and loses nothing', async () => {
    const b = await broker({ publishRate: 200 })
    const sub = await connect(b.url)
    const inbox = new Inbox(sub)
    await sub.subscribeAsync('rate/#', { qos: 1 })
    const pub = await connect(b.url)
    const started = Date.now()
    const payload = Buffer.alloc(1024)
    await Promise.all(Array.from({ length: 1000 }, () => pub.publishAsync('rate/x', payload, { qos: 1 })))
    // 1,000 publishes at 200/s, with a bucket of 200: about 4 s (a burst inside one socket read passes)
    expect(Date.now() - started).toBeGreaterThan(2000)
    await inbox.waitFor(1000, 10_000)
    expect(b.counters.get('publish-throttled')).toBeGreaterThan(0)
    await closeAll(pub, sub)
  }, 30_000)
})

describe('keepalive while held', () => {
  it('does not disconnect a client for the silence of its own held publishes (keepalive 1 s, one publish held about 3 s)', async () => {
    // 16 KiB/s: the second 48 KiB publish waits about 3 s for its bytes, over 1.5 × keepalive. A raw
    // client, because a library would give up on its own PINGREQ, which waits unread meanwhile.
    const b = await broker({ publishByteRate: 16 * 1024 })
    const pub = await RawClient.connected(b.port, 'held', { keepalive: 1 })
    const started = Date.now()
    for (const messageId of [1, 2])
      pub.send({ cmd: 'publish', topic: `held/${messageId}`, payload: Buffer.alloc(48 * 1024), qos: 1, messageId, retain: false, dup: false })
    await pub.next((p) => p.cmd === 'puback' && p.messageId === 2, 10_000)
    expect(Date.now() - started).toBeGreaterThan(2000)
    expect(pub.closed).toBe(false)
    // and the keepalive still holds once reading resumed: silent for 2 s after that, it is closed
    expect(await pub.closedWithin(3000)).toBe(true)
  }, 20_000)
})

describe('connections, topics and in-flight messages', () => {
  it('closes a connection that sends no CONNECT within connect-timeout, and keeps one that does', async () => {
    const b = await broker({ connectTimeoutMs: 300 })
    const silent = await RawClient.open(b.port)
    const prompt = await RawClient.connected(b.port, 'prompt')
    expect(await silent.closedWithin(2000)).toBe(true)
    expect(await prompt.closedWithin(300)).toBe(false)
    prompt.end()
  })

  it('accepts at most max-connections-per-address from one address, and frees the place on close', async () => {
    const b = await broker({ maxConnectionsPerAddress: 3 })
    const open = await Promise.all([1, 2, 3].map((i) => RawClient.connected(b.port, `c${i}`)))
    const fourth = await RawClient.open(b.port)
    expect(await fourth.closedWithin(2000)).toBe(true)
    expect(b.counters.get('connections-per-address')).toBe(1)
    open[0]?.end()
    await open[0]?.closedWithin(1000)
    await new Promise((r) => setTimeout(r, 50))
    const again = await RawClient.connected(b.port, 'c4')
    expect(again.closed).toBe(false)
    for (const c of [...open, again]) c.end()
  })

  it('closes a connection that publishes to a topic longer than max-topic-length, and stores nothing', async () => {
    const b = await broker({ maxTopicLength: 32 })
    expect(await closesAfter(b, publishWithTopicBytes(Buffer.from('t/'.padEnd(33, 'x')), 1))).toBe(true)
    expect(b.counters.get('protocol-violation')).toBe(1)
    expect(b.broker.persistence.retainedCount).toBe(0)
    // exactly at the limit is fine
    const ok = await connect(b.url)
    await ok.publishAsync('t/'.padEnd(32, 'x'), 'v', { qos: 1, retain: true })
    expect(b.broker.persistence.retainedCount).toBe(1)
    await closeAll(ok)
  })

  it('closes a connection that subscribes to a filter longer than max-topic-length or deeper than max-topic-levels', async () => {
    const b = await broker({ maxTopicLength: 32, maxTopicLevels: 4 })
    const subscribe = (topic: string): Buffer => mqttPacket.generate({ cmd: 'subscribe', messageId: 5, subscriptions: [{ topic, qos: 1 }] })
    expect(await closesAfter(b, subscribe('f/'.padEnd(33, 'x')), 2000, 'long')).toBe(true)
    expect(await closesAfter(b, subscribe('a/b/c/d/e'), 2000, 'deep')).toBe(true)
    expect(await closesAfter(b, publishWithTopicBytes(Buffer.from('a/b/c/d/e')), 2000, 'deep-publish')).toBe(true)
    const ok = await connect(b.url)
    expect((await ok.subscribeAsync('a/b/c/#', { qos: 1 }))[0]?.qos).toBe(1)
    await closeAll(ok)
    expect(b.broker.persistence.retainedCount).toBe(0)
  })

  it('closes a connection with more than max-inflight-messages QoS 2 publishes awaiting PUBREL', async () => {
    const b = await broker({ maxInflightMessages: 5 })
    const c = await RawClient.connected(b.port, 'qos2')
    for (let id = 1; id <= 5; id++) {
      c.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from(String(id)), qos: 2, messageId: id, retain: false, dup: false })
      await c.next((p) => p.cmd === 'pubrec' && p.messageId === id)
    }
    // five held, no PUBREL sent: the sixth is one too many
    c.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from('6'), qos: 2, messageId: 6, retain: false, dup: false })
    expect(await c.closedWithin(2000)).toBe(true)
    expect(c.received.some((p) => p.cmd === 'pubrec' && p.messageId === 6)).toBe(false)
  })

  it('disconnects a client silent for one and a half times its keepalive [MQTT-3.1.2-24]', async () => {
    const b = await broker()
    const c = await RawClient.connected(b.port, 'sleepy', { keepalive: 1 })
    const pinging = await RawClient.connected(b.port, 'pinging', { keepalive: 1 })
    const ping = setInterval(() => pinging.send({ cmd: 'pingreq' }), 500)
    try {
      expect(await c.closedWithin(3000)).toBe(true)
      expect(pinging.closed).toBe(false)
    } finally {
      clearInterval(ping)
      pinging.end()
    }
  })
})
