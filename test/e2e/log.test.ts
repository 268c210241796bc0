import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'
import { call, runCli, type ApiRecordJson } from './helpers.js'

// The partitioned log end to end, against a real gateway process: MQTT and HTTP producers,
// consumer groups over HTTP, a restart, and the culex tail / replay commands.

const CONFIG = `
streams:
  telemetry:
    partitions: 4
routes:
  - filter: devices/+/telemetry
    stream: telemetry
    key: topic-level:2
`
const dir = tempDataDir('e2e-log')
const dataDir = join(dir, 'data')
const configFile = join(dir, 'culex.yaml')
let gw: GatewayProcess

beforeAll(async () => {
  writeFileSync(configFile, CONFIG)
  gw = await GatewayProcess.start(dataDir, ['--config', configFile])
})
afterAll(async () => {
  expect(await gw.stop()).toBe(0)
})

interface Member {
  memberId: string
  assignments: Array<{ stream: string; partition: number }>
}

async function joinGroup(group: string, sessionTimeoutMs = 10_000): Promise<Member> {
  const r = await call(gw.api, 'POST', `/api/v1/groups/${group}/members`, { streams: ['telemetry'], sessionTimeoutMs })
  expect(r.status).toBe(200)
  return r.body as unknown as Member
}

async function fetchRecords(group: string, memberId: string, waitMs = 0): Promise<ApiRecordJson[]> {
  const r = await call(gw.api, 'POST', `/api/v1/groups/${group}/members/${memberId}/fetch`, { maxRecords: 1000, waitMs, encoding: 'utf8' })
  expect(r.status).toBe(200)
  return r.body.records as ApiRecordJson[]
}

async function commitAll(group: string, memberId: string, records: ApiRecordJson[]): Promise<void> {
  const next = new Map<number, number>()
  for (const r of records) next.set(r.partition, r.offset + 1)
  const offsets = [...next].map(([partition, offset]) => ({ stream: 'telemetry', partition, offset }))
  const r = await call(gw.api, 'POST', `/api/v1/groups/${group}/members/${memberId}/commit`, { offsets })
  expect(r.status).toBe(200)
}

/** Publishes `count` QoS 1 messages per device over MQTT, concurrently; resolves when all are acked. */
async function publishDevices(devices: string[], count: number, tag: string): Promise<void> {
  const clients = await Promise.all(devices.map((d) => connect(gw.url('mqtt'), { clientId: d })))
  try {
    await Promise.all(
      clients.map((c, i) =>
        Promise.all(Array.from({ length: count }, (_, n) => c.publishAsync(`devices/${devices[i]}/telemetry`, `${tag}:${devices[i]}:${n}`, { qos: 1 })))
      )
    )
  } finally {
    await closeAll(...clients)
  }
}

describe('the log through a running gateway', () => {
  const devices = ['d1', 'd2', 'd3', 'd4', 'd5']

  it('takes records from MQTT and HTTP and hands them to a consumer group in per-key order', async () => {
    await publishDevices(devices, 20, 'mqtt')
    const produced = await call(gw.api, 'POST', '/api/v1/streams/telemetry/records', {
      records: Array.from({ length: 10 }, (_, n) => ({ key: 'http-producer', value: `http:${n}` })),
      encoding: 'utf8'
    })
    expect(produced.status).toBe(200)

    const m = await joinGroup('readers')
    const records = await fetchRecords('readers', m.memberId)
    expect(records.length).toBe(110)
    const byKey = new Map<string, number[]>()
    for (const r of records) byKey.set(r.key!, [...(byKey.get(r.key!) ?? []), Number(r.value.split(':').pop())])
    for (const seq of byKey.values()) expect(seq).toEqual([...seq].sort((a, b) => a - b))
    expect(records.find((r) => r.key === 'd3')).toMatchObject({ topic: 'devices/d3/telemetry' })
    await commitAll('readers', m.memberId, records)
    const described = await call(gw.api, 'GET', '/api/v1/groups/readers')
    expect((described.body.partitions as Array<{ lag: number }>).every((p) => p.lag === 0)).toBe(true)
    expect((await call(gw.api, 'DELETE', `/api/v1/groups/readers/members/${m.memberId}`)).status).toBe(204)
  })

  it("moves a silent member's partitions to the other member, which resumes from the commits with nothing lost", async () => {
    const a = await joinGroup('failover', 1000)
    const b = await joinGroup('failover', 1000)
    const aNow = (await call(gw.api, 'POST', `/api/v1/groups/failover/members/${a.memberId}/heartbeat`)).body as unknown as Member
    expect(aNow.assignments.length).toBe(2)
    const seen = new Set<string>()
    // A processes and commits only the first half of each of its partitions, then goes silent
    const fromA = await fetchRecords('failover', a.memberId)
    const kept: ApiRecordJson[] = []
    for (const { partition } of aNow.assignments) {
      const mine = fromA.filter((r) => r.partition === partition)
      kept.push(...mine.slice(0, Math.floor(mine.length / 2)))
    }
    for (const r of kept) seen.add(`${r.partition}@${r.offset}`)
    await commitAll('failover', a.memberId, kept)
    const fromB = await fetchRecords('failover', b.memberId)
    for (const r of fromB) seen.add(`${r.partition}@${r.offset}`)
    await commitAll('failover', b.memberId, fromB)
    // B long-polls (which keeps it alive) until A's session has timed out and it owns all four partitions
    const deadline = Date.now() + 8000
    let assignments = 0
    while (assignments < 4 && Date.now() < deadline) {
      for (const r of await fetchRecords('failover', b.memberId, 500)) seen.add(`${r.partition}@${r.offset}`)
      const hb = (await call(gw.api, 'POST', `/api/v1/groups/failover/members/${b.memberId}/heartbeat`)).body as unknown as Member
      assignments = hb.assignments.length
    }
    expect(assignments).toBe(4)
    for (const r of await fetchRecords('failover', b.memberId)) seen.add(`${r.partition}@${r.offset}`)
    expect(seen.size).toBe(110)
    expect((await call(gw.api, 'POST', `/api/v1/groups/failover/members/${a.memberId}/heartbeat`)).status).toBe(404)
  })

  it('resumes a group from its committed offsets after a restart', async () => {
    const m = await joinGroup('restarting')
    const first = await fetchRecords('restarting', m.memberId)
    await commitAll('restarting', m.memberId, first)
    expect(await gw.stop()).toBe(0)
    gw = await GatewayProcess.start(dataDir, ['--config', configFile])
    const again = await joinGroup('restarting')
    expect(await fetchRecords('restarting', again.memberId)).toEqual([])
    await publishDevices(['d1', 'd2'], 3, 'after-restart')
    const fresh = await fetchRecords('restarting', again.memberId, 2000)
    expect(fresh.map((r) => r.value).sort()).toEqual([
      'after-restart:d1:0',
      'after-restart:d1:1',
      'after-restart:d1:2',
      'after-restart:d2:0',
      'after-restart:d2:1',
      'after-restart:d2:2'
    ])
  })

  it('culex tail prints records from a position, and as a group member commits what it printed', async () => {
    const byPosition = await runCli(['tail', 'telemetry', '--from', 'earliest', '--max', '7', '--url', gw.api])
    expect(byPosition.code).toBe(0)
    const lines = byPosition.stdout.trim().split('\n')
    expect(lines.length).toBe(7)
    expect(lines[0]).toMatch(/^telemetry\/\d@\d+ \d{4}-\d{2}-\d{2}T\S+ key=\S+ topic=\S+ \S+/)

    const json = await runCli(['tail', 'telemetry', '--group', 'tailers', '--from', 'earliest', '--max', '116', '--json', '--url', gw.api])
    expect(json.code).toBe(0)
    const records = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ApiRecordJson)
    expect(records.length).toBe(116)
    const described = await call(gw.api, 'GET', '/api/v1/groups/tailers')
    expect((described.body.partitions as Array<{ lag: number }>).reduce((n, p) => n + p.lag, 0)).toBe(0)
    expect((described.body.members as unknown[]).length).toBe(0) // it left when done

    const bad = await runCli(['tail', 'telemetry', '--from', 'yesterday', '--url', gw.api])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/invalid --from "yesterday"/)
    const down = await runCli(['tail', 'telemetry', '--url', 'http://127.0.0.1:9'])
    expect(down.stderr).toMatch(/cannot reach the Culex API at http:\/\/127\.0\.0\.1:9/)
  })

  it('culex replay republishes exactly the records from a time into MQTT under a prefix', async () => {
    const t = Date.now()
    await new Promise((r) => setTimeout(r, 20))
    await publishDevices(['d9'], 12, 'replayed')
    const [watcher, inbox] = await connectWithInbox(gw.url('mqtt'))
    await watcher.subscribeAsync('history/#', { qos: 1 })
    const run = await runCli(['replay', 'telemetry', '--from', new Date(t).toISOString(), '--topic-prefix', 'history/', '--url', gw.api])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/replay done: 12 of 12 records of telemetry published under history\//)
    const got = await inbox.waitFor(12)
    expect(got.map((m) => [m.topic, m.payload])).toEqual(Array.from({ length: 12 }, (_, n) => ['history/devices/d9/telemetry', `replayed:d9:${n}`]))
    await closeAll(watcher)
    // replayed messages are not appended to the log again
    const info = await call(gw.api, 'GET', '/api/v1/streams/telemetry')
    const total = (info.body.partitions as Array<{ endOffset: number }>).reduce((n, p) => n + p.endOffset, 0)
    expect(total).toBe(110 + 6 + 12)
  })
})
