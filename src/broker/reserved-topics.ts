import { isSysTopic } from '../mqtt/topics.js'
import type { BrokerHook } from './hooks.js'

/** Clients may not publish to `$SYS/` (the broker's status topics), as aedes's default and mosquitto refuse. */
export const reservedTopics: BrokerHook = {
  name: 'reserved-topics',
  stage: 'authorize',
  authorizePublish: (publish) => (publish.origin !== 'broker' && isSysTopic(publish.topic) ? { reason: '$SYS topics are reserved for the broker' } : undefined)
}
