import { LEVEL_SEPARATOR, MULTI_LEVEL_WILDCARD, SINGLE_LEVEL_WILDCARD, wildcardMayMatch } from './topics.js'

// A set of topic names (retained messages) in a tree of levels, so that a filter visits only
// the branches it can match. The mirror of filter-index.ts, with the same rules from topics.ts.

interface Node {
  children: Map<string, Node>
  topic: string | undefined
}

const newNode = (): Node => ({ children: new Map(), topic: undefined })

export class TopicIndex {
  #root = newNode()
  #size = 0

  get size(): number {
    return this.#size
  }

  add(topic: string): void {
    let node = this.#root
    for (const level of topic.split(LEVEL_SEPARATOR)) {
      let next = node.children.get(level)
      if (!next) {
        next = newNode()
        node.children.set(level, next)
      }
      node = next
    }
    if (node.topic === undefined) this.#size++
    node.topic = topic
  }

  delete(topic: string): void {
    const levels = topic.split(LEVEL_SEPARATOR)
    const path: Node[] = [this.#root]
    let node = this.#root
    for (const level of levels) {
      const next = node.children.get(level)
      if (!next) return
      path.push(next)
      node = next
    }
    if (node.topic === undefined) return
    node.topic = undefined
    this.#size--
    // prune the branch that no longer leads to a topic
    for (let i = levels.length; i > 0; i--) {
      const child = path[i]
      const parent = path[i - 1]
      if (!child || !parent || child.topic !== undefined || child.children.size > 0) break
      parent.children.delete(levels[i - 1] ?? '')
    }
  }

  has(topic: string): boolean {
    let node: Node | undefined = this.#root
    for (const level of topic.split(LEVEL_SEPARATOR)) {
      node = node.children.get(level)
      if (!node) return false
    }
    return node.topic !== undefined
  }

  /** Every topic, '$' ones included. */
  *all(): Generator<string> {
    const stack: Node[] = [this.#root]
    for (let n = stack.pop(); n; n = stack.pop()) {
      if (n.topic !== undefined) yield n.topic
      for (const child of n.children.values()) stack.push(child)
    }
  }

  clear(): void {
    this.#root = newNode()
    this.#size = 0
  }

  /** The topics matching a (valid) topic filter. */
  match(filter: string): string[] {
    const levels = filter.split(LEVEL_SEPARATOR)
    const out: string[] = []
    const walk = (node: Node, i: number): void => {
      const level = levels[i]
      if (level === undefined) {
        if (node.topic !== undefined) out.push(node.topic)
        return
      }
      if (level === MULTI_LEVEL_WILDCARD) {
        // '#' also matches the parent level: 'a/#' matches 'a' [MQTT-4.7.1-2]
        if (i > 0 && node.topic !== undefined) out.push(node.topic)
        const stack: Node[] = []
        for (const [name, child] of node.children) if (wildcardMayMatch(i, name)) stack.push(child)
        for (let n = stack.pop(); n; n = stack.pop()) {
          if (n.topic !== undefined) out.push(n.topic)
          for (const child of n.children.values()) stack.push(child)
        }
      } else if (level === SINGLE_LEVEL_WILDCARD) {
        for (const [name, child] of node.children) if (wildcardMayMatch(i, name)) walk(child, i + 1)
      } else {
        const child = node.children.get(level)
        if (child) walk(child, i + 1)
      }
    }
    walk(this.#root, 0)
    return out
  }
}
