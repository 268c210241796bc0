import type { Logger } from 'pino'

// What the broker refused or dropped, by reason: counted (for metrics and $SYS) and logged at
// most once per reason every 10 s with the count since, so a flood cannot flood the log too.

export type DropReason =
  | 'packet-too-large'
  | 'malformed-length'
  | 'packet-timeout'
  | 'protocol-violation'
  | 'connections-per-address'
  | 'outgoing-full'
  | 'stuck-client'
  | 'queue-full'
  | 'subscription-limit'
  | 'publish-refused'
  | 'connect-refused'
  | 'publish-throttled'
  | 'login-failed'
  | 'login-throttled'
  | 'publish-denied'
  | 'subscribe-denied'
  | 'delivery-denied'
  | 'will-denied'
  | 'credential-expired'
  /** a `$delayed/` publish with a bad delay or topic (src/delayed/hook.ts) */
  | 'delayed-invalid'
  /** a `$delayed/` publish past delayed-max-messages */
  | 'delayed-full'
  | 'store-backpressure'

const LOG_EVERY_MS = 10_000

export class BrokerCounters {
  readonly dropped = new Map<DropReason, number>()
  /** Packets and bytes the packet guard has read from every connection (src/broker/stats.ts). */
  readonly traffic = { packetsIn: 0, bytesIn: 0 }
  private readonly lastLog = new Map<DropReason, { at: number; count: number }>()

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = Date.now
  ) {}

  /** Counts one event; logs it (with context) unless the reason was logged in the last 10 s. */
  count(reason: DropReason, context: Record<string, unknown> = {}, n = 1): void {
    const total = (this.dropped.get(reason) ?? 0) + n
    this.dropped.set(reason, total)
    const last = this.lastLog.get(reason)
    const now = this.now()
    if (last && now - last.at < LOG_EVERY_MS) {
      last.count += n
      return
    }
    this.logger.warn({ reason, ...context, since: last ? last.count : 0, total }, 'refused')
    this.lastLog.set(reason, { at: now, count: 0 })
  }

  get(reason: DropReason): number {
    return this.dropped.get(reason) ?? 0
  }
}
