import type { RouteConfig } from '../config.js'

// Routes: MQTT topic filter -> stream. The filters live in a trie of levels, so a publish visits
// only the branches that can match it. Matching follows the MQTT 3.1.1 spec, not qlobber:
// - '+' matches exactly one level, an empty one too ('a/+' matches 'a/') [4.7.1.3];
// - '#' matches its parent level and any number of levels below ('a/#' matches 'a') [MQTT-4.7.1-2];
// - a filter starting with a wildcard does not match topics starting with '$' [MQTT-4.7.2-1].

interface Node {
  children: Map<string, Node>
  /** Indexes of routes whose filter ends at this node. */
  routes: number[]
  /** Indexes of routes whose filter is this node's path followed by '#'. */
  rest: number[]
}

const newNode = (): Node => ({ children: new Map(), routes: [], rest: [] })

export class Router {
  private readonly root = newNode()
  private readonly routes: readonly RouteConfig[]

  constructor(routes: readonly RouteConfig[]) {
    this.routes = routes.map((r) => ({ ...r, key: { ...r.key } }))
    this.routes.forEach((route, index) => {
      let node = this.root
      for (const level of route.filter.split('/')) {
        if (level === '#') {
          node.rest.push(index)
          return
        }
        let next = node.children.get(level)
        if (!next) {
          next = newNode()
          node.children.set(level, next)
        }
        node = next
      }
      node.routes.push(index)
    })
  }

  /** See keyFor below. */
  keyFor(route: Pick<RouteConfig, 'key'>, topic: string, clientId: string | null): string | null {
    return keyFor(route, topic, clientId)
  }

  get size(): number {
    return this.routes.length
  }

  /**
   * The routes a publish on `topic` goes to: at most one per stream (a record is appended to a
   * stream once), and for each stream the route listed first in the config, whose key is used.
   */
  match(topic: string): RouteConfig[] {
    if (this.routes.length === 0) return []
    const levels = topic.split('/')
    const dollar = topic.startsWith('$')
    const hits: number[] = []
    const walk = (node: Node, i: number): void => {
      // wildcards in the first level never match '$' topics
      const wildcardsAllowed = i > 0 || !dollar
      if (wildcardsAllowed) hits.push(...node.rest)
      if (i === levels.length) {
        hits.push(...node.routes)
        return
      }
      const exact = node.children.get(levels[i]!)
      if (exact) walk(exact, i + 1)
      const plus = node.children.get('+')
      if (plus && wildcardsAllowed) walk(plus, i + 1)
    }
    walk(this.root, 0)
    if (hits.length === 0) return []
    hits.sort((a, b) => a - b)
    const seen = new Set<string>()
    const out: RouteConfig[] = []
    for (const index of hits) {
      const route = this.routes[index]!
      if (seen.has(route.stream)) continue
      seen.add(route.stream)
      out.push(route)
    }
    return out
  }
}

/**
 * The record key of a publish on `topic` by `clientId` under `route`: the N-th topic level
 * (1-based; null if the topic has fewer levels), the client id (null for publishes by the broker
 * itself), or null for no key (the log then spreads records round robin).
 */
export function keyFor(route: Pick<RouteConfig, 'key'>, topic: string, clientId: string | null): string | null {
  switch (route.key.kind) {
    case 'topic-level': {
      const levels = topic.split('/')
      return route.key.level <= levels.length ? levels[route.key.level - 1]! : null
    }
    case 'client-id':
      return clientId
    case 'none':
      return null
  }
}
