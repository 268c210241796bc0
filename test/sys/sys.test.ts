import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashPassword, writePasswordFile } from '../../src/auth/password-file.js'
import { Culex, sleep } from '../bridges/e2e.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect } from '../helpers/mqtt.js'

// The $SYS topics of a real gateway process (sys-interval 1s): mosquitto's names and formats
// under $SYS/broker/, Culex's under $SYS/culex/, retained; read only by users the ACL lets read
// them ('#' does not match $SYS; `topic read $SYS/#` does).

/** mosquitto's $SYS/broker/ topics (mosquitto(8), BROKER STATUS) that tools read. */
const MOSQUITTO_TOPICS = [
  'version',
  'uptime',
  'clients/connected',
  'clients/total',
  'clients/maximum',
  'clients/active',
  'clients/inactive',
  'clients/disconnected',
  'messages/received',
  'messages/sent',
  'publish/messages/dropped',
  'publish/messages/received',
  'publish/messages/sent',
  'bytes/received',
  'bytes/sent',
  'subscriptions/count',
  'retained messages/count',
  'heap/current',
  'heap/maximum',
  ...['messages/received', 'messages/sent', 'publish/received', 'publish/sent', 'publish/dropped', 'bytes/received', 'bytes/sent', 'connections'].flatMap((l) =>
    ['1min', '5min', '15min'].map((p) => `load/${l}/${p}`)
  )
].map((t) => `$SYS/broker/${t}`)

const ACL = `
user watcher
topic read $SYS/#

user plain
topic readwrite #
stream all *
`
const PASSWORDS: Record<string, string> = { watcher: 'watcher-secret', plain: 'plain-secret' }

interface Seen {
  payload: string
  retain: boolean
}

function collect(client: MqttClient): Map<string, Seen> {
  const seen = new Map<string, Seen>()
  client.on('message', (topic, payload, packet) => seen.set(topic, { payload: payload.toString(), retain: packet.retain }))
  return seen
}

async function until(test: () => boolean, ms: number): Promise<void> {
  for (let waited = 0; waited < ms && !test(); waited += 50) await sleep(50)
}

describe('$SYS topics', () => {
  let culex: Culex
  const dir = tempDataDir('sys-auth')

  beforeAll(async () => {
    const passwordFile = join(dir, 'passwords')
    const aclFile = join(dir, 'acl')
    const entries = new Map<string, string>()
    for (const [user, password] of Object.entries(PASSWORDS)) entries.set(user, await hashPassword(password, { ln: 10, r: 8, p: 1 }))
    await writePasswordFile(passwordFile, entries)
    writeFileSync(aclFile, ACL)
    culex = await Culex.start({
      streams: { telemetry: { partitions: 2 } },
      routes: [{ filter: 'dev/#', stream: 'telemetry' }],
      bridges: [],
      extra: { 'sys-interval': '1s', 'password-file': passwordFile, 'acl-file': aclFile }
    })
  })
  afterAll(async () => {
    await culex.dispose()
  })

  const as = (user: string): Promise<MqttClient> =>
    connect(culex.mqttUrl, { username: user, password: PASSWORDS[user], clientId: `${user}-${Math.random().toString(36).slice(2, 8)}` })
  const basic = { authorization: `Basic ${Buffer.from('plain:plain-secret').toString('base64')}` }

  it("publishes mosquitto's $SYS/broker topics and $SYS/culex ones, retained, to a user the ACL lets read them", async () => {
    const plain = await as('plain')
    const watcher = await as('watcher')
    try {
      // traffic for the counters, and a group with lag
      for (let i = 0; i < 4; i++) await plain.publishAsync(`dev/d${i}`, Buffer.from('v'), { qos: 1 })
      const reset = await fetch(`${culex.api}/api/v1/groups/sys-g/reset`, {
        method: 'POST',
        headers: { ...basic, 'content-type': 'application/json' },
        body: JSON.stringify({ stream: 'telemetry', to: 'earliest' })
      })
      expect(reset.status).toBe(200)
      const seen = collect(watcher)
      await watcher.subscribeAsync('$SYS/#', { qos: 0 })
      const wanted = [...MOSQUITTO_TOPICS, '$SYS/culex/streams/telemetry/end-offset', '$SYS/culex/groups/sys-g/lag']
      await until(() => wanted.every((t) => seen.has(t)) && seen.get('$SYS/culex/groups/sys-g/lag')?.payload === '4', 5000)
      for (const t of wanted) expect(seen.has(t), t).toBe(true)
      expect(seen.get('$SYS/broker/version')?.payload).toMatch(/^culex version \d+\.\d+\.\d+/)
      expect(seen.get('$SYS/broker/uptime')?.payload).toMatch(/^\d+ seconds$/)
      expect(seen.get('$SYS/broker/load/messages/received/1min')?.payload).toMatch(/^\d+\.\d\d$/)
      expect(Number(seen.get('$SYS/broker/publish/messages/received')?.payload)).toBeGreaterThanOrEqual(4)
      expect(Number(seen.get('$SYS/broker/clients/connected')?.payload)).toBeGreaterThanOrEqual(1)
      expect(seen.get('$SYS/culex/streams/telemetry/end-offset')?.payload).toBe('4')
      expect(seen.get('$SYS/culex/groups/sys-g/lag')?.payload).toBe('4')
      // retained: a subscriber arriving later gets the current values at once
      expect(seen.get('$SYS/broker/version')?.retain).toBe(true)
      // uptime changes every pass: published again, live
      const first = seen.get('$SYS/broker/uptime')?.payload
      await until(() => seen.get('$SYS/broker/uptime')?.payload !== first, 3000)
      expect(seen.get('$SYS/broker/uptime')?.payload).not.toBe(first)
    } finally {
      await closeAll(plain, watcher)
    }
  })

  it('sends nothing under $SYS to a user whose ACL has no $SYS read rule', async () => {
    const plain = await as('plain')
    try {
      const seen = collect(plain)
      await plain.subscribeAsync('#', { qos: 0 })
      // refused (SUBACK 0x80, which MQTT.js reports as an error) or granted and filtered: either way nothing arrives
      await plain.subscribeAsync('$SYS/#', { qos: 0 }).catch(() => undefined)
      await plain.publishAsync('plain/ping', Buffer.from('x'), { qos: 1 })
      await sleep(2500) // more than two passes
      expect(seen.has('plain/ping')).toBe(true)
      expect([...seen.keys()].filter((t) => t.startsWith('$SYS'))).toEqual([])
    } finally {
      await closeAll(plain)
    }
  })
})

describe('sys-interval 0', () => {
  let culex: Culex
  beforeAll(async () => {
    culex = await Culex.start({ streams: { s: null }, bridges: [], extra: { 'sys-interval': 0 } })
  })
  afterAll(async () => {
    await culex.dispose()
  })

  it('publishes no $SYS topics', async () => {
    const c = await connect(culex.mqttUrl, { clientId: 'sys-off' })
    try {
      const seen = collect(c)
      await c.subscribeAsync('$SYS/broker/#', { qos: 0 })
      await sleep(1500)
      expect([...seen.keys()]).toEqual([])
    } finally {
      await closeAll(c)
    }
  })
})
