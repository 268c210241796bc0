import type { BridgeDriver } from '../types.js'
import { parseSource, parseTarget, type NatsSourceOptions, type NatsTarget } from './config.js'

// NATS JetStream, both directions: out = JetStream publishes with Nats-Msg-Id (exactly once within
// the stream's duplicate window), in = a durable pull consumer with explicit acks (at least once).
// The client library is loaded only when a nats bridge is configured.

export const natsDriver: BridgeDriver<NatsTarget, NatsSourceOptions> = {
  kind: 'nats',
  parseTarget,
  parseSource,
  createSink: async (target, deps) => (await import('./sink.js')).createSink(target, deps),
  createSource: async (source, deps) => (await import('./source.js')).createSource(source, deps)
}
