import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import type { Aedes, Client, Subscription } from 'aedes'
import { parseSharedSubscription } from '../mqtt/topics.js'

// `$share/<group>/<filter>` subscriptions served from the log: the aedes side. The broker does not
// know the log; it asks a `LogShares` (the gateway gives one, made of the routes and the log's
// shared groups, src/routing/log-shares.ts) whether a shared subscription is the log's, and then
// hands that side a `ShareMember` per subscribed client to deliver records through.
//
// How such a subscription lives in aedes:
// - SUBSCRIBE (and the restore of a persistent session): the subscription is authorized as any
//   other, then claimed here. aedes grants QoS 0 or 1 (a QoS 2 request gets 1: the group redelivers
//   at least once, there is no exactly-once hop) and stores it with the session as usual, but does
//   not add it to its topic tree (a source patch of subscribe.js, source-patches.ts): aedes never
//   delivers anything to it, neither live nor from the offline queue. The log is its only source.
// - The member starts receiving once the client has its SUBACK (or, for a restored session, its
//   CONNACK).
// - Deliveries are written here, with a packet id from the client's own counter (aedes's), never
//   through the persistence: nothing of them is in the session's offline queue, so a reconnect
//   (clean=false) gets no second copy from aedes; what the client did not acknowledge is released
//   to the group when it goes, and the group delivers it again (to any member, with a new id).
// - PUBACK: a source patch of puback.js asks `puback` first; an id of a log delivery is answered
//   here and never reaches aedes's offline queue.
// - UNSUBSCRIBE, a disconnect: the member leaves; what it held is released.

/** One record on its way to a member. */
export interface ShareMessage {
  topic: string
  payload: Buffer
}

/**
 * What became of a message handed to `ShareMember.send`:
 * - acked: QoS 1: the client's PUBACK came; QoS 0: it was written to the connection;
 * - denied: the client may not receive this topic (the ACL's delivery check); nothing was sent;
 * - gone: the client left (or unsubscribed) before acknowledging it;
 * - cancelled: the caller's signal ended the wait (the record's lock expired); a late PUBACK is ignored.
 */
export type SendOutcome = 'acked' | 'denied' | 'gone' | 'cancelled'

/** A client's subscription to a log-backed shared group, as the log side sees it. */
export interface ShareMember {
  readonly group: string
  readonly filter: string
  readonly clientId: string
  /** The QoS granted: 0 (acknowledged once written) or 1 (acknowledged by PUBACK). Changes on a new SUBSCRIBE of the same filter. */
  readonly qos: 0 | 1
  /** Whether the ACL lets this client receive a message on `topic` (the check aedes applies to every delivery). */
  mayReceive(topic: string): boolean
  /** Sends one PUBLISH (not retained, DUP 0) and resolves when it is acknowledged or cannot be any more. */
  send(message: ShareMessage, signal?: AbortSignal): Promise<SendOutcome>
}

export interface ShareMembership {
  /** The member is gone (UNSUBSCRIBE, disconnect): what it holds goes back to the group. */
  leave(): void
}

/** The log side of `$share/` subscriptions; the gateway implements it (the broker does not know the log). */
export interface LogShares {
  /**
   * Asked for every `$share/<group>/<filter>` the client may subscribe to: 'plain' leaves it to aedes
   * as before; otherwise the promise resolves once the group is ready (created if it did not exist),
   * and rejects when it cannot be (SUBACK 0x80).
   */
  claim(group: string, filter: string): 'plain' | Promise<void>
  /** A member starts receiving. */
  join(member: ShareMember): ShareMembership
}

export interface ShareSubscriptionsOptions {
  /** The ACL's delivery check for this client (true when no hook filters deliveries). */
  mayReceive: (client: Client, topic: string) => boolean
  /** A delivery the ACL refused (for the counters). */
  onDenied: (client: Client, topic: string) => void
  /** Bytes buffered towards a client above which a delivery waits for the socket to drain (max-outgoing-bytes). */
  maxOutgoingBytes: number
  onError: (err: unknown, context: Record<string, unknown>) => void
}

/** Marks a subscription aedes must not add to its topic tree (the source patch of subscribe.js looks for it). */
export const LOG_SHARE = Symbol.for('culex.logShare')

type Write = (client: Client, packet: object, done: (err: Error | null) => void) => void

/** aedes's lib/write.js, the module aedes itself uses (with Culex's outgoing-guard patch). */
async function aedesWrite(): Promise<Write> {
  const aedesMain = pathToFileURL(createRequire(import.meta.url).resolve('aedes'))
  const module = (await import(new URL('./lib/write.js', aedesMain).href)) as { default: Write }
  return module.default
}

interface Waiting {
  filter: string
  resolve: (outcome: SendOutcome) => void
}

interface Held {
  group: string
  filter: string
  qos: 0 | 1
  membership: ShareMembership | null
}

interface ClientShares {
  /** by the subscription's full filter (`$share/...`) */
  held: Map<string, Held>
  /** QoS 1 deliveries awaiting PUBACK, by packet id */
  waiting: Map<number, Waiting>
  closed: boolean
}

/** Whether the subscription is still the one a delivery was for (not unsubscribed, the client not gone). */
function current(state: ClientShares, filter: string, held: Held): boolean {
  return !state.closed && state.held.get(filter) === held
}

type WithNextId = Client & { _nextId: number; connackSent?: boolean }

export class ShareSubscriptions {
  readonly #clients = new Map<Client, ClientShares>()

  private constructor(
    private readonly shares: LogShares,
    private readonly options: ShareSubscriptionsOptions,
    private readonly write: Write
  ) {}

  static async create(shares: LogShares, options: ShareSubscriptionsOptions): Promise<ShareSubscriptions> {
    return new ShareSubscriptions(shares, options, await aedesWrite())
  }

  /** Wires the aedes events: PUBACK (through the patched handler), SUBACK, CONNACK, UNSUBSCRIBE, disconnect. */
  install(aedes: Aedes): void {
    Object.assign(aedes, { culexPuback: (client: Client, packet: { cmd?: string; messageId?: number }) => this.#puback(client, packet) })
    aedes.on('subscribe', (subs, client) => {
      for (const sub of subs) this.#start(client, sub.topic, (client as WithNextId).connackSent === true)
    })
    aedes.on('connackSent', (_packet, client) => {
      // a restored persistent session: its subscriptions were authorized before CONNACK (aedes
      // emits this once CONNACK is written, just before it sets connackSent)
      const state = this.#clients.get(client)
      if (state) for (const topic of state.held.keys()) this.#start(client, topic, true)
    })
    aedes.on('unsubscribe', (topics, client) => {
      for (const topic of topics) this.#stop(client, topic)
    })
    aedes.on('clientDisconnect', (client) => this.#closed(client))
  }

  /**
   * Claims a subscription (after every other check accepted it): null when it is no log-backed
   * shared subscription (aedes keeps it), else the subscription aedes is to grant (QoS 0 or 1,
   * marked LOG_SHARE), or null in the promise when the group cannot be made ready (SUBACK 0x80).
   */
  subscribe(client: Client, sub: Subscription): Promise<Subscription | null> | null {
    let parsed
    try {
      parsed = parseSharedSubscription(sub.topic)
    } catch {
      return null
    }
    if (parsed === null) return null
    const claim = this.shares.claim(parsed.group, parsed.filter)
    if (claim === 'plain') return null
    const { group, filter } = parsed
    const qos: 0 | 1 = sub.qos === 0 ? 0 : 1
    return claim.then(
      () => {
        const state = this.#state(client)
        if (state.closed) return null
        const held = state.held.get(sub.topic)
        if (held)
          held.qos = qos // the same filter again: the new QoS, the membership stays
        else state.held.set(sub.topic, { group, filter, qos, membership: null })
        return Object.assign({ ...sub, qos }, { [LOG_SHARE]: true })
      },
      (err: unknown) => {
        this.options.onError(err, { clientId: client.id, filter: sub.topic })
        return null
      }
    )
  }

  #state(client: Client): ClientShares {
    let state = this.#clients.get(client)
    if (!state) {
      state = { held: new Map(), waiting: new Map(), closed: false }
      this.#clients.set(client, state)
      // not only clientDisconnect: a client can close between its restored subscriptions and registration
      client.conn.once('close', () => this.#closed(client))
    }
    return state
  }

  /** Starts a claimed subscription's deliveries, once its client has its CONNACK (and SUBACK). */
  #start(client: Client, topic: string, connected: boolean): void {
    const state = this.#clients.get(client)
    const held = state?.held.get(topic)
    if (!connected || !state || !held || held.membership !== null || state.closed) return
    held.membership = this.shares.join(this.#member(client, state, topic, held))
  }

  #member(client: Client, state: ClientShares, topic: string, held: Held): ShareMember {
    return {
      group: held.group,
      filter: held.filter,
      clientId: client.id,
      get qos() {
        return held.qos
      },
      mayReceive: (t) => this.options.mayReceive(client, t),
      send: (message, signal) => this.#send(client, state, topic, held, message, signal)
    }
  }

  async #send(client: Client, state: ClientShares, filter: string, held: Held, message: ShareMessage, signal?: AbortSignal): Promise<SendOutcome> {
    if (!current(state, filter, held)) return 'gone'
    if (!this.options.mayReceive(client, message.topic)) {
      this.options.onDenied(client, message.topic)
      return 'denied'
    }
    // no more than max-outgoing-bytes buffered towards it: the outgoing guard would drop a QoS 0
    // message past that (and count a QoS 1 one against the client); the group's lock waits instead
    if (client.conn.writableLength > this.options.maxOutgoingBytes) {
      const drained = await this.#drained(client, signal)
      if (drained !== 'acked') return drained
      if (!current(state, filter, held)) return 'gone'
    }
    const qos = held.qos
    const packet = {
      cmd: 'publish',
      topic: message.topic,
      payload: message.payload,
      qos,
      retain: false,
      dup: false,
      messageId: undefined as number | undefined
    }
    if (qos === 0) {
      return new Promise((resolve) => this.write(client, packet, (err) => resolve(err ? 'gone' : 'acked')))
    }
    const messageId = this.#nextId(client as WithNextId, state)
    packet.messageId = messageId
    return new Promise<SendOutcome>((resolve) => {
      const finish = (outcome: SendOutcome): void => {
        if (state.waiting.get(messageId)?.resolve !== finish) return
        state.waiting.delete(messageId)
        signal?.removeEventListener('abort', onAbort)
        resolve(outcome)
      }
      const onAbort = (): void => finish('cancelled')
      state.waiting.set(messageId, { filter, resolve: finish })
      if (signal?.aborted) return finish('cancelled')
      signal?.addEventListener('abort', onAbort, { once: true })
      this.write(client, packet, (err) => {
        if (err) finish('gone')
      })
    })
  }

  #drained(client: Client, signal?: AbortSignal): Promise<SendOutcome> {
    return new Promise((resolve) => {
      const conn = client.conn
      const end = (outcome: SendOutcome): void => {
        conn.off('drain', onDrain)
        conn.off('close', onClose)
        signal?.removeEventListener('abort', onAbort)
        resolve(outcome)
      }
      const onDrain = (): void => end('acked')
      const onClose = (): void => end('gone')
      const onAbort = (): void => end('cancelled')
      conn.once('drain', onDrain)
      conn.once('close', onClose)
      signal?.addEventListener('abort', onAbort, { once: true })
      if (signal?.aborted) onAbort()
    })
  }

  /** The client's next packet id (aedes's own counter, so aedes's deliveries and these do not collide), skipping ids awaiting a PUBACK here. */
  #nextId(client: WithNextId, state: ClientShares): number {
    for (;;) {
      const id = client._nextId
      client._nextId = id >= 65535 ? 1 : id + 1
      if (!state.waiting.has(id)) return id
    }
  }

  /** A PUBACK: true when it acknowledges a log delivery (aedes then does nothing with it). */
  #puback(client: Client, packet: { cmd?: string; messageId?: number }): boolean {
    // aedes hands PUBCOMP to the same handler; these deliveries are QoS 1 only
    if (packet.cmd !== 'puback' || packet.messageId === undefined) return false
    const waiting = this.#clients.get(client)?.waiting.get(packet.messageId)
    if (!waiting) return false
    waiting.resolve('acked')
    return true
  }

  #stop(client: Client, topic: string): void {
    const state = this.#clients.get(client)
    const held = state?.held.get(topic)
    if (!state || !held) return
    state.held.delete(topic)
    for (const w of [...state.waiting.values()]) if (w.filter === topic) w.resolve('gone')
    held.membership?.leave()
  }

  #closed(client: Client): void {
    const state = this.#clients.get(client)
    if (!state || state.closed) return
    state.closed = true
    this.#clients.delete(client)
    for (const w of [...state.waiting.values()]) w.resolve('gone')
    for (const held of state.held.values()) held.membership?.leave()
    state.held.clear()
  }
}
