// Scenario (Culex only): MQTT consumers of the log, `$share/<group>/bench/#`, against the HTTP
// consumers of shared-ack, on the same stored records. N records (100,000; --quick 20,000;
// 4 partitions, 1,000 keys) are written in-process through Culex's Store and RocksLog, one batch
// after the other, so within a partition offset order is index order. Each record's value carries
// its index (uint32 LE), its topic is `bench/dev-<index mod 1000>` and its key `dev-<index mod 1000>`.
// Then `culex start` on that data dir with the route `bench/#` -> stream `bench` and the admin API,
// and one after the other, each with a new group (each starts at the earliest record, so each
// consumes all N):
//   - references over HTTP: the ordered group with 1 member and the shared group (ordering 'none')
//     with 1 consumer, exactly as shared-ack runs them;
//   - MQTT.js clients in the bench process, QoS 1 (MQTT.js PUBACKs each message after its
//     'message' event), subscribed to `$share/<group>/bench/#` after `PUT /api/v1/shared-groups/<group>`
//     `{ streams: ['bench'], ordering }`: ordering 'none' with 1 and 2 members, 'per-key' with 1 and
//     2 members (time-boxed as shared-ack's per-key phases).
// Each MQTT phase fails unless every record arrived exactly once, on its own topic (the records'
// topics match the members' filter, so none is acknowledged without delivery), with per-key order
// per key in the 'per-key' phases, and the group reports lag 0, nothing pending and nothing
// dead-lettered within 10 s after the last record.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import type { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { RecordInput } from '../../src/log/types.js'
import { closeClients, connectClient, subscribeGranted } from '../lib/mqtt-inproc.js'
import { nowMs, sleep } from '../lib/procs.js'
import { pick, type CpuReport, type Metric, type Mode, type Scenario } from '../lib/scenario.js'
import { LOG_PARTITIONS, LOG_STREAM } from './log-append.js'
import { meter, orderedPhase, phaseMetrics, prefilledBroker, ratioMetric, sharedPhase, type Phase, type PhaseContext } from './shared-ack.js'

export function shareMqttRecords(mode: Mode): number {
  return pick(mode, { quick: 20_000, default: 100_000, full: 200_000 })
}

/** Distinct keys (and topics): many, so per-key order seldom holds a record back. */
const KEYS = 1000
const VALUE_BYTES = 64
const PREFILL_BATCH = 1000
/** The members' filter; the route's is the same, so every record's topic matches it. */
const FILTER = `${LOG_STREAM}/#`
/** An MQTT phase fails when no record arrived for this long. */
const STALL_MS = 10_000
/** After the last record: how long the group may take to report lag 0 (its acks are written after the PUBACKs). */
const SETTLE_MS = 10_000
/** Records an MQTT member holds unacknowledged at most (src/routing/log-shares.ts DEFAULT_WINDOW): each dispatcher fetch asks for at most this many. */
const MQTT_WINDOW = 32
const perKeyBudgetMs = (mode: Mode): number => pick(mode, { quick: 60_000, default: 60_000, full: 120_000 })

/** Culex with the stream and a route `bench/#` -> it (nothing is published: the route makes `$share/<g>/bench/#` a log consumer). */
export const SHARE_CULEX_CONFIG = {
  streams: { [LOG_STREAM]: { partitions: LOG_PARTITIONS } },
  routes: [{ filter: FILTER, stream: LOG_STREAM, key: 'topic-level:2' }]
}

const keyOf = (i: number): string => `dev-${i % KEYS}`
const topicOf = (i: number): string => `${LOG_STREAM}/${keyOf(i)}`

/** Appends records 0 .. total-1 in order, one batch at a time (offset order = index order per partition). */
async function prefillIndexed(log: RocksLog, total: number, deadline: number): Promise<void> {
  for (let from = 0; from < total; from += PREFILL_BATCH) {
    if (nowMs() > deadline) throw new Error('deadline reached while writing the records')
    const records: RecordInput[] = []
    for (let i = from; i < Math.min(total, from + PREFILL_BATCH); i++) {
      const value = Buffer.alloc(VALUE_BYTES, 'x')
      value.writeUInt32LE(i, 0)
      records.push({ key: keyOf(i), value, topic: topicOf(i), qos: 1, clientId: keyOf(i) })
    }
    await log.append(LOG_STREAM, records)
  }
}

interface MqttPhase extends Phase {
  /** records each member received */
  perMember: number[]
  /** from the last record to the group reporting lag 0 (ms); null when not checked */
  settleMs: number | null
}

async function mqttPhase(
  c: PhaseContext,
  port: number,
  group: string,
  ordering: 'none' | 'per-key',
  members: number,
  budgetMs: number | null
): Promise<MqttPhase> {
  const { api, total } = c
  const name = `MQTT $share (${ordering}) x${members}`
  await api.json('PUT', `/shared-groups/${group}`, { streams: [LOG_STREAM], ordering })
  const clients: MqttClient[] = []
  let closing = false
  try {
    for (let i = 0; i < members; i++) clients.push(await connectClient(port, `bench-share-${group}-${i + 1}`))
    const seen = new Uint8Array(total)
    const lastOfKey = new Int32Array(KEYS).fill(-1)
    const perMember: number[] = new Array<number>(members).fill(0)
    let received = 0
    let problem: string | null = null
    let boxed = false
    let end: (ReturnType<ReturnType<typeof meter>> & { records: number }) | null = null
    let lastAt = nowMs()
    let finish: () => void = () => {}
    const finished = new Promise<void>((res) => (finish = res))
    const fail = (message: string): void => {
      problem ??= `${name}: ${message}`
      finish()
    }
    // the measured window: from just before the SUBSCRIBEs to the last record
    const measure = meter(c.pid)
    clients.forEach((client, m) => {
      client.on('error', (err) => fail(`member ${m + 1}: ${err.message}`))
      client.on('close', () => {
        if (!closing) fail(`member ${m + 1}: connection closed by the broker after ${received} of ${total} records`)
      })
      client.on('message', (topic, payload) => {
        lastAt = nowMs()
        if (payload.length !== VALUE_BYTES) return fail(`a ${payload.length}-byte message on ${topic}`)
        const i = payload.readUInt32LE(0)
        if (i >= total) return fail(`record index ${i} out of range`)
        if (topic !== topicOf(i)) return fail(`record ${i} arrived on ${topic}, expected ${topicOf(i)}`)
        if (seen[i]) return fail(`record ${i} delivered twice (the second time to member ${m + 1})`)
        seen[i] = 1
        if (ordering === 'per-key') {
          const k = i % KEYS
          const before = lastOfKey[k] ?? -1
          if (i < before) return fail(`key ${keyOf(i)}: record ${i} arrived after record ${before}`)
          lastOfKey[k] = i
        }
        perMember[m] = (perMember[m] ?? 0) + 1
        if (++received === total) {
          end ??= { ...measure(), records: received }
          finish()
        }
      })
    })
    const stopAt = budgetMs === null ? Infinity : nowMs() + budgetMs
    const ticker = setInterval(() => {
      const now = nowMs()
      if (now > c.deadline) fail(`deadline reached after ${received} of ${total} records`)
      else if (now - lastAt > STALL_MS) fail(`no record for ${STALL_MS / 1000} s, after ${received} of ${total}`)
      else if (now > stopAt && end === null) {
        boxed = true
        end = { ...measure(), records: received }
        finish()
      }
    }, 50)
    try {
      lastAt = nowMs()
      await Promise.all(clients.map((client) => subscribeGranted(client, `$share/${group}/${FILTER}`, 1)))
      await finished
    } finally {
      clearInterval(ticker)
    }
    if (problem !== null) throw new Error(problem)
    const done = end ?? { ...measure(), records: received }
    const id = `mqtt_${ordering === 'none' ? 'none' : 'perkey'}_${members}`
    const label = `MQTT $share, ${ordering}, ${members} member${members > 1 ? 's' : ''}`
    const counts = { ...done, requests: 0, emptyFetches: 0, perMember }
    if (boxed) return { id, label, ...counts, complete: false, settleMs: null }
    // the acks are written after the PUBACKs, a turn at a time: wait for the group to say it is done
    const t0 = nowMs()
    for (;;) {
      const d = await api.json<{ lag: number; deadLettered: number; partitions: Array<{ pending: number }> }>('GET', `/shared-groups/${group}`)
      const pending = d.partitions.reduce((n, p) => n + p.pending, 0)
      if (d.lag === 0 && pending === 0 && d.deadLettered === 0) break
      if (nowMs() - t0 > SETTLE_MS || nowMs() > c.deadline) {
        throw new Error(
          `${name}: all ${total} records received, but after ${SETTLE_MS / 1000} s the group reports lag ${d.lag}, pending ${pending}, dead-lettered ${d.deadLettered}`
        )
      }
      await sleep(20)
    }
    const settleMs = nowMs() - t0
    if (problem !== null) throw new Error(problem) // a duplicate during the wait
    return { id, label, ...counts, complete: true, settleMs }
  } finally {
    closing = true
    closeClients(clients)
    // the group's state goes, so later phases do not carry it (its records stay in the stream)
    await sleep(100)
    await api.call('DELETE', `/shared-groups/${group}`).catch(() => undefined)
  }
}

function isMqtt(p: Phase): p is MqttPhase {
  return 'perMember' in p
}

function cpuRatio(key: string, label: string, a: Phase | undefined, b: Phase | undefined): Metric {
  const per = (p: Phase | undefined): number | null => (p && p.records > 0 ? p.brokerMs / p.records : null)
  const pa = per(a)
  const pb = per(b)
  return { key, label, value: pa !== null && pb ? pa / pb : null, unit: 'x', better: 'lower', show: true, ratio: false }
}

export const shareMqtt: Scenario = {
  id: 'share-mqtt',
  title: 'MQTT $share consumers of the log (QoS 1, PUBACK = ack) against the HTTP shared and ordered groups, on N stored records (Culex only)',
  setup: 'own',
  appliesTo: ['culex-fsync', 'culex-none', 'base-fsync', 'base-none'],
  deadlineMs: (mode) => pick(mode, { quick: 300_000, default: 600_000, full: 900_000 }),
  async run(ctx) {
    const total = shareMqttRecords(ctx.mode)
    const durability = ctx.brokerName.endsWith('none') ? 'none' : 'fsync'
    const notes: string[] = []
    const root = mkdtempSync(join(tmpdir(), 'culex-bench-share-mqtt-'))
    try {
      const { broker, c } = await prefilledBroker(ctx, root, total, (log) => prefillIndexed(log, total, ctx.deadline), SHARE_CULEX_CONFIG)
      const phases: Phase[] = []
      const run = async <P extends Phase>(p: Promise<P>): Promise<P> => {
        const phase = await p
        phases.push(phase)
        if (!phase.complete) {
          notes.push(
            `${phase.label}: stopped by its ${perKeyBudgetMs(ctx.mode) / 1000} s time box after ${phase.records} of ${total} records ` +
              '(rate and CPU over those; each arrived once and in key order, the rest not checked)'
          )
        }
        const mqtt = isMqtt(phase) ? phase : null
        const extra = mqtt ? `, per member ${mqtt.perMember.join(' / ')}` : `, ${phase.requests} requests`
        const settle = mqtt?.settleMs != null ? `, group at lag 0 ${Math.round(mqtt.settleMs)} ms after the last` : ''
        ctx.log(
          `  share-mqtt   ${phase.label}: ${Math.round((phase.records * 1000) / phase.wallMs)} records/s, ` +
            `broker ${((phase.brokerMs * 1000) / Math.max(1, phase.records)).toFixed(1)} µs/record, ` +
            `bench process ${((phase.clientMs * 1000) / Math.max(1, phase.records)).toFixed(1)} µs/record${extra}${settle}, ` +
            `${(phase.wallMs / 1000).toFixed(2)} s${phase.complete ? '' : ' (time box)'}`
        )
        return phase
      }
      const port = broker.port
      const ordered1 = await run(orderedPhase(c, 'bench-ordered-1', 1))
      const http1 = await run(sharedPhase(c, 'bench-shared-none-1', 'none', 1))
      // the same with fetches of 32, the MQTT dispatcher's window per member (at most 32 a fetch)
      const http32 = await run(sharedPhase(c, 'bench-shared-none-32', 'none', 1, null, MQTT_WINDOW))
      const none1 = await run(mqttPhase(c, port, 'bench-workers-none-1', 'none', 1, null))
      const none2 = await run(mqttPhase(c, port, 'bench-workers-none-2', 'none', 2, null))
      const key1 = await run(mqttPhase(c, port, 'bench-workers-key-1', 'per-key', 1, perKeyBudgetMs(ctx.mode)))
      const key2 = await run(mqttPhase(c, port, 'bench-workers-key-2', 'per-key', 2, perKeyBudgetMs(ctx.mode)))
      await broker.stop()

      for (const p of [none2, key2]) {
        const share = p.perMember.map((n) => `${((100 * n) / Math.max(1, p.records)).toFixed(0)}%`).join(' / ')
        notes.push(`${p.label}: the members got ${p.perMember.join(' / ')} records (${share})`)
      }
      const metrics: Metric[] = [
        ...phaseMetrics(ordered1),
        ...phaseMetrics(http1),
        ...phaseMetrics(http32),
        ...phaseMetrics(none1),
        ...phaseMetrics(none2),
        ...phaseMetrics(key1),
        ...phaseMetrics(key2),
        ratioMetric('mqtt_over_http_shared_1', 'MQTT $share (none) / HTTP shared (none), 1 consumer: records/s ratio', none1, http1),
        ratioMetric('mqtt_over_http_shared_32_1', `MQTT $share (none) / HTTP shared (none) fetch ${MQTT_WINDOW}, 1 consumer: records/s ratio`, none1, http32),
        ratioMetric('mqtt_over_ordered_1', 'MQTT $share (none) / HTTP ordered group, 1 consumer: records/s ratio', none1, ordered1),
        cpuRatio('mqtt_over_http_shared_cpu_1', 'MQTT $share (none) / HTTP shared (none), 1 consumer: broker CPU per record ratio', none1, http1),
        ratioMetric('mqtt_none_2_over_1', 'MQTT $share (none), 2 members / 1: records/s ratio', none2, none1),
        ratioMetric('mqtt_perkey_over_none_2', 'MQTT $share per-key / none, 2 members: records/s ratio', key2, none2)
      ]
      const cpu: CpuReport = {
        wallMs: phases.reduce((n, p) => n + p.wallMs, 0),
        brokerMs: phases.reduce((n, p) => n + p.brokerMs, 0),
        clientMs: phases.reduce((n, p) => n + p.clientMs, 0)
      }
      return {
        metrics,
        cpu,
        notes,
        details: { records: total, partitions: c.ranges, keys: KEYS, filter: `$share/<group>/${FILTER}`, qos: 1, durability, phases }
      }
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }
}
