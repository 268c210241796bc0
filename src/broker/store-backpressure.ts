import type { Backlog } from '../store/backlog.js'
import type { BrokerCounters } from './counters.js'

// store-high-water / store-low-water: while the store's backlog (bytes written and not committed,
// src/store/backlog.ts) is over its high-water mark, a publish that writes is held after
// admission, never dropped: its append has started, but aedes goes on with it (and its PUBACK)
// only once the backlog is back at the low-water mark. As with publish-rate, aedes reads nothing
// more from that client while a publish of it is held (held-publishes.ts and the source patch 6 of
// aedes's lib/client.js), so the client's TCP connection fills up and slows it down. (Pausing the
// socket from outside breaks aedes's batch accounting.) What the store can be made to hold is thus
// the high-water mark plus, per publishing client, one socket read.
//
// Held publishes go on in the order they were held. A client with a publish held has its later
// publishes held too, whatever they write, so that it sees no reordering.

export interface StoreBackpressureStats {
  /** How many times the store went over its high-water mark while publishes came in. */
  episodes: number
  /** Publishes held. */
  held: number
  /** Time spent with publishes held, over all episodes (ms). */
  heldMs: number
  /** Publishes waiting now. */
  waiting: number
}

export class StoreBackpressure<C extends object> {
  private queue: Array<() => void> = []
  private holding = new Set<C>()
  private since = 0
  private closed = false
  private readonly totals = { episodes: 0, held: 0, heldMs: 0 }

  constructor(
    private readonly backlog: Backlog,
    private readonly counters: BrokerCounters,
    private readonly now: () => number = Date.now
  ) {
    backlog.onChange((over) => {
      if (!over) this.releaseAll()
    })
  }

  get enabled(): boolean {
    return this.backlog.watermarks.high > 0
  }

  /**
   * Whether a publish of `client` must wait: the store is over its high-water mark and the publish
   * writes, or the client has a publish waiting already.
   */
  mustHold(client: C, writes: boolean): boolean {
    if (this.queue.length === 0) return writes && this.backlog.over
    return this.holding.has(client) || (writes && this.backlog.over)
  }

  /** Queues `go` until the store is back at its low-water mark (mustHold said so). */
  hold(client: C, clientId: string | null, go: () => void): void {
    if (this.closed) return
    if (this.queue.length === 0) {
      this.since = this.now()
      this.totals.episodes++
    }
    this.totals.held++
    this.holding.add(client)
    this.queue.push(go)
    this.counters.count('store-backpressure', {
      clientId,
      backlogBytes: this.backlog.bytes,
      highWater: this.backlog.watermarks.high,
      lowWater: this.backlog.watermarks.low
    })
    // the store failed meanwhile (it releases its backlog): nothing drains, nothing waits
    if (!this.backlog.over) this.releaseAll()
  }

  stats(): StoreBackpressureStats {
    return { ...this.totals, waiting: this.queue.length }
  }

  /** The broker closes: held publishes are never answered (their clients are gone). */
  close(): void {
    this.closed = true
    this.queue = []
    this.holding.clear()
  }

  private releaseAll(): void {
    if (this.queue.length === 0) return
    const queue = this.queue
    this.queue = []
    this.holding = new Set()
    this.totals.heldMs += this.now() - this.since
    // outside the writer's commit callback: what the publishes do next may write again
    setImmediate(() => {
      if (this.closed) return
      for (const go of queue) go()
    })
  }
}
