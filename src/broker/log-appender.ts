import type { Logger } from 'pino'
import type { Log, RecordInput } from '../log/types.js'
import type { PublishHooks } from './broker.js'
import type { RouteConfig } from '../config.js'
import type { Router } from './router.js'

// The bridge from MQTT to the log: every publish whose topic matches a route is appended to the
// route's stream.
//
// The append starts when the PUBLISH is admitted (authorized), in the order packets arrive on the
// connection, so offsets follow the client's publish order whatever the packet's QoS or retain
// flag (aedes then processes the packets of one socket read concurrently, and a retained or
// offline-queued publish waits for its own fsync before later steps). The `published` hook, which
// runs before the QoS 1 PUBACK / QoS 2 PUBREC, waits for that append: the ack follows the record's
// group commit, and a failed append means no ack. Publishes that were never admitted (the broker's
// own, wills of an earlier run) are appended in `published`.

interface PublishLike {
  topic: string
  payload?: Buffer | string | Uint8Array
  qos: 0 | 1 | 2
  messageId?: number
}

/** Packets republished from the log (replay): skipped, so history is not appended twice. */
const replays = new WeakSet<object>()

/** Marks the very object handed to `aedes.publish` (aedes passes it on to its hooks). */
export function markReplay(packet: object): void {
  replays.add(packet)
}

export function isReplay(packet: object): boolean {
  return replays.has(packet)
}

const noop = (): void => {}

export class LogAppender implements PublishHooks {
  /** Appends started at admission, awaited by `published`. */
  private readonly admitted = new WeakMap<object, Promise<void>>()
  /** QoS 2 packets admitted and not yet published, by client and id: a resend in between is a duplicate. */
  private readonly admittedQos2 = new Map<string, object>()

  constructor(
    private readonly router: Router,
    private readonly log: Log,
    private readonly logger: Logger
  ) {}

  admit(packet: PublishLike, clientId: string | null, duplicateQos2: boolean): void {
    const routes = this.routesOf(packet)
    if (routes.length === 0) return
    if (packet.qos === 2) {
      const id = qos2Id(clientId, packet.messageId)
      // aedes answers a duplicate with PUBREC and does not publish it again: nothing to append
      if (duplicateQos2 || this.admittedQos2.has(id)) return
      this.admittedQos2.set(id, packet)
    }
    const appended = this.append(packet, clientId, routes)
    appended.catch(noop) // awaited (and reported) in published; a publish aedes drops must not crash us
    this.admitted.set(packet, appended)
  }

  async published(packet: PublishLike, clientId: string | null): Promise<void> {
    let appended = this.admitted.get(packet)
    if (appended) {
      this.admitted.delete(packet)
      if (packet.qos === 2) this.admittedQos2.delete(qos2Id(clientId, packet.messageId))
    } else {
      const routes = this.routesOf(packet)
      if (routes.length === 0) return
      appended = this.append(packet, clientId, routes)
    }
    if (packet.qos === 0) {
      // QoS 0 has no ack to hold back (errors are logged by append)
      appended.catch(noop)
      return
    }
    await appended
  }

  clientClosed(clientId: string): void {
    const prefix = `${clientId}\u0000`
    for (const id of this.admittedQos2.keys()) if (id.startsWith(prefix)) this.admittedQos2.delete(id)
  }

  /** The routes of a publish; none for $SYS/ (the broker's own status) and for replays. */
  private routesOf(packet: PublishLike): RouteConfig[] {
    if (packet.topic.startsWith('$SYS/') || replays.has(packet)) return []
    return this.router.match(packet.topic)
  }

  private async append(packet: PublishLike, clientId: string | null, routes: RouteConfig[]): Promise<void> {
    const { topic, qos } = packet
    const value = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '')
    await Promise.all(
      routes.map((route) => {
        const record: RecordInput = { key: this.router.keyFor(route, topic, clientId), value, topic, qos, clientId, headers: {} }
        return this.log.append(route.stream, [record]).then(noop, (err: unknown) => {
          this.logger.error({ err, stream: route.stream, topic, clientId, qos }, 'log append failed')
          throw err
        })
      })
    )
  }
}

function qos2Id(clientId: string | null, messageId: number | undefined): string {
  return `${clientId ?? ''}\u0000${messageId ?? ''}`
}
