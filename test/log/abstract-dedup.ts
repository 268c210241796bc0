import { afterEach, describe, expect, it } from 'vitest'
import { LogError, type AppendOnce, type Log, type RecordInput } from '../../src/log/types.js'
import { stream } from './abstract-log.js'

// The contract of Log#appendOnce (and of records that carry their partition), for every backend,
// as abstract-log.ts is for the rest: the dedup window, its bound, conflicts, and a restart.

export interface DedupSettings {
  /** How long an id is remembered (ms); 0 = off. */
  windowMs: number
  /** Most ids remembered. */
  maxKeys: number
}

export interface DedupBackend<L extends Log = Log> {
  /** A fresh, empty log with these dedup settings. */
  open(dedup: DedupSettings): Promise<L>
  /** Closes `log` and opens its storage again (a restart), with the same settings. */
  restart(log: L): Promise<L>
}

const value = (s: string): Buffer => Buffer.from(s)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const once = (id: string, fingerprint = 'f1', more: Partial<AppendOnce> = {}): AppendOnce => ({ id, fingerprint, onConflict: 'reject', ...more })

async function expectLogError(p: Promise<unknown>, code: LogError['code']): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e
  )
  expect(err).toBeInstanceOf(LogError)
  expect((err as LogError).code).toBe(code)
}

/** Every record of a stream, as `partition:offset:value`. */
async function contents(l: Log, s: string): Promise<string[]> {
  const out: string[] = []
  for (const p of (await l.describeStream(s)).partitions) {
    for (const r of await l.read(s, p.partition, p.startOffset, { limit: 1000 })) out.push(`${r.partition}:${r.offset}:${r.value.toString()}`)
  }
  return out
}

export function abstractDedupSuite<L extends Log>(name: string, backend: DedupBackend<L>): void {
  describe(`Log contract, appendOnce: ${name}`, () => {
    let log: L | undefined
    const fresh = async (dedup: Partial<DedupSettings> = {}): Promise<L> => (log = await backend.open({ windowMs: 60_000, maxKeys: 1000, ...dedup }))
    afterEach(async () => {
      await log?.close()
      log = undefined
    })

    const batch: RecordInput[] = [
      { key: 'a', value: value('1') },
      { key: 'b', value: value('2') },
      { key: null, value: value('3'), partition: 1 }
    ]

    it('appends once per id: a repeat appends nothing and gets the first results, marked duplicate', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 2))
      const first = await l.appendOnce('s', batch, once('k'))
      expect(first.duplicate).toBe(false)
      expect(first.results).toHaveLength(3)
      expect(first.results[2]?.partition).toBe(1)
      const before = await contents(l, 's')
      const again = await l.appendOnce('s', batch, once('k'))
      expect(again).toEqual({ duplicate: true, results: first.results })
      expect(await contents(l, 's')).toEqual(before)
      expect(before).toHaveLength(3)
    })

    it('answers a concurrent repeat once the first append is durable, with its results', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s'))
      const [a, b] = await Promise.all([l.appendOnce('s', batch.slice(0, 2), once('k')), l.appendOnce('s', batch.slice(0, 2), once('k'))])
      expect(a?.duplicate).toBe(false)
      expect(b).toEqual({ duplicate: true, results: a?.results })
      expect(await contents(l, 's')).toEqual(['0:0:1', '0:1:2'])
      // a later plain append is not held up nor reordered by it
      expect((await l.append('s', [{ key: null, value: value('4') }]))[0]?.offset).toBe(2)
    })

    it('keeps ids per stream', async () => {
      const l = await fresh()
      await l.ensureStream(stream('a'))
      await l.ensureStream(stream('b'))
      expect((await l.appendOnce('a', batch.slice(0, 1), once('k'))).duplicate).toBe(false)
      expect((await l.appendOnce('b', batch.slice(0, 1), once('k'))).duplicate).toBe(false)
      expect(await contents(l, 'b')).toHaveLength(1)
    })

    it('refuses an id reused for other content with IDEMPOTENCY_CONFLICT, appending nothing; or appends it, taking the id over', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s'))
      await l.appendOnce('s', [{ key: null, value: value('x') }], once('k', 'fx'))
      await expectLogError(l.appendOnce('s', [{ key: null, value: value('y') }], once('k', 'fy')), 'IDEMPOTENCY_CONFLICT')
      expect(await contents(l, 's')).toEqual(['0:0:x'])
      // onConflict 'append': a new append, which the id now names
      const taken = await l.appendOnce('s', [{ key: null, value: value('y') }], once('k', 'fy', { onConflict: 'append' }))
      expect(taken).toMatchObject({ duplicate: false, results: [{ offset: 1 }] })
      expect(await l.appendOnce('s', [{ key: null, value: value('y') }], once('k', 'fy'))).toMatchObject({ duplicate: true, results: [{ offset: 1 }] })
      await expectLogError(l.appendOnce('s', [{ key: null, value: value('x') }], once('k', 'fx')), 'IDEMPOTENCY_CONFLICT')
    })

    it('appends without a lookup when asked, and the id then names that append', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s'))
      await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))
      const reused = await l.appendOnce('s', [{ key: null, value: value('x') }], once('k', 'f1', { lookup: false }))
      expect(reused).toMatchObject({ duplicate: false, results: [{ offset: 1 }] })
      expect(await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))).toMatchObject({ duplicate: true, results: [{ offset: 1 }] })
      expect(await contents(l, 's')).toEqual(['0:0:x', '0:1:x'])
    })

    it('forgets an id once its window has passed: a repeat is appended again', async () => {
      const l = await fresh({ windowMs: 150 })
      await l.ensureStream(stream('s'))
      await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))
      expect((await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))).duplicate).toBe(true)
      await sleep(250)
      expect(await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))).toMatchObject({ duplicate: false, results: [{ offset: 1 }] })
      // the window starts again from that append
      expect((await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))).duplicate).toBe(true)
      expect(await contents(l, 's')).toEqual(['0:0:x', '0:1:x'])
    })

    it('remembers at most maxKeys ids and forgets the oldest first', async () => {
      const l = await fresh({ maxKeys: 2 })
      await l.ensureStream(stream('s'))
      for (const id of ['a', 'b', 'c']) await l.appendOnce('s', [{ key: null, value: value(id) }], once(id))
      // a was forgotten to make room for c
      expect((await l.appendOnce('s', [{ key: null, value: value('c') }], once('c'))).duplicate).toBe(true)
      expect((await l.appendOnce('s', [{ key: null, value: value('b') }], once('b'))).duplicate).toBe(true)
      expect(await l.appendOnce('s', [{ key: null, value: value('a') }], once('a'))).toMatchObject({ duplicate: false, results: [{ offset: 3 }] })
      // ... and remembering a again made b the oldest, forgotten in turn
      expect((await l.appendOnce('s', [{ key: null, value: value('b') }], once('b'))).duplicate).toBe(false)
      expect(await contents(l, 's')).toHaveLength(5)
    })

    it('keeps the ids and their results over a restart', async () => {
      let l = await fresh()
      await l.ensureStream(stream('s', 2))
      const first = await l.appendOnce('s', batch, once('k'))
      l = log = await backend.restart(l)
      expect(await l.appendOnce('s', batch, once('k'))).toEqual({ duplicate: true, results: first.results })
      await expectLogError(l.appendOnce('s', batch, once('k', 'other')), 'IDEMPOTENCY_CONFLICT')
      expect(await contents(l, 's')).toHaveLength(3)
    })

    it('appends every time with a window of 0 (off)', async () => {
      const l = await fresh({ windowMs: 0 })
      await l.ensureStream(stream('s'))
      await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))
      expect(await l.appendOnce('s', [{ key: null, value: value('x') }], once('k'))).toMatchObject({ duplicate: false, results: [{ offset: 1 }] })
    })

    it('checks the stream, every partition and the id before appending or remembering anything', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 2))
      await expectLogError(l.appendOnce('nope', batch, once('k')), 'UNKNOWN_STREAM')
      const bad: RecordInput[] = [
        { key: null, value: value('ok') },
        { key: null, value: value('bad'), partition: 2 }
      ]
      await expectLogError(l.appendOnce('s', bad, once('k')), 'UNKNOWN_PARTITION')
      await expectLogError(l.append('s', bad), 'UNKNOWN_PARTITION')
      expect(await contents(l, 's')).toEqual([])
      expect((await l.describeStream('s')).partitions.map((p) => p.endOffset)).toEqual([0, 0])
      // nothing was remembered under k
      expect((await l.appendOnce('s', bad.slice(0, 1), once('k'))).duplicate).toBe(false)
      await expectLogError(l.appendOnce('s', batch, once('')), 'INVALID_ARGUMENT')
    })

    it('puts a record with a partition in it; the partition argument wins', async () => {
      const l = await fresh()
      await l.ensureStream(stream('s', 3))
      const results = await l.append('s', [
        { key: null, value: value('a'), partition: 2 },
        { key: null, value: value('b'), partition: 0 },
        { key: null, value: value('c'), partition: 2 }
      ])
      expect(results.map((r) => [r.partition, r.offset])).toEqual([
        [2, 0],
        [0, 0],
        [2, 1]
      ])
      expect((await l.append('s', [{ key: null, value: value('d'), partition: 2 }], 1))[0]?.partition).toBe(1)
    })
  })
}
