import { afterEach, describe, expect, it } from 'vitest'
import { GroupCoordinator } from '../../src/log/groups/coordinator.js'
import { GroupError } from '../../src/log/groups/types.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { LogRecord } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { stream } from './abstract-log.js'

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A real RocksLog on a temp store, a coordinator with a clock the test moves. */
async function setup(partitions = 4): Promise<{ log: RocksLog; groups: GroupCoordinator; clock: { now: number } }> {
  const store = await Store.open({ dataDir: tempDataDir('groups'), durability: 'fsync' })
  const log = await RocksLog.open(store, [stream('s', partitions)], { retentionIntervalMs: 0 })
  const clock = { now: Date.now() }
  const groups = new GroupCoordinator(log, { now: () => clock.now, sweepIntervalMs: 60_000 })
  cleanups.push(
    () => store.close(),
    () => log.close(),
    () => groups.close()
  )
  return { log, groups, clock }
}

async function produce(log: RocksLog, count: number, keys = 8): Promise<void> {
  await log.append(
    's',
    Array.from({ length: count }, (_, i) => ({ key: `dev-${i % keys}`, value: Buffer.from(String(i)) }))
  )
}

const ids = (records: LogRecord[]): number[] => records.map((r) => Number(r.value.toString()))

describe('consumer groups', () => {
  it('splits partitions between two members, one owner per partition', async () => {
    const { groups } = await setup(4)
    const a = await groups.join('g', { streams: ['s'] })
    const b = await groups.join('g', { streams: ['s'] })
    const aNow = groups.heartbeat('g', a.memberId)
    expect(aNow.generation).toBe(b.generation)
    const owned = [...aNow.assignments, ...b.assignments].map((x) => x.partition).sort()
    expect(owned).toEqual([0, 1, 2, 3])
    expect(aNow.assignments.length).toBe(2)
    expect(b.assignments.length).toBe(2)
  })

  it("hands a timed-out member's partitions to the other, which resumes from the committed offsets with nothing lost", async () => {
    const { log, groups, clock } = await setup(4)
    await produce(log, 200)
    const a = await groups.join('g', { streams: ['s'], sessionTimeoutMs: 2000 })
    const b = await groups.join('g', { streams: ['s'], sessionTimeoutMs: 2000 })
    const processed: number[] = []

    // A fetches everything it owns but commits only what it processed: the first half of each partition
    const fa = await groups.fetch('g', a.memberId, { maxRecords: 1000, waitMs: 0 })
    const commits = groups.heartbeat('g', a.memberId).assignments.map((as) => {
      const mine = fa.records.filter((r) => r.partition === as.partition)
      const half = mine.slice(0, Math.floor(mine.length / 2))
      processed.push(...ids(half))
      return { stream: 's', partition: as.partition, offset: half.length > 0 ? half[half.length - 1]!.offset + 1 : 0 }
    })
    await groups.commit('g', a.memberId, commits)
    // B consumes its own partitions completely
    const fb = await groups.fetch('g', b.memberId, { maxRecords: 1000, waitMs: 0 })
    processed.push(...ids(fb.records))
    await groups.commit(
      'g',
      b.memberId,
      await Promise.all(
        b.assignments.map(async (as) => ({ stream: 's', partition: as.partition, offset: await log.resolveOffset('s', as.partition, 'latest') }))
      )
    )

    // A stops heartbeating (killed); B keeps going
    clock.now += 1500
    groups.heartbeat('g', b.memberId)
    clock.now += 1000
    groups.expireMembers()
    expect(() => groups.heartbeat('g', a.memberId)).toThrow(GroupError)
    const takeover = groups.heartbeat('g', b.memberId)
    expect(takeover.assignments.map((x) => x.partition).sort()).toEqual([0, 1, 2, 3])

    const rest = await groups.fetch('g', b.memberId, { maxRecords: 1000, waitMs: 0 })
    processed.push(...ids(rest.records))
    // every record processed, the uncommitted ones of A exactly once more (none twice here)
    expect([...new Set(processed)].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i))
    expect(processed.length).toBe(200)
    // the stale member cannot commit
    await expect(groups.commit('g', a.memberId, [{ stream: 's', partition: 0, offset: 1 }])).rejects.toMatchObject({ code: 'UNKNOWN_MEMBER' })
  })

  it('keeps per-key order within a group across fetches', async () => {
    const { log, groups } = await setup(4)
    await produce(log, 400, 5)
    const m = await groups.join('g', { streams: ['s'] })
    const seen = new Map<string, number[]>()
    for (let i = 0; i < 20; i++) {
      const { records } = await groups.fetch('g', m.memberId, { maxRecords: 37, waitMs: 0 })
      for (const r of records) seen.set(r.key!, [...(seen.get(r.key!) ?? []), Number(r.value.toString())])
    }
    expect([...seen.values()].flat().length).toBe(400)
    for (const seq of seen.values()) expect(seq).toEqual([...seq].sort((x, y) => x - y))
  })

  it('refuses commits of partitions the member does not own', async () => {
    const { groups } = await setup(2)
    const a = await groups.join('g', { streams: ['s'] })
    const b = await groups.join('g', { streams: ['s'] })
    const notA = groups.heartbeat('g', b.memberId).assignments[0]!
    await expect(groups.commit('g', a.memberId, [{ ...notA, offset: 0 }])).rejects.toMatchObject({ code: 'NOT_ASSIGNED' })
  })

  it('long-poll returns as soon as a record is appended, and when the member is rebalanced', async () => {
    const { log, groups } = await setup(2)
    const m = await groups.join('g', { streams: ['s'] })
    const started = Date.now()
    const waiting = groups.fetch('g', m.memberId, { maxRecords: 10, waitMs: 10_000 })
    setTimeout(() => void log.append('s', [{ key: null, value: Buffer.from('x') }], 1), 100)
    const { records } = await waiting
    expect(records.length).toBe(1)
    expect(Date.now() - started).toBeLessThan(3000)

    // a second member takes one of the two partitions: the waiting fetch returns with the new assignment
    const idle = groups.fetch('g', m.memberId, { maxRecords: 10, waitMs: 10_000 })
    const t = Date.now()
    setTimeout(() => void groups.join('g', { streams: ['s'] }), 100)
    const r = await idle
    expect(Date.now() - t).toBeLessThan(3000)
    expect(r.records).toEqual([])
    expect(r.assignments.length).toBe(1)

    // and a fetch with nothing to read waits its whole waitMs, no longer
    const t2 = Date.now()
    await groups.fetch('g', m.memberId, { maxRecords: 10, waitMs: 300 })
    expect(Date.now() - t2).toBeGreaterThanOrEqual(280)
  })

  it('reports lag per partition and resets a group only when it has no members', async () => {
    const { log, groups } = await setup(2)
    await log.append(
      's',
      [
        { key: null, value: Buffer.from('a') },
        { key: null, value: Buffer.from('b') },
        { key: null, value: Buffer.from('c') }
      ],
      0
    )
    const m = await groups.join('g', { streams: ['s'] })
    await groups.commit('g', m.memberId, [{ stream: 's', partition: 0, offset: 1 }])
    const d = await groups.describe('g')
    expect(d.partitions.find((p) => p.partition === 0)).toMatchObject({ committed: 1, endOffset: 3, lag: 2, memberId: m.memberId })
    expect(d.members.length).toBe(1)
    await expect(groups.reset('g', 's', 'earliest')).rejects.toMatchObject({ code: 'GROUP_ACTIVE' })
    groups.leave('g', m.memberId)
    expect(await groups.reset('g', 's', 'latest')).toEqual([
      { stream: 's', partition: 0, offset: 3 },
      { stream: 's', partition: 1, offset: 0 }
    ])
    expect((await groups.describe('g')).partitions.every((p) => p.lag === 0)).toBe(true)
    expect(await groups.list()).toEqual([{ group: 'g', state: 'empty', generation: 0, members: 0, lag: 0, streams: ['s'] }])
  })

  it('ends a waiting fetch when its member leaves, and restarts a rejoining member from its commits', async () => {
    const { log, groups } = await setup(1)
    const m = await groups.join('g', { streams: ['s'] })
    const waiting = groups.fetch('g', m.memberId, { maxRecords: 10, waitMs: 10_000 })
    const t = Date.now()
    setTimeout(() => groups.leave('g', m.memberId), 50)
    await expect(waiting).rejects.toMatchObject({ code: 'UNKNOWN_MEMBER' })
    expect(Date.now() - t).toBeLessThan(3000)

    await produce(log, 10)
    const again = await groups.join('g', { streams: ['s'] })
    const first = await groups.fetch('g', again.memberId, { maxRecords: 10, waitMs: 0 })
    expect(first.records.length).toBe(10)
    await groups.commit('g', again.memberId, [{ stream: 's', partition: 0, offset: 4 }])
    // the response was lost: the member rejoins with its id and gets everything after its commit again
    await groups.join('g', { streams: ['s'], memberId: again.memberId })
    const redelivered = await groups.fetch('g', again.memberId, { maxRecords: 10, waitMs: 0 })
    expect(ids(redelivered.records)).toEqual([4, 5, 6, 7, 8, 9])
  })

  it('validates join options with clear messages', async () => {
    const { groups } = await setup(1)
    await expect(groups.join('g', { streams: [] })).rejects.toThrow(/streams must name at least one stream/)
    await expect(groups.join('g', { streams: ['nope'] })).rejects.toThrow(/unknown stream "nope"/)
    await expect(groups.join('g', { streams: ['s'], sessionTimeoutMs: 10 })).rejects.toThrow(/sessionTimeoutMs must be an integer from 1000/)
    await expect(groups.join('bad group', { streams: ['s'] })).rejects.toThrow(/invalid group name/)
    // a failed join leaves no group behind
    await expect(groups.describe('g')).rejects.toMatchObject({ code: 'UNKNOWN_GROUP' })
    expect(await groups.list()).toEqual([])
  })
})
