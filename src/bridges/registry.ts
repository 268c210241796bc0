import { amqpDriver } from './amqp/index.js'
import { mqttDriver } from './mqtt/index.js'
import { natsDriver } from './nats/index.js'
import { redisDriver } from './redis/index.js'
import type { BridgeDriver } from './types.js'
import { webhookDriver } from './webhook/index.js'

// Every bridge kind, by the name the config's `kind:` gives. Kafka is not here: no Kafka server can
// be installed on the machines this is tested on, and a bridge not tested against the real thing
// is not shipped (README, Bridges).

export const DRIVERS: ReadonlyMap<string, BridgeDriver> = new Map<string, BridgeDriver>(
  [natsDriver, redisDriver, amqpDriver, webhookDriver, mqttDriver].map((d) => [d.kind, d as BridgeDriver])
)
