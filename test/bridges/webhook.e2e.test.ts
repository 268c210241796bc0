import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkOrder, Culex, keyedRecords, onlyDeadLetter, sleep } from './e2e.js'
import { WebhookReceiver, type WebhookRecord } from '../helpers/servers/webhook-receiver.js'

// The webhook bridge end to end: a real `culex start` process delivers streams to HTTP receivers
// in this test (the receivers are the webhook's real target, on 127.0.0.1 free ports). Each
// scenario has its own stream, bridge and receiver; the Culex crash comes last, as it stops all.

const N = 10_000
const KEYS = 16
const SECRET = 'e2e-webhook-secret'
process.env.CULEX_E2E_WEBHOOK_SECRET = SECRET

const plain = new WebhookReceiver()
const outage = new WebhookReceiver()
const crash = new WebhookReceiver()
const refusing = new WebhookReceiver()
const receivers = [plain, outage, crash, refusing]
let culex: Culex

function bridge(name: string, stream: string, receiver: WebhookReceiver, target: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    'kind': 'webhook',
    'direction': 'out',
    'streams': [stream],
    'start-at': 'earliest',
    'batch-size': 200,
    'retry': { initial: '100ms', max: '1s' },
    'target': { 'url': receiver.url, 'secret-env': 'CULEX_E2E_WEBHOOK_SECRET', 'timeout': '5s', ...target }
  }
}

beforeAll(async () => {
  for (const r of receivers) {
    await r.start()
    r.secret = SECRET
  }
  culex = await Culex.start({
    streams: { plain: { partitions: 4 }, outage: { partitions: 4 }, crash: { partitions: 4 }, orders: { partitions: 1 } },
    bridges: [
      bridge('plain-hook', 'plain', plain),
      bridge('outage-hook', 'outage', outage, { timeout: '2s' }),
      bridge('crash-hook', 'crash', crash),
      { ...bridge('orders-hook', 'orders', refusing), 'batch-size': 10, 'target': { url: refusing.url, secret: SECRET } }
    ]
  })
}, 30_000)

afterAll(async () => {
  await culex?.dispose()
  for (const r of receivers) await r.stop()
  delete process.env.CULEX_E2E_WEBHOOK_SECRET
})

async function until(what: string, test: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(20)
  }
}

const values = (records: WebhookRecord[]): string[] => records.map((r) => r.value)

/** Every request answered 2xx held records of one partition, in order, with a key naming them. */
function checkRequests(receiver: WebhookReceiver): void {
  for (const req of receiver.requests) {
    const first = req.records[0]
    const last = req.records[req.records.length - 1]
    expect(first && last).toBeTruthy()
    expect(req.idempotencyKey).toBe(`${first?.stream}/${first?.partition}/${first?.offset}-${last?.offset}`)
    req.records.forEach((r, i) => expect(r.offset).toBe((first?.offset ?? 0) + i))
  }
}

/** Pauses the bridge, produces N records, then resumes it: the delivery starts with all N in the log. */
async function produceHeldBack(name: string, stream: string): Promise<void> {
  expect((await culex.call('POST', `/api/v1/bridges/${name}/pause`)).status).toBe(200)
  await culex.produce(stream, keyedRecords(N, KEYS))
  expect((await culex.call('POST', `/api/v1/bridges/${name}/resume`)).status).toBe(200)
}

describe('webhook bridge end to end', () => {
  it(`delivers ${N} records in per-key order, none lost, signed`, async () => {
    await culex.produce('plain', keyedRecords(N, KEYS))
    await until('all records at the receiver', () => plain.accepted.length >= N)
    const status = await culex.waitForBridge('plain-hook', (s) => s.delivered === N && s.lag === 0)
    const report = checkOrder(values(plain.answered), N, KEYS)
    console.log(`webhook plain: ${plain.requests.length} requests, ${JSON.stringify(report)}`)
    expect(report).toMatchObject({ missing: 0, outOfOrder: 0, distinct: N, duplicates: 0 })
    expect(plain.badSignatures).toBe(0)
    expect(status).toMatchObject({ state: 'running', deadLettered: 0, lastError: null })
    checkRequests(plain)
    expect(plain.requests[0]?.headers['user-agent']).toMatch(/^culex\//)
    expect(plain.requests[0]?.headers['culex-bridge']).toBe('plain-hook')
  }, 40_000)

  it('the receiver down mid-stream, then up again: everything arrives, at least once, in per-key order', async () => {
    let downAt = 0
    outage.reply = () => {
      if (downAt === 0 && outage.accepted.length >= 3000) {
        downAt = Date.now()
        // the receiver takes this request and dies before answering (and with the requests of
        // other partitions in flight); back on the same port 1.5 s later
        void outage.stop().then(async () => {
          await sleep(1500)
          await outage.start()
        })
        return 'take-and-drop'
      }
      return { status: 200, delayMs: 2 }
    }
    await produceHeldBack('outage-hook', 'outage')
    await until('the receiver went down', () => downAt > 0)
    const down = await culex.waitForBridge('outage-hook', (s) => s.state === 'retrying' && s.lastError !== null, 10_000)
    expect(down.lastError).toMatch(/cannot POST to the webhook|no answer/)
    await until('all records at the receiver', () => outage.accepted.length >= N)
    const status = await culex.waitForBridge('outage-hook', (s) => s.lag === 0 && s.state === 'running')
    const report = checkOrder(values(outage.answered), N, KEYS)
    console.log(
      `webhook receiver outage: ${outage.requests.length} requests, ${JSON.stringify(report)}, duplicate requests (same Idempotency-Key) ${outage.duplicateRequests}, duplicate records beyond them ${outage.duplicateRecords}`
    )
    expect(report).toMatchObject({ missing: 0, outOfOrder: 0, distinct: N })
    expect(outage.accepted).toHaveLength(N)
    // the request whose answer was lost came again with the same Idempotency-Key (one per
    // partition at most), and no record came again under another key
    expect(outage.duplicateRequests).toBeGreaterThanOrEqual(1)
    expect(outage.duplicateRequests).toBeLessThanOrEqual(4)
    expect(outage.duplicateRecords).toBe(0)
    expect(outage.badSignatures).toBe(0)
    expect(status.deadLettered).toBe(0)
    expect(status.retries).toBeGreaterThan(0)
    checkRequests(outage)
  }, 40_000)

  it('a record the receiver refuses (400) ends in <stream>.dlq with the response; the others are delivered in order', async () => {
    const bad = 'k3:2' // the 36th record: in the fourth batch of ten
    refusing.reply = (req) =>
      req.records.some((r) => r.value === bad)
        ? { status: 400, headers: { 'Content-Type': 'application/json' }, body: '{"error":"k3:2 is not a reading"}' }
        : { status: 200 }
    await culex.produce('orders', keyedRecords(100, KEYS))
    const status = await culex.waitForBridge('orders-hook', (s) => s.lag === 0 && s.delivered + s.deadLettered === 100)
    expect(status.deadLettered).toBe(1)
    expect(values(refusing.accepted)).toEqual(
      keyedRecords(100, KEYS)
        .map((r) => r.value)
        .filter((v) => v !== bad)
    )
    expect(refusing.badSignatures).toBe(0)
    const dead = await onlyDeadLetter(culex, 'orders', 'orders-hook')
    expect(dead.value).toBe(bad)
    expect(dead.key).toBe('k3')
    expect(dead.headers).toMatchObject({
      'culex-dlq-partition': '0',
      'culex-dlq-offset': '35',
      'culex-webhook-status': '400',
      'culex-webhook-response': '{"error":"k3:2 is not a reading"}'
    })
    expect(dead.headers['culex-dlq-error']).toMatch(/400 Bad Request/)
  }, 30_000)

  it('Culex killed -9 mid-stream and restarted: everything arrives, at least once, in per-key order', async () => {
    const crashed: { killed: Promise<void> | null } = { killed: null }
    crash.reply = () => {
      if (crashed.killed === null && crash.accepted.length >= 3000) {
        // answered 200, then Culex dies: most likely before it committed the batch
        return {
          status: 200,
          after: () => {
            crashed.killed ??= culex.kill9()
          }
        }
      }
      return { status: 200, delayMs: 2 }
    }
    await produceHeldBack('crash-hook', 'crash')
    await until('Culex killed', () => crashed.killed !== null)
    await crashed.killed
    const before = crash.accepted.length
    expect(before).toBeLessThan(N)
    await culex.restart()
    await until('all records at the receiver', () => crash.accepted.length >= N)
    const status = await culex.waitForBridge('crash-hook', (s) => s.lag === 0)
    const report = checkOrder(values(crash.answered), N, KEYS)
    console.log(
      `webhook Culex kill -9: killed at ${before} records taken, ${crash.requests.length} requests, ${JSON.stringify(report)}, duplicate requests (same Idempotency-Key) ${crash.duplicateRequests}, duplicate records beyond them ${crash.duplicateRecords}`
    )
    expect(report).toMatchObject({ missing: 0, outOfOrder: 0, distinct: N })
    expect(crash.accepted).toHaveLength(N)
    // at least once: what was sent again is at most what was in flight or not committed (a
    // batch of 200 per partition); the sink's memory of the request in doubt died with Culex,
    // so a record may come again under another key
    expect(report.duplicates).toBeLessThanOrEqual(4 * 200)
    expect(crash.badSignatures).toBe(0)
    expect(status.deadLettered).toBe(0)
    checkRequests(crash)
    // the other bridges came back too, with nothing left to send
    expect((await culex.bridge('plain-hook')).lag).toBe(0)
  }, 50_000)
})
