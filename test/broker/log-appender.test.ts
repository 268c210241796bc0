import type { AedesPublishPacket, Client } from 'aedes'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createLogAppender, isReplay, markReplay } from '../../src/broker/log-appender.js'
import { Router } from '../../src/broker/router.js'
import type { RouteConfig } from '../../src/config.js'
import type { AppendResult, Log, RecordInput } from '../../src/log/types.js'

/** A log that records appends and settles each one when the test says so. */
class FakeLog {
  readonly appends: Array<{ stream: string; records: RecordInput[]; settle: (err?: Error) => void }> = []

  append(stream: string, records: RecordInput[]): Promise<AppendResult[]> {
    return new Promise((resolve, reject) => {
      this.appends.push({
        stream,
        records,
        settle: (err) => (err ? reject(err) : resolve(records.map(() => ({ partition: 0, offset: 0, timestamp: 0 }))))
      })
    })
  }

  settleAll(err?: Error): void {
    for (const a of this.appends) a.settle(err)
  }
}

const routes: RouteConfig[] = [
  { filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'topic-level', level: 2 } },
  { filter: '#', stream: 'audit', key: { kind: 'client-id' } }
]

function setup(): { log: FakeLog; onPublished: ReturnType<typeof createLogAppender> } {
  const log = new FakeLog()
  return { log, onPublished: createLogAppender(new Router(routes), log as unknown as Log, pino({ level: 'silent' })) }
}

const packet = (topic: string, qos: 0 | 1 | 2, payload: Buffer | string = 'v', extra: object = {}): AedesPublishPacket =>
  ({ cmd: 'publish', topic, qos, payload, retain: false, dup: false, brokerId: 'b', brokerCounter: 1, ...extra }) as AedesPublishPacket
const client = (id: string): Client => ({ id }) as Client

/** Whether the promise settles within a few event-loop turns. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false
  p.then(
    () => (done = true),
    () => (done = true)
  )
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
  return done
}

describe('createLogAppender', () => {
  it('appends a routed QoS 1 publish to every matching stream and holds the ack until all are committed', async () => {
    const { log, onPublished } = setup()
    const done = onPublished(packet('devices/d7/telemetry', 1, Buffer.from('21.5')), client('sensor-7'))
    expect(log.appends.map((a) => a.stream)).toEqual(['telemetry', 'audit'])
    expect(log.appends[0]!.records).toEqual([
      { key: 'd7', value: Buffer.from('21.5'), topic: 'devices/d7/telemetry', qos: 1, clientId: 'sensor-7', headers: {} }
    ])
    expect(log.appends[1]!.records[0]).toMatchObject({ key: 'sensor-7', topic: 'devices/d7/telemetry' })

    log.appends[0]!.settle()
    expect(await settled(done)).toBe(false)
    log.appends[1]!.settle()
    await expect(done).resolves.toBeUndefined()
  })

  it('fails a QoS 2 publish when an append fails (no ack for what was not stored)', async () => {
    const { log, onPublished } = setup()
    const done = onPublished(packet('devices/d1/telemetry', 2), client('c'))
    log.settleAll(new Error('disk full'))
    await expect(done).rejects.toThrow('disk full')
  })

  it('does not wait for QoS 0 appends, and swallows (logs) their errors', async () => {
    const { log, onPublished } = setup()
    await expect(onPublished(packet('devices/d1/telemetry', 0), client('c'))).resolves.toBeUndefined()
    expect(log.appends).toHaveLength(2)
    log.settleAll(new Error('disk full'))
    await new Promise((r) => setImmediate(r)) // an unhandled rejection would fail the run
  })

  it('skips $SYS/ topics, unrouted topics and packets marked as replays', async () => {
    const { log, onPublished } = setup()
    await onPublished(packet('$SYS/broker/new/clients', 0), null)
    const router = new Router([{ filter: 'a/#', stream: 's', key: { kind: 'none' } }])
    const other = new FakeLog()
    const onlyA = createLogAppender(router, other as unknown as Log, pino({ level: 'silent' }))
    await onlyA(packet('b/c', 1), client('c'))
    const replayed = packet('devices/d1/telemetry', 1)
    markReplay(replayed)
    expect(isReplay(replayed)).toBe(true)
    expect(isReplay(packet('devices/d1/telemetry', 1))).toBe(false)
    await onPublished(replayed, null)
    expect(log.appends).toEqual([])
    expect(other.appends).toEqual([])
  })

  it('has no client id for broker publishes, but keeps the stored client id of a will published at start-up', async () => {
    const { log, onPublished } = setup()
    void onPublished(packet('status/x', 0, ''), null)
    void onPublished(packet('status/y', 0, 'gone', { clientId: 'dead-device' }), null)
    expect(log.appends.map((a) => [a.records[0]!.clientId, a.records[0]!.key, a.records[0]!.value.toString()])).toEqual([
      [null, null, ''],
      ['dead-device', 'dead-device', 'gone']
    ])
    log.settleAll()
  })

  it('turns a string payload into bytes', async () => {
    const { log, onPublished } = setup()
    void onPublished(packet('x', 0, 'héllo'), client('c'))
    expect(log.appends[0]!.records[0]!.value).toEqual(Buffer.from('héllo', 'utf8'))
    log.settleAll()
  })
})
