import { CulexError } from '../../errors.js'
import type { LogRecord, OffsetSpec, PartitionOffset } from '../types.js'

// Consumer groups as the HTTP API (and later MQTT $share and bridges) see them. The coordinator
// (coordinator.ts) implements this over any Log backend.

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

export type GroupState = 'empty' | 'stable'

export interface MemberDescription {
  memberId: string
  clientId: string | null
  streams: string[]
  sessionTimeoutMs: number
  lastHeartbeat: number
  assignments: Assignment[]
}

export interface GroupDescription {
  group: string
  state: GroupState
  generation: number
  members: MemberDescription[]
  partitions: PartitionStatus[]
}

export interface GroupSummary {
  group: string
  state: GroupState
  generation: number
  members: number
  /** The streams the group consumes (members' subscriptions and committed offsets). */
  streams: string[]
  /** Sum of the lag of the group's partitions. */
  lag: number
}

export type GroupErrorCode = 'UNKNOWN_MEMBER' | 'NOT_ASSIGNED' | 'GROUP_ACTIVE' | 'INVALID_ARGUMENT' | 'UNKNOWN_GROUP'

/** UNKNOWN_MEMBER and NOT_ASSIGNED are retriable: join again and carry on. */
export class GroupError extends CulexError<GroupErrorCode> {
  constructor(code: GroupErrorCode, message: string) {
    super(code, message, {}, code === 'UNKNOWN_MEMBER' || code === 'NOT_ASSIGNED')
  }
}

export const SESSION_TIMEOUT = { default: 10_000, min: 1_000, max: 300_000 } as const

/** Ordered consumer groups (Kafka's model): one owner per partition, committed offsets. */
export interface ConsumerGroups {
  join(group: string, options: JoinOptions): Promise<Membership>
  heartbeat(group: string, memberId: string): Membership
  /** The streams a member joined with, or undefined for an unknown member; no heartbeat (for access checks). */
  memberStreams(group: string, memberId: string): readonly string[] | undefined
  leave(group: string, memberId: string): void
  fetch(group: string, memberId: string, options: FetchOptions): Promise<FetchResult>
  /** Commits by the current owner of each partition (NOT_ASSIGNED otherwise). */
  commit(group: string, memberId: string, offsets: PartitionOffset[]): Promise<void>
  /** Moves a group's committed offsets; only while it has no members (GROUP_ACTIVE otherwise). */
  reset(group: string, stream: string, to: OffsetSpec): Promise<PartitionOffset[]>
  describe(group: string): Promise<GroupDescription>
  /** Groups with members or committed offsets, with their lag, in one pass. */
  list(): Promise<GroupSummary[]>
  close(): void
}
