import type { BridgeState, BridgeStatus } from './types.js'

// What a bridge reports about itself (GET /api/v1/bridges): its state, the last error while it
// retries, and counters since the gateway started.

export class BridgeCounters {
  state: BridgeState = 'starting'
  lastError: string | null = null
  lastErrorAt: number | null = null
  #delivered = 0
  #deadLettered = 0
  #retries = 0

  /** A delivery or a connect failed and will be retried. */
  retrying(err: unknown): void {
    this.#retries++
    this.lastError = err instanceof Error ? err.message : String(err)
    this.lastErrorAt = Date.now()
    if (this.state !== 'paused' && this.state !== 'stopped') this.state = 'retrying'
  }

  /** The bridge cannot go on by itself (its own store failed). */
  failed(err: unknown): void {
    this.lastError = err instanceof Error ? err.message : String(err)
    this.lastErrorAt = Date.now()
    if (this.state !== 'paused' && this.state !== 'stopped') this.state = 'retrying'
  }

  /** Something got through: the bridge is healthy again. */
  ok(): void {
    if (this.state === 'paused' || this.state === 'stopped') return
    this.state = 'running'
    this.lastError = null
    this.lastErrorAt = null
  }

  delivered(n: number, deadLettered = 0): void {
    this.#delivered += n
    this.#deadLettered += deadLettered
    if (n > 0) this.ok()
  }

  snapshot(): Pick<BridgeStatus, 'state' | 'lastError' | 'lastErrorAt' | 'delivered' | 'deadLettered' | 'retries'> {
    return {
      state: this.state,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt === null ? null : new Date(this.lastErrorAt).toISOString(),
      delivered: this.#delivered,
      deadLettered: this.#deadLettered,
      retries: this.#retries
    }
  }
}
