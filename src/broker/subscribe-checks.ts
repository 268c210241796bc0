import { topicFilterProblem, type TopicLimits } from '../mqtt/topics.js'

// SUBSCRIBE rules aedes 1.2 does not enforce, and the subscription limit. A filter that is not a
// valid topic filter is a protocol violation and closes the connection (§4.8); a filter over the
// limit gets the failure return code 0x80 in SUBACK [MQTT-3.9.3-2].

export type FilterCheck = { ok: true } | { ok: false; close: boolean; reason: string }

export function checkFilter(filter: string, limits: TopicLimits): FilterCheck {
  const problem = topicFilterProblem(filter, limits)
  return problem ? { ok: false, close: true, reason: `topic filter ${JSON.stringify(filter.slice(0, 200))}: ${problem}` } : { ok: true }
}

/**
 * Subscriptions per client: counted as aedes grants them (a filter the client holds already
 * replaces itself, so it does not count twice), forgotten with the client.
 */
export class SubscriptionCounter {
  private readonly held = new WeakMap<object, Set<string>>()

  constructor(private readonly max: number) {}

  /** Whether `client` may hold `filter` too; counts it when it may. */
  admit(client: object, filter: string): boolean {
    let filters = this.held.get(client)
    if (!filters) this.held.set(client, (filters = new Set()))
    if (filters.has(filter)) return true
    if (filters.size >= this.max) return false
    filters.add(filter)
    return true
  }

  removed(client: object, filters: string[]): void {
    const held = this.held.get(client)
    if (held) for (const f of filters) held.delete(f)
  }
}
