import type { Log, PartitionOffset, StreamInfo } from '../types.js'
import { partitionId, type Group } from './group.js'
import type { GroupDescription, GroupSummary, PartitionStatus } from './types.js'

// What a group has consumed and how far behind it is: per partition, the committed offset, the
// owner's position and the lag (end offset minus the commit, or minus the head when nothing is
// committed), as kafka-consumer-groups.sh --describe shows it.

type Committed = Array<PartitionOffset & { group: string }>

/** Stream infos fetched at most once per call. */
class StreamInfos {
  private readonly cache = new Map<string, Promise<StreamInfo>>()
  constructor(private readonly log: Log) {}
  get(stream: string): Promise<StreamInfo> {
    let info = this.cache.get(stream)
    if (!info) this.cache.set(stream, (info = this.log.describeStream(stream)))
    return info
  }
}

async function partitions(infos: StreamInfos, group: Group | undefined, committed: Committed): Promise<PartitionStatus[]> {
  const commits = new Map(committed.map((c) => [partitionId(c), c.offset]))
  const owners = group?.owners() ?? new Map<string, string>()
  const streams = new Set([...committed.map((c) => c.stream), ...[...(group?.members.values() ?? [])].flatMap((m) => m.streams)])
  const out: PartitionStatus[] = []
  for (const stream of [...streams].sort()) {
    for (const p of (await infos.get(stream)).partitions) {
      const id = partitionId({ stream, partition: p.partition })
      const c = commits.get(id) ?? null
      out.push({
        stream,
        partition: p.partition,
        memberId: owners.get(id) ?? null,
        committed: c,
        position: group?.positions.get(id) ?? null,
        startOffset: p.startOffset,
        endOffset: p.endOffset,
        lag: p.endOffset - Math.max(c ?? p.startOffset, p.startOffset)
      })
    }
  }
  return out
}

export async function describeGroup(log: Log, name: string, group: Group | undefined, committed: Committed): Promise<GroupDescription> {
  const members = [...(group?.members.values() ?? [])].map((m) => ({
    memberId: m.id,
    clientId: m.clientId,
    streams: m.streams,
    sessionTimeoutMs: m.sessionTimeoutMs,
    lastHeartbeat: m.lastHeartbeat,
    assignments: m.assignments
  }))
  return {
    group: name,
    state: members.length > 0 ? 'stable' : 'empty',
    generation: group?.generation ?? 0,
    members,
    partitions: await partitions(new StreamInfos(log), group, committed)
  }
}

/** Every group with members or commits, from one read of the commits: O(groups + partitions). */
export async function summarizeGroups(log: Log, groups: ReadonlyMap<string, Group>, committed: Committed): Promise<GroupSummary[]> {
  const byGroup = new Map<string, Committed>()
  for (const c of committed) {
    let list = byGroup.get(c.group)
    if (!list) byGroup.set(c.group, (list = []))
    list.push(c)
  }
  for (const g of groups.values()) if (g.members.size > 0 && !byGroup.has(g.name)) byGroup.set(g.name, [])
  const infos = new StreamInfos(log)
  const out: GroupSummary[] = []
  for (const name of [...byGroup.keys()].sort()) {
    const group = groups.get(name)
    const status = await partitions(infos, group, byGroup.get(name) ?? [])
    const members = group?.members.size ?? 0
    out.push({
      group: name,
      state: members > 0 ? 'stable' : 'empty',
      generation: group?.generation ?? 0,
      members,
      streams: [...new Set(status.map((p) => p.stream))].sort(),
      lag: status.reduce((n, p) => n + p.lag, 0)
    })
  }
  return out
}
