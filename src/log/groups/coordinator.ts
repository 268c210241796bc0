import { randomUUID } from 'node:crypto'
import { NAME_RULE, isValidName } from '../names.js'
import type { Log, OffsetSpec, PartitionOffset } from '../types.js'
import { roundRobinAssignor, type PartitionAssignor } from './assignor.js'
import { readAssigned, waitForRecordsOrRebalance, waitTargets } from './fetcher.js'
import { Group, partitionId, type Member } from './group.js'
import { describeGroup, summarizeGroups } from './lag.js'
import {
  GroupError,
  SESSION_TIMEOUT,
  type ConsumerGroups,
  type FetchOptions,
  type FetchResult,
  type GroupDescription,
  type GroupSummary,
  type JoinOptions,
  type Membership
} from './types.js'

// Ordered consumer groups over any Log backend, in the spirit of Kafka's group coordinator:
// - members join with the streams they consume and a session timeout, and stay alive by
//   heartbeating (a fetch counts as one); a member that leaves or times out triggers a rebalance;
// - the coordinator assigns partitions itself (assignor.ts), so every partition has exactly one
//   owner and per-key order holds within the group;
// - a partition's new owner starts from the group's committed offset, so records that a lost
//   member fetched but did not commit are delivered again (at-least-once, nothing lost);
// - only a partition's current owner may commit it; a stale member gets NOT_ASSIGNED.

export interface CoordinatorOptions {
  now?: () => number
  /**
   * Groups whose progress someone else owns (an outbound bridge's `bridge.<name>`): joining or
   * resetting one is refused with GROUP_ACTIVE and this reason; describing it is allowed.
   */
  owned?: (group: string) => string | null
  sweepIntervalMs?: number
  assignor?: PartitionAssignor
}

export class GroupCoordinator implements ConsumerGroups {
  private readonly groups = new Map<string, Group>()
  private readonly sweeper: NodeJS.Timeout
  private readonly now: () => number
  private readonly assignor: PartitionAssignor

  constructor(
    private readonly log: Log,
    private readonly options: CoordinatorOptions = {}
  ) {
    this.now = options.now ?? Date.now
    this.assignor = options.assignor ?? roundRobinAssignor
    this.sweeper = setInterval(() => this.expireMembers(), options.sweepIntervalMs ?? 500)
    this.sweeper.unref()
  }

  async join(groupName: string, options: JoinOptions): Promise<Membership> {
    checkName(groupName)
    this.checkOwned(groupName)
    const streams = [...new Set(options.streams)]
    if (streams.length === 0) throw new GroupError('INVALID_ARGUMENT', 'streams must name at least one stream')
    const timeout = options.sessionTimeoutMs ?? SESSION_TIMEOUT.default
    if (!Number.isInteger(timeout) || timeout < SESSION_TIMEOUT.min || timeout > SESSION_TIMEOUT.max) {
      throw new GroupError('INVALID_ARGUMENT', `sessionTimeoutMs must be an integer from ${SESSION_TIMEOUT.min} to ${SESSION_TIMEOUT.max}`)
    }
    // every stream must exist (UNKNOWN_STREAM) before the group does: a failed join leaves nothing
    const counts = new Map<string, number>()
    for (const s of streams) counts.set(s, (await this.log.describeStream(s)).config.partitions)

    let group = this.groups.get(groupName)
    if (!group) this.groups.set(groupName, (group = new Group(groupName)))
    for (const [s, n] of counts) group.partitionCounts.set(s, n)
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
    return membership(group, member)
  }

  heartbeat(groupName: string, memberId: string): Membership {
    const group = this.group(groupName)
    const member = this.member(group, memberId)
    member.lastHeartbeat = this.now()
    return membership(group, member)
  }

  memberStreams(groupName: string, memberId: string): readonly string[] | undefined {
    return this.groups.get(groupName)?.members.get(memberId)?.streams
  }

  leave(groupName: string, memberId: string): void {
    const group = this.group(groupName)
    this.member(group, memberId)
    this.remove(group, memberId)
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
      const records = await readAssigned(this.log, group, member, options)
      const remaining = deadline - Date.now()
      if (records.length > 0 || group.generation !== generation || remaining <= 0 || options.signal?.aborted) {
        return { ...membership(group, member), records }
      }
      await waitForRecordsOrRebalance(this.log, member, waitTargets(group, member), remaining, options.signal)
      if (!group.members.has(memberId)) throw new GroupError('UNKNOWN_MEMBER', `member ${memberId} left group ${groupName}`)
    }
  }

  async commit(groupName: string, memberId: string, offsets: PartitionOffset[]): Promise<void> {
    const group = this.group(groupName)
    const member = this.member(group, memberId)
    member.lastHeartbeat = this.now()
    for (const o of offsets) {
      if (!member.assignments.some((a) => a.stream === o.stream && a.partition === o.partition)) {
        throw new GroupError(
          'NOT_ASSIGNED',
          `${o.stream}/${o.partition} is not assigned to member ${memberId} (generation ${group.generation}); rejoin to get the current assignment`
        )
      }
    }
    await this.log.commit(groupName, offsets)
  }

  async reset(groupName: string, stream: string, spec: OffsetSpec): Promise<PartitionOffset[]> {
    checkName(groupName)
    this.checkOwned(groupName)
    const group = this.groups.get(groupName)
    if (group && group.members.size > 0) {
      throw new GroupError('GROUP_ACTIVE', `group ${groupName} has ${group.members.size} active member(s); reset it when they have left`)
    }
    const info = await this.log.describeStream(stream)
    const offsets: PartitionOffset[] = []
    for (const p of info.partitions) offsets.push({ stream, partition: p.partition, offset: await this.log.resolveOffset(stream, p.partition, spec) })
    await this.log.commit(groupName, offsets)
    group?.positions.clear()
    return offsets
  }

  async describe(groupName: string): Promise<GroupDescription> {
    checkName(groupName)
    const group = this.groups.get(groupName)
    const committed = (await this.log.listCommitted()).filter((c) => c.group === groupName)
    if ((!group || group.members.size === 0) && committed.length === 0) throw new GroupError('UNKNOWN_GROUP', `unknown group "${groupName}"`)
    return describeGroup(this.log, groupName, group, committed)
  }

  async list(): Promise<GroupSummary[]> {
    return summarizeGroups(this.log, this.groups, await this.log.listCommitted())
  }

  close(): void {
    clearInterval(this.sweeper)
    for (const g of this.groups.values()) for (const m of g.members.values()) m.rebalanced.abort()
  }

  /** Removes members whose session timed out; run by the sweeper, public for tests. */
  expireMembers(): void {
    const now = this.now()
    for (const group of this.groups.values()) {
      const expired = [...group.members.values()].filter((m) => m.lastHeartbeat + m.sessionTimeoutMs < now)
      for (const m of expired) this.remove(group, m.id)
    }
  }

  private checkOwned(name: string): void {
    const owner = this.options.owned?.(name) ?? null
    if (owner !== null) throw new GroupError('GROUP_ACTIVE', `group ${name} is not for consumers: ${owner}`)
  }

  private remove(group: Group, memberId: string): void {
    const member = group.members.get(memberId)
    if (!member) return
    group.members.delete(memberId)
    member.rebalanced.abort() // a fetch it still has waiting returns now
    if (group.members.size === 0) {
      // nothing to keep in memory: positions restart from the commits anyway
      this.groups.delete(group.name)
      return
    }
    this.rebalance(group)
  }

  private rebalance(group: Group): void {
    group.reassign(this.assignor.assign([...group.members.values()], group.partitionCounts))
  }

  private group(name: string): Group {
    checkName(name)
    const group = this.groups.get(name)
    if (!group) throw new GroupError('UNKNOWN_MEMBER', `group ${name} has no members; join first`)
    return group
  }

  private member(group: Group, memberId: string): Member {
    const member = group.members.get(memberId)
    if (!member) throw new GroupError('UNKNOWN_MEMBER', `member ${memberId} is not in group ${group.name} (it left or its session timed out); join again`)
    return member
  }
}

function checkName(name: string): void {
  if (!isValidName(name)) throw new GroupError('INVALID_ARGUMENT', `invalid group name "${name}": expected ${NAME_RULE}`)
}

function membership(group: Group, member: Member): Membership {
  return { memberId: member.id, generation: group.generation, assignments: member.assignments.map((a) => ({ ...a })) }
}
