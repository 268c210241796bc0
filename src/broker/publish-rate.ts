// publish-rate / publish-byte-rate: a token bucket per client, in messages and in payload bytes,
// each refilled continuously and holding at most one second of its rate. A publish is never
// dropped or refused for going over: it is held (its PUBACK with it) until the buckets are back
// at zero, and aedes reads nothing more from that client until every packet of the socket read
// it is handling is done. So the client's TCP connection fills up and slows the client down;
// nothing waits on the broker's side but that client.

interface Bucket {
  messages: number
  bytes: number
  at: number
}

export interface PublishRateOptions {
  publishRate: number
  publishByteRate: number
}

export class PublishRate<C extends object> {
  private readonly buckets = new WeakMap<C, Bucket>()

  constructor(
    private readonly options: PublishRateOptions,
    private readonly now: () => number = Date.now
  ) {}

  get enabled(): boolean {
    return this.options.publishRate > 0 || this.options.publishByteRate > 0
  }

  /** Takes one publish of `bytes`; returns how long (ms) to hold it, 0 when within the rate. */
  take(client: C, bytes: number): number {
    const { publishRate, publishByteRate } = this.options
    const now = this.now()
    let b = this.buckets.get(client)
    if (!b) this.buckets.set(client, (b = { messages: publishRate, bytes: publishByteRate, at: now }))
    const elapsed = (now - b.at) / 1000
    b.at = now
    let wait = 0
    if (publishRate > 0) {
      b.messages = Math.min(publishRate, b.messages + elapsed * publishRate) - 1
      if (b.messages < 0) wait = Math.max(wait, (-b.messages / publishRate) * 1000)
    }
    if (publishByteRate > 0) {
      b.bytes = Math.min(publishByteRate, b.bytes + elapsed * publishByteRate) - bytes
      if (b.bytes < 0) wait = Math.max(wait, (-b.bytes / publishByteRate) * 1000)
    }
    return Math.ceil(wait)
  }
}
