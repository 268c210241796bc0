import type { BrokerCounters } from '../broker/counters.js'
import type { BrokerHook, PublishClaim, PublishContext, PublishRefusal } from '../broker/hooks.js'
import { DelayedError, type DelayedQueue } from './queue.js'
import { isDelayedTopic, parseDelayedTopic, MAX_DELAY_SECONDS } from './topic.js'

// `$delayed/<seconds>/<topic>` as a broker hook. It claims such a publish before authorize, so the
// ACL, `$SYS` rules and quotas judge `<topic>`, the publish it will be; once they accept it, the
// message is stored in the delayed queue, and the broker acknowledges it when that write is
// durable, without publishing it now. At its due time the queue publishes it to `<topic>`.
//
// Refused (the connection is closed, nothing is acknowledged, as for a publish to $SYS):
// - a malformed delayed topic (counted as delayed-invalid): bad or too long a delay, no topic,
//   an invalid target topic;
// - a publish past delayed-max-messages (delayed-full): not acknowledged, so a client with a
//   session sends it again when it reconnects; an acknowledged message must have been stored.
// A will cannot be delayed: a will to `$delayed/` is refused at CONNECT (CONNACK 5).

const noop = (): void => {}

export class DelayedPublishHook implements BrokerHook {
  readonly name = 'delayed'
  readonly stage = 'admit'
  private readonly maxDelaySeconds: number

  constructor(
    private readonly queue: DelayedQueue,
    private readonly counters: BrokerCounters,
    private readonly now: () => number = Date.now
  ) {
    this.maxDelaySeconds = Math.min(MAX_DELAY_SECONDS, Math.floor(queue.maxDelayMs / 1000))
  }

  readonly claim = (publish: PublishContext): PublishClaim | PublishRefusal | undefined => {
    if (!isDelayedTopic(publish.topic)) return undefined
    if (publish.origin === 'will') return { reason: 'a will cannot be delayed' }
    const parsed = parseDelayedTopic(publish.topic, this.maxDelaySeconds)
    if (!parsed.ok) {
      this.counters.count('delayed-invalid', { clientId: publish.clientId, topic: publish.topic.slice(0, 200), problem: parsed.problem })
      return { reason: `${JSON.stringify(publish.topic.slice(0, 200))}: ${parsed.problem}` }
    }
    const target: PublishContext = { ...publish, topic: parsed.topic }
    const dueAt = this.now() + parsed.delaySeconds * 1000
    return {
      publish: target,
      // a QoS 2 resend in the same read as its first copy: that one is stored, answer PUBREC only
      keep: () => (publish.duplicate ? Promise.resolve() : this.keep(target, dueAt))
    }
  }

  private keep(target: PublishContext, dueAt: number): Promise<void> {
    const { topic, payload, qos, retain, clientId } = target
    return this.queue.schedule([{ dueAt, entry: { kind: 'message', topic, payload, qos, retain, clientId } }]).then(noop, (err: unknown) => {
      if (err instanceof DelayedError) {
        this.counters.count('delayed-full', { clientId, topic, limit: err.details.limit })
      }
      throw err
    })
  }
}
