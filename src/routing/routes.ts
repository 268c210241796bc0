// Routes: which MQTT publishes are appended to which stream, and with which record key.

/** How a routed publish gets its record key (the key picks the partition; no key = round robin). */
export type RouteKey = { kind: 'topic-level'; level: number } | { kind: 'client-id' } | { kind: 'none' }

/** Publishes whose topic matches `filter` are appended to `stream`. */
export interface RouteConfig {
  filter: string
  stream: string
  key: RouteKey
}

/**
 * The record key of a publish on `topic` by `clientId` under `route`: the N-th topic level
 * (1-based; null if the topic has fewer levels), the client id (null for publishes by the broker
 * itself), or null for no key (the log then spreads records round robin).
 */
export function keyFor(route: Pick<RouteConfig, 'key'>, topic: string, clientId: string | null): string | null {
  switch (route.key.kind) {
    case 'topic-level':
      return topic.split('/')[route.key.level - 1] ?? null
    case 'client-id':
      return clientId
    case 'none':
      return null
  }
}
