import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttClient } from 'mqtt'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'

let gw: GatewayProcess
beforeAll(async () => {
  gw = await GatewayProcess.start(tempDataDir('pubsub'))
})
afterAll(async () => {
  expect(await gw.stop()).toBe(0)
})

let unique = 0
const topicRoot = (): string => `t${process.pid}-${++unique}`

describe.each(['mqtt', 'ws'] as const)('MQTT 3.1.1 over %s', (transport) => {
  const url = (): string => gw.url(transport)

  it.each([0, 1, 2] as const)('delivers a QoS %i publish at that QoS', async (qos) => {
    const root = topicRoot()
    const sub = await connect(url())
    const pub = await connect(url())
    try {
      const inbox = new Inbox(sub)
      await sub.subscribeAsync(`${root}/x`, { qos })
      await pub.publishAsync(`${root}/x`, `hello ${qos}`, { qos })
      const [m] = await inbox.waitFor(1)
      expect(m).toMatchObject({ topic: `${root}/x`, payload: `hello ${qos}`, qos })
    } finally {
      await closeAll(sub, pub)
    }
  })

  it('delivers retained messages to late subscribers and clears them with an empty retained publish', async () => {
    const root = topicRoot()
    const pub = await connect(url())
    let late: MqttClient | undefined
    let later: MqttClient | undefined
    try {
      await pub.publishAsync(`${root}/a`, 'A', { qos: 1, retain: true })
      await pub.publishAsync(`${root}/b`, 'B', { qos: 1, retain: true })
      late = await connect(url())
      const inbox = new Inbox(late)
      await late.subscribeAsync(`${root}/+`, { qos: 1 })
      const got = await inbox.waitFor(2)
      expect(got.map((m) => [m.topic, m.payload, m.retain]).sort()).toEqual([
        [`${root}/a`, 'A', true],
        [`${root}/b`, 'B', true]
      ])

      await pub.publishAsync(`${root}/a`, '', { qos: 1, retain: true })
      later = await connect(url())
      const laterInbox = new Inbox(later)
      await later.subscribeAsync(`${root}/#`, { qos: 1 })
      const after = await laterInbox.waitFor(1)
      await laterInbox.settle(200)
      expect(after.map((m) => m.topic)).toEqual([`${root}/b`])
    } finally {
      await closeAll(pub, late, later)
    }
  })

  it('matches + and # wildcards, and # does not match $SYS topics', async () => {
    const root = topicRoot()
    const sub = await connect(url())
    const pub = await connect(url())
    try {
      const plus = new Inbox(sub)
      await sub.subscribeAsync([`${root}/+/temp`, '#'], { qos: 1 })
      await pub.publishAsync(`${root}/dev1/temp`, '1', { qos: 1 })
      await pub.publishAsync(`${root}/dev1/hum`, '2', { qos: 1 })
      await pub.publishAsync(`${root}/dev1/temp/extra`, '3', { qos: 1 })
      // One message per matching subscription would be a duplicate; MQTT 3.1.1 allows one copy per
      // matching subscription but aedes and mosquitto deliver one, so count by topic.
      const got = await plus.settle(400)
      const topics = got.map((m) => m.topic)
      expect(topics).toContain(`${root}/dev1/temp`)
      expect(topics).toContain(`${root}/dev1/hum`)
      expect(topics).toContain(`${root}/dev1/temp/extra`)
      // the broker's own $SYS heartbeat/new-client topics never reach a '#' subscriber [MQTT-4.7.2-1]
      const extra = await connect(url())
      await extra.endAsync()
      await plus.settle(300)
      expect(plus.messages.filter((m) => m.topic.startsWith('$'))).toEqual([])

      const exact = await connect(url())
      try {
        const exactInbox = new Inbox(exact)
        await exact.subscribeAsync(`${root}/+/temp`, { qos: 1 })
        await pub.publishAsync(`${root}/dev2/temp`, '4', { qos: 1 })
        await pub.publishAsync(`${root}/dev2/temp/extra`, '5', { qos: 1 })
        await pub.publishAsync(`${root}/dev2/hum`, '6', { qos: 1 })
        const exactGot = await exactInbox.settle(400)
        expect(exactGot.map((m) => m.topic)).toEqual([`${root}/dev2/temp`])
      } finally {
        await closeAll(exact)
      }
    } finally {
      await closeAll(sub, pub)
    }
  })

  it('publishes the will message when a client disconnects abruptly', async () => {
    const root = topicRoot()
    const watcher = await connect(url())
    const inbox = new Inbox(watcher)
    await watcher.subscribeAsync(`${root}/status`, { qos: 1 })
    const device = await connect(url(), {
      will: { topic: `${root}/status`, payload: Buffer.from('offline'), qos: 1, retain: false }
    })
    try {
      // destroy the socket without DISCONNECT, as a device losing power would
      device.stream.destroy()
      const [m] = await inbox.waitFor(1)
      expect(m).toMatchObject({ topic: `${root}/status`, payload: 'offline' })

      const polite = await connect(url(), {
        will: { topic: `${root}/status`, payload: Buffer.from('should not be sent'), qos: 1, retain: false }
      })
      await polite.endAsync()
      expect((await inbox.settle(300)).length).toBe(1)
    } finally {
      await closeAll(watcher, device)
    }
  })

  it('queues QoS 1 and QoS 2 messages for an offline persistent session', async () => {
    const root = topicRoot()
    const clientId = `persistent-${transport}-${root}`
    const first = await connect(url(), { clientId, clean: false })
    await first.subscribeAsync(`${root}/#`, { qos: 2 })
    await first.endAsync()

    const pub = await connect(url())
    await pub.publishAsync(`${root}/q1`, 'one', { qos: 1 })
    await pub.publishAsync(`${root}/q2`, 'two', { qos: 2 })
    await pub.publishAsync(`${root}/q0`, 'zero', { qos: 0 })
    await closeAll(pub)

    const [again, inbox] = await connectWithInbox(url(), { clientId, clean: false })
    try {
      const got = await inbox.waitFor(2)
      await inbox.settle(300)
      expect(got.map((m) => [m.topic, m.payload, m.qos])).toEqual([
        [`${root}/q1`, 'one', 1],
        [`${root}/q2`, 'two', 2]
      ])
    } finally {
      await closeAll(again)
    }
  })

  it('delivers 1,000 QoS 1 messages in order', async () => {
    const root = topicRoot()
    const sub = await connect(url())
    const pub = await connect(url())
    try {
      const inbox = new Inbox(sub)
      await sub.subscribeAsync(`${root}/seq`, { qos: 1 })
      const count = 1000
      await Promise.all(Array.from({ length: count }, (_, i) => pub.publishAsync(`${root}/seq`, String(i), { qos: 1 })))
      const got = await inbox.waitFor(count, 20_000)
      expect(got.map((m) => Number(m.payload))).toEqual(Array.from({ length: count }, (_, i) => i))
    } finally {
      await closeAll(sub, pub)
    }
  })
})
