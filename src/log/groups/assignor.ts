import type { Assignment } from './types.js'

// How a group's partitions are spread over its members (kafkajs: consumer/assigners/). The
// coordinator runs the assignor on every membership change; every partition gets exactly one
// owner among the members that consume its stream.

export interface AssignorMember {
  id: string
  streams: readonly string[]
}

export interface PartitionAssignor {
  name: string
  /** memberId -> its partitions; `partitions` gives each stream's partition count. */
  assign(members: readonly AssignorMember[], partitions: ReadonlyMap<string, number>): Map<string, Assignment[]>
}

/** Round robin per stream over the members sorted by id: deterministic, and even within a stream. */
export const roundRobinAssignor: PartitionAssignor = {
  name: 'round-robin',
  assign(members, partitions) {
    const sorted = [...members].sort((a, b) => a.id.localeCompare(b.id))
    const out = new Map<string, Assignment[]>(sorted.map((m) => [m.id, []]))
    const streams = [...new Set(sorted.flatMap((m) => m.streams))].sort()
    for (const stream of streams) {
      const consumers = sorted.filter((m) => m.streams.includes(stream))
      const count = partitions.get(stream) ?? 0
      for (let p = 0; p < count; p++) {
        const owner = consumers[p % consumers.length]
        if (owner) out.get(owner.id)?.push({ stream, partition: p })
      }
    }
    return out
  }
}
