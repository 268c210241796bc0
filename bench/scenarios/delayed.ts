// Scenario (Culex only): delayed delivery throughput, over MQTT and over HTTP. Culex is started with
// a stream `bench` (4 partitions), no routes, and the admin API. First a warm-up (1,000 plain
// publishes, 10 produce requests; not measured), then one after the other:
//   0. reference: the publishers below publish M plain QoS 1 messages to `bench/plain/<i>` (no
//      subscriber): accept rate and broker CPU of a publish that is not delayed.
//   1. MQTT `$delayed/1/<topic>`: 4 MQTT.js publishers in the bench process, QoS 1, each with at most
//      16 unacknowledged publishes, send M messages (5,000 with --quick, else 20,000 / 50,000),
//      message i to `$delayed/1/bench/delayed/<i>` (payload: i as uint32 LE); one subscriber on
//      `bench/delayed/#` at QoS 1. Accept rate: PUBACKs / (last PUBACK - first publish); broker CPU
//      per PUBACK up to when the first message comes due (deliveries start then). Delivery rate:
//      deliveries / (last - first delivery). Lateness of each message: its arrival (Date.now() in
//      the subscriber) minus (its publish call, Date.now(), + 1000 ms). The broker's due time is its
//      own Date.now() when it claims the publish, + 1000, and it claims it after the client called
//      publish, so a lateness below 0 would be an early delivery; up to 2 ms below 0 is tolerated
//      (Date.now() has 1 ms granularity on both sides).
//   2. reference: K records (10,000 with --quick, else 50,000) produced over HTTP without a delay,
//      in requests of 100, 4 requests in flight.
//   3. HTTP `delayMs: 1000`: the same requests with `delayMs`: scheduling rate from the 202s, then the
//      stream is polled (GET /streams/bench, every 10 ms) until all K are in it: how long after the
//      last due time (the latest `deliverAt` of the 202s).
//   4. HTTP burst: K more records with one absolute `deliverAt` for all, set far enough ahead that
//      all are stored before it; from that time until all are in the stream: the rate at which the
//      delayed queue appends records that are all due at once.
// Checks: every MQTT message acknowledged, delivered exactly once on its own topic and not before its
// due time; every HTTP record appended exactly once (the values carry an index; the stream is read
// back) with an append timestamp not before its deliverAt. Violations are counted in the table
// (must be 0) and described in the notes.
import type { MqttClient } from 'mqtt'
import { closeClients, connectClient, subscribeGranted } from '../lib/mqtt-inproc.js'
import { nowMs, sleep } from '../lib/procs.js'
import { brokerOf, percentile, pick, type CpuReport, type Metric, type Mode, type Scenario } from '../lib/scenario.js'
import { LOG_PARTITIONS, LOG_STREAM } from './log-append.js'
import { Api, meter } from './shared-ack.js'

export function delayedMessages(mode: Mode): number {
  return pick(mode, { quick: 5_000, default: 20_000, full: 50_000 })
}
/** Below delayed-max-messages (100,000 by default): the phases run one after the other. */
export function delayedRecords(mode: Mode): number {
  return pick(mode, { quick: 10_000, default: 50_000, full: 50_000 })
}

const PUBLISHERS = 4
const WINDOW = 16
const DELAY_S = 1
const DELAY_MS = DELAY_S * 1000
/** Date.now() has 1 ms granularity in the publisher and in the subscriber. */
const TOLERANCE_MS = 2
const TOPIC_PREFIX = 'bench/delayed'
/** The reference publishes: no subscriber matches them. */
const PLAIN_PREFIX = 'bench/plain'
const HTTP_BATCH = 100
const HTTP_IN_FLIGHT = 4
const POLL_MS = 10
/** A phase gives up when nothing moved (no PUBACK, no delivery, no new record) for this long past when something was due. */
const STALL_MS = 10_000
/** After the last record of a phase arrived: wait this long for duplicates. */
const LINGER_MS = 300

export const DELAYED_CULEX_START = {
  admin: true,
  culexConfig: { streams: { [LOG_STREAM]: { partitions: LOG_PARTITIONS } } }
}

interface Window {
  startedAt: number
  wallMs: number
  brokerMs: number
  clientMs: number
}

interface Problems {
  early: number
  duplicates: number
  missing: number
  other: number
  samples: string[]
}

const noProblems = (): Problems => ({ early: 0, duplicates: 0, missing: 0, other: 0, samples: [] })
const problemCount = (p: Problems): number => p.early + p.duplicates + p.missing + p.other
function sample(p: Problems, what: string): void {
  if (p.samples.length < 5) p.samples.push(what)
}

interface MqttResult {
  sent: number
  acked: number
  received: number
  acceptMs: number
  deliverMs: number
  /** ms after the due time (publish call + 1000), per delivered message */
  lateness: Float64Array
  acceptWindow: Window
  /** when the accepting outlasted the delay: the window from the first publish to when the first came due, and the PUBACKs in it */
  preDue: { acked: number; window: Window } | null
  whole: Window
  problems: Problems
  /** lowest lateness seen (ms; below 0 = before the due time as the client reckons it) */
  minLateness: number
  pubErrors: number
}

/**
 * Publishes `total` messages and, unless `plain`, checks their delayed delivery. `plain`: the same
 * publishers publish to `bench/plain/<i>` (not delayed, no subscriber), the reference for the accept rate.
 */
async function mqttDelayed(pid: number, port: number, total: number, deadline: number, plain = false): Promise<MqttResult> {
  const clients: MqttClient[] = []
  let closing = false
  try {
    const sub = await connectClient(port, 'bench-delayed-sub')
    clients.push(sub)
    await subscribeGranted(sub, `${TOPIC_PREFIX}/#`, 1)
    const pubs: MqttClient[] = []
    for (let p = 0; p < PUBLISHERS; p++) pubs.push(await connectClient(port, `bench-delayed-pub-${p + 1}`))
    clients.push(...pubs)
    let broken: string | null = null
    for (const c of clients) {
      c.on('error', (err) => (broken ??= `${c.options.clientId ?? '?'}: ${err.message}`))
      c.on('close', () => {
        if (!closing) broken ??= `${c.options.clientId ?? '?'}: connection closed by the broker`
      })
    }

    // a function, so the checks after the loops read `broken` as the handlers left it
    const failIfBroken = (): void => {
      if (broken !== null) throw new Error(`MQTT $delayed: ${broken}`)
    }

    const sentWall = new Float64Array(total)
    const lateness = new Float64Array(total)
    const seen = new Uint8Array(total)
    const problems = noProblems()
    let sent = 0
    let acked = 0
    let pubErrors = 0
    let received = 0
    let firstSend = 0
    let lastAck = 0
    let firstRecv = 0
    let lastRecv = 0
    let minLateness = Infinity
    let whole: Window | null = null

    const measure = meter(pid)
    sub.on('message', (topic, payload) => {
      const wall = Date.now()
      const now = nowMs()
      const i = payload.length >= 4 ? payload.readUInt32LE(0) : -1
      if (i < 0 || i >= total || sentWall[i] === 0) {
        problems.other++
        sample(problems, `a message on ${topic} that was not sent (index ${i})`)
        return
      }
      if (topic !== `${TOPIC_PREFIX}/${i}`) {
        problems.other++
        sample(problems, `message ${i} arrived on ${topic}`)
      }
      if (seen[i]) {
        problems.duplicates++
        sample(problems, `message ${i} delivered twice`)
        return
      }
      seen[i] = 1
      const late = wall - (sentWall[i]! + DELAY_MS)
      lateness[received++] = late
      if (late < minLateness) minLateness = late
      if (late < -TOLERANCE_MS) {
        problems.early++
        sample(problems, `message ${i} arrived ${(-late).toFixed(0)} ms before its due time`)
      }
      if (received === 1) firstRecv = now
      lastRecv = now
      if (received === total) whole = measure()
    })

    let acceptWindow: Window | null = null
    let preDue: MqttResult['preDue'] = null
    let preDueTimer: NodeJS.Timeout | undefined
    const pumps = pubs.map((client, p) => {
      let outstanding = 0
      let index = p
      const pump = (): void => {
        while (outstanding < WINDOW && index < total && broken === null) {
          const i = index
          index += PUBLISHERS
          const payload = Buffer.alloc(16)
          payload.writeUInt32LE(i, 0)
          sentWall[i] = Date.now()
          if (sent++ === 0) {
            firstSend = nowMs()
            // the accepting alone: its CPU up to when the first message comes due (deliveries start then)
            preDueTimer = setTimeout(() => {
              if (acked < total) preDue = { acked, window: measure() }
            }, DELAY_MS - 10)
          }
          outstanding++
          client.publish(plain ? `${PLAIN_PREFIX}/${i}` : `$delayed/${DELAY_S}/${TOPIC_PREFIX}/${i}`, payload, { qos: 1 }, (err) => {
            outstanding--
            if (err) {
              pubErrors++
              broken ??= `publish ${i}: ${err.message}`
            } else {
              acked++
              lastAck = nowMs()
              if (acked === total) acceptWindow = measure()
            }
            pump()
          })
        }
      }
      return pump
    })
    for (const pump of pumps) pump()

    // 1. every publish answered (or a stall / error / the deadline)
    let lastMove = nowMs()
    let seenAcks = 0
    while (acked + pubErrors < total && broken === null) {
      await sleep(20)
      const now = nowMs()
      if (acked !== seenAcks) {
        seenAcks = acked
        lastMove = now
      }
      if (now - lastMove > STALL_MS) throw new Error(`MQTT $delayed: no PUBACK for ${STALL_MS / 1000} s, ${acked} of ${sent} sent (${total}) acknowledged`)
      if (now > deadline) throw new Error(`MQTT $delayed: deadline reached with ${acked} of ${total} acknowledged`)
    }
    clearTimeout(preDueTimer)
    failIfBroken()
    if (plain) {
      const accepted = acceptWindow ?? measure()
      return {
        sent,
        acked,
        received: 0,
        acceptMs: lastAck - firstSend,
        deliverMs: 0,
        lateness: new Float64Array(0),
        acceptWindow: accepted,
        preDue: null,
        whole: accepted,
        problems,
        minLateness: NaN,
        pubErrors
      }
    }
    // 2. every message delivered (or nothing for STALL_MS after the last one fell due)
    let seenRecv = received
    lastMove = Math.max(nowMs(), lastAck + DELAY_MS)
    while (received < total && broken === null) {
      await sleep(20)
      const now = nowMs()
      if (received !== seenRecv) {
        seenRecv = received
        lastMove = now
      }
      if (now - Math.max(lastMove, lastAck + DELAY_MS) > STALL_MS || now > deadline) break
    }
    await sleep(LINGER_MS)
    failIfBroken()
    problems.missing = total - received
    if (problems.missing > 0) {
      const lost: number[] = []
      for (let i = 0; i < total && lost.length < 5; i++) if (!seen[i]) lost.push(i)
      sample(problems, `${problems.missing} never delivered (the first: ${lost.join(', ')})`)
    }
    const end = whole ?? measure()
    return {
      sent,
      acked,
      received,
      acceptMs: lastAck - firstSend,
      deliverMs: lastRecv - firstRecv,
      lateness: lateness.subarray(0, received).sort(),
      acceptWindow: acceptWindow ?? measure(),
      preDue,
      whole: end,
      problems,
      minLateness,
      pubErrors
    }
  } finally {
    closing = true
    closeClients(clients)
  }
}

interface ScheduledAnswer {
  scheduled: Array<{ id: string; deliverAt: number }>
}

interface StreamInfo {
  records: number
  partitions: Array<{ partition: number; startOffset: number; endOffset: number }>
}

interface ReadPage {
  records: Array<{ partition: number; offset: number; timestamp: number; value: string }>
  nextOffset: number
  endOffset: number
}

interface HttpResult {
  records: number
  /** first POST to last 202 */
  scheduleMs: number
  /** latest deliverAt of the answers (ms since the epoch) */
  lastDue: number
  firstDue: number
  /** Date.now() when the poll first saw every record in the stream */
  allInAt: number
  /** first POST (nowMs) to all in the stream */
  totalMs: number
  window: Window
  /** burst only: the measured window from the due time to all in the stream */
  dueWindow: Window | null
  problems: Problems
  /** lowest append timestamp - deliverAt over the records (ms) */
  minAhead: number
}

/**
 * POSTs records 0 .. total-1 (value: tag byte, index uint32 LE at 1, filler; 16 keys) with `extra`
 * in the body, HTTP_BATCH a request, HTTP_IN_FLIGHT requests at a time; `check` sees each answer.
 * Resolves to nowMs() of the last answer.
 */
async function produceAll(
  api: Api,
  total: number,
  tag: number,
  extra: Record<string, unknown>,
  deadline: number,
  check: (from: number, answer: unknown, n: number) => void
): Promise<number> {
  let next = 0
  let lastAnswer = nowMs()
  const loop = async (): Promise<void> => {
    while (next < total) {
      if (nowMs() > deadline) throw new Error(`HTTP produce: deadline reached after ${next} of ${total} records`)
      const from = next
      next = Math.min(total, next + HTTP_BATCH)
      const records = []
      for (let i = from; i < next; i++) {
        const value = Buffer.alloc(16, 'x')
        value.writeUInt8(tag, 0)
        value.writeUInt32LE(i, 1)
        records.push({ key: `dev-${i % 16}`, value: value.toString('base64') })
      }
      const answer = await api.call('POST', `/streams/${LOG_STREAM}/records`, { records, ...extra })
      lastAnswer = nowMs()
      check(from, answer, records.length)
    }
  }
  await Promise.all(Array.from({ length: HTTP_IN_FLIGHT }, loop))
  return lastAnswer
}

/** The reference for the scheduling rate: the same produce requests without a delay (appended at once). */
async function httpProduce(api: Api, pid: number, total: number, tag: number, deadline: number): Promise<{ ms: number; window: Window }> {
  const measure = meter(pid)
  const t0 = nowMs()
  const last = await produceAll(api, total, tag, {}, deadline, (_from, body, n) => {
    const answer = body as { offsets: unknown[] }
    if (answer.offsets.length !== n) throw new Error(`HTTP produce: ${n} records answered with ${answer.offsets.length} offsets`)
  })
  return { ms: last - t0, window: measure() }
}

/**
 * Produces `total` records (value: tag byte, index uint32 LE at 1, filler) with `when` (delayMs or
 * deliverAt), waits for all of them in the stream, reads them back and checks them.
 */
async function httpDelayed(
  api: Api,
  pid: number,
  total: number,
  tag: number,
  when: { delayMs: number } | { deliverAt: number },
  deadline: number
): Promise<HttpResult> {
  const before = await api.json<StreamInfo>('GET', `/streams/${LOG_STREAM}`)
  const deliverAt = new Float64Array(total)
  const problems = noProblems()
  const measure = meter(pid)
  const t0 = nowMs()
  const lastAnswer = await produceAll(api, total, tag, when, deadline, (from, body, n) => {
    const answer = body as ScheduledAnswer
    if (answer.scheduled.length !== n) throw new Error(`HTTP delayed produce: ${n} records answered with ${answer.scheduled.length} entries`)
    answer.scheduled.forEach((sch, j) => (deliverAt[from + j] = sch.deliverAt))
  })
  const scheduleMs = lastAnswer - t0
  let firstDue = Infinity
  let lastDue = 0
  for (const d of deliverAt) {
    if (d < firstDue) firstDue = d
    if (d > lastDue) lastDue = d
  }

  // the burst: measured from the due time on
  let dueWindow: Window | null = null
  let dueMeasure: (() => Window) | null = null
  if ('deliverAt' in when) {
    const wait = when.deliverAt - Date.now()
    if (wait <= 0) sample(problems, `the burst was not all scheduled before its deliverAt (${-wait} ms late): its rate is mixed with the scheduling`)
    else await sleep(wait)
    dueMeasure = meter(pid)
  }

  const want = before.records + total
  let allInAt: number
  let count = before.records
  let lastCount = count
  let lastMove = nowMs()
  for (;;) {
    const info = await api.json<StreamInfo>('GET', `/streams/${LOG_STREAM}`)
    count = info.records
    if (count >= want) {
      allInAt = Date.now()
      break
    }
    const now = nowMs()
    if (count !== lastCount) {
      lastCount = count
      lastMove = now
    }
    const overdue = Date.now() > lastDue
    if ((overdue && now - lastMove > STALL_MS && Date.now() - lastDue > STALL_MS) || now > deadline) {
      throw new Error(
        `HTTP delayed: ${count - before.records} of ${total} records in the stream ${((Date.now() - lastDue) / 1000).toFixed(1)} s after the last due time`
      )
    }
    await sleep(POLL_MS)
  }
  const totalMs = nowMs() - t0
  const window = measure()
  if (dueMeasure) dueWindow = dueMeasure()

  // read back what this phase appended: each index once, never before its deliverAt
  const seen = new Uint8Array(total)
  let minAhead = Infinity
  let found = 0
  for (const p of before.partitions) {
    let offset = p.endOffset
    for (;;) {
      if (nowMs() > deadline) throw new Error('HTTP delayed: deadline reached while reading the records back')
      const page = await api.json<ReadPage>('GET', `/streams/${LOG_STREAM}/partitions/${p.partition}/records?offset=${offset}&limit=1000`)
      for (const r of page.records) {
        const v = Buffer.from(r.value, 'base64')
        if (v.length !== 16 || v.readUInt8(0) !== tag) continue // another phase's record
        const i = v.readUInt32LE(1)
        if (i >= total) {
          problems.other++
          sample(problems, `a record with index ${i}, of ${total}`)
          continue
        }
        found++
        if (seen[i]) {
          problems.duplicates++
          sample(problems, `record ${i} appended twice`)
          continue
        }
        seen[i] = 1
        const ahead = r.timestamp - deliverAt[i]!
        if (ahead < minAhead) minAhead = ahead
        if (ahead < 0) {
          problems.early++
          sample(problems, `record ${i} appended ${-ahead} ms before its deliverAt`)
        }
      }
      if (page.records.length === 0 || page.nextOffset >= page.endOffset) break
      offset = page.nextOffset
    }
  }
  problems.missing = total - (found - problems.duplicates)
  if (problems.missing > 0) sample(problems, `${problems.missing} of ${total} records not found when read back`)
  return { records: total, scheduleMs, firstDue, lastDue, allInAt, totalMs, window, dueWindow, problems, minAhead }
}

function describeProblems(what: string, p: Problems): string | null {
  if (problemCount(p) === 0 && p.samples.length === 0) return null
  return `${what}: ${p.early} early, ${p.duplicates} duplicates, ${p.missing} missing, ${p.other} other${p.samples.length ? ` (${p.samples.join('; ')})` : ''}`
}

export const delayed: Scenario = {
  id: 'delayed',
  title: 'Delayed delivery: MQTT $delayed/1/... (accept and delivery rates) and HTTP delayMs / deliverAt (scheduling and append rates) (Culex only)',
  setup: 'fresh',
  culexStart: DELAYED_CULEX_START,
  appliesTo: ['culex-fsync', 'culex-none', 'base-fsync', 'base-none'],
  deadlineMs: (mode) => pick(mode, { quick: 180_000, default: 300_000, full: 600_000 }),
  async run(ctx) {
    const broker = brokerOf(ctx)
    if (broker.adminPort === null) throw new Error('delayed needs the admin API')
    const api = new Api(broker.adminPort)
    const notes: string[] = []
    const m = delayedMessages(ctx.mode)
    const k = delayedRecords(ctx.mode)

    // warm-up (not measured): the fresh broker's first publishes and HTTP requests compile code
    await mqttDelayed(broker.pid, broker.port, Math.min(m, 1000), ctx.deadline, true)
    await produceAll(api, 1000, 0, {}, ctx.deadline, () => {})

    const plain = await mqttDelayed(broker.pid, broker.port, m, ctx.deadline, true)
    ctx.log(`  delayed      MQTT QoS 1 plain publish (reference): ${plain.acked} acked in ${(plain.acceptMs / 1000).toFixed(2)} s`)
    const mq = await mqttDelayed(broker.pid, broker.port, m, ctx.deadline)
    const pct = (p: number): number | null => percentile(mq.lateness, p)
    ctx.log(
      `  delayed      MQTT $delayed/${DELAY_S}: ${mq.acked} acked in ${(mq.acceptMs / 1000).toFixed(2)} s, ${mq.received} delivered in ${(mq.deliverMs / 1000).toFixed(2)} s; ` +
        `after due p50 ${pct(50)?.toFixed(0)} / p99 ${pct(99)?.toFixed(0)} / max ${pct(100)?.toFixed(0)} ms, earliest ${mq.minLateness.toFixed(0)} ms`
    )
    const mqProblems = describeProblems(`MQTT $delayed/${DELAY_S}`, mq.problems)
    if (mqProblems) notes.push(mqProblems)
    notes.push(
      `MQTT $delayed/${DELAY_S}: arrival - (publish call + ${DELAY_MS} ms): min ${mq.minLateness.toFixed(0)} ms (an arrival more than ${TOLERANCE_MS} ms below 0 counts as early; ` +
        `Date.now() granularity), p50 ${pct(50)?.toFixed(0)}, p99 ${pct(99)?.toFixed(0)}, max ${pct(100)?.toFixed(0)} ms`
    )
    if (mq.preDue) {
      notes.push(
        `MQTT $delayed/${DELAY_S}: accepting took ${(mq.acceptMs / 1000).toFixed(2)} s, longer than the delay: deliveries overlapped the publishing ` +
          `(so the delivery rate follows the accept rate; over all of it, ${Math.round((mq.acked * 1000) / mq.acceptMs)} PUBACKs/s); the accepting rows are over the first ${(mq.preDue.window.wallMs / 1000).toFixed(2)} s (${mq.preDue.acked} PUBACKs), before any came due`
      )
    }

    const direct = await httpProduce(api, broker.pid, k, 3, ctx.deadline)
    ctx.log(`  delayed      HTTP produce without delay (reference): ${k} appended in ${(direct.ms / 1000).toFixed(2)} s`)

    const rel = await httpDelayed(api, broker.pid, k, 1, { delayMs: DELAY_MS }, ctx.deadline)
    ctx.log(
      `  delayed      HTTP delayMs ${DELAY_MS}: ${k} scheduled in ${(rel.scheduleMs / 1000).toFixed(2)} s, all in the stream ${rel.allInAt - rel.lastDue} ms after the last due time, ` +
        `${(rel.totalMs / 1000).toFixed(2)} s after the first POST`
    )
    const relProblems = describeProblems(`HTTP delayMs ${DELAY_MS}`, rel.problems)
    if (relProblems) notes.push(relProblems)

    // the burst: one deliverAt for all, after the time the scheduling above took (twice, + 1 s)
    const dueAt = Date.now() + Math.ceil(2 * rel.scheduleMs) + 1000
    const burst = await httpDelayed(api, broker.pid, k, 2, { deliverAt: dueAt }, ctx.deadline)
    const burstMs = burst.allInAt - dueAt
    ctx.log(`  delayed      HTTP deliverAt burst: ${k} records due at one ms, all in the stream ${burstMs} ms after it`)
    const burstProblems = describeProblems('HTTP deliverAt burst', burst.problems)
    if (burstProblems) notes.push(burstProblems)
    notes.push(
      `HTTP phases: the stream is polled every ${POLL_MS} ms (GET /streams/${LOG_STREAM}), so "all in the stream" times are up to ~${POLL_MS} ms late and include that polling's CPU`
    )

    const perS = (n: number, ms: number): number | null => (ms > 0 ? (n * 1000) / ms : null)
    const usPer = (w: Window | null, n: number): number | null => (w && n > 0 ? (w.brokerMs * 1000) / n : null)
    const div = (a: number | null, b: number | null): number | null => (a !== null && b ? a / b : null)
    const plainRate = perS(plain.acked, plain.acceptMs)
    const plainCpu = usPer(plain.acceptWindow, plain.acked)
    const acceptCpu = mq.preDue ? usPer(mq.preDue.window, mq.preDue.acked) : usPer(mq.acceptWindow, mq.acked)
    // the accept rate while nothing is delivered yet (deliveries take CPU from the accepting once due)
    const acceptRate = mq.preDue ? perS(mq.preDue.acked, mq.preDue.window.wallMs) : perS(mq.acked, mq.acceptMs)
    const directRate = perS(k, direct.ms)
    const scheduledRate = perS(k, rel.scheduleMs)
    const metrics: Metric[] = [
      {
        key: 'plain_accept_per_s',
        label: 'reference: MQTT QoS 1 plain publish (same clients, no subscriber): accepted msg/s',
        value: plainRate,
        unit: 'msg/s',
        better: 'higher',
        show: true
      },
      { key: 'plain_cpu_us', label: 'reference: MQTT QoS 1 plain publish: broker CPU µs/msg', value: plainCpu, unit: 'µs', better: 'lower', show: true },
      {
        key: 'mqtt_accept_per_s',
        label: `MQTT $delayed/${DELAY_S}: accepted (PUBACK) msg/s, until the first is due`,
        value: acceptRate,
        unit: 'msg/s',
        better: 'higher',
        show: true
      },
      {
        key: 'mqtt_delivered_per_s',
        label: `MQTT $delayed/${DELAY_S}: delivered msg/s (first to last delivery)`,
        value: perS(mq.received, mq.deliverMs),
        unit: 'msg/s',
        better: 'higher',
        show: true
      },
      { key: 'mqtt_late_p50_ms', label: `MQTT $delayed/${DELAY_S}: delivery after due time p50 (ms)`, value: pct(50), unit: 'ms', better: 'lower', show: true },
      { key: 'mqtt_late_p99_ms', label: `MQTT $delayed/${DELAY_S}: delivery after due time p99 (ms)`, value: pct(99), unit: 'ms', better: 'lower', show: true },
      {
        key: 'mqtt_late_max_ms',
        label: `MQTT $delayed/${DELAY_S}: delivery after due time max (ms)`,
        value: pct(100),
        unit: 'ms',
        better: 'lower',
        show: true
      },
      {
        key: 'mqtt_accept_cpu_us',
        label: `MQTT $delayed/${DELAY_S}: broker CPU µs/msg, accepting (until the first is due)`,
        value: acceptCpu,
        unit: 'µs',
        better: 'lower',
        show: true
      },
      {
        key: 'mqtt_cpu_us',
        label: `MQTT $delayed/${DELAY_S}: broker CPU µs/msg, accept + delivery`,
        value: usPer(mq.whole, mq.received),
        unit: 'µs',
        better: 'lower',
        show: true
      },
      {
        key: 'mqtt_accept_over_plain',
        label: `MQTT $delayed/${DELAY_S} / plain QoS 1: accepted msg/s ratio`,
        value: div(acceptRate, plainRate),
        unit: 'x',
        better: 'higher',
        show: true,
        ratio: false
      },
      {
        key: 'mqtt_accept_cpu_over_plain',
        label: `MQTT $delayed/${DELAY_S} / plain QoS 1: broker CPU per accepted msg ratio`,
        value: div(acceptCpu, plainCpu),
        unit: 'x',
        better: 'lower',
        show: true,
        ratio: false
      },
      {
        key: 'mqtt_problems',
        label: `MQTT $delayed/${DELAY_S}: early + duplicate + missing (must be 0)`,
        value: problemCount(mq.problems),
        unit: 'messages',
        better: 'lower',
        show: true,
        ratio: false
      },
      {
        key: 'direct_per_s',
        label: `reference: HTTP produce without delay: appended records/s (${HTTP_BATCH} a request)`,
        value: directRate,
        unit: 'records/s',
        better: 'higher',
        show: true
      },
      {
        key: 'direct_cpu_us',
        label: 'reference: HTTP produce without delay: broker CPU µs/record',
        value: usPer(direct.window, k),
        unit: 'µs',
        better: 'lower',
        show: true
      },
      {
        key: 'http_scheduled_per_s',
        label: `HTTP delayMs ${DELAY_MS}: scheduled records/s (202s, ${HTTP_BATCH} a request)`,
        value: scheduledRate,
        unit: 'records/s',
        better: 'higher',
        show: true
      },
      {
        key: 'http_scheduled_over_direct',
        label: `HTTP delayMs ${DELAY_MS} / without delay: records/s ratio (202s against 200s)`,
        value: div(scheduledRate, directRate),
        unit: 'x',
        better: 'higher',
        show: true,
        ratio: false
      },
      {
        key: 'http_after_due_ms',
        label: `HTTP delayMs ${DELAY_MS}: all in the stream, ms after the last due time`,
        value: rel.allInAt - rel.lastDue,
        unit: 'ms',
        better: 'lower',
        show: true
      },
      {
        key: 'http_cpu_us',
        label: `HTTP delayMs ${DELAY_MS}: broker CPU µs/record, schedule + append`,
        value: usPer(rel.window, k),
        unit: 'µs',
        better: 'lower',
        show: true
      },
      {
        key: 'burst_appended_per_s',
        label: `HTTP deliverAt burst (${k.toLocaleString('en-US')} due at once): appended records/s`,
        value: perS(k, burstMs),
        unit: 'records/s',
        better: 'higher',
        show: true
      },
      { key: 'burst_ms', label: 'HTTP deliverAt burst: all in the stream, ms after the due time', value: burstMs, unit: 'ms', better: 'lower', show: true },
      {
        key: 'burst_cpu_us',
        label: 'HTTP deliverAt burst: broker CPU µs/record, append once due',
        value: usPer(burst.dueWindow, k),
        unit: 'µs',
        better: 'lower',
        show: true
      },
      {
        key: 'http_problems',
        label: 'HTTP: early + duplicate + missing records (must be 0)',
        value: problemCount(rel.problems) + problemCount(burst.problems),
        unit: 'records',
        better: 'lower',
        show: true,
        ratio: false
      }
    ]
    const windows = [plain.whole, mq.whole, direct.window, rel.window, burst.window]
    const cpu: CpuReport = {
      wallMs: windows.reduce((n, w) => n + w.wallMs, 0),
      brokerMs: windows.reduce((n, w) => n + w.brokerMs, 0),
      clientMs: windows.reduce((n, w) => n + w.clientMs, 0)
    }
    return {
      metrics,
      cpu,
      notes,
      details: {
        plain: { acked: plain.acked, acceptMs: plain.acceptMs, window: plain.acceptWindow },
        mqtt: {
          messages: m,
          publishers: PUBLISHERS,
          window: WINDOW,
          delaySeconds: DELAY_S,
          sent: mq.sent,
          acked: mq.acked,
          received: mq.received,
          acceptMs: mq.acceptMs,
          deliverMs: mq.deliverMs,
          minLatenessMs: mq.minLateness,
          toleranceMs: TOLERANCE_MS,
          problems: mq.problems,
          acceptWindow: mq.acceptWindow,
          whole: mq.whole
        },
        http: { records: k, batch: HTTP_BATCH, inFlight: HTTP_IN_FLIGHT, pollMs: POLL_MS, delayMs: rel, burst: { ...burst, dueAt } }
      }
    }
  }
}
