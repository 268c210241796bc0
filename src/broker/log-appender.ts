import type { AedesPublishPacket, Client } from 'aedes'
import type { Logger } from 'pino'
import type { Log, RecordInput } from '../log/types.js'
import { keyFor, type Router } from './router.js'

// The bridge from MQTT to the log: every publish whose topic matches a route is appended to the
// route's stream. It runs as the broker's `published` hook, before the QoS 1 PUBACK / QoS 2 PUBREC
// (see broker.ts and the QoS 1 ack-order patch), so for QoS 1/2 the ack waits until the record is
// committed (group commit, fsync with durability 'fsync'); a failed append means no ack.

/** Packets republished from the log (replay): the appender skips them, so history is not appended twice. */
const replays = new WeakSet<object>()

/**
 * Marks a packet object as a replay of records already in the log. Mark the very object handed
 * to `aedes.publish`: aedes passes that object on to the `published` hook.
 */
export function markReplay(packet: object): void {
  replays.add(packet)
}

export function isReplay(packet: object): boolean {
  return replays.has(packet)
}

export type OnPublished = (packet: AedesPublishPacket, client: Client | null) => Promise<void>

/** Creates the broker's onPublished callback that appends routed publishes to the log. */
export function createLogAppender(router: Router, log: Log, logger: Logger): OnPublished {
  return async (packet, client) => {
    const { topic } = packet
    // $SYS/: the broker's own heartbeats and status, never log data
    if (topic.startsWith('$SYS/') || replays.has(packet)) return
    const routes = router.match(topic)
    if (routes.length === 0) return
    const qos = packet.qos
    // A will published at start-up for a client of an earlier run comes without a client object,
    // but its stored packet still names the client.
    const stored = (packet as { clientId?: unknown }).clientId
    const clientId = client?.id ?? (typeof stored === 'string' ? stored : null)
    const value = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '', 'utf8')
    const appends = routes.map((route) => {
      const record: RecordInput = { key: keyFor(route, topic, clientId), value, topic, qos, clientId, headers: {} }
      return log.append(route.stream, [record]).catch((err: unknown) => {
        logger.error({ err, stream: route.stream, topic, clientId, qos }, 'log append failed')
        throw err
      })
    })
    if (qos === 0) {
      // QoS 0 has no ack to hold back; the append goes on in the background (errors are logged above)
      Promise.all(appends).catch(() => {})
      return
    }
    await Promise.all(appends)
  }
}
