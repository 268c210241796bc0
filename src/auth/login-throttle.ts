// Failed logins, per source address: a token bucket that holds `perMinute` failures and refills
// at that rate. While an address has none left, its attempts are refused before any password is
// checked, so guessing is slow and cannot keep the scrypt threads busy. Shared by MQTT CONNECT
// and the HTTP API. Success does not refill the bucket: a botnet with one good account cannot
// use it to reset the count.

/** Addresses tracked at once; beyond, the oldest is forgotten (an attacker with many addresses gets no memory). */
const MAX_ADDRESSES = 100_000

interface Bucket {
  tokens: number
  at: number
}

export class LoginThrottle {
  readonly #buckets = new Map<string, Bucket>()

  constructor(
    /** Failures allowed per minute and address; 0 = no throttle. */
    private readonly perMinute: number,
    private readonly now: () => number = Date.now
  ) {}

  get enabled(): boolean {
    return this.perMinute > 0
  }

  #refilled(address: string): Bucket | undefined {
    const bucket = this.#buckets.get(address)
    if (!bucket) return undefined
    const now = this.now()
    bucket.tokens = Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) * this.perMinute) / 60_000)
    bucket.at = now
    if (bucket.tokens >= this.perMinute) {
      this.#buckets.delete(address)
      return undefined
    }
    return bucket
  }

  /** Whether attempts from this address are refused now; with the ms until the next one is allowed. */
  blocked(address: string | undefined): number {
    if (!this.enabled || address === undefined) return 0
    const bucket = this.#refilled(address)
    if (!bucket || bucket.tokens >= 1) return 0
    return Math.ceil(((1 - bucket.tokens) * 60_000) / this.perMinute)
  }

  failed(address: string | undefined): void {
    if (!this.enabled || address === undefined) return
    const bucket = this.#refilled(address) ?? { tokens: this.perMinute, at: this.now() }
    bucket.tokens = Math.max(0, bucket.tokens - 1)
    this.#buckets.delete(address)
    this.#buckets.set(address, bucket)
    if (this.#buckets.size > MAX_ADDRESSES) {
      const oldest = this.#buckets.keys().next()
      if (!oldest.done) this.#buckets.delete(oldest.value)
    }
  }
}
