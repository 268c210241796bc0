// Reads a V8 .cpuprofile (node --cpu-prof) and names the hot spots: self time per function and per
// area (a package under node_modules, a Culex source file, Node internals, GC).
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  hitCount?: number
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface HotSpot {
  name: string
  selfMs: number
  percent: number
}

export interface ProfileSummary {
  file: string
  totalMs: number
  /** time not idle */
  busyMs: number
  functions: HotSpot[]
  areas: HotSpot[]
}

/** "aedes", "mqtt-packet", "culex src/persistence/persistence.js", "node:internal/...", "(garbage collector)". */
export function area(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)'
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/')
    const [scope = '', name = ''] = rest
    return scope.startsWith('@') ? `${scope}/${name}` : scope
  }
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return `culex ${url.slice(dist + '/dist/'.length)}`
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  return url.replace(/^file:\/\//, '')
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length)
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return url.slice(dist + 1)
  return url
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000
    const sample = p.samples[i] ?? -1
    self.set(sample, (self.get(sample) ?? 0) + dt)
  }
  const fns = new Map<string, number>()
  const areas = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, ms] of self) {
    const n = byId.get(id)
    if (!n) continue
    total += ms
    const { functionName, url, lineNumber } = n.callFrame
    if (functionName === '(idle)') {
      idle += ms
      continue
    }
    const key = url ? `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}` : functionName || '(anonymous)'
    fns.set(key, (fns.get(key) ?? 0) + ms)
    const a = area(url, functionName)
    areas.set(a, (areas.get(a) ?? 0) + ms)
  }
  const busy = total - idle
  const rank = (m: Map<string, number>): HotSpot[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, selfMs]) => ({ name, selfMs, percent: busy > 0 ? (100 * selfMs) / busy : 0 }))
  return { file, totalMs: total, busyMs: busy, functions: rank(fns), areas: rank(areas) }
}

export function renderProfile(s: ProfileSummary): string {
  const lines = [`CPU profile ${s.file}: ${(s.busyMs / 1000).toFixed(1)} s busy of ${(s.totalMs / 1000).toFixed(1)} s`]
  lines.push('  self time by area:')
  for (const h of s.areas) lines.push(`    ${h.percent.toFixed(1).padStart(5)}%  ${h.name}`)
  lines.push('  self time by function:')
  for (const h of s.functions) lines.push(`    ${h.percent.toFixed(1).padStart(5)}%  ${h.name}`)
  return lines.join('\n')
}
