import type { BrokerCounters, DropReason } from './counters.js'

// What the broker has done, for the metrics (src/metrics/) and the `$SYS` topics (src/sys/). The
// publish path pays plain integer increments only:
// - PUBLISH received, by QoS: one increment in authorizePublish (broker.ts), which runs anyway;
// - packets and PUBLISH sent, by QoS: one increment in the outgoing guard's write (countWrites);
// - packets and bytes received: the packet guard's count (BrokerCounters#traffic);
// - once per connection: the listener it came through, its socket (for bytes sent).
// The rest is read when asked: connected clients, bytes written by open sockets, subscriptions,
// sessions and retained messages from the persistence, drops from BrokerCounters.

export type StatsListenerKind = 'mqtt' | 'mqtts' | 'ws' | 'wss'

export type QosCounts = [number, number, number]

export interface BrokerStatsSnapshot {
  /** When the broker started (ms since the epoch). */
  startedAt: number
  clients: {
    connected: number
    /** Connected clients by the listener they came through. */
    byListener: Record<StatsListenerKind, number>
    /** The most clients connected at once since the start. */
    maximum: number
    /** Persistent sessions of clients not connected now (clients with stored subscriptions). */
    disconnected: number
    /** Connections accepted (CONNACK 0) since the start. */
    accepted: number
  }
  /** Clients with stored subscriptions, connected or not. */
  sessions: number
  subscriptions: number
  retained: number
  /** Packets of every type. */
  packets: { received: number; sent: number }
  /** PUBLISH packets, by QoS. */
  publish: { received: QosCounts; sent: QosCounts; dropped: number }
  bytes: { received: number; sent: number }
  /** Refusals and drops by reason (BrokerCounters). */
  dropped: Partial<Record<DropReason, number>>
}

/** The drop reasons that are PUBLISH messages lost (mosquitto's publish/messages/dropped). */
export const PUBLISH_DROP_REASONS: ReadonlySet<DropReason> = new Set<DropReason>([
  'outgoing-full',
  'queue-full',
  'publish-denied',
  'delivery-denied',
  'delayed-invalid',
  'delayed-full'
])

/** The little of a connection's socket read here (net.Socket, tls.TLSSocket). */
interface Counted {
  bytesWritten?: number
  once: (event: 'close', listener: () => void) => unknown
  encrypted?: boolean
}

/** The little of an aedes client read here (structural: this file does not import aedes). */
export interface StatsClient {
  conn: unknown
  req?: { socket?: unknown } | null
  /** A clean session: its subscriptions are not stored, only kept on the client. */
  clean?: boolean
  subscriptions?: Record<string, unknown>
}

/** The little of the broker and its persistence read here. */
export interface StatsSources {
  connectedClients: () => number
  clients: () => Iterable<StatsClient>
  subscriptions: () => Promise<{ subsCount: number; clientsCount: number }>
  retained: () => number
}

export class BrokerStats {
  readonly startedAt = Date.now()
  /** PUBLISH received by QoS (incremented by the broker). */
  readonly received: QosCounts = [0, 0, 0]
  /** PUBLISH sent by QoS. */
  readonly sent: QosCounts = [0, 0, 0]
  /** Packets sent, all types. */
  packetsSent = 0
  private accepted = 0
  private maximum = 0
  private readonly byListener: Record<StatsListenerKind, number> = { mqtt: 0, mqtts: 0, ws: 0, wss: 0 }
  /** Open sockets, for the bytes they have written; closed ones add theirs to bytesSentClosed. */
  private readonly open = new Set<Counted>()
  private bytesSentClosed = 0

  constructor(
    private readonly counters: BrokerCounters,
    private readonly sources: StatsSources
  ) {}

  /** A client was accepted (aedes's 'client' event): counted by listener until its socket closes. */
  clientConnected(client: StatsClient): void {
    const ws = client.req?.socket as Counted | undefined
    const socket = ws ?? (client.conn as Counted)
    const kind: StatsListenerKind = ws ? (ws.encrypted === true ? 'wss' : 'ws') : socket.encrypted === true ? 'mqtts' : 'mqtt'
    this.accepted++
    this.byListener[kind]++
    const connected = this.sources.connectedClients()
    if (connected > this.maximum) this.maximum = connected
    if (typeof socket.once !== 'function' || this.open.has(socket)) return
    this.open.add(socket)
    socket.once('close', () => {
      this.byListener[kind]--
      this.open.delete(socket)
      this.bytesSentClosed += socket.bytesWritten ?? 0
    })
  }

  /** Counts a write the outgoing guard let through (every packet the broker sends). */
  countWrite(packet: { cmd: string; qos?: number }): void {
    this.packetsSent++
    if (packet.cmd === 'publish') this.sent[(packet.qos ?? 0) as 0 | 1 | 2]++
  }

  async snapshot(): Promise<BrokerStatsSnapshot> {
    const subs = await this.sources.subscriptions()
    // stored: persistent sessions' subscriptions; clean sessions' are on their connected client only
    let connectedStored = 0
    let cleanSubscriptions = 0
    for (const c of this.sources.clients()) {
      const n = c.subscriptions ? Object.keys(c.subscriptions).length : 0
      if (c.clean === false) connectedStored += n > 0 ? 1 : 0
      else cleanSubscriptions += n
    }
    let bytesSent = this.bytesSentClosed
    for (const s of this.open) bytesSent += s.bytesWritten ?? 0
    const dropped: Partial<Record<DropReason, number>> = {}
    let publishDropped = 0
    for (const [reason, n] of this.counters.dropped) {
      dropped[reason] = n
      if (PUBLISH_DROP_REASONS.has(reason)) publishDropped += n
    }
    const connected = this.sources.connectedClients()
    if (connected > this.maximum) this.maximum = connected
    return {
      startedAt: this.startedAt,
      clients: {
        connected,
        byListener: { ...this.byListener },
        maximum: this.maximum,
        disconnected: Math.max(0, subs.clientsCount - connectedStored),
        accepted: this.accepted
      },
      sessions: subs.clientsCount,
      subscriptions: subs.subsCount + cleanSubscriptions,
      retained: this.sources.retained(),
      packets: { received: this.counters.traffic.packetsIn, sent: this.packetsSent },
      publish: { received: [...this.received], sent: [...this.sent], dropped: publishDropped },
      bytes: { received: this.counters.traffic.bytesIn, sent: bytesSent },
      dropped
    }
  }
}
