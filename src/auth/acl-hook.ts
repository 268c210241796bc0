import type { BrokerHook, Principal, PublishContext, PublishRefusal } from '../broker/hooks.js'
import { aclFromGrants, type Acl, type ClientAcl } from './acl.js'

// The ACL as a broker hook (authorize stage): PUBLISH (denied: acknowledged and dropped, as
// mosquitto does), SUBSCRIBE (0x80 for a filter that can reach nothing readable), each delivery
// (live, queued and retained), and wills at CONNECT. A client whose token carries topic grants is
// held to those instead of the file. Without an ACL file, everything is allowed to everyone else.

const ALLOW_ALL: ClientAcl = { canPublish: () => true, canReceive: () => true, canSubscribe: () => true }

interface Compiled {
  generation: number
  acl: ClientAcl
}

export class AclHook implements BrokerHook {
  readonly name = 'acl'
  readonly stage = 'authorize'
  #acl: Acl | null
  #generation = 0
  /** Each client's rules, compiled once per connection (and again after a reload). */
  readonly #compiled = new WeakMap<Principal, Compiled>()

  constructor(acl: Acl | null) {
    this.#acl = acl
  }

  /** Takes the rules of a reloaded file: every client's rules are compiled again on next use. */
  replace(acl: Acl | null): void {
    this.#acl = acl
    this.#generation++
  }

  get acl(): Acl | null {
    return this.#acl
  }

  forPrincipal(principal: Principal): ClientAcl {
    const cached = this.#compiled.get(principal)
    if (cached?.generation === this.#generation) return cached.acl
    const acl = principal.grants !== null ? aclFromGrants(principal.grants) : (this.#acl?.forClient(principal.clientId, principal.username) ?? ALLOW_ALL)
    this.#compiled.set(principal, { generation: this.#generation, acl })
    return acl
  }

  authorizePublish = (publish: PublishContext): PublishRefusal | undefined => {
    // the broker's own publishes, replays and wills stored by an earlier run have no principal
    if (publish.principal === null || this.forPrincipal(publish.principal).canPublish(publish.topic)) return undefined
    return { reason: `${describe(publish.principal)} may not publish to ${JSON.stringify(publish.topic)}`, drop: true }
  }

  authorizeSubscribe = (principal: Principal, filter: string): boolean => this.forPrincipal(principal).canSubscribe(filter)

  authorizeDelivery = (principal: Principal, topic: string): boolean => this.forPrincipal(principal).canReceive(topic)
}

function describe(p: Principal): string {
  return p.username === null ? `anonymous client ${JSON.stringify(p.clientId)}` : `user ${JSON.stringify(p.username)}`
}
