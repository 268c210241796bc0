// CommonJS pieces of aedes-persistence (and its own dependencies), resolved from it so that
// npm's hoisting does not matter: the same qlobber and aedes-packet that aedes uses.
import { createRequire } from 'node:module'
import type { PersistenceBroker, PersistenceClient, PersistenceSubscription, StoredPacket, TopicSubscription } from './persistence-types.js'

export interface QlobberSubLike {
  subscriptionsCount: number
  add(topic: string, sub: TopicSubscription): void
  remove(topic: string, sub: { clientId: string; topic: string }): void
  match(topic: string): TopicSubscription[]
}
export interface QlobberTrueLike {
  add(topic: string): void
  test(topic: string): boolean
}
export interface BroadcastLike {
  brokerSubscribe(): Promise<void>
  brokerUnsubscribe(): Promise<void>
  addedSubscriptions(client: PersistenceClient, subs: PersistenceSubscription[]): Promise<unknown>
  removedSubscriptions(client: PersistenceClient, subs: string[]): Promise<unknown>
}

const requireFromPersistence = createRequire(createRequire(import.meta.url).resolve('aedes-persistence'))

export const Packet = requireFromPersistence('aedes-packet') as new (original: object) => StoredPacket
export const QlobberSub = requireFromPersistence('qlobber/aedes/qlobber-sub') as new (options: object) => QlobberSubLike
export const { QlobberTrue } = requireFromPersistence('qlobber') as { QlobberTrue: new (options: object) => QlobberTrueLike }
export const BroadcastPersistence = requireFromPersistence('./broadcastPersistence.js') as new (
  broker: PersistenceBroker,
  trie: QlobberSubLike
) => BroadcastLike

export const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' }
