import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { webhookDriver } from '../../src/bridges/webhook/index.js'
import { parseRetryAfter, MAX_RETRY_AFTER_MS, RESPONSE_KEPT_BYTES } from '../../src/bridges/webhook/sink.js'
import type { WebhookTarget } from '../../src/bridges/webhook/config.js'
import type { Outcome, Sink } from '../../src/bridges/types.js'
import { SectionContext } from '../../src/config/values.js'
import type { LogRecord } from '../../src/log/types.js'
import { verifyCulexSignature, WebhookReceiver } from '../helpers/servers/webhook-receiver.js'

// The webhook sink against a real HTTP receiver on 127.0.0.1 (test/helpers/servers/webhook-receiver.ts):
// the receiver is the target itself, made to fail on purpose.

const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
const ctx = new SectionContext('test config')
const receiver = new WebhookReceiver()
const sinks: Sink[] = []

function record(offset: number, value: string | Buffer = `v${offset}`, over: Partial<LogRecord> = {}): LogRecord {
  return {
    stream: 'telemetry',
    partition: 2,
    offset,
    timestamp: Date.UTC(2024, 0, 1, 0, 0, 0, offset),
    key: `k${offset % 3}`,
    value: typeof value === 'string' ? Buffer.from(value) : value,
    headers: { h: `x${offset}` },
    topic: `devices/d${offset % 3}/temp`,
    qos: 1,
    clientId: 'dev-1',
    ...over
  }
}

const range = (from: number, to: number): LogRecord[] => Array.from({ length: to - from }, (_, i) => record(from + i))

function target(raw: Record<string, unknown> = {}): WebhookTarget {
  return webhookDriver.parseTarget!({ url: receiver.url, ...raw }, ctx, 'bridges[0].target')
}

async function sink(raw: Record<string, unknown> = {}): Promise<Sink> {
  const s = await webhookDriver.createSink!(target(raw), { logger, bridge: 'hook-out' })
  sinks.push(s)
  await s.connect(new AbortController().signal)
  return s
}

const never = new AbortController().signal
const statuses = (outcomes: Outcome[]): string[] => outcomes.map((o) => o.status)

beforeAll(async () => {
  await receiver.start()
})

afterEach(() => receiver.reset())

afterAll(async () => {
  for (const s of sinks) await s.close()
  await receiver.stop()
})

describe('webhook sink: delivery', () => {
  it('POSTs a batch as one JSON body, records in order, and resolves only after the 2xx', async () => {
    const s = await sink()
    const binary = Buffer.from([0xff, 0x00, 0xc3, 0x28])
    const records = [record(10), record(11, binary), record(12, '{"t":21.5}', { key: null, topic: null, headers: {} })]
    let answeredAt = 0
    receiver.reply = () => ({ status: 202, delayMs: 300, after: () => (answeredAt = Date.now()) })
    const outcomes = await s.deliver(records, never)
    expect(answeredAt).toBeGreaterThan(0)
    expect(Date.now()).toBeGreaterThanOrEqual(answeredAt)
    expect(statuses(outcomes)).toEqual(['delivered', 'delivered', 'delivered'])
    expect(receiver.requests).toHaveLength(1)
    const req = receiver.requests[0]!
    expect(req.method).toBe('POST')
    expect(req.url).toBe('/hook')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.headers['user-agent']).toMatch(/^culex\/\d+\.\d+\.\d+/)
    expect(req.headers['idempotency-key']).toBe('telemetry/2/10-12')
    expect(req.headers['culex-bridge']).toBe('hook-out')
    expect(req.headers['culex-signature']).toBeUndefined()
    expect(req.records.map((r) => r.id)).toEqual(['telemetry/2/10', 'telemetry/2/11', 'telemetry/2/12'])
    expect(req.records[0]).toEqual({
      id: 'telemetry/2/10',
      stream: 'telemetry',
      partition: 2,
      offset: 10,
      timestamp: '2024-01-01T00:00:00.010Z',
      key: 'k1',
      topic: 'devices/d1/temp',
      headers: { h: 'x10' },
      clientId: 'dev-1',
      encoding: 'utf-8',
      value: 'v10'
    })
    // not valid UTF-8: base64, the exact bytes
    expect(req.records[1]!.encoding).toBe('base64')
    expect(Buffer.from(req.records[1]!.value, 'base64')).toEqual(binary)
    expect(req.records[2]).toMatchObject({ key: null, topic: null, headers: {}, encoding: 'utf-8', value: '{"t":21.5}' })
  })

  it('signs the exact body bytes; a receiver with the secret verifies it, a wrong secret or a changed body does not', async () => {
    const s = await sink({ secret: 's3cret-key' })
    expect(statuses(await s.deliver(range(0, 3), never))).toEqual(['delivered', 'delivered', 'delivered'])
    const req = receiver.requests[0]!
    const header = req.headers['culex-signature'] as string
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/)
    expect(Math.abs(Number(/t=(\d+)/.exec(header)![1]) - Date.now() / 1000)).toBeLessThan(5)
    expect(verifyCulexSignature('s3cret-key', header, req.body)).toBe(true)
    expect(verifyCulexSignature('wrong-key', header, req.body)).toBe(false)
    const tampered = Buffer.from(req.body.toString().replace('"v1"', '"v9"'))
    expect(tampered.equals(req.body)).toBe(false)
    expect(verifyCulexSignature('s3cret-key', header, tampered)).toBe(false)
    // replayed ten minutes later: outside the tolerance
    expect(verifyCulexSignature('s3cret-key', header, req.body, 300, Math.floor(Date.now() / 1000) + 600)).toBe(false)
  })

  it('takes the secret from secret-env and extra headers (also from the environment)', async () => {
    process.env.CULEX_TEST_WEBHOOK_SECRET = 'from-env'
    process.env.CULEX_TEST_WEBHOOK_TOKEN = 'Bearer t0ken'
    try {
      const s = await sink({
        'secret-env': 'CULEX_TEST_WEBHOOK_SECRET',
        'headers': { 'Authorization': { env: 'CULEX_TEST_WEBHOOK_TOKEN' }, 'X-Tenant': 'acme', 'User-Agent': 'my-agent' }
      })
      await s.deliver(range(0, 1), never)
      const req = receiver.requests[0]!
      expect(req.headers.authorization).toBe('Bearer t0ken')
      expect(req.headers['x-tenant']).toBe('acme')
      expect(req.headers['user-agent']).toBe('my-agent')
      expect(verifyCulexSignature('from-env', req.headers['culex-signature'] as string, req.body)).toBe(true)
    } finally {
      delete process.env.CULEX_TEST_WEBHOOK_SECRET
      delete process.env.CULEX_TEST_WEBHOOK_TOKEN
    }
  })

  it('splits a batch larger than max-batch-bytes into several requests, and rejects a record that alone is larger', async () => {
    const s = await sink({ 'max-batch-bytes': '2KiB' })
    const records = [...range(0, 3).map((r) => ({ ...r, value: Buffer.alloc(700, 'a') })), record(3, Buffer.alloc(3000, 'b')), record(4)]
    const outcomes = await s.deliver(records, never)
    expect(statuses(outcomes)).toEqual(['delivered', 'delivered', 'delivered', 'rejected', 'delivered'])
    expect((outcomes[3] as { error: string }).error).toMatch(/max-batch-bytes/)
    expect(receiver.requests.map((r) => r.idempotencyKey)).toEqual(['telemetry/2/0-1', 'telemetry/2/2-2', 'telemetry/2/4-4'])
    for (const r of receiver.requests) expect(r.body.length).toBeLessThanOrEqual(2048)
  })
})

describe('webhook sink: retries', () => {
  it('500 => retry for every record; the retry carries the same Idempotency-Key and body, even when the batch has grown', async () => {
    const s = await sink()
    receiver.reply = () => ({ status: 500, body: 'database down' })
    const first = await s.deliver(range(0, 5), never)
    expect(statuses(first)).toEqual(Array(5).fill('retry'))
    expect((first[0] as { error: string }).error).toMatch(/500.*database down/)
    receiver.reply = () => ({ status: 200 })
    // the runner retries from offset 0; the log has grown meanwhile
    const second = await s.deliver(range(0, 9), never)
    expect(statuses(second)).toEqual(Array(9).fill('delivered'))
    expect(receiver.requests.map((r) => r.idempotencyKey)).toEqual(['telemetry/2/0-4', 'telemetry/2/0-4', 'telemetry/2/5-8'])
    expect(receiver.requests[1]!.body.equals(receiver.requests[0]!.body)).toBe(true)
    expect(receiver.accepted.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
  })

  it('a receiver that took the batch but whose answer was lost sees the same key again and deduplicates', async () => {
    const s = await sink({ timeout: '300ms' })
    let n = 0
    // processes the first request (answers late, after the sink gave up), then answers at once
    receiver.reply = () => (n++ === 0 ? { status: 200, delayMs: 800 } : { status: 200 })
    expect(statuses(await s.deliver(range(0, 4), never))).toEqual(Array(4).fill('retry'))
    await new Promise((r) => setTimeout(r, 900))
    expect(statuses(await s.deliver(range(0, 6), never))).toEqual(Array(6).fill('delivered'))
    expect(receiver.requests.map((r) => r.idempotencyKey)).toEqual(['telemetry/2/0-3', 'telemetry/2/0-3', 'telemetry/2/4-5'])
    expect(receiver.duplicateRequests).toBe(1)
    expect(receiver.accepted.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4, 5])
  })

  it('429 with Retry-After in seconds or as an HTTP date => retry with retryAfterMs, capped', async () => {
    const s = await sink()
    receiver.reply = () => ({ status: 429, headers: { 'Retry-After': '3' } })
    const a = await s.deliver(range(0, 2), never)
    expect(a).toEqual([
      { status: 'retry', error: 'webhook answered 429 Too Many Requests', retryAfterMs: 3000 },
      { status: 'retry', error: 'webhook answered 429 Too Many Requests', retryAfterMs: 3000 }
    ])
    receiver.reply = () => ({ status: 503, headers: { 'Retry-After': new Date(Date.now() + 20_000).toUTCString() } })
    const b = (await s.deliver(range(0, 2), never))[0] as { retryAfterMs: number }
    expect(b.retryAfterMs).toBeGreaterThan(18_000)
    expect(b.retryAfterMs).toBeLessThanOrEqual(20_000)
    receiver.reply = () => ({ status: 429, headers: { 'Retry-After': '86400' } })
    expect(((await s.deliver(range(0, 1), never))[0] as { retryAfterMs: number }).retryAfterMs).toBe(MAX_RETRY_AFTER_MS)
    receiver.reply = () => ({ status: 408 })
    expect(await s.deliver(range(0, 1), never)).toEqual([{ status: 'retry', error: 'webhook answered 408 Request Timeout' }])
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT')).toBe(0)
    expect(parseRetryAfter('soon')).toBeUndefined()
    expect(parseRetryAfter(null)).toBeUndefined()
  })

  it('a receiver that never answers => retry after the timeout, in bounded time', async () => {
    const s = await sink({ timeout: '400ms' })
    receiver.reply = () => 'hang'
    const t0 = Date.now()
    const outcomes = await s.deliver(range(0, 3), never)
    const took = Date.now() - t0
    expect(statuses(outcomes)).toEqual(['retry', 'retry', 'retry'])
    expect((outcomes[0] as { error: string }).error).toBe('no answer from the webhook within 400 ms')
    expect(took).toBeGreaterThanOrEqual(390)
    expect(took).toBeLessThan(2000)
  })

  it('a 200 whose body never ends is delivered: the status is the answer, the body is not waited for beyond the timeout', async () => {
    const s = await sink({ timeout: '400ms' })
    receiver.reply = () => ({ status: 200, headers: { 'Content-Length': '100' }, body: 'partial' })
    const t0 = Date.now()
    expect(statuses(await s.deliver(range(0, 1), never))).toEqual(['delivered'])
    expect(Date.now() - t0).toBeLessThan(2000)
  })

  it('the receiver going down mid-request, and refusing connections while down => retry; up again => delivered', async () => {
    const s = await sink({ timeout: '5s' })
    receiver.reply = () => 'hang'
    const pending = s.deliver(range(0, 3), never)
    await receiver.next()
    const t0 = Date.now()
    await receiver.stop()
    const outcomes = await pending
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(statuses(outcomes)).toEqual(['retry', 'retry', 'retry'])
    expect((outcomes[0] as { error: string }).error).toMatch(/cannot POST to the webhook: /)
    const down = await s.deliver(range(0, 3), never)
    expect((down[0] as { error: string }).error).toMatch(/ECONNREFUSED/)
    await receiver.start()
    receiver.reset()
    expect(statuses(await s.deliver(range(0, 3), never))).toEqual(['delivered', 'delivered', 'delivered'])
    expect(receiver.requests[0]!.idempotencyKey).toBe('telemetry/2/0-2')
  })

  it('a dropped connection => retry', async () => {
    const s = await sink()
    receiver.reply = () => 'drop'
    expect(statuses(await s.deliver(range(0, 2), never))).toEqual(['retry', 'retry'])
  })

  it('an aborted deliver returns retry outcomes at once', async () => {
    const s = await sink({ timeout: '10s' })
    receiver.reply = () => 'hang'
    const ac = new AbortController()
    const pending = s.deliver(range(0, 2), ac.signal)
    await receiver.next()
    const t0 = Date.now()
    ac.abort()
    const outcomes = await pending
    expect(Date.now() - t0).toBeLessThan(500)
    expect(statuses(outcomes)).toEqual(['retry', 'retry'])
  })
})

describe('webhook sink: refusals', () => {
  it('400 for one record of a batch: the records are sent one at a time, only that one is rejected, the others delivered in order', async () => {
    const s = await sink()
    const bad = (r: { records: { offset: number }[] }): boolean => r.records.some((x) => x.offset === 12)
    receiver.reply = (req) => (bad(req) ? { status: 400, body: JSON.stringify({ error: 'offset 12 has no "t" field' }) } : { status: 200 })
    const outcomes = await s.deliver(range(10, 15), never)
    expect(statuses(outcomes)).toEqual(['delivered', 'delivered', 'rejected', 'delivered', 'delivered'])
    expect(outcomes[2]).toEqual({
      status: 'rejected',
      error: 'webhook refused the record: 400 Bad Request: {"error":"offset 12 has no \\"t\\" field"}',
      headers: { 'culex-webhook-status': '400', 'culex-webhook-response': '{"error":"offset 12 has no \\"t\\" field"}' }
    })
    expect(receiver.requests.map((r) => r.idempotencyKey)).toEqual([
      'telemetry/2/10-14',
      'telemetry/2/10-10',
      'telemetry/2/11-11',
      'telemetry/2/12-12',
      'telemetry/2/13-13',
      'telemetry/2/14-14'
    ])
    expect(receiver.accepted.map((r) => r.offset)).toEqual([10, 11, 13, 14])
  })

  it('while sending one at a time, a 5xx stops there: the rest is retry', async () => {
    const s = await sink()
    receiver.reply = (req) => (req.records.length > 1 ? { status: 422 } : req.records[0]!.offset === 2 ? { status: 503 } : { status: 200 })
    const outcomes = await s.deliver(range(0, 4), never)
    expect(statuses(outcomes)).toEqual(['delivered', 'delivered', 'retry', 'retry'])
    expect(receiver.requests.map((r) => r.idempotencyKey)).toEqual(['telemetry/2/0-3', 'telemetry/2/0-0', 'telemetry/2/1-1', 'telemetry/2/2-2'])
    // the retry from offset 2 sends offset 2 alone first: the same request as the one in doubt
    receiver.reply = () => ({ status: 200 })
    receiver.requests.length = 0
    expect(statuses(await s.deliver(range(2, 4), never))).toEqual(['delivered', 'delivered'])
    expect(receiver.requests.map((r) => r.idempotencyKey)).toEqual(['telemetry/2/2-2', 'telemetry/2/3-3'])
  })

  it('keeps at most 1 KiB of the refusing response', async () => {
    const s = await sink()
    receiver.reply = () => ({ status: 404, body: 'x'.repeat(5000) })
    const [o] = (await s.deliver(range(0, 1), never)) as [{ status: string; headers: Record<string, string>; error: string }]
    expect(o.status).toBe('rejected')
    expect(o.headers['culex-webhook-status']).toBe('404')
    expect(o.headers['culex-webhook-response']).toBe(`${'x'.repeat(RESPONSE_KEPT_BYTES)}…`)
    expect(o.error.length).toBeLessThan(300)
  })

  it('does not follow a redirect: the batch is rejected, naming the Location, and nothing is sent there', async () => {
    const s = await sink()
    receiver.reply = (req) => (req.url === '/hook' ? { status: 307, headers: { Location: '/elsewhere' } } : { status: 200 })
    const outcomes = await s.deliver(range(0, 3), never)
    expect(statuses(outcomes)).toEqual(['rejected', 'rejected', 'rejected'])
    expect((outcomes[0] as { error: string }).error).toMatch(/307 Temporary Redirect \(to \/elsewhere\); redirects are not followed/)
    expect((outcomes[0] as { headers: Record<string, string> }).headers).toMatchObject({
      'culex-webhook-status': '307',
      'culex-webhook-location': '/elsewhere'
    })
    expect(receiver.requests.map((r) => r.url)).toEqual(['/hook'])
  })
})

describe('webhook target: parse errors name the field', () => {
  const p = (raw: unknown): unknown => webhookDriver.parseTarget!(raw, ctx, 'bridges[1].target')
  it.each([
    [{}, /bridges\[1\]\.target\.url.*required/],
    [{ url: 'ftp://x/y' }, /bridges\[1\]\.target\.url/],
    [{ url: 'not a url' }, /bridges\[1\]\.target\.url/],
    [{ url: 'http://user:pw@x/y' }, /bridges\[1\]\.target\.url.*user:password/],
    [{ url: 'http://x/', timeout: 'soon' }, /bridges\[1\]\.target\.timeout/],
    [{ url: 'http://x/', timeout: '11m' }, /bridges\[1\]\.target\.timeout.*at most 10m/],
    [{ url: 'http://x/', secret: '' }, /bridges\[1\]\.target\.secret\b/],
    [{ 'url': 'http://x/', 'secret': 'a', 'secret-env': 'B' }, /bridges\[1\]\.target\.secret-env.*not both/],
    [{ 'url': 'http://x/', 'secret-env': 'CULEX_TEST_SURELY_UNSET_VAR' }, /bridges\[1\]\.target\.secret-env.*not set/],
    [{ 'url': 'http://x/', 'secret-env': 'not a name' }, /bridges\[1\]\.target\.secret-env/],
    [{ url: 'http://x/', headers: ['a'] }, /bridges\[1\]\.target\.headers/],
    [{ url: 'http://x/', headers: { 'Idempotency-Key': 'x' } }, /bridges\[1\]\.target\.headers\.Idempotency-Key/],
    [{ url: 'http://x/', headers: { 'Bad Name': 'x' } }, /bridges\[1\]\.target\.headers\.Bad Name/],
    [{ url: 'http://x/', headers: { A: 'x', a: 'y' } }, /bridges\[1\]\.target\.headers\.a.*once/],
    [{ url: 'http://x/', headers: { A: 'x\r\nB: y' } }, /bridges\[1\]\.target\.headers\.A.*CR, LF/],
    [{ url: 'http://x/', headers: { A: { env: 'CULEX_TEST_SURELY_UNSET_VAR' } } }, /bridges\[1\]\.target\.headers\.A\.env/],
    [{ url: 'http://x/', headers: { A: { file: 'x' } } }, /unknown key "file" in bridges\[1\]\.target\.headers\.A/],
    [{ 'url': 'http://x/', 'max-batch-bytes': '10B' }, /bridges\[1\]\.target\.max-batch-bytes/],
    [{ url: 'http://x/', retries: 3 }, /unknown key "retries" in bridges\[1\]\.target/],
    ['http://x/', /bridges\[1\]\.target\b/]
  ])('%j', (raw, message) => {
    expect(() => p(raw)).toThrow(message)
  })

  it('defaults, and secrets hidden when the target is serialised', () => {
    const t = p({ url: 'https://hooks.example.com/in', secret: 'hunter2', headers: { Authorization: 'Bearer abc' } }) as WebhookTarget
    expect(t).toEqual({
      url: 'https://hooks.example.com/in',
      timeoutMs: 10_000,
      secret: 'hunter2',
      headers: { Authorization: 'Bearer abc' },
      maxBatchBytes: 1_048_576
    })
    const json = JSON.stringify(t)
    expect(json).not.toContain('hunter2')
    expect(json).not.toContain('Bearer abc')
    expect(JSON.parse(json)).toMatchObject({ secret: '(hidden)', headers: { Authorization: '(hidden)' } })
  })

  it('is outbound only', () => {
    expect(webhookDriver.parseSource).toBeUndefined()
    expect(webhookDriver.createSource).toBeUndefined()
  })
})
