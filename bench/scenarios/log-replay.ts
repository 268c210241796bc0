// Scenario 7b/7c (Culex only): a stream with N stored records (1,000,000; --quick 100,000), written
// in-process through Culex's own Store and RocksLog. Then:
//   - restart time: `culex start` on that data dir until MQTT and the admin API accept connections,
//     against the same start on an empty data dir;
//   - replay through the HTTP API: every partition read from the start with GET .../records
//     (1,000 records a request, the partitions in parallel);
//   - replay in-process: RocksLog.read over the same records in the bench process.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import type { RecordInput, StreamConfig } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { nowMs } from '../lib/procs.js'
import { pick, type Mode, type Scenario } from '../lib/scenario.js'
import { decodeFrames } from '../../src/log/record-codec.js'
import { LOG_PARTITIONS, LOG_STREAM } from './log-append.js'

export function recordCount(mode: Mode): number {
  return pick(mode, { quick: 100_000, default: 1_000_000, full: 1_000_000 })
}

const BATCH = 1000
const IN_FLIGHT = 16
const PAGE = 1000

const streamConfig: StreamConfig = {
  name: LOG_STREAM,
  partitions: LOG_PARTITIONS,
  retention: { maxAgeMs: null, maxBytes: null, maxRecords: null }
}
const culexConfig = { streams: { [LOG_STREAM]: { partitions: LOG_PARTITIONS } } }

/** Appends `total` records (64-byte values, `keys` distinct keys) in batches, IN_FLIGHT batches at a time. */
export async function prefill(log: RocksLog, total: number, deadline: number, keys = 1000): Promise<void> {
  const value = Buffer.alloc(64, 'x')
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < total) {
      if (nowMs() > deadline) throw new Error('deadline reached while writing the records')
      const from = next
      next = Math.min(total, next + BATCH)
      const records: RecordInput[] = []
      for (let i = from; i < next; i++) {
        const key = `dev-${i % keys}`
        records.push({ key, value, topic: `bench/${key}`, qos: 1, clientId: key })
      }
      await log.append(LOG_STREAM, records)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

async function replayInProcess(log: RocksLog, deadline: number): Promise<number> {
  let count = 0
  for (const p of (await log.describeStream(LOG_STREAM)).partitions) {
    let offset = p.startOffset
    while (offset < p.endOffset) {
      if (nowMs() > deadline) throw new Error('deadline reached during the in-process replay')
      const records = await log.read(LOG_STREAM, p.partition, offset, { limit: PAGE })
      if (records.length === 0) break
      count += records.length
      offset = records[records.length - 1]!.offset + 1
    }
  }
  return count
}

interface ReadPage {
  records: unknown[]
  nextOffset: number
  endOffset: number
}

async function replayHttp(adminPort: number, total: number, deadline: number): Promise<number> {
  const base = `http://127.0.0.1:${adminPort}/api/v1/streams/${LOG_STREAM}`
  const maxRequests = Math.ceil(total / PAGE) + LOG_PARTITIONS * 2 + 10
  let requests = 0
  const one = async (partition: number): Promise<number> => {
    let count = 0
    let offset = 0
    for (;;) {
      if (nowMs() > deadline) throw new Error('deadline reached during the HTTP replay')
      if (++requests > maxRequests) throw new Error(`more than ${maxRequests} requests for ${total} records`)
      const res = await fetch(`${base}/partitions/${partition}/records?offset=${offset}&limit=${PAGE}`)
      if (!res.ok) throw new Error(`GET partition ${partition} offset ${offset}: ${res.status} ${await res.text()}`)
      const page = (await res.json()) as ReadPage
      count += page.records.length
      offset = page.nextOffset
      if (page.records.length === 0 || offset >= page.endOffset) return count
    }
  }
  const counts = await Promise.all(Array.from({ length: LOG_PARTITIONS }, (_, p) => one(p)))
  return counts.reduce((a, b) => a + b, 0)
}

/** The same records as frames (the binary bulk read), decoded into records on this side. */
async function replayFrames(adminPort: number, deadline: number): Promise<number> {
  const base = `http://127.0.0.1:${adminPort}/api/v1/streams/${LOG_STREAM}`
  const one = async (partition: number): Promise<number> => {
    const res = await fetch(`${base}/partitions/${partition}/frames?offset=0`)
    if (!res.ok || !res.body) throw new Error(`GET frames of partition ${partition}: ${res.status} ${await res.text()}`)
    let count = 0
    let rest: Buffer = Buffer.alloc(0)
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      if (nowMs() > deadline) throw new Error('deadline reached during the frames replay')
      const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
      const decoded = decodeFrames(rest.length > 0 ? Buffer.concat([rest, bytes]) : bytes, LOG_STREAM, partition)
      count += decoded.records.length
      rest = decoded.rest
    }
    return count
  }
  const counts = await Promise.all(Array.from({ length: LOG_PARTITIONS }, (_, p) => one(p)))
  return counts.reduce((a, b) => a + b, 0)
}

function duBytes(dir: string): number | null {
  try {
    return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0])
  } catch {
    return null
  }
}

export const logReplay: Scenario = {
  id: 'log-replay',
  title: 'Log: restart with N stored records, replay them over the HTTP API and in-process (Culex only)',
  setup: 'own',
  appliesTo: ['culex-fsync', 'culex-none', 'base-fsync', 'base-none'],
  deadlineMs: (mode) => pick(mode, { quick: 90_000, default: 300_000, full: 300_000 }),
  async run(ctx) {
    const total = recordCount(ctx.mode)
    const durability = ctx.brokerName.endsWith('none') ? 'none' : 'fsync'
    const notes: string[] = []
    const root = mkdtempSync(join(tmpdir(), 'culex-bench-log-'))
    try {
      // start time on an empty data dir (the baseline for the restart time)
      const empty = await ctx.startBroker({ dataDir: join(root, 'empty'), admin: true, culexConfig })
      const emptyStartMs = empty.startMs
      await empty.stop()

      // N records, written in-process with Culex's Store and RocksLog (not timed as a broker figure)
      const dataDir = join(root, 'full')
      let store = await Store.open({ dataDir, durability })
      let log = await RocksLog.open(store, [streamConfig])
      const w0 = nowMs()
      try {
        await prefill(log, total, ctx.deadline)
      } finally {
        await log.close()
        await store.close()
      }
      const writeMs = nowMs() - w0
      const bytes = duBytes(dataDir)

      // restart on the full data dir, then the HTTP replay
      const full = await ctx.startBroker({ dataDir, admin: true, culexConfig })
      const restartMs = full.startMs
      const h0 = nowMs()
      const httpCount = await replayHttp(full.adminPort!, total, ctx.deadline)
      const httpMs = nowMs() - h0
      const f0 = nowMs()
      const framesCount = ctx.brokerName.startsWith('base') ? null : await replayFrames(full.adminPort!, ctx.deadline)
      const framesMs = nowMs() - f0
      if (framesCount !== null && framesCount !== total) notes.push(`frames replay returned ${framesCount} of ${total} records`)
      await full.stop()
      if (httpCount !== total) notes.push(`HTTP replay returned ${httpCount} of ${total} records`)

      // in-process replay (the broker is stopped: one process opens the RocksDB at a time)
      store = await Store.open({ dataDir, durability })
      log = await RocksLog.open(store, [])
      const r0 = nowMs()
      let localCount: number
      try {
        localCount = await replayInProcess(log, ctx.deadline)
      } finally {
        await log.close()
        await store.close()
      }
      const localMs = nowMs() - r0
      if (localCount !== total) notes.push(`in-process replay returned ${localCount} of ${total} records`)

      return {
        metrics: [
          { key: 'start_empty_s', label: 'start, empty data dir (s)', value: emptyStartMs / 1000, unit: 's', better: 'lower', show: true },
          {
            key: 'restart_s',
            label: `restart with ${total.toLocaleString('en-US')} records (s)`,
            value: restartMs / 1000,
            unit: 's',
            better: 'lower',
            show: true
          },
          {
            key: 'http_replay_per_s',
            label: 'HTTP replay records/s',
            value: httpMs > 0 ? (httpCount * 1000) / httpMs : null,
            unit: 'records/s',
            better: 'higher',
            show: true
          },
          {
            key: 'frames_replay_per_s',
            label: 'HTTP frames replay records/s',
            value: framesCount !== null && framesMs > 0 ? (framesCount * 1000) / framesMs : null,
            unit: 'records/s',
            better: 'higher',
            show: true
          },
          {
            key: 'local_replay_per_s',
            label: 'in-process replay records/s',
            value: localMs > 0 ? (localCount * 1000) / localMs : null,
            unit: 'records/s',
            better: 'higher',
            show: true
          },
          {
            key: 'write_per_s',
            label: 'in-process append records/s',
            value: writeMs > 0 ? (total * 1000) / writeMs : null,
            unit: 'records/s',
            better: 'higher',
            show: true
          },
          { key: 'data_mib', label: 'data dir MiB', value: bytes === null ? null : bytes / 2 ** 20, unit: 'MiB', better: 'lower', show: false }
        ],
        cpu: null,
        notes,
        details: { records: total, partitions: LOG_PARTITIONS, durability, emptyStartMs, restartMs, httpMs, localMs, writeMs, bytes }
      }
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }
}
