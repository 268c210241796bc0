import type { Logger } from 'pino'
import type { LogShares, SendOutcome, ShareMember, ShareMembership } from '../broker/share-subscriptions.js'
import { NAME_RULE, isValidName } from '../log/names.js'
import { ShareError, type AckRequest, type SharedGroups, type SharedRecord } from '../log/shared/shared-groups.js'
import type { LogRecord } from '../log/types.js'
import { filtersOverlap, matches, topicNameProblem } from '../mqtt/topics.js'
import type { RouteConfig } from './routes.js'

// MQTT consumers of the log: `$share/<group>/<filter>`, where <filter> overlaps a route, is a
// member of the log's shared group <group> (src/log/shared/). The broker side
// (src/broker/share-subscriptions.ts) keeps aedes out of it; this side decides what each member
// gets. The gateway composes the two.
//
// - The group: <group> itself. It is created at the first such SUBSCRIBE (the streams of the
//   routes that overlap <filter>, every other setting at its default), or used as it is when it
//   exists (made with PUT /api/v1/shared-groups/<group>, say). A <filter> that overlaps no route is
//   a plain MQTT subscription, aedes's as before.
// - Dispatch: one loop per group with members on this broker. It takes the members in turn (round
//   robin), skipping any with `window` records unacknowledged, and fetches for the one it took
//   (each member is its own consumer of the group, one per connection): at most its free window,
//   waiting up to pollMs for records. So each record goes to one member, and no member gets more
//   than `window` unacknowledged records.
// - A record goes out on its topic; one without (produced over HTTP) on `<stream>/<key>`, or
//   `<stream>` when it has no key or the key is not a valid topic level. It is matched against the
//   member's <filter> and the ACL's delivery check:
//     - the member matches and may receive it: sent, at the member's granted QoS (0 or 1);
//     - no member of the group here has a filter that matches it: acknowledged without delivery
//       (the group's streams carry topics the members did not subscribe to);
//     - another member matches and may receive it: released at once for that one (this counts as
//       a delivery of the record);
//     - members match but none may receive it: rejected to the dead-letter stream, with the reason.
// - The ack: the member's PUBACK (QoS 1) or the write (QoS 0). Acks of one turn go to the group
//   together. The group's own rules do the rest unchanged: a record not acknowledged within
//   ackWaitMs is handed out again after the backoff (and the member's window is freed then), up to
//   maxDeliveries, then dead-lettered.
// - A member that leaves (UNSUBSCRIBE, disconnect) is released: what it held is available again at
//   once, for the other members (or its next connection).

const DEFAULT_WINDOW = 32
const DEFAULT_POLL_MS = 5_000
/** How long a loop waits before trying again after a failed fetch. */
const RETRY_MS = 1_000

export interface LogSharesOptions {
  /** Records a member holds unacknowledged at most (default 32). */
  window?: number
  /** How long one fetch waits for records (default 5 s); a member leaving ends it sooner. */
  pollMs?: number
  logger?: Pick<Logger, 'warn' | 'debug'>
}

interface Member {
  readonly member: ShareMember
  /** The group's consumer name of this member (one per subscription and connection). */
  readonly consumer: string
  inFlight: number
  left: boolean
  readonly stop: AbortController
}

interface GroupLoop {
  readonly name: string
  members: Member[]
  /** Round-robin position. */
  turn: number
  running: boolean
  /** Ends the loop's wait for room (an ack, a member joining or leaving). */
  wake: () => void
}

/** The topic a record goes out on (also what <filter> and the ACL judge). */
export function deliveryTopic(record: Pick<LogRecord, 'topic' | 'stream' | 'key'>): string {
  if (record.topic !== null) return record.topic
  if (record.key !== null) {
    const topic = `${record.stream}/${record.key}`
    if (topicNameProblem(topic) === null) return topic
  }
  return record.stream
}

export class LogShareDispatch implements LogShares {
  readonly #routes: readonly RouteConfig[]
  readonly #window: number
  readonly #pollMs: number
  readonly #groups = new Map<string, GroupLoop>()
  /** Streams of each group as its last claim found them, to create it again if it is deleted. */
  readonly #streams = new Map<string, string[]>()
  readonly #creating = new Map<string, Promise<void>>()
  /** Acks waiting for the end of the turn, by group and consumer. */
  readonly #answers = new Map<string, { group: string; consumer: string; requests: AckRequest[] }>()
  #flushScheduled = false
  /** Calls into the group not awaited by anyone, for close(). */
  readonly #pending = new Set<Promise<unknown>>()
  #consumers = 0
  #closed = false

  constructor(
    routes: readonly RouteConfig[],
    private readonly shared: SharedGroups,
    private readonly options: LogSharesOptions = {}
  ) {
    this.#routes = routes.map((r) => ({ ...r }))
    this.#window = Math.max(1, options.window ?? DEFAULT_WINDOW)
    this.#pollMs = Math.max(1, options.pollMs ?? DEFAULT_POLL_MS)
  }

  /** The streams a `$share/<group>/<filter>` consumes: those of the routes overlapping <filter>. */
  streamsFor(filter: string): string[] {
    return [...new Set(this.#routes.filter((r) => filtersOverlap(r.filter, filter)).map((r) => r.stream))].sort()
  }

  claim(group: string, filter: string): 'plain' | Promise<void> {
    const streams = this.streamsFor(filter)
    if (streams.length === 0) return 'plain'
    if (!isValidName(group)) {
      return Promise.reject(new Error(`ShareName ${JSON.stringify(group)} is no valid shared group name: expected ${NAME_RULE}`))
    }
    this.#streams.set(group, streams)
    return this.#ready(group, streams)
  }

  /** The group exists: as it is, or created with `streams` and the defaults. */
  #ready(group: string, streams: string[]): Promise<void> {
    if (this.shared.list().includes(group)) return Promise.resolve()
    let creating = this.#creating.get(group)
    if (!creating) {
      creating = this.shared
        .put(group, { streams })
        .then(() => undefined)
        .finally(() => this.#creating.delete(group))
      this.#creating.set(group, creating)
    }
    return creating
  }

  join(member: ShareMember): ShareMembership {
    if (this.#closed) return { leave: () => {} }
    let g = this.#groups.get(member.group)
    if (!g) {
      g = { name: member.group, members: [], turn: 0, running: false, wake: () => {} }
      this.#groups.set(g.name, g)
    }
    const m: Member = { member, consumer: `mqtt:${member.clientId}:${++this.#consumers}`, inFlight: 0, left: false, stop: new AbortController() }
    g.members.push(m)
    if (g.running) g.wake()
    else void this.#run(g)
    const group = g
    return { leave: () => this.#leave(group, m) }
  }

  #leave(g: GroupLoop, m: Member): void {
    if (m.left) return
    m.left = true
    m.stop.abort()
    g.members = g.members.filter((x) => x !== m)
    // its acks first, then the release: the group applies them in this order
    this.#flush(`${g.name}\u0000${m.consumer}`)
    this.#track(this.shared.release(g.name, m.consumer))
    g.wake()
  }

  async #run(g: GroupLoop): Promise<void> {
    g.running = true
    try {
      while (!this.#closed && g.members.length > 0) {
        const m = this.#next(g)
        if (!m) {
          await this.#pause(g, this.#pollMs)
          continue
        }
        let records: SharedRecord[]
        try {
          records = await this.shared.fetch(g.name, {
            consumer: m.consumer,
            maxRecords: this.#window - m.inFlight,
            waitMs: this.#pollMs,
            signal: m.stop.signal
          })
        } catch (err) {
          await this.#failed(g, err)
          continue
        }
        if (m.left || this.closed) {
          // fetched as it left: what the fetch locked to it is free again at once
          if (records.length > 0) this.#track(this.shared.release(g.name, m.consumer))
          continue
        }
        for (const r of records) this.#handle(g, m, r)
      }
    } finally {
      g.running = false
      if (g.members.length === 0 && this.#groups.get(g.name) === g) this.#groups.delete(g.name)
    }
  }

  /**
   * The next member in turn with at least half its window free. Refilling at half rather than at
   * every PUBACK keeps fetches large: each fetch and its acks cost a group commit whatever their
   * size (bench share-mqtt: 14 records a fetch on average, 607 of 1,421 fetches of one record).
   */
  #next(g: GroupLoop): Member | undefined {
    const n = g.members.length
    const refillAt = Math.floor(this.#window / 2)
    for (let i = 0; i < n; i++) {
      const m = g.members[(g.turn + i) % n]
      if (m && !m.left && m.inFlight <= refillAt) {
        g.turn = (g.turn + i + 1) % n
        return m
      }
    }
    return undefined
  }

  /** Waits up to `ms` for a change (an ack, a join, a leave, close). */
  #pause(g: GroupLoop, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done(): void {
        clearTimeout(timer)
        g.wake = () => {}
        resolve()
      }
      g.wake = done
    })
  }

  async #failed(g: GroupLoop, err: unknown): Promise<void> {
    if (err instanceof ShareError && err.code === 'UNKNOWN_GROUP') {
      // deleted (over HTTP) while members are subscribed: the subscriptions make it again
      const streams = this.#streams.get(g.name)
      this.options.logger?.warn({ group: g.name, streams }, 'shared group deleted while MQTT members are subscribed: created again')
      if (streams) {
        try {
          await this.#ready(g.name, streams)
          return
        } catch (e) {
          err = e
        }
      }
    }
    if (this.#closed) return
    this.options.logger?.warn({ group: g.name, err }, 'shared group fetch for MQTT members failed; trying again')
    await this.#pause(g, RETRY_MS)
  }

  #handle(g: GroupLoop, m: Member, r: SharedRecord): void {
    const topic = deliveryTopic(r)
    if (matches(m.member.filter, topic) && m.member.mayReceive(topic)) {
      void this.#deliver(g, m, r, topic)
      return
    }
    const wanting = g.members.filter((o) => !o.left && matches(o.member.filter, topic))
    if (wanting.length === 0) this.#answer(g.name, m.consumer, r, { action: 'ack' })
    else if (wanting.some((o) => o !== m && o.member.mayReceive(topic))) this.#answer(g.name, m.consumer, r, { action: 'nack', delayMs: 0 })
    else this.#answer(g.name, m.consumer, r, { action: 'reject', error: `no member of shared group "${g.name}" may receive topic ${JSON.stringify(topic)}` })
  }

  async #deliver(g: GroupLoop, m: Member, r: SharedRecord, topic: string): Promise<void> {
    m.inFlight++
    // the lock's end frees the window: the group hands the record out again (a late PUBACK is ignored)
    const lock = new AbortController()
    const timer = setTimeout(() => lock.abort(), Math.max(0, r.lockedUntil - Date.now()))
    let outcome: SendOutcome
    try {
      outcome = await m.member.send({ topic, payload: r.value }, lock.signal)
    } catch (err) {
      this.options.logger?.warn({ group: g.name, clientId: m.member.clientId, err }, 'delivery to a shared group member failed')
      outcome = 'gone'
    } finally {
      clearTimeout(timer)
      m.inFlight--
      g.wake()
    }
    switch (outcome) {
      case 'acked':
        this.#answer(g.name, m.consumer, r, { action: 'ack' })
        break
      case 'denied':
        // the ACL changed since the record was handed to this member: the group decides again
        this.#answer(g.name, m.consumer, r, { action: 'nack', delayMs: 0 })
        break
      case 'gone':
        // a member that left was released with everything it held
        if (!m.left) this.#answer(g.name, m.consumer, r, { action: 'nack', delayMs: 0 })
        break
      case 'cancelled':
        break
    }
  }

  #answer(group: string, consumer: string, r: SharedRecord, action: Pick<AckRequest, 'action' | 'delayMs' | 'error'>): void {
    const key = `${group}\u0000${consumer}`
    let batch = this.#answers.get(key)
    if (!batch) this.#answers.set(key, (batch = { group, consumer, requests: [] }))
    batch.requests.push({ stream: r.stream, partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, ...action })
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => {
        this.#flushScheduled = false
        for (const k of [...this.#answers.keys()]) this.#flush(k)
      })
    }
  }

  #flush(key: string): void {
    const batch = this.#answers.get(key)
    if (!batch) return
    this.#answers.delete(key)
    const { group, consumer, requests } = batch
    this.#track(
      this.shared.acknowledge(group, consumer, requests).then((results) => {
        const lost = results.filter((x) => !x.ok).length
        // at least once: the lock ended first, the record is (or was) handed out again
        if (lost > 0) this.options.logger?.debug({ group, consumer, lost }, 'acks of shared group records whose lock was lost')
      })
    )
  }

  #track(p: Promise<unknown>): void {
    const tracked = p.then(
      () => undefined,
      (err: unknown) => {
        if (!(err instanceof ShareError && err.code === 'UNKNOWN_GROUP')) this.options.logger?.warn({ err }, 'shared group update for MQTT members failed')
      }
    )
    this.#pending.add(tracked)
    void tracked.finally(() => this.#pending.delete(tracked))
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Stops every loop; resolves once the acks and releases under way are written. */
  async close(): Promise<void> {
    this.#closed = true
    for (const g of this.#groups.values()) {
      for (const m of g.members) m.stop.abort()
      g.wake()
    }
    for (const k of [...this.#answers.keys()]) this.#flush(k)
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
  }
}
