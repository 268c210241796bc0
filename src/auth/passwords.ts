import type { AuthDecision, BrokerHook, ConnectInfo } from '../broker/hooks.js'
import { looksLikeJwt } from './jwt.js'
import { UNKNOWN_USER_HASH, verifyPassword } from './password-file.js'
import { VerifiedCache } from './verified-cache.js'

// The password file as an authenticator (MQTT CONNECT) and as the check behind HTTP Basic. An
// unknown user and a wrong password get the same answer (CONNACK 4, "bad user name or password",
// as mosquitto) after the same work: an unknown user is checked against a dummy hash.

export class PasswordCheck {
  #users: ReadonlyMap<string, string>
  readonly #verified = new VerifiedCache()

  constructor(users: ReadonlyMap<string, string>) {
    this.#users = users
  }

  /** Takes the users of a reloaded file. */
  replace(users: ReadonlyMap<string, string>): void {
    this.#users = users
    this.#verified.clear()
  }

  has(username: string): boolean {
    return this.#users.has(username)
  }

  get size(): number {
    return this.#users.size
  }

  async verify(username: string, password: Buffer): Promise<boolean> {
    const hash = this.#users.get(username)
    if (hash === undefined) {
      await verifyPassword(password, UNKNOWN_USER_HASH)
      return false
    }
    if (this.#verified.has(username, password, hash)) return true
    const ok = await verifyPassword(password, hash)
    if (ok) this.#verified.add(username, password, hash)
    return ok
  }
}

export function passwordAuthenticator(check: PasswordCheck, options: { tokensToo: boolean }): BrokerHook {
  return {
    name: 'password-file',
    stage: 'authenticate',
    authenticate: async (connect: ConnectInfo): Promise<AuthDecision | undefined> => {
      // no user name: not ours (anonymous access decides)
      if (connect.username === undefined) return undefined
      const password = connect.password ?? Buffer.alloc(0)
      // a JWT in the password of a user the file does not know: the token authenticator decides
      if (options.tokensToo && !check.has(connect.username) && looksLikeJwt(password)) return undefined
      if (await check.verify(connect.username, password)) return { allow: true, method: 'password', username: connect.username }
      return { allow: false, returnCode: 4, reason: check.has(connect.username) ? 'wrong password' : 'unknown user' }
    }
  }
}
