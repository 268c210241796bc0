import { LEVEL_SEPARATOR, MULTI_LEVEL_WILDCARD, SINGLE_LEVEL_WILDCARD, wildcardMayMatch } from './topics.js'

// Topic filters in a trie of levels, each with values (routes, ACL rules, bridge mappings), so
// that a topic name visits only the branches that can match it. Matching follows topics.ts
// (`matches`), not qlobber: '+' matches an empty level, '#' matches its parent, and a leading
// wildcard never matches a '$' topic.

interface Node<V> {
  children: Map<string, Node<V>>
  /** Values of filters that end at this node. */
  exact: V[]
  /** Values of filters that are this node's path followed by '#'. */
  rest: V[]
}

const newNode = <V>(): Node<V> => ({ children: new Map(), exact: [], rest: [] })

export class FilterIndex<V> {
  private readonly root: Node<V> = newNode()
  private count = 0

  get size(): number {
    return this.count
  }

  /** Adds a value under a (valid) topic filter. */
  add(filter: string, value: V): void {
    let node = this.root
    for (const level of filter.split(LEVEL_SEPARATOR)) {
      if (level === MULTI_LEVEL_WILDCARD) {
        node.rest.push(value)
        this.count++
        return
      }
      let next = node.children.get(level)
      if (!next) {
        next = newNode()
        node.children.set(level, next)
      }
      node = next
    }
    node.exact.push(value)
    this.count++
  }

  /** Every value whose filter matches the topic name, in no particular order. */
  match(topic: string): V[] {
    const out: V[] = []
    if (this.count === 0) return out
    const levels = topic.split(LEVEL_SEPARATOR)
    const first = levels[0] ?? ''
    const walk = (node: Node<V>, i: number): void => {
      const wildcards = wildcardMayMatch(i, first)
      if (wildcards) out.push(...node.rest)
      const name = levels[i]
      if (name === undefined) {
        out.push(...node.exact)
        return
      }
      const exact = node.children.get(name)
      if (exact) walk(exact, i + 1)
      const plus = wildcards ? node.children.get(SINGLE_LEVEL_WILDCARD) : undefined
      if (plus) walk(plus, i + 1)
    }
    walk(this.root, 0)
    return out
  }
}
