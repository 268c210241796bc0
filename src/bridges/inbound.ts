import type { Logger } from 'pino'
import { backoffDelay } from '../log/shared/config.js'
import { isDollarTopic, topicNameProblem, type TopicLimits } from '../mqtt/topics.js'
import type { InboundBridgeConfig } from './config.js'
import { BridgeCounters } from './counters.js'
import { abortableSleep, stopped } from './sleep.js'
import { InboundRefused, type BridgeStatus, type InboundMessage, type Source, type SourceContext } from './types.js'

// An inbound bridge: source -> Culex. The source consumes and hands each message to publish,
// which resolves once Culex made it durable; only then does the source ack it, so a crash of
// Culex before that makes the source system deliver it again (at least once). The runner
// reconnects with backoff when the source's connection fails, and pauses and resumes it.

/** Publishes into Culex (the broker's publishBridged), resolving once durable. */
export type BridgePublish = (message: InboundMessage & { clientId: string }) => Promise<void>

export interface InboundOptions {
  publish: BridgePublish
  /** Waits while Culex's store is over its high-water mark (backpressure reaches the source). */
  whenWritable?: (signal: AbortSignal) => Promise<void>
  /** The broker's topic limits (max-topic-length, max-topic-levels). */
  topicLimits?: TopicLimits
}

export class InboundBridge {
  readonly counters = new BridgeCounters()
  readonly #clientId: string
  #run: AbortController | null = null
  #loop: Promise<void> = Promise.resolve()
  #paused = false

  constructor(
    readonly config: InboundBridgeConfig,
    private readonly source: Source,
    private readonly options: InboundOptions,
    private readonly logger: Logger,
    private readonly random: () => number = Math.random
  ) {
    this.#clientId = `bridge:${config.name}`
  }

  get paused(): boolean {
    return this.#paused
  }

  start(): void {
    if (this.#run) return
    this.#paused = false
    const run = (this.#run = new AbortController())
    this.counters.state = 'starting'
    this.#loop = this.#consume(run.signal)
  }

  async pause(): Promise<void> {
    this.#paused = true
    await this.#halt()
    this.counters.state = 'paused'
  }

  resume(): void {
    if (this.#paused) this.start()
  }

  async stop(): Promise<void> {
    await this.#halt()
    this.counters.state = 'stopped'
  }

  async #halt(): Promise<void> {
    this.#run?.abort()
    this.#run = null
    await this.#loop
  }

  status(): Promise<BridgeStatus> {
    return Promise.resolve({ name: this.config.name, kind: this.config.kind, direction: 'in', streams: [], ...this.counters.snapshot(), lag: null })
  }

  async #consume(signal: AbortSignal): Promise<void> {
    let attempt = 0
    const ctx: SourceContext = {
      signal,
      logger: this.logger,
      connected: () => {
        attempt = 0
        this.counters.ok()
      },
      publish: (message) => this.#publish(message, signal)
    }
    while (!signal.aborted) {
      try {
        await this.source.run(ctx)
        if (stopped(signal)) return
        throw new Error('the source stopped consuming')
      } catch (err) {
        if (stopped(signal)) return
        attempt++
        this.counters.retrying(err)
        const wait = backoffDelay(this.config.retry.backoff, attempt, this.random)
        this.logger.warn({ err: this.counters.lastError, attempt, waitMs: wait }, 'bridge source failed; reconnecting')
        await abortableSleep(wait, signal)
      }
    }
  }

  async #publish(message: InboundMessage, signal: AbortSignal): Promise<void> {
    // a message taken after pause or shutdown is not acked: the source delivers it again
    if (signal.aborted) throw new Error(`bridge ${this.config.name} is stopping`)
    const problem = topicNameProblem(message.topic, this.options.topicLimits)
    // `$` topics are the broker's ($SYS) [MQTT-4.7.2-1]: a bridge does not publish there
    const refusal = problem ?? (isDollarTopic(message.topic) ? "it starts with '$', which is reserved for the broker" : null)
    if (refusal !== null) {
      this.counters.delivered(0, 1)
      this.logger.warn({ topic: message.topic, reason: refusal }, 'bridge message refused: not a valid topic')
      throw new InboundRefused(`invalid topic ${JSON.stringify(message.topic)}: ${refusal}`)
    }
    await this.options.whenWritable?.(signal)
    if (stopped(signal)) throw new Error(`bridge ${this.config.name} is stopping`)
    await this.options.publish({ ...message, clientId: this.#clientId })
    this.counters.delivered(1)
  }
}
