import type { Client } from 'aedes'
import type { AuthDecision, Principal } from './hooks.js'
import { clientCertificateCn } from './listeners.js'

// Who each connected client is (hooks.ts `Principal`), kept on aedes's client object from the
// CONNECT that authenticated it until it disconnects: the ACL asks for it on every publish,
// subscription and delivery. Also the two ways a client is put out for who it is: its credential
// expires (a JWT's exp), or a reload takes its user away.

const PRINCIPAL = Symbol('principal')
type Identified = Client & { [PRINCIPAL]?: Principal }

/** The verified TLS client certificate's subject CN, if the connection has one (listeners.ts). */
export function certificateName(client: Client): string | undefined {
  return clientCertificateCn(client.conn, client.req) ?? undefined
}

/** The principal of a connected client, if it authenticated (admin API: its user name). */
export function principalOf(client: Client): Principal | null {
  return (client as Identified)[PRINCIPAL] ?? null
}

export class Principals {
  readonly #clients = new Map<Identified, NodeJS.Timeout | null>()

  constructor(private readonly onExpired: (client: Client, principal: Principal) => void) {}

  /** Makes the client's principal from the decision that accepted it. */
  attach(client: Client, decision: AuthDecision & { allow: true }): Principal {
    const principal: Principal = {
      clientId: client.id,
      username: decision.username ?? null,
      method: decision.method ?? 'anonymous',
      expiresAt: decision.expiresAt ?? null,
      grants: decision.grants ?? null
    }
    const identified = client as Identified
    identified[PRINCIPAL] = principal
    let timer: NodeJS.Timeout | null = null
    if (principal.expiresAt !== null) {
      // setTimeout holds at most 2^31-1 ms (~24.8 days); a later expiry is re-armed then
      const arm = (): void => {
        const left = (principal.expiresAt ?? 0) - Date.now()
        timer = setTimeout(left > 2 ** 31 - 1 ? arm : () => this.onExpired(client, principal), Math.min(Math.max(left, 0), 2 ** 31 - 1))
        timer.unref()
        this.#clients.set(identified, timer)
      }
      arm()
    }
    this.#clients.set(identified, timer)
    // not clientDisconnect: a client can close between authentication and registration
    client.conn.once('close', () => this.detach(client))
    return principal
  }

  of(client: Client | null | undefined): Principal | null {
    const identified: Identified | null | undefined = client
    return identified?.[PRINCIPAL] ?? null
  }

  detach(client: Client): void {
    const identified = client as Identified
    const timer = this.#clients.get(identified)
    if (timer) clearTimeout(timer)
    this.#clients.delete(identified)
  }

  /** Every connected client whose principal `match` accepts. */
  *matching(match: (principal: Principal) => boolean): Generator<Client> {
    for (const client of this.#clients.keys()) {
      const principal = client[PRINCIPAL]
      if (principal && match(principal)) yield client
    }
  }
}
