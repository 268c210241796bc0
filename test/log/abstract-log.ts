import { afterEach, describe, expect, it, vi } from 'vitest'
import { LogError, type Log, type PartitionInfo, type RetentionPolicy, type StreamConfig } from '../../src/log/types.js'

// The contract of the Log interface. Every backend runs this suite (as aedes persistences run
// aedes-persistence's abstract tests): `open` gives a fresh, empty log.

const NO_RETENTION: RetentionPolicy = { maxAgeMs: null, maxBytes: null, maxRecords: null }

export function stream(name: string, partitions = 1, retention: Partial<RetentionPolicy> = {}): StreamConfig {
  return { name, partitions, retention: { ...NO_RETENTION, ...retention } }
}

const value = (s: string): Buffer => Buffer.from(s)

async function expectLogError(p: Promise<unknown>, code: LogError['code']): Promise<LogError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e
  )
  expect(err).toBeInstanceOf(LogError)
  expect((err as LogError).code).toBe(code)
  return err as LogError
}

/**
 * A backend under test: `open` gives a fresh, empty log; `enforceRetention` applies each stream's
 * retention as of `now` (the embedded log runs it on a timer; a distributed engine natively) and
 * resolves once the heads have moved.
 */
export interface LogBackend<L extends Log = Log> {
  open(): Promise<L>
  enforceRetention(log: L, now: number): Promise<void>
}

export function abstractLogSuite<L extends Log>(name: string, backend: LogBackend<L>): void {
  describe(`Log contract: ${name}`, () => {
    let log: L | undefined
    const fresh = async (): Promise<L> => (log = await backend.open())
    const partition = async (l: Log, s: string, p = 0): Promise<PartitionInfo> => {
      const info = (await l.describeStream(s)).partitions[p]
      if (!info) throw new Error(`no partition ${p} in ${s}`)
      return info
    }
    afterEach(async () => {
      vi.useRealTimers()
      await log?.close()
      log = undefined
    })

    it('gives dense offsets from 0 and reads them back with every field', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s'))
      const results = await l.append('s', [
        { key: 'k', value: value('a'), topic: 't/1', qos: 1, clientId: 'c1', headers: { h: '1' } },
        { key: null, value: value('b') }
      ])
      expect(results.map((r) => r.offset)).toEqual([0, 1])
      const more = await l.append('s', [{ key: null, value: value('c') }])
      expect(more[0]!.offset).toBe(2)
      const records = await l.read('s', 0, 0, { limit: 10 })
      expect(records.map((r) => [r.offset, r.value.toString()])).toEqual([
        [0, 'a'],
        [1, 'b'],
        [2, 'c']
      ])
      expect(records[0]).toMatchObject({ stream: 's', partition: 0, key: 'k', topic: 't/1', qos: 1, clientId: 'c1', headers: { h: '1' } })
      expect(records[1]).toMatchObject({ key: null, topic: null, clientId: null, headers: {}, qos: 0 })
      expect(records[0]!.timestamp).toBeLessThanOrEqual(records[2]!.timestamp)
      expect(await partition(l, 's')).toMatchObject({ startOffset: 0, endOffset: 3 })
    })

    it('reads with limit and maxBytes, returns nothing at the end and refuses beyond it', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s'))
      await l.append(
        's',
        Array.from({ length: 10 }, (_, i) => ({ key: null, value: Buffer.alloc(100, i) }))
      )
      expect((await l.read('s', 0, 3, { limit: 4 })).map((r) => r.offset)).toEqual([3, 4, 5, 6])
      expect((await l.read('s', 0, 0, { limit: 10, maxBytes: 250 })).length).toBe(2)
      expect((await l.read('s', 0, 0, { limit: 10, maxBytes: 1 })).length).toBe(1)
      expect(await l.read('s', 0, 10, { limit: 10 })).toEqual([])
      const err = await expectLogError(l.read('s', 0, 11, { limit: 1 }), 'OFFSET_OUT_OF_RANGE')
      expect(err.details).toEqual({ earliest: 0, latest: 10 })
    })

    it('puts one key always in one partition, in append order, and spreads keyless records', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 4))
      const keys = ['dev-1', 'dev-2', 'dev-3', 'dev-4', 'dev-5', 'dev-6', 'dev-7', 'dev-8']
      const appends = []
      for (let i = 0; i < 50; i++) for (const key of keys) appends.push(l.append('s', [{ key, value: value(`${key}:${i}`) }]))
      await Promise.all(appends)
      const byKey = new Map<string, { partitions: Set<number>; seq: number[] }>()
      for (let p = 0; p < 4; p++) {
        for (const r of await l.read('s', p, 0, { limit: 1000 })) {
          const [key, i] = r.value.toString().split(':')
          const entry = byKey.get(key!) ?? { partitions: new Set(), seq: [] }
          entry.partitions.add(p)
          entry.seq.push(Number(i))
          byKey.set(key!, entry)
        }
      }
      for (const key of keys) {
        expect(byKey.get(key)!.partitions.size).toBe(1)
        expect(byKey.get(key)!.seq).toEqual(Array.from({ length: 50 }, (_, i) => i))
      }
      expect(new Set([...byKey.values()].map((e) => [...e.partitions][0])).size).toBeGreaterThan(1)

      await l.append(
        's',
        Array.from({ length: 8 }, (_, i) => ({ key: null, value: value(String(i)) }))
      )
      const ends = (await l.describeStream('s')).partitions.map((p) => p.endOffset)
      expect(ends.reduce((a, b) => a + b, 0)).toBe(408)
    })

    it('appends to an explicit partition and names unknown streams and partitions', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 2))
      expect((await l.append('s', [{ key: 'x', value: value('v') }], 1))[0]!.partition).toBe(1)
      await expectLogError(l.append('nope', [{ key: null, value: value('v') }]), 'UNKNOWN_STREAM')
      await expectLogError(l.append('s', [{ key: null, value: value('v') }], 2), 'UNKNOWN_PARTITION')
      await expectLogError(l.read('s', 5, 0, { limit: 1 }), 'UNKNOWN_PARTITION')
      await expectLogError(l.describeStream('nope'), 'UNKNOWN_STREAM')
    })

    it('keeps a stream partition count and refuses to change it', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 2))
      await l.ensureStream(stream('s', 2, { maxRecords: 10 }))
      expect((await l.describeStream('s')).config.retention.maxRecords).toBe(10)
      await expectLogError(l.ensureStream(stream('s', 3)), 'STREAM_EXISTS')
      await expectLogError(l.ensureStream(stream('bad name')), 'INVALID_ARGUMENT')
      expect((await l.listStreams()).map((s) => s.config.name)).toEqual(['s'])
    })

    it('finds the first offset at or after a time', async () => {
      vi.useFakeTimers({ toFake: ['Date'] })
      const t0 = Date.UTC(2026, 0, 1)
      vi.setSystemTime(t0)
      const l = await fresh()
      await l.ensureStream(stream('s'))
      // 3,000 records, 7 per simulated ms, so index entries and equal timestamps both occur
      const stamps: number[] = []
      for (let i = 0; i < 3000; i++) {
        vi.setSystemTime(t0 + Math.floor(i / 7))
        const [r] = await l.append('s', [{ key: null, value: value(String(i)) }])
        stamps.push(r!.timestamp)
      }
      for (const ts of [t0 - 1, t0, t0 + 1, t0 + 150, t0 + 151, t0 + 300, t0 + 428, t0 + 429, t0 + 10_000]) {
        const expected = stamps.findIndex((s) => s >= ts)
        expect(await l.offsetForTime('s', 0, ts), `ts ${ts - t0}`).toBe(expected === -1 ? 3000 : expected)
      }
      expect(await l.resolveOffset('s', 0, { timestamp: t0 + 200 })).toBe(stamps.findIndex((s) => s >= t0 + 200))
      expect(await l.resolveOffset('s', 0, 'earliest')).toBe(0)
      expect(await l.resolveOffset('s', 0, 'latest')).toBe(3000)
    })

    it('applies retention by count, bytes and age from the head, and says out-of-range below it', async () => {
      vi.useFakeTimers({ toFake: ['Date'] })
      const t0 = Date.UTC(2026, 0, 1)
      vi.setSystemTime(t0)
      const l = await fresh()
      await l.ensureStream(stream('count', 1, { maxRecords: 10 }))
      await l.ensureStream(stream('bytes', 1, { maxBytes: 5000 }))
      await l.ensureStream(stream('age', 1, { maxAgeMs: 60_000 }))
      for (let i = 0; i < 100; i++) {
        vi.setSystemTime(t0 + i * 1000)
        await l.append('count', [{ key: null, value: Buffer.alloc(100) }])
        await l.append('bytes', [{ key: null, value: Buffer.alloc(100) }])
        await l.append('age', [{ key: null, value: Buffer.alloc(100) }])
      }
      await backend.enforceRetention(l, t0 + 100_000)
      expect(await partition(l, 'count')).toMatchObject({ startOffset: 90, endOffset: 100 })
      const bytes = await partition(l, 'bytes')
      expect(bytes.bytes).toBeLessThanOrEqual(5000)
      expect(bytes.bytes).toBeGreaterThan(5000 - 200)
      // records 40..99 were appended in the last 60 s
      expect(await partition(l, 'age')).toMatchObject({ startOffset: 40, endOffset: 100 })
      const err = await expectLogError(l.read('count', 0, 5, { limit: 1 }), 'OFFSET_OUT_OF_RANGE')
      expect(err.details).toMatchObject({ earliest: 90 })
      expect((await l.read('count', 0, 90, { limit: 100 })).length).toBe(10)
      expect(await l.offsetForTime('age', 0, t0)).toBe(40)
      // offsets are never reused after retention
      expect((await l.append('count', [{ key: null, value: value('new') }]))[0]!.offset).toBe(100)
    })

    it('wakes a waiting reader as soon as a record is committed, and times out otherwise', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 2))
      const started = Date.now()
      expect(await l.waitForRecords([{ stream: 's', partition: 0, offset: 0 }], 100)).toBe(false)
      expect(Date.now() - started).toBeGreaterThanOrEqual(90)
      const waiting = l.waitForRecords(
        [
          { stream: 's', partition: 0, offset: 0 },
          { stream: 's', partition: 1, offset: 0 }
        ],
        10_000
      )
      setTimeout(() => void l.append('s', [{ key: null, value: value('x') }], 1), 50)
      const t = Date.now()
      expect(await waiting).toBe(true)
      expect(Date.now() - t).toBeLessThan(2000)
      expect(await l.waitForRecords([{ stream: 's', partition: 1, offset: 0 }], 10_000)).toBe(true)
      const aborted = new AbortController()
      const w = l.waitForRecords([{ stream: 's', partition: 0, offset: 0 }], 10_000, aborted.signal)
      aborted.abort()
      expect(await w).toBe(false)
    })

    it('stores committed offsets per group and partition', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 2))
      await l.append(
        's',
        [
          { key: null, value: value('a') },
          { key: null, value: value('b') }
        ],
        0
      )
      expect(await l.committed('g', 's', 0)).toBeNull()
      await l.commit('g', [{ stream: 's', partition: 0, offset: 2 }])
      await l.commit('h', [{ stream: 's', partition: 0, offset: 1 }])
      expect(await l.committed('g', 's', 0)).toBe(2)
      expect((await l.listCommitted()).sort((a, b) => a.group.localeCompare(b.group))).toEqual([
        { group: 'g', stream: 's', partition: 0, offset: 2 },
        { group: 'h', stream: 's', partition: 0, offset: 1 }
      ])
      await expectLogError(l.commit('g', [{ stream: 's', partition: 0, offset: 3 }]), 'OFFSET_OUT_OF_RANGE')
      await expectLogError(l.commit('g', [{ stream: 'nope', partition: 0, offset: 0 }]), 'UNKNOWN_STREAM')
      await expectLogError(l.commit('bad group', [{ stream: 's', partition: 0, offset: 0 }]), 'INVALID_ARGUMENT')
    })

    it('stores shared-group configs and state, per group, and deletes a group whole', async () => {
      const l = await fresh()
      expect(await l.listShareGroups()).toEqual([])
      expect(await l.loadShareGroup('g')).toBeNull()
      await l.saveShareConfig('g', '{"streams":["s"]}')
      await l.saveShareConfig('h', '{"streams":["t"]}')
      await expectLogError(l.saveShareConfig('bad group', '{}'), 'INVALID_ARGUMENT')
      const record = (offset: number, deliveries: number) => ({
        offset,
        key: offset % 2 ? 'odd' : null,
        deliveries,
        availableAt: 1000 + offset,
        firstDeliveryAt: deliveries ? 500 : null,
        lastDeliveryAt: deliveries ? 600 : null,
        lastError: deliveries > 1 ? 'timeout' : null
      })
      await l.updateShareState('g', [
        { stream: 's', partition: 0, position: { floor: 2, next: 9 }, put: [record(2, 1), record(5, 2), record(2 ** 40, 0)] },
        { stream: 's', partition: 3, position: { floor: 0, next: 0 } }
      ])
      await l.updateShareState('h', [{ stream: 't', partition: 0, position: { floor: 7, next: 8 }, put: [record(7, 3)] }])
      // one more change: a record finished, one changed, the position moved
      await l.updateShareState('g', [{ stream: 's', partition: 0, position: { floor: 5, next: 9 }, put: [record(5, 3)], remove: [2] }])
      expect((await l.listShareGroups()).sort()).toEqual(['g', 'h'])
      const g = await l.loadShareGroup('g')
      expect(g?.config).toBe('{"streams":["s"]}')
      const sorted = g!.partitions.sort((a, b) => a.partition - b.partition)
      expect(sorted).toEqual([
        { stream: 's', partition: 0, floor: 5, next: 9, records: [record(5, 3), record(2 ** 40, 0)] },
        { stream: 's', partition: 3, floor: 0, next: 0, records: [] }
      ])
      await l.deleteShareGroup('g')
      expect(await l.loadShareGroup('g')).toBeNull()
      expect(await l.listShareGroups()).toEqual(['h'])
      expect((await l.loadShareGroup('h'))?.partitions).toEqual([{ stream: 't', partition: 0, floor: 7, next: 8, records: [record(7, 3)] }])
    })
  })
}
