import { parseBridges, type BridgeConfig } from '../../bridges/config.js'
import type { Section } from '../section.js'
import type { LogSection } from './log.js'

// Bridges (src/bridges/): outbound ones carry log streams to NATS JetStream, Redis Streams,
// RabbitMQ, webhooks and other MQTT brokers; inbound ones bring messages from them into Culex.
// File-only (a list of mappings); parsed after the log section, whose streams they name.

export interface BridgesSection {
  bridges: BridgeConfig[]
}

export const bridgesSection: Section<BridgesSection, BridgesSection & LogSection> = {
  name: 'bridges',
  defaults: { bridges: [] },
  keys: {},
  structured: {
    bridges: (raw, ctx, config) => ({ bridges: parseBridges(raw, ctx, config.streams) })
  }
}
