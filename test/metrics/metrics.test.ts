import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writePasswordFile, hashPassword } from '../../src/auth/password-file.js'
import { Culex, sleep } from '../bridges/e2e.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect } from '../helpers/mqtt.js'
import { parseExposition, type Exposition } from './parse.js'

// GET /metrics of a real gateway process: the text parses, and the counters move when messages
// flow over MQTT (MQTT.js to 127.0.0.1); a consumer group's lag shows per partition; names follow
// Prometheus's conventions; no client id in any label; credentials when the API requires them.

async function scrape(api: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${api}/metrics`, { headers })
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() }
}

async function metrics(culex: Culex): Promise<Exposition> {
  const r = await scrape(culex.api)
  expect(r.status).toBe(200)
  return parseExposition(r.text)
}

describe('GET /metrics', () => {
  let culex: Culex

  beforeAll(async () => {
    culex = await Culex.start({
      streams: { telemetry: { partitions: 2 } },
      routes: [{ filter: 'dev/#', stream: 'telemetry', key: 'topic-level:1' }],
      bridges: [],
      extra: { 'sys-interval': 0 }
    })
  })
  afterAll(async () => {
    await culex.dispose()
  })

  it('serves the Prometheus text format, with process metrics under culex_', async () => {
    const r = await scrape(culex.api)
    expect(r.status).toBe(200)
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/)
    const m = parseExposition(r.text)
    for (const name of ['culex_process_resident_memory_bytes', 'culex_process_open_fds', 'culex_nodejs_eventloop_lag_seconds']) {
      expect(m.get(name).length, name).toBeGreaterThan(0)
    }
    expect(m.sum('culex_process_resident_memory_bytes')).toBeGreaterThan(0)
    // conventions: the prefix, _total on counters (and, for Culex's own families, only on them)
    for (const [name, type] of m.types) {
      expect(name.startsWith('culex_'), name).toBe(true)
      if (type === 'counter') expect(name.endsWith('_total'), name).toBe(true)
      else if (/^culex_(process|nodejs)_/.test(name)) continue
      else expect(name.endsWith('_total'), name).toBe(false)
    }
  })

  it('moves the counters when messages flow, and shows a group lag per partition', async () => {
    const before = await metrics(culex)
    const sub = await connect(culex.mqttUrl, { clientId: 'metrics-sub-client' })
    const pub = await connect(culex.mqttUrl, { clientId: 'metrics-pub-client' })
    try {
      const got: string[] = []
      sub.on('message', (topic) => got.push(topic))
      await sub.subscribeAsync('dev/#', { qos: 1 })
      for (let i = 0; i < 10; i++) await pub.publishAsync(`dev/d${i % 3}/t`, Buffer.from(`m${i}`), { qos: 1 })
      for (let i = 0; i < 5; i++) await pub.publishAsync('plain/status', Buffer.from('up'), { qos: 0, retain: true })
      for (let i = 0; i < 50 && got.length < 10; i++) await sleep(20)
      expect(got.length).toBe(10)
      const reset = await culex.call('POST', '/api/v1/groups/metrics-g/reset', { stream: 'telemetry', to: 'earliest' })
      expect(reset.status).toBe(200)

      const m = await metrics(culex)
      const diff = (name: string, labels?: Record<string, string>): number => m.sum(name, labels) - before.sum(name, labels)
      expect(diff('culex_messages_received_total', { qos: '1' })).toBe(10)
      expect(diff('culex_messages_received_total', { qos: '0' })).toBe(5)
      expect(diff('culex_messages_sent_total', { qos: '1' })).toBe(10)
      expect(diff('culex_packets_received_total')).toBeGreaterThanOrEqual(10 + 5 + 2 + 1) // publishes, CONNECTs, SUBSCRIBE
      expect(diff('culex_packets_sent_total')).toBeGreaterThanOrEqual(10 + 10 + 2) // deliveries, PUBACKs, CONNACKs
      expect(diff('culex_received_bytes_total')).toBeGreaterThan(10 * 8)
      expect(diff('culex_sent_bytes_total')).toBeGreaterThan(10 * 8)
      expect(diff('culex_connections_accepted_total')).toBe(2)
      expect(m.sum('culex_clients_connected', { listener: 'mqtt' })).toBe(2)
      expect(m.sum('culex_clients_connected', { listener: 'ws' })).toBe(0)
      expect(m.sum('culex_subscriptions')).toBe(1)
      expect(m.sum('culex_retained_messages')).toBe(1)
      // the log: 10 records over 2 partitions, offsets from 0
      expect(m.get('culex_log_end_offset', { stream: 'telemetry' })).toHaveLength(2)
      expect(m.sum('culex_log_end_offset', { stream: 'telemetry' })).toBe(10)
      expect(m.sum('culex_log_records', { stream: 'telemetry' })).toBe(10)
      expect(m.sum('culex_log_appended_records_total', { stream: 'telemetry' })).toBe(10)
      expect(m.sum('culex_log_size_bytes', { stream: 'telemetry' })).toBeGreaterThan(0)
      // kafka_exporter's name: one series per group, stream and partition; reset to earliest: lag = end offset
      const lag = m.get('culex_consumergroup_lag', { group: 'metrics-g', stream: 'telemetry' })
      expect(lag.map((s) => s.labels.partition).sort()).toEqual(['0', '1'])
      for (const s of lag) expect(s.value).toBe(m.sum('culex_log_end_offset', { stream: 'telemetry', partition: s.labels.partition ?? '' }))
      expect(lag.reduce((a, s) => a + s.value, 0)).toBe(10)
      // the group-commit histograms observed the QoS 1 appends
      expect(diff('culex_store_commit_duration_seconds_count')).toBeGreaterThan(0)
      expect(diff('culex_store_commit_batch_ops_sum')).toBeGreaterThanOrEqual(10)
      expect(m.types.get('culex_store_commit_duration_seconds')).toBe('histogram')
      expect(m.sum('culex_delayed_messages_pending')).toBe(0)
      // no client id in any label
      for (const s of m.samples) for (const v of Object.values(s.labels)) expect(v).not.toMatch(/metrics-(sub|pub)-client/)
    } finally {
      await closeAll(sub, pub)
    }
  })

  it('counts refusals by reason', async () => {
    const before = await metrics(culex)
    // a client id over max-client-id-length (256): CONNACK 2, counted as connect-refused
    await expect(connect(culex.mqttUrl, { clientId: 'x'.repeat(300), reconnectPeriod: 0 })).rejects.toThrow()
    const m = await metrics(culex)
    expect(m.types.get('culex_refusals_total')).toBe('counter')
    const refused = { reason: 'connect-refused' }
    expect(m.sum('culex_refusals_total', refused) - before.sum('culex_refusals_total', refused)).toBe(1)
    expect(m.sum('culex_connections_accepted_total') - before.sum('culex_connections_accepted_total')).toBe(0)
  })
})

describe('GET /metrics where the API requires credentials', () => {
  let culex: Culex
  const dir = tempDataDir('metrics-auth')
  const passwordFile = join(dir, 'passwords')

  beforeAll(async () => {
    await writePasswordFile(passwordFile, new Map([['scraper', await hashPassword('scrape-secret', { ln: 10, r: 8, p: 1 })]]))
    culex = await Culex.start({ streams: { s: null }, bridges: [], extra: { 'password-file': passwordFile, 'sys-interval': 0 } })
  })
  afterAll(async () => {
    await culex.dispose()
  })

  it('answers 401 without a credential or with a wrong one, and 200 with any valid one', async () => {
    expect((await scrape(culex.api)).status).toBe(401)
    expect((await scrape(culex.api, { authorization: `Basic ${Buffer.from('scraper:wrong').toString('base64')}` })).status).toBe(401)
    const ok = await scrape(culex.api, { authorization: `Basic ${Buffer.from('scraper:scrape-secret').toString('base64')}` })
    expect(ok.status).toBe(200)
    expect(parseExposition(ok.text).get('culex_clients_connected').length).toBeGreaterThan(0)
  })
})
