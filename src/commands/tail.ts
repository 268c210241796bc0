import { ApiClient, formatRecord, parsePosition, type ApiRecord } from './api-client.js'

export interface TailOptions {
  url: string
  group?: string
  from: string
  json: boolean
  /** Stop after this many records (for scripts and tests); default: run until interrupted. */
  max?: number
}

interface StreamResponse {
  partitions: Array<{ partition: number; startOffset: number; endOffset: number }>
}
interface RecordsResponse {
  records: ApiRecord[]
  nextOffset: number
}
interface Membership {
  memberId: string
}
interface FetchResponse {
  records: ApiRecord[]
}

const POLL_MS = 250

/** `culex tail`: prints a stream's records as they arrive, from a position or as a group member. */
export async function tail(stream: string, options: TailOptions, out: (line: string) => void, signal: AbortSignal): Promise<void> {
  const api = new ApiClient(options.url)
  const from = parsePosition(options.from, '--from')
  let printed = 0
  const print = (records: ApiRecord[]): boolean => {
    for (const r of records) {
      out(formatRecord(r, options.json))
      if (options.max !== undefined && ++printed >= options.max) return true
    }
    return false
  }
  if (options.group) {
    await tailGroup(api, stream, options.group, from, print, signal)
    return
  }
  const info = await api.request<StreamResponse>('GET', `/api/v1/streams/${encodeURIComponent(stream)}`)
  const positions = new Map<number, number | null>()
  for (const p of info.partitions) {
    positions.set(p.partition, from === 'earliest' ? p.startOffset : from === 'latest' ? p.endOffset : typeof from === 'object' && 'offset' in from ? from.offset : null)
  }
  while (!signal.aborted) {
    let got = 0
    for (const [partition, offset] of positions) {
      const query = offset === null ? `timestamp=${(from as { timestamp: number }).timestamp}` : `offset=${offset}`
      const res = await api.request<RecordsResponse>('GET', `/api/v1/streams/${encodeURIComponent(stream)}/partitions/${partition}/records?${query}&limit=500&encoding=utf8`)
      positions.set(partition, res.nextOffset)
      got += res.records.length
      if (print(res.records)) return
    }
    if (got === 0) await sleep(POLL_MS, signal)
  }
}

async function tailGroup(
  api: ApiClient,
  stream: string,
  group: string,
  from: ReturnType<typeof parsePosition>,
  print: (records: ApiRecord[]) => boolean,
  signal: AbortSignal
): Promise<void> {
  const base = `/api/v1/groups/${encodeURIComponent(group)}`
  const autoOffsetReset = from === 'latest' ? 'latest' : 'earliest'
  const { memberId } = await api.request<Membership>('POST', `${base}/members`, { streams: [stream], clientId: 'culex-tail', autoOffsetReset })
  try {
    while (!signal.aborted) {
      const res = await api.request<FetchResponse>('POST', `${base}/members/${memberId}/fetch`, { maxRecords: 500, waitMs: 5000, encoding: 'utf8' }, signal)
      const done = print(res.records)
      if (res.records.length > 0) {
        // commit what was printed: the next offset of each partition
        const next = new Map<string, { stream: string; partition: number; offset: number }>()
        for (const r of res.records) next.set(`${r.stream}/${r.partition}`, { stream: r.stream, partition: r.partition, offset: r.offset + 1 })
        await api.request('POST', `${base}/members/${memberId}/commit`, { offsets: [...next.values()] })
      }
      if (done) return
    }
  } catch (err) {
    if (!signal.aborted) throw err
  } finally {
    await api.request('DELETE', `${base}/members/${memberId}`).catch(() => undefined)
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true })
  })
}
