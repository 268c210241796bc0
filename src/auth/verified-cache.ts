import { createHmac, randomBytes } from 'node:crypto'

// Credentials that passed a scrypt check recently, so a device that reconnects every few seconds
// (or an API client sending Basic auth on each request) costs one scrypt per `ttlMs`, not one per
// attempt. Entries are HMACs under a key made at start: the cache holds nothing that helps
// guess a password. Keyed by the stored hash too, so a changed password invalidates at once.

export class VerifiedCache {
  readonly #key = randomBytes(32)
  readonly #entries = new Map<string, number>()

  constructor(
    private readonly max = 10_000,
    private readonly ttlMs = 10 * 60_000,
    private readonly now: () => number = Date.now
  ) {}

  #id(parts: ReadonlyArray<string | Buffer>): string {
    const h = createHmac('sha256', this.#key)
    for (const p of parts) h.update(p).update('\u0000')
    return h.digest('base64')
  }

  has(...parts: Array<string | Buffer>): boolean {
    const id = this.#id(parts)
    const until = this.#entries.get(id)
    if (until === undefined) return false
    if (until < this.now()) {
      this.#entries.delete(id)
      return false
    }
    return true
  }

  add(...parts: Array<string | Buffer>): void {
    const id = this.#id(parts)
    this.#entries.delete(id)
    this.#entries.set(id, this.now() + this.ttlMs)
    if (this.#entries.size > this.max) {
      const oldest = this.#entries.keys().next()
      if (!oldest.done) this.#entries.delete(oldest.value)
    }
  }

  clear(): void {
    this.#entries.clear()
  }
}
