// The shapes aedes hands to its persistence (the aedes-persistence 11 interface), without `any`.

export interface PersistenceClient {
  readonly id: string
}

export interface PersistenceBroker {
  readonly id: string
}

/** The fields of an (aedes) packet this module looks at; packets may carry more, all are kept. */
export interface PersistencePacket {
  cmd?: string
  topic?: string
  payload?: Buffer | Uint8Array | string
  qos?: number
  retain?: boolean
  dup?: boolean
  messageId?: number
  brokerId?: string
  brokerCounter?: number
  clientId?: string
  properties?: object
}

/** A packet as stored and returned: its known fields plus whatever else it carried. */
export type StoredPacket = PersistencePacket & Record<string, unknown>

/** Marks a subscription of a SUBSCRIBE the broker refused (SUBACK 0x80): it is not stored. */
export const REFUSED = Symbol('subscription refused')

export interface PersistenceSubscription {
  [REFUSED]?: true
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
  /** MQTT 5 Subscription Identifier: kept per client, not in the topic trie (as in memory). */
  subscriptionIdentifier?: number
}

export type ClientSubscription = PersistenceSubscription

export interface TopicSubscription {
  clientId: string
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
}

export interface QueueLimits {
  /** Packets per client queue (0 = no limit). */
  maxMessages: number
  /** Bytes of stored packets per client queue (0 = no limit). */
  maxBytes: number
  /** drop-new: the packet that does not fit is not queued; drop-oldest: the oldest go. */
  policy: 'drop-new' | 'drop-oldest'
  /** Called for every packet a full queue drops. */
  onDrop: (clientId: string) => void
}

export interface RocksPersistenceOptions {
  /** Share subscriptions with other brokers over $SYS/sub/+ (aedes-persistence option). */
  broadcastSubscriptions?: boolean
  /** Limits of each persistent session's offline queue (none when absent). */
  queueLimits?: QueueLimits
  /** Told about stored retained topics that are no valid topic name (skipped at load). */
  onInvalidRetained?: (topic: string, problem: string) => void
}
