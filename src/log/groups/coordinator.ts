import { randomUUID } from 'node:crypto'
import { isValidName } from './log-keys.js'
import { LogError, type Log, type LogRecord, type OffsetSpec } from './types.js'

// Consumer groups over the log, in the spirit of Kafka's group coordinator:
// - members join with the streams they consume and a session timeout, and stay alive by
//   heartbeating (a fetch counts as one); a member that leaves or times out triggers a rebalance;
// - the coordinator assigns partitions itself (round robin per stream over the sorted members), so
//   every partition has exactly one owner and per-key order holds within the group;
// - a partition's new owner starts from the group's committed offset, so records that a lost
//   member fetched but did not commit are delivered again (at-least-once, nothing lost);
// - only a partition's current owner may commit it; a stale member gets NOT_ASSIGNED.

export type AutoOffsetReset = 'earliest' | 'latest'

export interface JoinOptions {
  /** Rejoin with a known id; a new id is given when absent or unknown. */
  memberId?: string
  streams: string[]
  sessionTimeoutMs?: number
  clientId?: string
  /** Where to start in a partition without a committed offset (or one below the head). */
  autoOffsetReset?: AutoOffsetReset
}

export interface Assignment {
  stream: string
  partition: number
}

export interface Membership {
  memberId: string
  generation: number
  assignments: Assignment[]
}

export interface FetchOptions {
  maxRecords: number
  maxBytes?: number
  /** Long-poll: hold the request up to this long (ms) until a record arrives. */
  waitMs: number
  signal?: AbortSignal
}

export interface FetchResult extends Membership {
  records: LogRecord[]
}

export interface PartitionStatus extends Assignment {
  memberId: string | null
  committed: number | null
  position: number | null
  startOffset: number
  endOffset: number
  /** endOffset minus the committed offset (minus the head when nothing is committed). */
  lag: number
}

export interface GroupDescription {
  group: string
  state: 'empty' | 'stable'
  generation: number
  members: Array<{ memberId: string; clientId: string | null; streams: string[]; sessionTimeoutMs: number; lastHeartbeat: number; assignments: Assignment[] }>
  partitions: PartitionStatus[]
}

export class GroupError extends Error {
  constructor(
    readonly code: 'UNKNOWN_MEMBER' | 'NOT_ASSIGNED' | 'GROUP_ACTIVE' | 'INVALID_ARGUMENT' | 'UNKNOWN_GROUP',
    message: string
  ) {
    super(message)
    this.name = 'GroupError'
  }
}

export const SESSION_TIMEOUT = { default: 10_000, min: 1_000, max: 300_000 }

interface Member {
  id: string
  clientId: string | null
  streams: string[]
  sessionTimeoutMs: number
  autoOffsetReset: AutoOffsetReset
  lastHeartbeat: number
  assignments: Assignment[]
  /** Woken when this member's assignment changes, so its long-poll returns. */
  rebalanced: AbortController
}

interface Group {
  name: string
  generation: number
  members: Map<string, Member>
  /** Fetch position per partition, for the current owner; reset from the commit on reassignment. */
  positions: Map<string, number>
}

const partitionId = (a: Assignment): string => `${a.stream}\u0000${a.partition}`

export class GroupCoordinator {
  private readonly groups = new Map<string, Group>()
  private readonly sweeper: NodeJS.Timeout

  constructor(
    private readonly log: Log,
    private readonly now: () => number = Date.now,
    sweepIntervalMs = 500
  ) {
    this.sweeper = setInterval(() => this.expireMembers(), sweepIntervalMs)
    this.sweeper.unref()
  }

  join(groupName: string, options: JoinOptions): Membership {
    const group = this.group(groupName, true)
    const streams = [...new Set(options.streams)]
    if (streams.length === 0) throw new GroupError('INVALID_ARGUMENT', 'streams must name at least one stream')
    for (const s of streams) this.log.describeStream(s) // throws UNKNOWN_STREAM
    const timeout = options.sessionTimeoutMs ?? SESSION_TIMEOUT.default
    if (!Number.isInteger(timeout) || timeout < SESSION_TIMEOUT.min || timeout > SESSION_TIMEOUT.max) {
      throw new GroupError('INVALID_ARGUMENT', `sessionTimeoutMs must be an integer from ${SESSION_TIMEOUT.min} to ${SESSION_TIMEOUT.max}`)
    }
    const existing = options.memberId ? group.members.get(options.memberId) : undefined
    const member: Member = existing ?? {
      id: randomUUID(),
      clientId: options.clientId ?? null,
      streams,
      sessionTimeoutMs: timeout,
      autoOffsetReset: options.autoOffsetReset ?? 'earliest',
      lastHeartbeat: this.now(),
      assignments: [],
      rebalanced: new AbortController()
    }
    const changed = !existing || existing.streams.join('\u0000') !== streams.join('\u0000')
    Object.assign(member, { streams, sessionTimeoutMs: timeout, lastHeartbeat: this.now() })
    if (options.autoOffsetReset) member.autoOffsetReset = options.autoOffsetReset
    group.members.set(member.id, member)
    if (changed) {
      this.rebalance(group)
    } else {
      // A rejoin restarts the member's partitions from the committed offsets: records it fetched
      // but may never have received (a lost response, a closed push socket) come again.
      for (const a of member.assignments) group.positions.delete(partitionId(a))
    }
    return this.membership(group, member)
  }

  heartbeat(groupName: string, memberId: string): Membership {
    const group = this.group(groupName)
    const member = this.member(group, memberId)
    member.lastHeartbeat = this.now()
    return this.membership(group, member)
  }

  leave(groupName: string, memberId: string): void {
    const group = this.group(groupName)
    const member = this.member(group, memberId)
    group.members.delete(memberId)
    member.rebalanced.abort() // a fetch it still has waiting returns now
    this.rebalance(group)
  }

  /** Records from the member's partitions at their positions; waits up to waitMs if there are none. */
  async fetch(groupName: string, memberId: string, options: FetchOptions): Promise<FetchResult> {
    const group = this.group(groupName)
    const member = this.member(group, memberId)
    // the wait is measured in real time; `now` (injectable) only drives session expiry
    const deadline = Date.now() + Math.max(0, options.waitMs)
    // a rebalance during the fetch ends it, so the member learns its new assignment at once
    const generation = group.generation
    for (;;) {
      member.lastHeartbeat = this.now()
      const records = await this.readAssigned(group, member, options)
      if (records.length > 0 || group.generation !== generation) {
        return { ...this.membership(group, member), records }
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0 || options.signal?.aborted) return { ...this.membership(group, member), records }
      const targets = member.assignments.map((a) => ({ ...a, offset: group.positions.get(partitionId(a)) ?? 0 }))
      await this.waitForRecordsOrRebalance(member, targets, remaining, options.signal)
      if (!group.members.has(memberId)) throw new GroupError('UNKNOWN_MEMBER', `member ${memberId} left group ${groupName}`)
    }
  }

  /**
   * Waits until a target partition has records, the member is rebalanced (or leaves), the caller
   * aborts, or the time is up. One controller per wait, with listeners removed afterwards:
   * AbortSignal.any would keep a little memory per call until the member's next rebalance.
   */
  private async waitForRecordsOrRebalance(
    member: Member,
    targets: Array<{ stream: string; partition: number; offset: number }>,
    timeoutMs: number,
    signal: AbortSignal | undefined
  ): Promise<void> {
    const stop = new AbortController()
    const rebalanced = member.rebalanced.signal
    const onStop = (): void => stop.abort()
    rebalanced.addEventListener('abort', onStop, { once: true })
    signal?.addEventListener('abort', onStop, { once: true })
    if (rebalanced.aborted || signal?.aborted) stop.abort()
    try {
      if (targets.length > 0) {
        await this.log.waitForRecords(targets, timeoutMs, stop.signal)
      } else if (!stop.signal.aborted) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, timeoutMs)
          stop.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true })
        })
      }
    } finally {
      rebalanced.removeEventListener('abort', onStop)
      signal?.removeEventListener('abort', onStop)
    }
  }

  async commit(groupName: string, memberId: string, offsets: Array<{ stream: string; partition: number; offset: number }>): Promise<void> {
    const group = this.group(groupName)
    const member = this.member(group, memberId)
    member.lastHeartbeat = this.now()
    for (const o of offsets) {
      if (!member.assignments.some((a) => a.stream === o.stream && a.partition === o.partition)) {
        throw new GroupError('NOT_ASSIGNED', `${o.stream}/${o.partition} is not assigned to member ${memberId} (generation ${group.generation}); rejoin to get the current assignment`)
      }
    }
    await this.log.commit(groupName, offsets)
  }

  /** Moves a group's committed offsets; only while the group has no members (as Kafka requires). */
  async reset(groupName: string, stream: string, spec: OffsetSpec): Promise<Array<{ stream: string; partition: number; offset: number }>> {
    if (!isValidName(groupName)) throw new GroupError('INVALID_ARGUMENT', `invalid group name "${groupName}"`)
    const group = this.groups.get(groupName)
    if (group && group.members.size > 0) {
      throw new GroupError('GROUP_ACTIVE', `group ${groupName} has ${group.members.size} active member(s); reset it when they have left`)
    }
    const info = this.log.describeStream(stream)
    const offsets = []
    for (const p of info.partitions) offsets.push({ stream, partition: p.partition, offset: await this.log.resolveOffset(stream, p.partition, spec) })
    await this.log.commit(groupName, offsets)
    group?.positions.clear()
    return offsets
  }

  async describe(groupName: string): Promise<GroupDescription> {
    const group = this.groups.get(groupName)
    const committed = (await this.log.listCommitted()).filter((c) => c.group === groupName)
    if (!group && committed.length === 0) throw new GroupError('UNKNOWN_GROUP', `unknown group "${groupName}"`)
    const owners = new Map<string, string>()
    for (const m of group?.members.values() ?? []) for (const a of m.assignments) owners.set(partitionId(a), m.id)
    const streams = new Set([...committed.map((c) => c.stream), ...[...(group?.members.values() ?? [])].flatMap((m) => m.streams)])
    const partitions: PartitionStatus[] = []
    for (const stream of [...streams].sort()) {
      for (const p of this.log.describeStream(stream).partitions) {
        const id = partitionId({ stream, partition: p.partition })
        const c = committed.find((x) => x.stream === stream && x.partition === p.partition)?.offset ?? null
        partitions.push({
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
    const members = [...(group?.members.values() ?? [])].map((m) => ({
      memberId: m.id,
      clientId: m.clientId,
      streams: m.streams,
      sessionTimeoutMs: m.sessionTimeoutMs,
      lastHeartbeat: m.lastHeartbeat,
      assignments: m.assignments
    }))
    return { group: groupName, state: members.length > 0 ? 'stable' : 'empty', generation: group?.generation ?? 0, members, partitions }
  }

  /** Groups with members or committed offsets. */
  async listGroups(): Promise<string[]> {
    const names = new Set([...this.groups.values()].filter((g) => g.members.size > 0).map((g) => g.name))
    for (const c of await this.log.listCommitted()) names.add(c.group)
    return [...names].sort()
  }

  close(): void {
    clearInterval(this.sweeper)
    for (const g of this.groups.values()) for (const m of g.members.values()) m.rebalanced.abort()
  }

  /** Removes members whose session timed out; run by the sweeper, public for tests. */
  expireMembers(): void {
    const now = this.now()
    for (const group of this.groups.values()) {
      let expired = false
      for (const m of group.members.values()) {
        if (m.lastHeartbeat + m.sessionTimeoutMs < now) {
          group.members.delete(m.id)
          m.rebalanced.abort()
          expired = true
        }
      }
      if (expired) this.rebalance(group)
    }
  }

  private async readAssigned(group: Group, member: Member, options: FetchOptions): Promise<LogRecord[]> {
    const out: LogRecord[] = []
    let bytes = 0
    for (const a of member.assignments) {
      if (out.length >= options.maxRecords) break
      const id = partitionId(a)
      const position = await this.position(group, member, a)
      const info = this.log.describeStream(a.stream).partitions[a.partition]!
      if (position >= info.endOffset) continue
      let records: LogRecord[]
      try {
        records = await this.log.read(a.stream, a.partition, position, {
          limit: options.maxRecords - out.length,
          maxBytes: options.maxBytes === undefined ? undefined : Math.max(1, options.maxBytes - bytes)
        })
      } catch (err) {
        if (err instanceof LogError && err.code === 'OFFSET_OUT_OF_RANGE') {
          // retention overtook this position: apply the member's reset policy, like auto.offset.reset
          group.positions.set(id, await this.log.resolveOffset(a.stream, a.partition, member.autoOffsetReset))
          continue
        }
        throw err
      }
      // the assignment may have moved while reading; the new owner starts from the commit
      if (!member.assignments.includes(a)) break
      if (records.length > 0) group.positions.set(id, records[records.length - 1]!.offset + 1)
      for (const r of records) bytes += r.value.length
      out.push(...records)
      if (options.maxBytes !== undefined && bytes >= options.maxBytes) break
    }
    return out
  }

  private async position(group: Group, member: Member, a: Assignment): Promise<number> {
    const id = partitionId(a)
    const known = group.positions.get(id)
    if (known !== undefined) return known
    const committed = await this.log.committed(group.name, a.stream, a.partition)
    const info = this.log.describeStream(a.stream).partitions[a.partition]!
    const position =
      committed !== null && committed >= info.startOffset ? committed : await this.log.resolveOffset(a.stream, a.partition, member.autoOffsetReset)
    group.positions.set(id, position)
    return position
  }

  private rebalance(group: Group): void {
    group.generation++
    const members = [...group.members.values()].sort((a, b) => a.id.localeCompare(b.id))
    const next = new Map<string, Assignment[]>(members.map((m) => [m.id, []]))
    const streams = [...new Set(members.flatMap((m) => m.streams))].sort()
    for (const stream of streams) {
      const consumers = members.filter((m) => m.streams.includes(stream))
      const partitions = this.log.describeStream(stream).config.partitions
      for (let p = 0; p < partitions; p++) next.get(consumers[p % consumers.length]!.id)!.push({ stream, partition: p })
    }
    for (const m of members) {
      const assignments = next.get(m.id)!
      const before = new Set(m.assignments.map(partitionId))
      const after = new Set(assignments.map(partitionId))
      // partitions that change owner restart from the committed offset
      for (const id of after) if (!before.has(id)) group.positions.delete(id)
      if (before.size !== after.size || [...after].some((id) => !before.has(id))) {
        m.assignments = assignments
        m.rebalanced.abort()
        m.rebalanced = new AbortController()
      }
    }
    // positions of partitions nobody owns are dropped too
    const owned = new Set(members.flatMap((m) => m.assignments.map(partitionId)))
    for (const id of [...group.positions.keys()]) if (!owned.has(id)) group.positions.delete(id)
  }

  private membership(group: Group, member: Member): Membership {
    return { memberId: member.id, generation: group.generation, assignments: member.assignments.map((a) => ({ ...a })) }
  }

  private group(name: string, create = false): Group {
    if (!isValidName(name)) throw new GroupError('INVALID_ARGUMENT', `invalid group name "${name}": use letters, digits, '.', '_' and '-'`)
    let group = this.groups.get(name)
    if (!group) {
      if (!create) throw new GroupError('UNKNOWN_MEMBER', `group ${name} has no members; join first`)
      group = { name, generation: 0, members: new Map(), positions: new Map() }
      this.groups.set(name, group)
    }
    return group
  }

  private member(group: Group, memberId: string): Member {
    const member = group.members.get(memberId)
    if (!member) throw new GroupError('UNKNOWN_MEMBER', `member ${memberId} is not in group ${group.name} (it left or its session timed out); join again`)
    return member
  }
}
