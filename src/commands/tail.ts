import type { ApiRecord, FetchResponse, JoinRequest, Membership, OffsetSpec, PartitionOffset, ReadResponse, StreamSummary } from '../http/wire.js'
import { ApiClient, ApiError, Backoff, formatRecord, isRetriable, parsePosition, sleep, type ApiCredentials } from './api-client.js'

export interface TailOptions extends ApiCredentials {
  url: string
  group?: string
  from: string
  /** Only these partitions (without --group); an offset in --from needs exactly one partition. */
  partitions?: number[]
  json: boolean
  /** Stop after this many records (for scripts and tests); default: run until interrupted. */
  max?: number
}

export interface TailOutput {
  record(line: string): void
  /** Progress that is no record (the gateway went away, came back), for stderr. */
  notice(line: string): void
}

const POLL_MS = 250

/**
 * `culex tail`: prints a stream's records as they arrive, from a position or as a group member.
 * While the gateway is down or restarting it waits with backoff and carries on where it was:
 * by position, or (with --group) from the group's commits, rejoining with the same member id.
 */
export async function tail(stream: string, options: TailOptions, out: TailOutput, signal: AbortSignal): Promise<void> {
  const api = new ApiClient(options.url, options)
  const from = parsePosition(options.from, '--from')
  let printed = 0
  const print = (records: ApiRecord[]): boolean => {
    for (const r of records) {
      out.record(formatRecord(r, options.json))
      if (options.max !== undefined && ++printed >= options.max) return true
    }
    return false
  }
  const run = options.group ? groupTail(api, stream, options.group, from, print) : positionTail(api, stream, from, options.partitions, print)
  const backoff = new Backoff()
  let down = false
  while (!signal.aborted) {
    try {
      if (await run.step(signal)) break
      if (down) out.notice(`culex: the gateway at ${options.url} is back`)
      down = false
      backoff.reset()
    } catch (err) {
      if (isAborted(signal)) break
      // a gateway never reached is more likely a wrong --url than a restart: say so and stop
      if (!api.answered || !isRetriable(err)) throw err
      const wait = backoff.next()
      out.notice(`culex: ${(err as Error).message}; trying again in ${(wait / 1000).toFixed(1)} s`)
      down = true
      await sleep(wait, signal)
    }
  }
  await run.close()
}

/** Read through a call: the signal may have aborted while a request was awaited. */
function isAborted(signal: AbortSignal): boolean {
  return signal.aborted
}

interface TailRun {
  /** One round of reading; true when done (--max reached). */
  step(signal: AbortSignal): Promise<boolean>
  close(): Promise<void>
}

/** Reading by position: each partition from where the last read ended. */
function positionTail(api: ApiClient, stream: string, from: OffsetSpec, only: number[] | undefined, print: (r: ApiRecord[]) => boolean): TailRun {
  const base = `/api/v1/streams/${encodeURIComponent(stream)}`
  let positions: Map<number, number | null> | null = null
  const start = async (): Promise<Map<number, number | null>> => {
    const info = await api.request<StreamSummary>('GET', base)
    const all = info.partitions.map((p) => p.partition)
    const unknown = only?.find((p) => !all.includes(p))
    if (unknown !== undefined) throw new Error(`stream ${stream} has partitions 0 to ${info.partitionCount - 1}; --partition ${unknown} is not one of them`)
    const chosen = info.partitions.filter((p) => !only || only.includes(p.partition))
    if (typeof from === 'object' && 'offset' in from && chosen.length > 1) {
      throw new Error(
        `--from ${from.offset} is an offset, which means something only within one partition; stream ${stream} has ${info.partitionCount}: add --partition N`
      )
    }
    const at = (p: { startOffset: number; endOffset: number }): number | null =>
      from === 'earliest' ? p.startOffset : from === 'latest' ? p.endOffset : 'offset' in from ? from.offset : null
    return new Map(chosen.map((p) => [p.partition, at(p)]))
  }
  return {
    async step(signal) {
      positions ??= await start()
      let got = 0
      for (const [partition, offset] of positions) {
        const query = offset === null ? `timestamp=${(from as { timestamp: number }).timestamp}` : `offset=${offset}`
        const res = await api.request<ReadResponse>('GET', `${base}/partitions/${partition}/records?${query}&limit=500&encoding=utf8`, undefined, signal)
        positions.set(partition, res.nextOffset)
        got += res.records.length
        if (print(res.records)) return true
      }
      if (got === 0) await sleep(POLL_MS, signal)
      return false
    },
    close: async () => {}
  }
}

/** Reading as a group member: fetch, print, commit what was printed. */
function groupTail(api: ApiClient, stream: string, group: string, from: OffsetSpec, print: (r: ApiRecord[]) => boolean): TailRun {
  if (from !== 'earliest' && from !== 'latest') throw new Error('--from with --group takes earliest or latest (where the group starts without a commit)')
  const base = `/api/v1/groups/${encodeURIComponent(group)}`
  const join: JoinRequest = { streams: [stream], clientId: 'culex-tail', autoOffsetReset: from }
  let memberId: string | null = null
  const round = async (signal: AbortSignal): Promise<boolean> => {
    // a restarted gateway has forgotten the member: join again (same id), from the commits
    memberId ??= (await api.request<Membership>('POST', `${base}/members`, join)).memberId
    join.memberId = memberId
    const res = await api.request<FetchResponse>('POST', `${base}/members/${memberId}/fetch`, { maxRecords: 500, waitMs: 5000, encoding: 'utf8' }, signal)
    const done = print(res.records)
    if (res.records.length > 0) {
      // commit what was printed: the next offset of each partition
      const next = new Map<string, PartitionOffset>()
      for (const r of res.records) next.set(`${r.stream}/${r.partition}`, { stream: r.stream, partition: r.partition, offset: r.offset + 1 })
      await api.request('POST', `${base}/members/${memberId}/commit`, { offsets: [...next.values()] })
    }
    return done
  }
  return {
    async step(signal) {
      try {
        return await round(signal)
      } catch (err) {
        // the member is gone (a restart, a session timeout) or was rebalanced: rejoin at once
        if (err instanceof ApiError && (err.code === 'UNKNOWN_MEMBER' || err.code === 'NOT_ASSIGNED')) {
          memberId = null
          return false
        }
        throw err
      }
    },
    async close() {
      if (memberId) await api.request('DELETE', `${base}/members/${memberId}`).catch(() => undefined)
    }
  }
}
