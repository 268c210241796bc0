import { FilterIndex } from '../mqtt/filter-index.js'
import { isSysTopic } from '../mqtt/topics.js'
import type { RouteConfig } from './routes.js'

// Routes: MQTT topic filter -> stream, matched with the MQTT rules of src/mqtt/ (a trie of
// levels, so a publish visits only the branches that can match it).

export class Router {
  private readonly routes: readonly RouteConfig[]
  private readonly index = new FilterIndex<number>()

  constructor(routes: readonly RouteConfig[]) {
    this.routes = routes.map((r) => ({ ...r, key: { ...r.key } }))
    this.routes.forEach((route, i) => this.index.add(route.filter, i))
  }

  get size(): number {
    return this.routes.length
  }

  /**
   * The routes a publish on `topic` goes to: at most one per stream (a record is appended to a
   * stream once), and for each stream the route listed first in the config, whose key is used.
   * `$SYS/` topics (the broker's own status) are never routed.
   */
  match(topic: string): RouteConfig[] {
    if (this.routes.length === 0 || isSysTopic(topic)) return []
    const hits = this.index.match(topic)
    if (hits.length === 0) return []
    hits.sort((a, b) => a - b)
    const seen = new Set<string>()
    const out: RouteConfig[] = []
    for (const i of hits) {
      const route = this.routes[i]
      if (!route || seen.has(route.stream)) continue
      seen.add(route.stream)
      out.push(route)
    }
    return out
  }
}
