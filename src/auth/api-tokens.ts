import { randomBytes } from 'node:crypto'
import { hashPassword, verifyPassword } from './password-file.js'
import { VerifiedCache } from './verified-cache.js'

// HTTP API bearer tokens: `culex_<name>_<secret>`. The name says which entry of `api-tokens` to
// check, so a request costs one scrypt (and none while the token is in the verified cache); the
// config holds only the scrypt hash of each token. The name is the token's user in the ACL file.

const TOKEN = /^culex_([a-z0-9][a-z0-9-]{0,63})_([A-Za-z0-9_-]{43})$/

export async function newApiToken(name: string): Promise<{ token: string; hash: string }> {
  const token = `culex_${name}_${randomBytes(32).toString('base64url')}`
  return { token, hash: await hashPassword(token) }
}

export class ApiTokens {
  readonly #verified = new VerifiedCache()

  constructor(private readonly hashes: Readonly<Record<string, string>>) {}

  get size(): number {
    return Object.keys(this.hashes).length
  }

  /** The token's name, or null when it is not a valid token. */
  async verify(token: string): Promise<string | null> {
    const m = TOKEN.exec(token)
    const name = m?.[1]
    const hash = name === undefined ? undefined : this.hashes[name]
    if (name === undefined || hash === undefined) return null
    if (this.#verified.has(token, hash)) return name
    if (!(await verifyPassword(token, hash))) return null
    this.#verified.add(token, hash)
    return name
  }
}
