import type { Assignment, AutoOffsetReset } from './types.js'

// The in-memory state of one ordered group: members, generation, the partition count of each
// stream it consumes, and the fetch position of each owned partition.

export interface Member {
  id: string
  clientId: string | null
  streams: string[]
  sessionTimeoutMs: number
  autoOffsetReset: AutoOffsetReset
  lastHeartbeat: number
  assignments: Assignment[]
  /** Aborted when this member's assignment changes (or it leaves), so its long-poll returns. */
  rebalanced: AbortController
}

export const partitionId = (a: Assignment): string => `${a.stream}\u0000${a.partition}`

export class Group {
  generation = 0
  readonly members = new Map<string, Member>()
  /** Partition count per stream, learnt at join (fixed for a stream's lifetime). */
  readonly partitionCounts = new Map<string, number>()
  /** Fetch position per partition, for the current owner; reset from the commit on reassignment. */
  readonly positions = new Map<string, number>()

  constructor(readonly name: string) {}

  /** partitionId -> memberId of the current owners. */
  owners(): Map<string, string> {
    const owners = new Map<string, string>()
    for (const m of this.members.values()) for (const a of m.assignments) owners.set(partitionId(a), m.id)
    return owners
  }

  /** Installs a new assignment: partitions that change owner restart from the committed offset. */
  reassign(next: Map<string, Assignment[]>): void {
    this.generation++
    for (const m of this.members.values()) {
      const assignments = next.get(m.id) ?? []
      const before = new Set(m.assignments.map(partitionId))
      const after = new Set(assignments.map(partitionId))
      for (const id of after) if (!before.has(id)) this.positions.delete(id)
      if (before.size !== after.size || [...after].some((id) => !before.has(id))) {
        m.assignments = assignments
        m.rebalanced.abort()
        m.rebalanced = new AbortController()
      }
    }
    // positions of partitions nobody owns are dropped too
    const owned = this.owners()
    for (const id of [...this.positions.keys()]) if (!owned.has(id)) this.positions.delete(id)
  }
}
