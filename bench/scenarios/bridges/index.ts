// Scenario `bridges` (Culex only, in the bench process): records/s from Culex's log through each
// outbound bridge kind to its real server on this machine, beside the target's own client writing
// the same records with the same batching (the ceiling), and the lag drain after a kill -9 of the
// target. For each kind (--bridges) the real server is started with the bridge tests' own starter
// (test/helpers/servers/), a RocksLog in a temp dir gets N records (5,000 / 20,000 / 50,000 by
// mode; 256-byte values, 1,000 keys, 4 partitions: --bridge-partitions), and for each batch size
// (--bridge-batch, default 10,100,500) phases.ts measures direct, bridge and outage. The in-flight
// window is partitions x batch for both: the runner has one batch in flight per partition, the
// direct client one per lane (the MQTT sink's max-inflight is set to it).
// Everything runs on the same 2 cores: the bench process (client or bridge + RocksDB) and the
// target server share them, so a rate is the pair's, and CPU per record says where it went.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BridgeDriver } from '../../../src/bridges/types.js'
import { nowMs, sleep } from '../../lib/procs.js'
import { pick, type Metric, type Mode, type Scenario } from '../../lib/scenario.js'
import { fmt } from '../../lib/table.js'
import {
  bridgePhase,
  directPhase,
  DOWN_MS,
  openLog,
  outagePhase,
  PAYLOAD_BYTES,
  prefill,
  STREAM,
  WARMUP_STREAM,
  type Measured,
  type OutageResult,
  type Setup
} from './phases.js'
import { BINARIES, KINDS, START, type Kind, type Target } from './targets.js'

export function bridgeRecords(mode: Mode): number {
  return pick(mode, { quick: 5_000, default: 50_000, full: 200_000 })
}

/** Most records the outage appender writes (it offers half the bridge's rate until 1 s after the target is back). */
const outageCap = (mode: Mode): number => pick(mode, { quick: 30_000, default: 100_000, full: 250_000 })

const DEFAULT_BATCHES = [10, 100, 500]
const DEFAULT_PARTITIONS = 4
/** Records of the unmeasured warm-up (direct, then bridge) of each kind: the JIT sees both code paths first. */
const WARMUP_RECORDS = 2_000

/** What the direct client does per batch (the row label). */
const DIRECT: Record<Kind, string> = {
  nats: 'js.publish, PubAcks awaited per batch',
  redis: 'ioredis pipeline of XADD per batch',
  amqp: 'confirm channel per lane, waitForConfirms per batch',
  webhook: 'fetch POST of a JSON batch',
  mqtt: 'MQTT.js QoS 1, PUBACKs awaited per batch'
}

/** Pause after freeing a batch size's namespaces, so the target's cleanup (RabbitMQ's message store) is not in the next measurement. */
const SETTLE_MS = 1000

async function clear(target: Target, namespaces: string[]): Promise<void> {
  for (const ns of namespaces) await target.drop(ns).catch(() => undefined)
  await sleep(SETTLE_MS)
}

async function loadDriver(kind: Kind): Promise<BridgeDriver | string> {
  try {
    const mod = (await import(`../../../src/bridges/${kind}/index.js`)) as Record<string, unknown>
    const driver = mod[`${kind}Driver`] as BridgeDriver | undefined
    if (!driver) return `src/bridges/${kind}/index.ts exports no ${kind}Driver`
    if (typeof driver.createSink !== 'function' || typeof driver.parseTarget !== 'function') return `the ${kind} driver has no createSink / parseTarget yet`
    return driver
  } catch (err) {
    return `src/bridges/${kind}/index.ts did not load: ${err instanceof Error ? err.message : String(err)}`
  }
}

interface Row {
  kind: Kind
  batch: number
  window: number
  direct: Measured
  bridge: Measured & { retries: number }
  outage: OutageResult | null
  outageError: string | null
}

const perS = (m: Measured): number => (m.records * 1000) / m.wallMs
const us = (ms: number, n: number): number => (ms * 1000) / n

function rowMetrics(r: Row): Metric[] {
  const id = `${r.kind}_b${r.batch}`
  const at = `${r.kind} batch ${r.batch}`
  const m = (key: string, label: string, value: number | null, unit: string, better: 'higher' | 'lower', show: boolean): Metric => ({
    key: `${id}_${key}`,
    label: `${at}: ${label}`,
    value,
    unit,
    better,
    show,
    ratio: false
  })
  const o = r.outage
  return [
    m('direct_per_s', `direct (${DIRECT[r.kind]}) records/s`, perS(r.direct), 'records/s', 'higher', true),
    m('bridge_per_s', 'bridge records/s', perS(r.bridge), 'records/s', 'higher', true),
    m('ratio', 'bridge / direct', perS(r.bridge) / perS(r.direct), 'x', 'higher', true),
    m('direct_cpu_us', 'bench CPU µs/record, direct', us(r.direct.benchCpuMs, r.direct.records), 'µs', 'lower', true),
    m('bridge_cpu_us', 'bench CPU µs/record, bridge', us(r.bridge.benchCpuMs, r.bridge.records), 'µs', 'lower', true),
    m('direct_target_cpu_us', 'target CPU µs/record, direct', us(r.direct.targetCpuMs, r.direct.records), 'µs', 'lower', false),
    m('bridge_target_cpu_us', 'target CPU µs/record, bridge', us(r.bridge.targetCpuMs, r.bridge.records), 'µs', 'lower', false),
    m('outage_drain_s', `s to lag 0 after the target was back (killed -9, ${DOWN_MS / 1000} s down)`, o ? o.drainMs / 1000 : null, 's', 'lower', true),
    m(
      'outage_first_delivery_s',
      's to the first delivery after the target was back',
      o?.firstDeliveryMs == null ? null : o.firstDeliveryMs / 1000,
      's',
      'lower',
      false
    ),
    m('outage_all_resumed_s', 's until every partition delivered again', o?.allResumedMs == null ? null : o.allResumedMs / 1000, 's', 'lower', false),
    m('outage_drain_per_s', 'drain records/s', o?.drainPerS ?? null, 'records/s', 'higher', false),
    m('outage_backlog', 'backlog when the target was back', o?.backlog ?? null, 'records', 'lower', false),
    m('outage_lost', 'lost', o?.lost ?? null, 'records', 'lower', false),
    m('outage_duplicates', 'duplicates', o?.duplicates ?? null, 'records', 'lower', false)
  ]
}

function compactTable(rows: Row[]): string {
  const header = [
    'kind',
    'batch',
    'in flight',
    'direct rec/s',
    'bridge rec/s',
    'bridge/direct',
    'bench µs/rec direct / bridge',
    'target µs/rec direct / bridge',
    'offered rec/s',
    'down s',
    'backlog',
    '1st delivery s',
    'all partitions s',
    'lag 0 after s',
    'drain rec/s',
    'lost',
    'dup'
  ]
  const lines = rows.map((r) => {
    const o = r.outage
    return [
      r.kind,
      String(r.batch),
      String(r.window),
      fmt(perS(r.direct)),
      fmt(perS(r.bridge)),
      `${(perS(r.bridge) / perS(r.direct)).toFixed(2)}x`,
      `${fmt(us(r.direct.benchCpuMs, r.direct.records))} / ${fmt(us(r.bridge.benchCpuMs, r.bridge.records))}`,
      `${fmt(us(r.direct.targetCpuMs, r.direct.records))} / ${fmt(us(r.bridge.targetCpuMs, r.bridge.records))}`,
      o ? fmt(o.offeredPerS) : 'ERROR',
      o ? (o.downMs / 1000).toFixed(1) : '',
      o ? String(o.backlog) : '',
      o?.firstDeliveryMs == null ? '–' : (o.firstDeliveryMs / 1000).toFixed(2),
      o?.allResumedMs == null ? '–' : (o.allResumedMs / 1000).toFixed(2),
      o ? (o.drainMs / 1000).toFixed(2) : '',
      o?.drainPerS == null ? '–' : fmt(o.drainPerS),
      o ? String(o.lost) : '',
      o ? String(o.duplicates) : ''
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => (i < 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => (i < 1 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|'
  return [line(header), sep, ...lines.map(line)].join('\n')
}

export const bridges: Scenario = {
  id: 'bridges',
  title:
    "Bridges: records/s from the log through each outbound bridge to its real server, against the target's own client (the ceiling); lag drain after a kill -9 of the target (Culex only, in-process)",
  setup: 'own',
  appliesTo: ['culex-fsync', 'culex-none'],
  deadlineMs: (mode) => pick(mode, { quick: 900_000, default: 1_800_000, full: 3_600_000 }),
  async run(ctx) {
    const kinds = (ctx.tuning.bridges ?? [...KINDS]) as Kind[]
    const batches = ctx.tuning.bridgeBatches ?? DEFAULT_BATCHES
    const partitions = ctx.tuning.bridgePartitions ?? DEFAULT_PARTITIONS
    const total = bridgeRecords(ctx.mode)
    const durability = ctx.brokerName.endsWith('none') ? 'none' : 'fsync'
    for (const kind of kinds) {
      const bin = BINARIES[kind]
      if (bin && !existsSync(bin.path)) throw new Error(`${bin.pkg} is not installed (${bin.path} is missing): run node test/provision.mjs --bench as root`)
    }
    const notes: string[] = [
      `the bench process (client, or bridge + RocksLog with durability ${durability}) and the target server share this machine's cores; rates are the pair's`,
      `${total.toLocaleString('en-US')} records of ${PAYLOAD_BYTES} B, 1,000 keys, ${partitions} partitions; in flight = ${partitions} x batch for both the direct client and the bridge`
    ]
    const rows: Row[] = []
    const acks: Record<string, string> = {}
    const failures: string[] = []
    for (const kind of kinds) {
      const driver = await loadDriver(kind)
      if (typeof driver === 'string') {
        notes.push(`${kind}: skipped: ${driver}`)
        ctx.log(`  bridges      ${kind}: skipped: ${driver}`)
        continue
      }
      const t0 = nowMs()
      let target: Target | null = null
      const root = mkdtempSync(join(tmpdir(), `culex-bench-bridges-${kind}-`))
      let close: (() => Promise<void>) | null = null
      try {
        const t = await START[kind]()
        target = t
        acks[kind] = t.acks
        ctx.log(`  bridges      ${kind}: server up in ${((nowMs() - t0) / 1000).toFixed(1)} s (pid ${t.pid()})`)
        const opened = await openLog(join(root, 'data'), durability, partitions)
        close = opened.close
        const log = opened.log
        const lanes = await prefill(log, STREAM, partitions, total, ctx.deadline)
        const setup = (batch: number): Setup => ({ driver, target: t, log, partitions, batch, window: partitions * batch, deadline: ctx.deadline })
        const warm = Math.min(WARMUP_RECORDS, total)
        const warmLanes = await prefill(log, WARMUP_STREAM, partitions, warm, ctx.deadline)
        await directPhase(setup(100), 'wd', warmLanes)
        await bridgePhase(setup(100), 'wb', WARMUP_STREAM, warm)
        await clear(t, ['wd', 'wb'])
        for (const [i, batch] of batches.entries()) {
          const s = setup(batch)
          const window = s.window
          // every other batch size runs the bridge first: a drift in the machine's load favours neither
          const runDirect = (): Promise<Measured> => directPhase(s, `d${batch}`, lanes)
          const runBridge = (): ReturnType<typeof bridgePhase> => bridgePhase(s, `b${batch}`, STREAM, total)
          let direct: Measured
          let bridge: Awaited<ReturnType<typeof bridgePhase>>
          if (i % 2 === 0) {
            direct = await runDirect()
            bridge = await runBridge()
          } else {
            bridge = await runBridge()
            direct = await runDirect()
          }
          ctx.log(
            `  bridges      ${kind} batch ${batch}: direct ${fmt(perS(direct))}/s (${fmt(us(direct.benchCpuMs, total))} µs/rec here, ${fmt(us(direct.targetCpuMs, total))} in the server), ` +
              `bridge ${fmt(perS(bridge))}/s (${fmt(us(bridge.benchCpuMs, total))} µs/rec here, ${fmt(us(bridge.targetCpuMs, total))} in the server): ${(perS(bridge) / perS(direct)).toFixed(2)}x`
          )
          const row: Row = { kind, batch, window, direct, bridge, outage: null, outageError: null }
          rows.push(row)
          try {
            const offered = Math.max(100, Math.round(perS(bridge) / 2))
            const o = await outagePhase(s, `o${batch}`, offered, outageCap(ctx.mode))
            row.outage = o
            ctx.log(
              `  bridges      ${kind} batch ${batch} outage: ${o.appended} records at ${o.offeredPerS}/s, down ${(o.downMs / 1000).toFixed(1)} s, backlog ${o.backlog}, ` +
                `first delivery ${o.firstDeliveryMs === null ? '–' : (o.firstDeliveryMs / 1000).toFixed(2)} s, all partitions ${o.allResumedMs === null ? '–' : (o.allResumedMs / 1000).toFixed(2)} s and lag 0 ${(o.drainMs / 1000).toFixed(2)} s after it was back ` +
                `(${o.drainPerS === null ? '–' : fmt(o.drainPerS)}/s), ${o.retries} retries; target holds ${o.stored.count} (${o.stored.distinct} distinct): lost ${o.lost}, duplicates ${o.duplicates}`
            )
            if (o.capped) notes.push(`${kind} batch ${batch}: the outage appender reached its cap (${outageCap(ctx.mode)}) before the target was back`)
            if (o.lost > 0) {
              const why = kind === 'mqtt' ? ' (mosquitto keeps acknowledged messages in memory between its 1 s autosaves: its kill -9 loses them)' : ''
              notes.push(`${kind} batch ${batch}: LOST ${o.lost} of ${o.appended} records across the outage${why}`)
            }
            if (o.duplicates > 0) notes.push(`${kind} batch ${batch}: ${o.duplicates} duplicates in the target after the outage (at least once)`)
          } catch (err) {
            row.outageError = err instanceof Error ? err.message : String(err)
            notes.push(`${kind} batch ${batch}: outage phase FAILED: ${row.outageError}`)
            ctx.log(`  bridges      ${kind} batch ${batch}: outage phase FAILED: ${row.outageError}`)
          }
          await clear(t, [`d${batch}`, `b${batch}`, `o${batch}`])
        }
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        failures.push(`${kind}: ${message}`)
        notes.push(`${kind}: FAILED: ${message}`)
        ctx.log(`  bridges      ${kind}: FAILED: ${message}`)
      } finally {
        await close?.().catch(() => undefined)
        await target?.dispose().catch(() => undefined)
        rmSync(root, { recursive: true, force: true })
      }
    }
    if (rows.length === 0 && failures.length > 0) throw new Error(failures.join('; '))
    const table = compactTable(rows)
    ctx.log(`\n${table}\n`)
    return {
      metrics: rows.flatMap(rowMetrics),
      cpu: null,
      notes,
      details: { records: total, payloadBytes: PAYLOAD_BYTES, partitions, batches, durability, acks, downMs: DOWN_MS, rows, table }
    }
  }
}
