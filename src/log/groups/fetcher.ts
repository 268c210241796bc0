import { LogError, type Log, type LogRecord, type PartitionOffset } from '../types.js'
import { partitionId, type Group, type Member } from './group.js'
import type { Assignment, FetchOptions } from './types.js'

// Fetching for a member: the records of its partitions from their positions, and the long-poll
// that waits for records, a rebalance, the caller's abort or the end of the wait.

/** Where a member reads next in a partition: its position, else the commit, else its reset policy. */
async function position(log: Log, group: Group, member: Member, a: Assignment): Promise<number> {
  const id = partitionId(a)
  const known = group.positions.get(id)
  if (known !== undefined) return known
  const committed = await log.committed(group.name, a.stream, a.partition)
  const at = committed ?? (await log.resolveOffset(a.stream, a.partition, member.autoOffsetReset))
  group.positions.set(id, at)
  return at
}

/** One pass over the member's partitions; advances positions past what it returns. */
export async function readAssigned(log: Log, group: Group, member: Member, options: FetchOptions): Promise<LogRecord[]> {
  const out: LogRecord[] = []
  let bytes = 0
  for (const a of member.assignments) {
    if (out.length >= options.maxRecords) break
    const id = partitionId(a)
    const from = await position(log, group, member, a)
    let records: LogRecord[]
    try {
      records = await log.read(a.stream, a.partition, from, {
        limit: options.maxRecords - out.length,
        maxBytes: options.maxBytes === undefined ? undefined : Math.max(1, options.maxBytes - bytes)
      })
    } catch (err) {
      if (err instanceof LogError && err.code === 'OFFSET_OUT_OF_RANGE') {
        // retention overtook this position: apply the member's reset policy, like auto.offset.reset
        group.positions.set(id, await log.resolveOffset(a.stream, a.partition, member.autoOffsetReset))
        continue
      }
      throw err
    }
    // the assignment may have moved while reading; the new owner starts from the commit
    if (!member.assignments.includes(a)) break
    const last = records[records.length - 1]
    if (last) group.positions.set(id, last.offset + 1)
    for (const r of records) bytes += r.value.length
    out.push(...records)
    if (options.maxBytes !== undefined && bytes >= options.maxBytes) break
  }
  return out
}

/**
 * Waits until a target partition has records, the member is rebalanced (or leaves), the caller
 * aborts, or the time is up. One controller per wait, with listeners removed afterwards:
 * AbortSignal.any would keep a little memory per call until the member's next rebalance.
 */
export async function waitForRecordsOrRebalance(log: Log, member: Member, targets: PartitionOffset[], timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const stop = new AbortController()
  const rebalanced = member.rebalanced.signal
  const onStop = (): void => stop.abort()
  rebalanced.addEventListener('abort', onStop, { once: true })
  signal?.addEventListener('abort', onStop, { once: true })
  if (rebalanced.aborted || signal?.aborted) stop.abort()
  try {
    if (targets.length > 0) {
      await log.waitForRecords(targets, timeoutMs, stop.signal)
    } else if (!stop.signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          stop.signal.removeEventListener('abort', done)
          resolve()
        }
        const timer = setTimeout(done, timeoutMs)
        stop.signal.addEventListener('abort', done, { once: true })
      })
    }
  } finally {
    rebalanced.removeEventListener('abort', onStop)
    signal?.removeEventListener('abort', onStop)
  }
}

/** The member's partitions at their current positions, for a wait. */
export function waitTargets(group: Group, member: Member): PartitionOffset[] {
  return member.assignments.map((a) => ({ ...a, offset: group.positions.get(partitionId(a)) ?? 0 }))
}
