import { ConfigError } from '../errors.js'
import type { Section } from '../section.js'
import { key } from '../section.js'
import { BYTE_SIZE_EXPECTED, BadValue, DURATION_EXPECTED, integer, oneOf, parseByteSize, parseDuration } from '../values.js'

// Limits on what one client can make the broker hold or do. Each has a key, a default, a counter
// when it triggers (culex_dropped_total{reason} and the log), a README line and a test.

export type QueueFullPolicy = 'drop-new' | 'drop-oldest'

export interface LimitsSection {
  /** Largest MQTT packet (the fixed header's remaining length plus the header), bytes. */
  maxPacketSize: number
  /** A packet whose first byte arrived must be complete within this (ms). */
  packetTimeoutMs: number
  /** From TCP accept to CONNECT (ms). */
  connectTimeoutMs: number
  /** Connections from one source address, over all listeners (0 = no limit). */
  maxConnectionsPerAddress: number
  /** Bytes written to a connection and not yet taken by it; beyond, QoS 0 to it is dropped. */
  maxOutgoingBytes: number
  /** A connection over maxOutgoingBytes for this long is closed (ms). */
  stuckClientTimeoutMs: number
  /** QoS 1/2 messages queued per persistent session (0 = no limit). */
  maxQueuedMessages: number
  /** Bytes of payload queued per persistent session (0 = no limit). */
  maxQueuedBytes: number
  queueFullPolicy: QueueFullPolicy
  /** Subscriptions one client may hold. */
  maxSubscriptions: number
  /** Longest topic name or filter, bytes. */
  maxTopicLength: number
  /** Most levels in a topic name or filter. */
  maxTopicLevels: number
  /** Inbound QoS 2 messages awaiting PUBREL per client. */
  maxInflightMessages: number
  /** Records a member of a log-backed `$share` subscription holds unacknowledged at most. */
  shareMaxInflight: number
  /** Publishes per second per client, averaged by a token bucket (0 = no limit). */
  publishRate: number
  /** Payload bytes per second per client (0 = no limit). */
  publishByteRate: number
  /** Bytes written and not yet committed over which publishers are held and HTTP produce gets 429 (0 = no limit). */
  storeHighWater: number
  /** Once over storeHighWater, publishers go on when the backlog is back at this (bytes); null: half of storeHighWater. */
  storeLowWater: number | null
}

/** The store's watermarks (src/store/backlog.ts) from the config; high 0: no backpressure. */
export function storeWatermarks(c: Pick<LimitsSection, 'storeHighWater' | 'storeLowWater'>): { high: number; low: number } {
  return { high: c.storeHighWater, low: c.storeLowWater ?? Math.floor(c.storeHighWater / 2) }
}

function nonNegativeInt(raw: unknown): number {
  const n = integer(raw)
  if (n === null || n < 0) throw new BadValue()
  return n
}

function byteSize(raw: unknown): number {
  return parseByteSize(raw) ?? Number.NaN
}

function bytes(min: number, max: number): (raw: unknown) => number {
  return (raw) => {
    const n = raw === 0 || raw === '0' ? 0 : byteSize(raw)
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new BadValue()
    return n
  }
}

/** A byte size of at least `min`, or 0 (off). */
function bytesOrOff(min: number): (raw: unknown) => number {
  return (raw) => {
    const n = raw === 0 || raw === '0' ? 0 : byteSize(raw)
    if (!Number.isSafeInteger(n) || (n !== 0 && n < min)) throw new BadValue()
    return n
  }
}

function duration(raw: unknown): number {
  const ms = parseDuration(raw)
  if (ms === null) throw new BadValue()
  return ms
}

function between(min: number, max: number): (raw: unknown) => number {
  return (raw) => {
    const n = nonNegativeInt(raw)
    if (n < min || n > max) throw new BadValue()
    return n
  }
}

/** MQTT's remaining length is at most 268,435,455 bytes (§2.2.3): the largest packet the protocol can frame. */
export const MQTT_MAX_PACKET = 268_435_455 + 5

export const limitsSection: Section<LimitsSection> = {
  name: 'limits',
  defaults: {
    maxPacketSize: 1024 * 1024,
    packetTimeoutMs: 10_000,
    connectTimeoutMs: 30_000,
    maxConnectionsPerAddress: 1000,
    maxOutgoingBytes: 1024 * 1024,
    stuckClientTimeoutMs: 30_000,
    maxQueuedMessages: 1000,
    maxQueuedBytes: 0,
    queueFullPolicy: 'drop-new',
    maxSubscriptions: 1000,
    maxTopicLength: 65_535,
    maxTopicLevels: 100,
    maxInflightMessages: 1000,
    shareMaxInflight: 32,
    publishRate: 0,
    publishByteRate: 0,
    storeHighWater: 64 * 1024 * 1024,
    storeLowWater: null
  },
  keys: {
    'max-packet-size': key({
      field: 'maxPacketSize',
      parse: bytes(64, MQTT_MAX_PACKET),
      expected: `${BYTE_SIZE_EXPECTED}, from 64 B to 256 MiB`,
      help: 'largest MQTT packet accepted; a larger one closes the connection before it is read'
    }),
    'packet-timeout': key({ field: 'packetTimeoutMs', parse: duration, expected: DURATION_EXPECTED, help: 'a packet started must be complete within this' }),
    'connect-timeout': key({ field: 'connectTimeoutMs', parse: duration, expected: DURATION_EXPECTED, help: 'time from accept to CONNECT' }),
    'max-connections-per-address': key({
      field: 'maxConnectionsPerAddress',
      parse: nonNegativeInt,
      expected: 'an integer >= 0 (0 = no limit)',
      help: 'connections from one source address'
    }),
    'max-outgoing-bytes': key({
      field: 'maxOutgoingBytes',
      parse: bytes(1024, 2 ** 31),
      expected: `${BYTE_SIZE_EXPECTED}, at least 1KiB`,
      help: 'bytes buffered towards one client; beyond, QoS 0 to it is dropped'
    }),
    'stuck-client-timeout': key({
      field: 'stuckClientTimeoutMs',
      parse: duration,
      expected: DURATION_EXPECTED,
      help: 'a client over max-outgoing-bytes this long is disconnected'
    }),
    'max-queued-messages': key({
      field: 'maxQueuedMessages',
      parse: nonNegativeInt,
      expected: 'an integer >= 0 (0 = no limit)',
      help: 'QoS 1/2 messages queued per persistent session'
    }),
    'max-queued-bytes': key({
      field: 'maxQueuedBytes',
      parse: bytes(0, Number.MAX_SAFE_INTEGER),
      expected: `${BYTE_SIZE_EXPECTED}, or 0 for no limit`,
      help: 'payload bytes queued per persistent session'
    }),
    'queue-full-policy': key({
      field: 'queueFullPolicy',
      parse: oneOf(['drop-new', 'drop-oldest'] as const),
      expected: '"drop-new" or "drop-oldest"',
      help: 'what a full session queue drops'
    }),
    'max-subscriptions': key({
      field: 'maxSubscriptions',
      parse: between(1, 1_000_000),
      expected: 'an integer from 1 to 1000000',
      help: 'subscriptions one client may hold'
    }),
    'max-topic-length': key({
      field: 'maxTopicLength',
      parse: between(1, 65_535),
      expected: 'an integer from 1 to 65535',
      help: 'longest topic name or filter (bytes)'
    }),
    'max-topic-levels': key({
      field: 'maxTopicLevels',
      parse: between(1, 100),
      expected: 'an integer from 1 to 100',
      help: 'most levels in a topic name or filter'
    }),
    'max-inflight-messages': key({
      field: 'maxInflightMessages',
      parse: between(1, 65_535),
      expected: 'an integer from 1 to 65535',
      help: 'inbound QoS 2 messages awaiting PUBREL per client'
    }),
    'share-max-inflight': key({
      field: 'shareMaxInflight',
      parse: between(1, 65_535),
      expected: 'an integer from 1 to 65535',
      help: 'records a member of a log-backed $share subscription holds unacknowledged (it is refilled at half)'
    }),
    'publish-rate': key({
      field: 'publishRate',
      parse: nonNegativeInt,
      expected: 'an integer >= 0 (0 = no limit)',
      help: 'publishes per second per client (the socket is paused, nothing dropped)'
    }),
    'publish-byte-rate': key({
      field: 'publishByteRate',
      parse: bytes(0, Number.MAX_SAFE_INTEGER),
      expected: `${BYTE_SIZE_EXPECTED}, or 0 for no limit`,
      help: 'payload bytes per second per client (the socket is paused)'
    }),
    'store-high-water': key({
      field: 'storeHighWater',
      parse: bytesOrOff(64 * 1024),
      expected: `${BYTE_SIZE_EXPECTED}, at least 64KiB, or 0 for no limit`,
      help: 'bytes written and not yet on disk over which publishers are held and HTTP produce answers 429'
    }),
    'store-low-water': key({
      field: 'storeLowWater',
      parse: bytes(0, Number.MAX_SAFE_INTEGER),
      expected: `${BYTE_SIZE_EXPECTED}, below store-high-water`,
      help: 'once over store-high-water, publishers go on when the bytes not yet on disk are back at this (default: half of store-high-water)'
    })
  },
  check(c) {
    if (c.maxOutgoingBytes < c.maxPacketSize) {
      // a client must be able to receive any packet the broker accepts
      throw new ConfigError(`max-outgoing-bytes (${c.maxOutgoingBytes}) must be at least max-packet-size (${c.maxPacketSize})`)
    }
    if (c.storeLowWater !== null && c.storeHighWater === 0) {
      throw new ConfigError(
        `store-low-water (${c.storeLowWater}) is set but store-high-water is 0 (no backpressure); set store-high-water too, or leave store-low-water out`
      )
    }
    if (c.storeLowWater !== null && c.storeLowWater >= c.storeHighWater) {
      throw new ConfigError(`store-low-water (${c.storeLowWater}) must be below store-high-water (${c.storeHighWater})`)
    }
  }
}
