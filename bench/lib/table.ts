// The one table the bench prints (Markdown, so it can go into RESULTS.md as it is).
import { BROKER_TITLES, type BrokerName } from './brokers.js'
import type { Metric, Scenario, ScenarioResult } from './scenario.js'

export interface Outcome {
  broker: BrokerName
  scenario: string
  /** 1-based round (--rounds) */
  round: number
  result: ScenarioResult | null
  error: string | null
}

export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–'
  const a = Math.abs(v)
  if (a >= 1000) return Math.round(v).toLocaleString('en-US')
  if (a >= 100) return v.toFixed(0)
  if (a >= 10) return v.toFixed(1)
  return v.toFixed(2)
}

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–'
  return `${(a / b).toFixed(2)}x`
}

/** Median of the non-null values (the table shows the median over rounds). */
export function median(xs: (number | null | undefined)[]): number | null {
  const v = xs.filter((x): x is number => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const mid = Math.floor(v.length / 2)
  const at = (i: number): number => v[i] ?? 0
  return v.length % 2 ? at(mid) : (at(mid - 1) + at(mid)) / 2
}

const RATIOS: [BrokerName, BrokerName][] = [
  ['culex-fsync', 'base-fsync'],
  ['culex-none', 'base-none'],
  ['culex-acl', 'culex-none'],
  ['culex-fsync', 'mosquitto'],
  ['culex-fsync', 'aedes'],
  ['culex-none', 'mosquitto'],
  ['culex-none', 'aedes']
]
const SHORT: Record<BrokerName, string> = {
  'culex-fsync': 'fsync',
  'culex-none': 'none',
  'culex-acl': 'acl',
  'base-fsync': 'base',
  'base-none': 'base',
  'mosquitto': 'mosq',
  'aedes': 'aedes'
}

export function renderTable(scenarios: Scenario[], brokers: BrokerName[], outcomes: Outcome[]): string {
  const ratios = RATIOS.filter(([a, b]) => brokers.includes(a) && brokers.includes(b))
  const header = ['scenario', 'metric', ...brokers.map((b) => BROKER_TITLES[b]), ...ratios.map(([a, b]) => `${SHORT[a]}/${SHORT[b]}`)]
  const rows: string[][] = []
  const all = (b: BrokerName, s: string): Outcome[] => outcomes.filter((o) => o.broker === b && o.scenario === s)
  const metric = (b: BrokerName, s: string, key: string): number | null => median(all(b, s).map((o) => o.result?.metrics.find((x) => x.key === key)?.value))
  for (const s of scenarios) {
    const ran = brokers.flatMap((b) => all(b, s.id))
    if (ran.length === 0) continue
    // metric rows, in the order of the first result that has them
    const template: Metric[] = ran.find((o) => o.result)?.result?.metrics.filter((m) => m.show) ?? []
    let first = true
    for (const m of template) {
      const values = brokers.map((b) => metric(b, s.id, m.key))
      const byBroker = new Map(brokers.map((b, i) => [b, values[i]]))
      rows.push([
        first ? s.id : '',
        m.better === 'lower' ? `${m.label} (lower is better)` : m.label,
        ...values.map(fmt),
        ...ratios.map(([a, b]) => (m.ratio === false ? '' : ratio(byBroker.get(a), byBroker.get(b))))
      ])
      first = false
    }
    if (template.length === 0) rows.push([s.id, 'error', ...brokers.map((b) => (all(b, s.id).some((o) => o.error) ? 'ERROR' : '–')), ...ratios.map(() => '')])
    const cpu = (b: BrokerName, which: 'brokerMs' | 'clientMs'): string => {
      const pct = median(all(b, s.id).map((o) => (o.result?.cpu && o.result.cpu.wallMs > 0 ? (100 * o.result.cpu[which]) / o.result.cpu.wallMs : null)))
      return pct === null ? '–' : `${Math.round(pct)}%`
    }
    if (ran.some((o) => o.result?.cpu))
      rows.push(['', 'CPU broker / clients', ...brokers.map((b) => `${cpu(b, 'brokerMs')} / ${cpu(b, 'clientMs')}`), ...ratios.map(() => '')])
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|'
  return [line(header), sep, ...rows.map(line)].join('\n')
}

export function renderNotes(outcomes: Outcome[]): string {
  const lines: string[] = []
  for (const o of outcomes) {
    const where = `${BROKER_TITLES[o.broker]} / ${o.scenario}${o.round > 1 ? ` (round ${o.round})` : ''}`
    if (o.error) lines.push(`- ${where}: ERROR ${o.error}`)
    for (const n of o.result?.notes ?? []) lines.push(`- ${where}: ${n}`)
  }
  return lines.join('\n')
}
