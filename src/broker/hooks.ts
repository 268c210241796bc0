// The broker's hook chain: where every concern that acts on a connection or a publish plugs in
// (authentication, ACLs, quotas, the log, metrics, delayed publish). The gateway composes the
// chain; broker.ts wires it into aedes. Nothing here knows aedes: hooks see the neutral shapes
// below, so they survive the move to aedes 2 / MQTT 5.
//
// For every PUBLISH the stages run in this order, written here and nowhere else:
//
//   authenticate (at CONNECT) -> authorize -> quota -> admit -> published -> ack
//
// - authenticate: the first hook with an opinion decides; with none, the client is refused.
// - authorize, quota: synchronous, in the order packets arrive on a connection; the first
//   refusal stops the publish (MQTT 3.1.1 has no negative PUBACK: the connection is closed).
// - admit: synchronous, in wire order, only for publishes every earlier stage accepted. Work
//   started here (the log append) keeps the client's order even though aedes then handles the
//   packets of one socket read concurrently.
//   An admit-stage hook may instead claim a publish to make it later (delayed publish): it is
//   asked before authorize, authorize and quota judge the publish it will become, and it is
//   stored (kept) instead of admitted and published.
// - published: after aedes stored the retained message and queued offline copies, before the
//   QoS 1 PUBACK (ack-order patch) / QoS 2 PUBREC: everything awaited here is durable before the
//   ack. Hooks run concurrently; a failure means no ack.
// Within a stage, hooks run in the order the gateway lists them.

export const STAGES = ['authenticate', 'authorize', 'quota', 'admit', 'observe'] as const
export type Stage = (typeof STAGES)[number]

/** What a client presents at CONNECT. */
export interface ConnectInfo {
  clientId: string
  username: string | undefined
  password: Buffer | undefined
  /** The peer's address, when the transport has one. */
  remoteAddress: string | undefined
  /** The subject CN of the client certificate the TLS handshake verified, if any. */
  certificateName: string | undefined
}

/** CONNACK return codes a refusal may carry (MQTT 3.1.1 §3.2.2.3): identifier rejected, bad credentials, not authorized. */
export type RefusalCode = 2 | 4 | 5

/** How a client proved who it is. */
export type AuthMethod = 'anonymous' | 'password' | 'token' | 'certificate'

/** Topic rights a credential carries itself (a JWT's claims): they take the place of the ACL file's. */
export interface TopicGrants {
  publish: readonly string[]
  subscribe: readonly string[]
}

/** Who a connected client is: made by the broker from the decision of the authenticator that accepted it. */
export interface Principal {
  readonly clientId: string
  /** null for an anonymous client. */
  readonly username: string | null
  readonly method: AuthMethod
  /** When the credential stops being valid (ms since the epoch): the broker disconnects the client then. */
  readonly expiresAt: number | null
  readonly grants: TopicGrants | null
}

export type AuthDecision =
  | { allow: true; method?: AuthMethod; username?: string | null; expiresAt?: number; grants?: TopicGrants }
  /** quiet: counted by the hook that refused (a throttle), not logged once per attempt. */
  | { allow: false; returnCode: RefusalCode; reason: string; quiet?: boolean }

/**
 * Where a publish came from: a client, a will, a replay of the log, the broker itself ($SYS), or a
 * delayed publish made at its due time (src/delayed/; its client id is the original publisher's),
 * or a message an inbound bridge brought in (src/bridges/; client id `bridge:<name>`).
 */
export type PublishOrigin = 'client' | 'will' | 'replay' | 'broker' | 'delayed' | 'bridge'

/** A publish as hooks see it; the same object from authorize to published. */
export interface PublishContext {
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
  readonly retain: boolean
  readonly messageId: number | undefined
  /** The publishing client's id (for a will: its owner's), null for the broker's own. */
  readonly clientId: string | null
  /** Who published: null for the broker's own publishes, replays, and wills stored by an earlier run. */
  readonly principal: Principal | null
  readonly origin: PublishOrigin
  /**
   * A QoS 2 PUBLISH whose packet id already awaits PUBREL (or was admitted in the same read):
   * aedes answers it with PUBREC and does not publish it again, so admitters skip it
   * [MQTT-4.3.3-2].
   */
  readonly duplicate: boolean
  /**
   * The PUBLISH's DUP flag (MQTT 3.1.1 §3.3.1.1): the client says it may have sent this packet
   * before (a QoS 1/2 retransmission after a reconnect). Absent means false.
   */
  readonly dupFlag?: boolean
}

export interface PublishRefusal {
  reason: string
  /**
   * Acknowledge the publish as MQTT 3.1.1 requires and drop it (an ACL refusal, as mosquitto
   * does: 3.1.1 has no negative PUBACK). Otherwise the connection is closed.
   */
  drop?: boolean
}

/**
 * A publish a hook keeps to publish later instead of now (a delayed publish, `$delayed/<s>/<topic>`).
 * Authorize and quota judge `publish`, the publish as it will be made (so the ACL sees the target
 * topic); if they accept it, `keep` stores it. The broker publishes nothing now: it acknowledges
 * the packet once `keep` resolves, and closes the connection if it rejects.
 */
export interface PublishClaim {
  readonly publish: PublishContext
  keep: () => Promise<void>
}

/** What admission made of a claimed publish: acknowledged once `kept` resolves, not published now. */
export interface PublishKept {
  readonly kept: Promise<void>
}

export interface BrokerHook {
  readonly name: string
  readonly stage: Stage
  /** undefined: no opinion, ask the next hook. */
  authenticate?: (connect: ConnectInfo) => Promise<AuthDecision | undefined> | AuthDecision | undefined
  /** A failed CONNECT (a refusal by any authenticator): for throttling and the log. */
  authenticationFailed?: (connect: ConnectInfo, refusal: AuthDecision & { allow: false }) => void
  authorizePublish?: (publish: PublishContext) => PublishRefusal | undefined
  /** May this client subscribe to this filter? false: SUBACK 0x80 for it [MQTT-3.9.3-2]. */
  authorizeSubscribe?: (principal: Principal, filter: string) => boolean
  /** May this client receive this message (a live, queued or retained delivery)? false: not sent to it. */
  authorizeDelivery?: (principal: Principal, topic: string) => boolean
  admit?: (publish: PublishContext) => void
  /**
   * Admit stage, asked before authorize: takes a publish to publish it later (a claim), refuses a
   * malformed one, or has no opinion (undefined). The first hook with an opinion decides.
   */
  claim?: (publish: PublishContext) => PublishClaim | PublishRefusal | undefined
  published?: (publish: PublishContext) => Promise<void> | void
  clientClosed?: (clientId: string) => void
}

const NOBODY_DECIDED: AuthDecision = { allow: false, returnCode: 5, reason: 'no authenticator accepted the client' }

/** The hooks in stage order, one array per method so the hot path skips what is not there. */
export class HookChain {
  readonly hooks: readonly BrokerHook[]
  private readonly authenticators: BrokerHook[]
  private readonly failureObservers: BrokerHook[]
  private readonly authorizers: BrokerHook[]
  private readonly subscribeAuthorizers: BrokerHook[]
  private readonly deliveryFilters: BrokerHook[]
  private readonly admitters: BrokerHook[]
  private readonly claimers: BrokerHook[]
  private readonly publishedHooks: BrokerHook[]
  private readonly closers: BrokerHook[]

  constructor(hooks: readonly BrokerHook[]) {
    const rank = (h: BrokerHook): number => STAGES.indexOf(h.stage)
    // a stable sort: within a stage, the gateway's order
    this.hooks = [...hooks].sort((a, b) => rank(a) - rank(b))
    const names = new Set<string>()
    for (const h of this.hooks) {
      if (names.has(h.name)) throw new Error(`hook "${h.name}" is in the chain twice`)
      names.add(h.name)
      if (h.authenticate && h.stage !== 'authenticate') throw new Error(`hook "${h.name}": authenticate belongs to the authenticate stage`)
      if (h.admit && h.stage !== 'admit') throw new Error(`hook "${h.name}": admit belongs to the admit stage`)
      if (h.claim && h.stage !== 'admit') throw new Error(`hook "${h.name}": claim belongs to the admit stage`)
      if ((h.authorizeSubscribe ?? h.authorizeDelivery) && h.stage !== 'authorize') {
        throw new Error(`hook "${h.name}": subscribe and delivery checks belong to the authorize stage`)
      }
    }
    this.authenticators = this.hooks.filter((h) => h.authenticate)
    this.failureObservers = this.hooks.filter((h) => h.authenticationFailed)
    this.authorizers = this.hooks.filter((h) => h.authorizePublish)
    this.subscribeAuthorizers = this.hooks.filter((h) => h.authorizeSubscribe)
    this.deliveryFilters = this.hooks.filter((h) => h.authorizeDelivery)
    this.admitters = this.hooks.filter((h) => h.admit)
    this.claimers = this.hooks.filter((h) => h.claim)
    this.publishedHooks = this.hooks.filter((h) => h.published)
    this.closers = this.hooks.filter((h) => h.clientClosed)
  }

  async authenticate(connect: ConnectInfo): Promise<AuthDecision> {
    let decision: AuthDecision = NOBODY_DECIDED
    for (const h of this.authenticators) {
      const d = await h.authenticate?.(connect)
      if (d) {
        decision = d
        break
      }
    }
    if (!decision.allow) for (const h of this.failureObservers) h.authenticationFailed?.(connect, decision)
    return decision
  }

  /**
   * The authorize stage alone, for a will at CONNECT: a will the client may not publish is
   * refused then, not when it would fire.
   */
  authorizeWill(will: PublishContext): PublishRefusal | undefined {
    // a will is published by the broker when the client goes: it cannot be kept for later
    for (const h of this.claimers) {
      const claim = h.claim?.(will)
      if (claim) return { reason: `${h.name}: ${'keep' in claim ? 'a will cannot be kept to publish later' : claim.reason}` }
    }
    for (const h of this.authorizers) {
      if (h.stage !== 'authorize') continue
      const refusal = h.authorizePublish?.(will)
      if (refusal) return { reason: `${h.name}: ${refusal.reason}` }
    }
    return undefined
  }

  authorizeSubscribe(principal: Principal, filter: string): boolean {
    for (const h of this.subscribeAuthorizers) if (h.authorizeSubscribe?.(principal, filter) === false) return false
    return true
  }

  /** Whether any hook filters deliveries (if none, the broker installs no per-delivery check). */
  get filtersDeliveries(): boolean {
    return this.deliveryFilters.length > 0
  }

  authorizeDelivery(principal: Principal, topic: string): boolean {
    for (const h of this.deliveryFilters) if (h.authorizeDelivery?.(principal, topic) === false) return false
    return true
  }

  /**
   * Runs authorize and quota, then admit if nothing refused; returns the refusal, if any. A publish
   * a hook claims (claim) is judged as the publish it will be, and kept instead of admitted.
   */
  admit(publish: PublishContext): PublishRefusal | PublishKept | undefined {
    let claimed: PublishClaim | undefined
    for (const h of this.claimers) {
      const claim = h.claim?.(publish)
      if (claim === undefined) continue
      if (!('keep' in claim)) return { ...claim, reason: `${h.name}: ${claim.reason}` }
      claimed = claim
      break
    }
    const judged = claimed?.publish ?? publish
    for (const h of this.authorizers) {
      const refusal = h.authorizePublish?.(judged)
      if (refusal) return { ...refusal, reason: `${h.name}: ${refusal.reason}` }
    }
    if (claimed) return { kept: claimed.keep() }
    for (const h of this.admitters) h.admit?.(publish)
    return undefined
  }

  /** Whether any hook waits for published (if none, the broker acks without a promise). */
  get hasPublished(): boolean {
    return this.publishedHooks.length > 0
  }

  published(publish: PublishContext): Promise<void> {
    if (this.publishedHooks.length === 1) return Promise.resolve(this.publishedHooks[0]?.published?.(publish))
    return Promise.all(this.publishedHooks.map((h) => Promise.resolve(h.published?.(publish)))).then(() => undefined)
  }

  clientClosed(clientId: string): void {
    for (const h of this.closers) h.clientClosed?.(clientId)
  }
}
