import { afterEach, describe, expect, it } from 'vitest'
import { backoffDelay, parseShareConfig, ShareConfigError } from '../../src/log/shared/config.js'
import { DLQ_HEADERS, SharedGroups, ShareError, type SharedRecord } from '../../src/log/shared/shared-groups.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from './abstract-log.js'

// Shared groups over a real RocksLog on a temp store, with a clock the test moves.

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

interface Setup {
  log: RocksLog
  groups: SharedGroups
  clock: { now: number }
  dir: string
  store: Store
}

async function setup(partitions = 1, dir = tempDataDir('shared'), clock = { now: 1_700_000_000_000 }): Promise<Setup> {
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('s', partitions)], { retentionIntervalMs: 0 })
  const groups = await SharedGroups.open(log, { now: () => clock.now })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    groups.close()
    await log.close()
    await store.close()
  }
  cleanups.push(close)
  return { log, groups, clock, dir, store }
}

/** Closes the log and store and opens them again on the same data dir: a restart. */
async function restart(s: Setup): Promise<Setup> {
  s.groups.close()
  await s.log.close()
  await s.store.close()
  return setup(1, s.dir, s.clock)
}

async function produce(log: RocksLog, values: Array<[key: string | null, value: string]>): Promise<void> {
  await log.append(
    's',
    values.map(([key, value]) => ({ key, value: Buffer.from(value) }))
  )
}

const values = (records: SharedRecord[]): string[] => records.map((r) => r.value.toString())
const fetch = (g: SharedGroups, consumer = 'c1', maxRecords = 100, waitMs = 0): Promise<SharedRecord[]> => g.fetch('g', { consumer, maxRecords, waitMs })
const answer = (
  g: SharedGroups,
  records: SharedRecord[],
  action: 'ack' | 'nack' | 'reject' | 'extend',
  consumer = 'c1',
  more: { delayMs?: number; error?: string } = {}
) =>
  g.acknowledge(
    'g',
    consumer,
    records.map((r) => ({ stream: r.stream, partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, action, ...more }))
  )

describe('shared group config', () => {
  it('fills in defaults and refuses bad fields by name', () => {
    expect(parseShareConfig({ streams: ['s'] })).toMatchObject({
      ackWaitMs: 30_000,
      maxDeliveries: 16,
      maxAckPending: 1000,
      ordering: 'per-key',
      deadLetter: null
    })
    const bad: Array<[unknown, string]> = [
      [{}, 'streams'],
      [{ streams: ['s'], ackWaitMs: 5 }, 'ackWaitMs'],
      [{ streams: ['s'], maxDeliveries: 0 }, 'maxDeliveries'],
      [{ streams: ['s'], backoff: [] }, 'backoff'],
      [{ streams: ['s'], backoff: [100, -1] }, 'backoff[1]'],
      [{ streams: ['s'], backoff: { initialMs: 100, maxMs: 50 } }, 'backoff.maxMs'],
      [{ streams: ['s'], ordering: 'fifo' }, 'ordering'],
      [{ streams: ['s'], deadLetter: 'bad name' }, 'deadLetter'],
      [{ streams: ['s'], maxAckPending: 10 ** 9 }, 'maxAckPending'],
      [{ streams: ['s'], surprise: 1 }, 'surprise']
    ]
    for (const [input, field] of bad) {
      expect(() => parseShareConfig(input), field).toThrow(ShareConfigError)
      try {
        parseShareConfig(input)
      } catch (err) {
        expect((err as ShareConfigError).field).toBe(field)
      }
    }
  })

  it('backs off by the list (the last delay repeats) or exponentially with a cap and jitter', () => {
    expect([1, 2, 3, 4, 9].map((n) => backoffDelay([10, 20, 30], n))).toEqual([10, 20, 30, 30, 30])
    const exp = { initialMs: 100, maxMs: 1000, multiplier: 2, jitter: 0 }
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(exp, n))).toEqual([100, 200, 400, 800, 1000, 1000])
    const jittered = { ...exp, jitter: 0.5 }
    expect(backoffDelay(jittered, 1, () => 0)).toBe(50)
    expect(backoffDelay(jittered, 1, () => 1)).toBe(150)
  })
})

describe('shared groups', () => {
  it('refuses an unknown group, an unknown stream and a dead-letter stream that is consumed', async () => {
    const { groups } = await setup()
    await expect(fetch(groups)).rejects.toThrow(ShareError)
    await expect(groups.put('g', { streams: ['nope'] })).rejects.toThrow(/nope/)
    await expect(groups.put('g', { streams: ['s'], deadLetter: 's' })).rejects.toThrow(/deadLetter/)
  })

  it('hands each record to one consumer; an acked record is never seen again', async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'], ordering: 'none' })
    await produce(log, [
      ['a', '1'],
      ['b', '2'],
      ['c', '3'],
      ['d', '4']
    ])
    const one = await fetch(groups, 'c1', 2)
    const two = await fetch(groups, 'c2', 10)
    expect(values(one)).toEqual(['1', '2'])
    expect(values(two)).toEqual(['3', '4'])
    expect((await answer(groups, one, 'ack')).every((r) => r.ok)).toBe(true)
    expect(await fetch(groups, 'c3')).toEqual([])
    const d = await groups.describe('g')
    expect(d.partitions[0]).toMatchObject({ floor: 2, next: 4, acquired: 2, pending: 2, lag: 2 })
    await answer(groups, two, 'ack', 'c2')
    expect((await groups.describe('g')).partitions[0]).toMatchObject({ floor: 4, next: 4, acquired: 0, pending: 0, lag: 0 })
  })

  it('redelivers a record whose ack-wait ran out, after the backoff, with a higher delivery count', async () => {
    const { groups, log, clock } = await setup()
    await groups.put('g', { streams: ['s'], ackWaitMs: 1000, backoff: [500, 2000] })
    await produce(log, [['a', '1']])
    const [first] = await fetch(groups)
    expect(first?.deliveryCount).toBe(1)
    clock.now += 999
    expect(await fetch(groups, 'c2')).toEqual([])
    clock.now += 1 // the lock ends; the backoff (500 ms after delivery 1) starts
    expect(await fetch(groups, 'c2')).toEqual([])
    clock.now += 500
    const [second] = await fetch(groups, 'c2')
    expect(second?.deliveryCount).toBe(2)
    // the first consumer's late ack is refused: the record is someone else's now
    expect(await answer(groups, [first!], 'ack')).toEqual([{ stream: 's', partition: 0, offset: 0, ok: false, error: 'LOCK_LOST' }])
    clock.now += 1000 + 1999
    expect(await fetch(groups, 'c3')).toEqual([])
    clock.now += 1 // the second backoff is 2000
    expect((await fetch(groups, 'c3'))[0]?.deliveryCount).toBe(3)
  })

  it('nack with a delay; extend keeps the lock past the ack-wait', async () => {
    const { groups, log, clock } = await setup()
    await groups.put('g', { streams: ['s'], ackWaitMs: 1000 })
    await produce(log, [['a', '1']])
    const got = await fetch(groups)
    expect(await answer(groups, got, 'nack', 'c1', { delayMs: 5000 })).toMatchObject([{ ok: true }])
    clock.now += 4999
    expect(await fetch(groups)).toEqual([])
    clock.now += 1
    const again = await fetch(groups)
    expect(again[0]?.deliveryCount).toBe(2)
    clock.now += 900
    await answer(groups, again, 'extend')
    clock.now += 900 // 1800 ms after the fetch: without the extend the lock would be gone
    expect(await answer(groups, again, 'ack')).toMatchObject([{ ok: true }])
  })

  it('sends a record to <stream>.dlq after maxDeliveries, with headers naming where it came from and why', async () => {
    const { groups, log, clock } = await setup()
    await groups.put('g', { streams: ['s'], maxDeliveries: 3, backoff: [100, 200] })
    await log.append('s', [{ key: 'k', value: Buffer.from('poison'), headers: { trace: 't1' }, topic: 'devices/d1' }])
    const waits: number[] = []
    let last = clock.now
    for (let n = 1; n <= 3; n++) {
      let got = await fetch(groups)
      while (got.length === 0) {
        clock.now += 10
        got = await fetch(groups)
      }
      waits.push(clock.now - last)
      expect(got[0]?.deliveryCount).toBe(n)
      const [result] = await answer(groups, got, 'nack', 'c1', { error: `failure ${n}` })
      expect(result?.deadLettered ?? false).toBe(n === 3)
      last = clock.now
    }
    // the waits grew with the backoff list
    expect(waits.slice(1)).toEqual([100, 200])
    expect(await fetch(groups)).toEqual([])
    const [dead] = await log.read('s.dlq', 0, 0, { limit: 10 })
    expect(dead?.value.toString()).toBe('poison')
    expect(dead?.key).toBe('k')
    expect(dead?.headers).toMatchObject({
      trace: 't1',
      [DLQ_HEADERS.stream]: 's',
      [DLQ_HEADERS.partition]: '0',
      [DLQ_HEADERS.offset]: '0',
      [DLQ_HEADERS.group]: 'g',
      [DLQ_HEADERS.deliveries]: '3',
      [DLQ_HEADERS.error]: 'failure 3',
      [DLQ_HEADERS.reason]: 'max-deliveries',
      [DLQ_HEADERS.topic]: 'devices/d1'
    })
    expect(Date.parse(dead!.headers[DLQ_HEADERS.firstDelivery]!)).toBeLessThan(Date.parse(dead!.headers[DLQ_HEADERS.lastDelivery]!))
    expect((await groups.describe('g')).deadLettered).toBe(1)
  })

  it('reject sends a record to the configured dead-letter stream at once', async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'], deadLetter: 'parked' })
    await produce(log, [
      ['a', 'bad'],
      ['b', 'good']
    ])
    const got = await fetch(groups)
    await answer(groups, got.slice(0, 1), 'reject', 'c1', { error: 'schema mismatch' })
    await answer(groups, got.slice(1), 'ack')
    const dead = await log.read('parked', 0, 0, { limit: 10 })
    expect(dead.map((r) => [r.value.toString(), r.headers[DLQ_HEADERS.reason], r.headers[DLQ_HEADERS.error]])).toEqual([['bad', 'rejected', 'schema mismatch']])
    expect((await groups.describe('g')).partitions[0]).toMatchObject({ floor: 2, lag: 0 })
  })

  it('per-key: holds later records of a key while one waits for redelivery; other keys flow', async () => {
    const { groups, log, clock } = await setup()
    await groups.put('g', { streams: ['s'], backoff: [1000] })
    await produce(log, [
      ['a', 'a1'],
      ['b', 'b1'],
      ['a', 'a2'],
      ['c', 'c1'],
      ['a', 'a3'],
      ['b', 'b2']
    ])
    const first = await fetch(groups)
    expect(values(first)).toEqual(['a1', 'b1', 'c1'])
    await answer(
      groups,
      first.filter((r) => r.key === 'a'),
      'nack'
    )
    await answer(
      groups,
      first.filter((r) => r.key !== 'a'),
      'ack'
    )
    // b2 flows (b1 is done); a2 and a3 wait behind a1
    expect(values(await fetch(groups))).toEqual(['b2'])
    clock.now += 1000
    const retry = await fetch(groups)
    expect(values(retry)).toEqual(['a1'])
    await answer(groups, retry, 'ack')
    const next = await fetch(groups)
    expect(values(next)).toEqual(['a2'])
    await answer(groups, next, 'ack')
    expect(values(await fetch(groups))).toEqual(['a3'])
  })

  it("ordering none: a key's later records flow while an earlier one waits", async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'], ordering: 'none', backoff: [1000] })
    await produce(log, [
      ['a', 'a1'],
      ['a', 'a2']
    ])
    const first = await fetch(groups, 'c1', 1)
    await answer(groups, first, 'nack')
    expect(values(await fetch(groups))).toEqual(['a2'])
  })

  it('caps unfinished records per partition at maxAckPending', async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'], ordering: 'none', maxAckPending: 3 })
    await produce(
      log,
      Array.from({ length: 10 }, (_, i): [string, string] => [`k${i}`, String(i)])
    )
    const got = await fetch(groups, 'c1', 100)
    expect(values(got)).toEqual(['0', '1', '2'])
    expect(await fetch(groups, 'c2')).toEqual([])
    await answer(groups, got.slice(0, 2), 'ack')
    expect(values(await fetch(groups, 'c2'))).toEqual(['3', '4'])
  })

  it('a long-poll fetch returns when a record is appended, or a nacked record becomes available', async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'] })
    const waiting = fetch(groups, 'c1', 10, 5000)
    await new Promise((r) => setTimeout(r, 50))
    await produce(log, [['a', '1']])
    const got = await waiting
    expect(values(got)).toEqual(['1'])
    const waiting2 = fetch(groups, 'c2', 10, 5000)
    await new Promise((r) => setTimeout(r, 50))
    await answer(groups, got, 'nack', 'c1', { delayMs: 0 })
    expect(values(await waiting2)).toEqual(['1'])
  })

  it('a restart keeps acks, delivery counts, backoff and dead letters; acquired records are available again', async () => {
    let s = await setup()
    await s.groups.put('g', { streams: ['s'], maxDeliveries: 2, backoff: [60_000], ackWaitMs: 600_000 })
    await produce(s.log, [
      ['a', 'acked'],
      ['b', 'held'],
      ['c', 'waiting'],
      ['d', 'new']
    ])
    const got = await fetch(s.groups, 'c1', 3)
    await answer(s.groups, got.slice(0, 1), 'ack')
    await answer(s.groups, got.slice(2, 3), 'nack')
    s = await restart(s)
    // 'held' was acquired when the gateway stopped: available at once, its first delivery counted
    const after = await fetch(s.groups, 'c1')
    expect(after.map((r) => [r.value.toString(), r.deliveryCount])).toEqual([
      ['held', 2],
      ['new', 1]
    ])
    // 'waiting' keeps its backoff through the restart
    s.clock.now += 60_000
    const retried = await fetch(s.groups, 'c1')
    expect(retried.map((r) => [r.value.toString(), r.deliveryCount])).toEqual([['waiting', 2]])
    await answer(s.groups, retried, 'nack')
    expect((await s.log.read('s.dlq', 0, 0, { limit: 10 })).map((r) => r.value.toString())).toEqual(['waiting'])
    await answer(s.groups, after, 'ack')
    s = await restart(s)
    expect(await fetch(s.groups)).toEqual([])
    expect((await s.groups.describe('g')).partitions[0]).toMatchObject({ floor: 4, next: 4, pending: 0 })
  })

  it('release: a consumer that went away frees what it held for the others at once, delivery counted', async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'], ordering: 'none' })
    await produce(log, [
      ['a', '1'],
      ['b', '2']
    ])
    const held = await fetch(groups, 'gone')
    expect(held).toHaveLength(2)
    expect(await fetch(groups, 'c2')).toEqual([])
    expect(await groups.release('g', 'gone')).toBe(2)
    expect((await fetch(groups, 'c2')).map((r) => [r.value.toString(), r.deliveryCount])).toEqual([
      ['1', 2],
      ['2', 2]
    ])
    expect(await groups.release('g', 'nobody')).toBe(0)
  })

  it('reports a lag alert when lag reaches lagAlert, and when it falls below again', async () => {
    const clock = { now: 1_700_000_000_000 }
    const dir = tempDataDir('shared-alert')
    const store = await Store.open({ dataDir: dir, durability: 'none' })
    const log = await RocksLog.open(store, [stream('s', 1)], { retentionIntervalMs: 0 })
    const alerts: Array<[number, boolean]> = []
    const groups = await SharedGroups.open(log, { now: () => clock.now, onLagAlert: (_g, lag, on) => alerts.push([lag, on]) })
    cleanups.push(async () => {
      groups.close()
      await log.close()
      await store.close()
    })
    await groups.put('g', { streams: ['s'], lagAlert: 3, ordering: 'none' })
    await produce(log, [
      ['a', '1'],
      ['b', '2'],
      ['c', '3']
    ])
    const got = await fetch(groups)
    await new Promise((r) => setTimeout(r, 50))
    expect(alerts).toEqual([[3, true]])
    expect((await groups.describe('g')).lagAlert).toBe(true)
    await answer(groups, got, 'ack')
    await new Promise((r) => setTimeout(r, 50))
    expect(alerts).toEqual([
      [3, true],
      [0, false]
    ])
  })

  it('raises a lag alert from appends alone, with no fetch or ack (the periodic check)', async () => {
    const store = await Store.open({ dataDir: tempDataDir('shared-alert2'), durability: 'none' })
    const log = await RocksLog.open(store, [stream('s', 1)], { retentionIntervalMs: 0 })
    const alerts: Array<[number, boolean]> = []
    const groups = await SharedGroups.open(log, { lagCheckIntervalMs: 20, onLagAlert: (_g, lag, on) => alerts.push([lag, on]) })
    cleanups.push(async () => {
      groups.close()
      await log.close()
      await store.close()
    })
    await groups.put('g', { streams: ['s'], lagAlert: 2 })
    await produce(log, [
      ['a', '1'],
      ['b', '2']
    ])
    for (let i = 0; i < 100 && alerts.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(alerts).toEqual([[2, true]])
  })

  it('a long-poll with only key-blocked records waits for an answer instead of polling', async () => {
    const { groups, log } = await setup()
    await groups.put('g', { streams: ['s'] })
    await produce(log, [
      ['a', 'a1'],
      ['a', 'a2']
    ])
    const first = await fetch(groups, 'c1')
    expect(values(first)).toEqual(['a1'])
    // a2 is held back by a1: a fetch has nothing to do until a1 is answered
    let passes = 0
    const read = log.read.bind(log)
    log.read = async (...args) => {
      passes++
      return read(...args)
    }
    const waiting = fetch(groups, 'c2', 10, 400)
    await new Promise((r) => setTimeout(r, 300))
    const before = passes
    await answer(groups, first, 'ack')
    expect(values(await waiting)).toEqual(['a2'])
    // one pass when it started, none while it waited (the first version spun every millisecond)
    expect(before).toBeLessThanOrEqual(2)
  })

  it('does not store records held back by key order, and reads them again after a restart, in order', async () => {
    let s = await setup()
    await s.groups.put('g', { streams: ['s'], ackWaitMs: 600_000 })
    await produce(s.log, [
      ['a', 'a1'],
      ['a', 'a2'],
      ['b', 'b1'],
      ['a', 'a3']
    ])
    const first = await fetch(s.groups)
    expect(values(first)).toEqual(['a1', 'b1'])
    // a2 and a3 were read but never handed out: only a1 and b1 have stored state
    const stored = await s.log.loadShareGroup('g')
    expect(stored?.partitions[0]?.records.map((r) => r.offset)).toEqual([0, 2])
    expect(stored?.partitions[0]).toMatchObject({ floor: 0, next: 1 })
    s = await restart(s)
    // a1 and b1 come again (their locks were not stored); a2 waits behind a1, a3 behind a2
    const again = await fetch(s.groups)
    expect(again.map((r) => [r.value.toString(), r.deliveryCount])).toEqual([
      ['a1', 2],
      ['b1', 2]
    ])
    await answer(s.groups, again, 'ack')
    expect(values(await fetch(s.groups))).toEqual(['a2'])
    expect((await s.groups.describe('g')).partitions[0]).toMatchObject({ floor: 1, next: 4, pending: 2 })
  })

  it('deletes a group with its state', async () => {
    let s = await setup()
    await s.groups.put('g', { streams: ['s'] })
    await produce(s.log, [['a', '1']])
    await fetch(s.groups)
    await s.groups.delete('g')
    s = await restart(s)
    expect(s.groups.list()).toEqual([])
  })
})
