import type { BridgeDriver } from '../types.js'
import { parseSource, parseTarget, type AmqpSourceOptions, type AmqpTarget } from './config.js'

// RabbitMQ (AMQP 0-9-1): outbound publishes with publisher confirms (sink.ts), inbound a queue
// consumer with manual acks (source.ts). amqplib is loaded only when an amqp bridge is configured.
export const amqpDriver: BridgeDriver<AmqpTarget, AmqpSourceOptions> = {
  kind: 'amqp',
  parseTarget,
  parseSource,
  async createSink(target, deps) {
    const { AmqpSink } = await import('./sink.js')
    return new AmqpSink(target, deps)
  },
  async createSource(source, deps) {
    const { AmqpSource } = await import('./source.js')
    return new AmqpSource(source, deps)
  }
}
