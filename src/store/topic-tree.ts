// Retained topics in a tree of levels, so a wildcard lookup visits only the matching branches.

interface TopicNode {
  children: Map<string, TopicNode>
  topic: string | undefined
}

const newNode = (): TopicNode => ({ children: new Map(), topic: undefined })

export class TopicTree {
  readonly #root = newNode()

  add(topic: string): void {
    let node = this.#root
    for (const level of topic.split('/')) {
      let next = node.children.get(level)
      if (!next) {
        next = newNode()
        node.children.set(level, next)
      }
      node = next
    }
    node.topic = topic
  }

  remove(topic: string): void {
    const levels = topic.split('/')
    const path: TopicNode[] = [this.#root]
    for (const level of levels) {
      const next = path[path.length - 1]!.children.get(level)
      if (!next) return
      path.push(next)
    }
    path[path.length - 1]!.topic = undefined
    // prune the branch that no longer leads to a retained topic
    for (let i = levels.length; i > 0; i--) {
      const node = path[i]!
      if (node.topic !== undefined || node.children.size > 0) break
      path[i - 1]!.children.delete(levels[i - 1]!)
    }
  }

  /** Topics matching `filter`, whose '#' (if any) must be its last level. */
  match(filter: string): string[] {
    const levels = filter.split('/')
    const out: string[] = []
    const walk = (node: TopicNode, i: number): void => {
      if (i === levels.length) {
        if (node.topic !== undefined) out.push(node.topic)
        return
      }
      const level = levels[i]!
      // a wildcard in the first level does not match topics starting with '$' [MQTT-4.7.2-1]
      const visible = (name: string): boolean => i > 0 || !name.startsWith('$')
      if (level === '#') {
        // '#' also matches the parent level: 'a/#' matches 'a' [MQTT-4.7.1-2]
        if (i > 0 && node.topic !== undefined) out.push(node.topic)
        const stack = [...node.children].filter(([name]) => visible(name)).map(([, child]) => child)
        for (let n = stack.pop(); n; n = stack.pop()) {
          if (n.topic !== undefined) out.push(n.topic)
          for (const child of n.children.values()) stack.push(child)
        }
      } else if (level === '+') {
        // '+' matches exactly one level, an empty one too: 'a/+' matches 'a/' (MQTT 4.7.1.3).
        // qlobber, behind aedes-persistence's memory store, skips empty levels; Culex follows the spec.
        for (const [name, child] of node.children) if (visible(name)) walk(child, i + 1)
      } else {
        const child = node.children.get(level)
        if (child) walk(child, i + 1)
      }
    }
    walk(this.#root, 0)
    return out
  }
}
