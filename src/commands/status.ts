import type { StatusResponse } from '../http/wire.js'
import { ApiClient, type ApiCredentials } from './api-client.js'

// `culex status`: one screen about the running gateway, from GET /api/v1/status: version, uptime,
// readiness, listeners, clients, message rates, streams with their end offsets, consumer groups
// and shared groups with their lag, bridges. `--json` prints the answer as it came, for scripts.

export interface StatusOptions extends ApiCredentials {
  url: string
  json: boolean
}

export async function status(options: StatusOptions, print: (text: string) => void): Promise<StatusResponse> {
  const answer = await new ApiClient(options.url, options).request<StatusResponse>('GET', '/api/v1/status')
  print(options.json ? JSON.stringify(answer, null, 2) : formatStatus(answer))
  return answer
}

/** 1 h 2 m 3 s */
export function formatDuration(seconds: number): string {
  const d = Math.floor(seconds / 86_400)
  const h = Math.floor((seconds % 86_400) / 3600)
  const m = Math.floor((seconds % 3600) / 60)
  const s = Math.floor(seconds % 60)
  const parts = d > 0 ? [`${d}d`, `${h}h`, `${m}m`] : h > 0 ? [`${h}h`, `${m}m`, `${s}s`] : m > 0 ? [`${m}m`, `${s}s`] : [`${s}s`]
  return parts.join(' ')
}

/** 1.5 KiB, 3.2 MiB */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

const count = (n: number): string => n.toLocaleString('en-US')

/** Columns padded to their widest cell; the last column is not padded. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)]
}

/** At most `max` characters: the rest as an ellipsis. */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

export function formatStatus(s: StatusResponse): string {
  const out: string[] = []
  const notReady = s.ready.checks.filter((c) => !c.ok)
  out.push(`Culex ${s.version}, up ${formatDuration(s.uptimeSeconds)} (since ${s.startedAt}), ${notReady.length === 0 ? 'ready' : 'NOT READY'}`)
  for (const c of notReady) out.push(`  not ready: ${c.name}: ${c.detail}`)
  out.push(`listeners   ${s.listeners.map((l) => `${l.kind} ${l.host}:${l.port}`).join(', ') || 'none'}`)
  out.push(
    `clients     ${count(s.clients.connected)} connected, ${count(s.clients.sessions)} stored sessions, ${count(s.subscriptions)} subscriptions, ${count(s.retained)} retained messages`
  )
  const m = s.messages
  out.push(
    m === null
      ? 'messages    (not counted)'
      : `messages    in ${count(m.received)} (${m.receivedPerSecond}/s), out ${count(m.sent)} (${m.sentPerSecond}/s), rates over the last ${m.rateWindowSeconds} s`
  )
  out.push('')
  if (s.streams.length === 0) out.push('no streams')
  else
    out.push(
      ...table(
        ['STREAM', 'PARTITIONS', 'RECORDS', 'BYTES', 'END OFFSETS'],
        s.streams.map((st) => [
          st.name,
          String(st.partitionCount),
          count(st.records),
          formatBytes(st.bytes),
          clip(st.partitions.map((p) => `${p.partition}:${p.endOffset}`).join(' '), 60)
        ])
      )
    )
  if (s.groups.length > 0) {
    out.push('')
    out.push(
      ...table(
        ['GROUP', 'STATE', 'MEMBERS', 'LAG', 'STREAMS'],
        s.groups.map((g) => [g.group, g.state, String(g.members), count(g.lag), g.streams.join(',')])
      )
    )
  }
  if (s.sharedGroups.length > 0) {
    out.push('')
    out.push(
      ...table(
        ['SHARED GROUP', 'LAG', 'DEAD-LETTERED', 'STREAMS'],
        s.sharedGroups.map((g) => [g.group, count(g.lag), count(g.deadLettered), g.streams.join(',')])
      )
    )
  }
  if (s.bridges.length > 0) {
    out.push('')
    out.push(
      ...table(
        ['BRIDGE', 'KIND', 'DIR', 'STATE', 'LAG', 'DELIVERED', 'LAST ERROR'],
        s.bridges.map((b) => [
          b.name,
          b.kind,
          b.direction,
          b.state,
          b.lag === null ? '-' : count(b.lag),
          count(b.delivered),
          b.lastError === null ? '-' : clip(b.lastError, 60)
        ])
      )
    )
  }
  return out.join('\n')
}
