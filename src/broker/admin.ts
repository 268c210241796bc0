import type { Aedes, Client } from 'aedes'
import type { Logger } from 'pino'
import type { RocksPersistence } from '../persistence/persistence.js'
import type { Store } from '../store/store.js'
import { principalOf } from './principals.js'
import type { BrokerStats } from './stats.js'

// The broker as the admin API sees it (src/http/routes/admin.ts defines the interface, BrokerAdmin;
// this file does not import it, the gateway checks that the shapes agree). Connected clients come
// from aedes; stored sessions and retained messages from the persistence. Lists are read when
// asked, sorted by client id / topic, and cut to one page: the cost is the sort of the ids, not
// the answer.

type ListenerKind = 'mqtt' | 'mqtts' | 'ws' | 'wss'

interface Subscription {
  filter: string
  qos: 0 | 1 | 2
}

export interface AdminClientInfo {
  id: string
  username: string | null
  listener: ListenerKind | null
  address: string | null
  protocolVersion: number | null
  keepalive: number
  cleanSession: boolean
  connectedAt: string
  subscriptions: Subscription[]
  queued: number
  outgoingBytes: number
}

interface PageRequest {
  after: string | null
  limit: number
}

/** The little of a connection read here (net.Socket, tls.TLSSocket, a WebSocket stream). */
interface Connection {
  remoteAddress?: string
  remotePort?: number
  encrypted?: boolean
  writableLength?: number
}

/** What aedes keeps on a client and is read here (its types do not declare all of it). */
type AedesClient = Client & {
  clean: boolean
  version: number | null
  subscriptions: Record<string, { qos?: number } | undefined>
  _keepaliveInterval?: number
}

export interface BrokerAdminDeps {
  aedes: Aedes
  persistence: RocksPersistence
  store: Store
  stats: BrokerStats
  logger: Logger
}

/** The message rate is sampled this often, over at most RATE_SAMPLES samples (one minute). */
const RATE_SAMPLE_MS = 5000
const RATE_SAMPLES = 13

function qosOf(n: number | undefined): 0 | 1 | 2 {
  return n === 1 || n === 2 ? n : 0
}

/** The items after `after` (exclusive) in `sorted`, at most `limit`, and the cursor of the next page. */
function pageOf(sorted: string[], page: PageRequest): { ids: string[]; total: number; next: string | null } {
  let start = 0
  if (page.after !== null) {
    // binary search for the first id > after
    let lo = 0
    let hi = sorted.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((sorted[mid] ?? '') <= page.after) lo = mid + 1
      else hi = mid
    }
    start = lo
  }
  const ids = sorted.slice(start, start + page.limit)
  const more = start + page.limit < sorted.length
  return { ids, total: sorted.length, next: more ? (ids[ids.length - 1] ?? null) : null }
}

/** Code-unit order, the same in every locale (the cursor compares with <=). */
const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

export class BrokerAdmin {
  readonly #deps: BrokerAdminDeps
  readonly #connectedAt = new WeakMap<Client, number>()
  readonly #samples: Array<{ at: number; received: number; sent: number }> = []
  readonly #sampler: NodeJS.Timeout

  constructor(deps: BrokerAdminDeps) {
    this.#deps = deps
    deps.aedes.on('client', (client) => this.#connectedAt.set(client, Date.now()))
    this.#sampler = setInterval(() => {
      this.#samples.push({ at: Date.now(), ...this.#totals() })
      if (this.#samples.length > RATE_SAMPLES) this.#samples.shift()
    }, RATE_SAMPLE_MS)
    this.#sampler.unref()
    deps.aedes.once('closed', () => clearInterval(this.#sampler))
  }

  #clients(): Record<string, AedesClient | undefined> {
    return (this.#deps.aedes as unknown as { clients: Record<string, AedesClient | undefined> }).clients
  }

  #info(client: AedesClient): AdminClientInfo {
    const conn = client.conn as unknown as Connection
    const ws = client.req?.socket as Connection | undefined
    const socket = ws ?? conn
    const listener: ListenerKind = ws ? (ws.encrypted === true ? 'wss' : 'ws') : conn.encrypted === true ? 'mqtts' : 'mqtt'
    const host = socket.remoteAddress
    const interval = client._keepaliveInterval ?? -1
    return {
      id: client.id,
      username: principalOf(client)?.username ?? null,
      listener: host === undefined ? null : listener,
      address: host === undefined ? null : socket.remotePort === undefined ? host : `${host}:${socket.remotePort}`,
      protocolVersion: client.version,
      // aedes keeps 1.5 x keepalive + 1 ms (MQTT 3.1.1 §3.1.2.10)
      keepalive: interval > 0 ? Math.round((interval - 1) / 1500) : 0,
      cleanSession: client.clean,
      connectedAt: new Date(this.#connectedAt.get(client) ?? Date.now()).toISOString(),
      subscriptions: Object.entries(client.subscriptions).map(([filter, sub]) => ({ filter, qos: qosOf(sub?.qos) })),
      queued: this.#deps.persistence.queuedCount(client.id),
      outgoingBytes: conn.writableLength ?? 0
    }
  }

  clients(page: PageRequest): { clients: AdminClientInfo[]; total: number; next: string | null } {
    const all = this.#clients()
    const { ids, total, next } = pageOf(Object.keys(all).sort(byCodeUnit), page)
    const clients = ids.flatMap((id) => {
      const client = all[id]
      return client ? [this.#info(client)] : []
    })
    return { clients, total, next }
  }

  client(id: string): AdminClientInfo | null {
    const client = Object.hasOwn(this.#clients(), id) ? this.#clients()[id] : undefined
    return client ? this.#info(client) : null
  }

  kick(id: string): boolean {
    const client = Object.hasOwn(this.#clients(), id) ? this.#clients()[id] : undefined
    if (!client) return false
    this.#deps.logger.info({ clientId: id }, 'client kicked (admin API)')
    client.close()
    return true
  }

  async sessions(
    page: PageRequest
  ): Promise<{ sessions: Array<{ clientId: string; connected: boolean; subscriptions: Subscription[]; queued: number }>; total: number; next: string | null }> {
    const { persistence } = this.#deps
    const connected = this.#clients()
    const { ids, total, next } = pageOf([...persistence.sessionIds()].sort(byCodeUnit), page)
    const sessions = []
    for (const clientId of ids) {
      const subs = await persistence.subscriptionsByClient({ id: clientId })
      sessions.push({
        clientId,
        connected: Object.hasOwn(connected, clientId),
        subscriptions: subs.map((s) => ({ filter: s.topic, qos: qosOf(s.qos) })),
        queued: persistence.queuedCount(clientId)
      })
    }
    return { sessions, total, next }
  }

  async retained(
    filter: string,
    page: PageRequest
  ): Promise<{ retained: Array<{ topic: string; qos: 0 | 1 | 2; bytes: number }>; total: number; next: string | null }> {
    const { persistence } = this.#deps
    const { ids, total, next } = pageOf(persistence.retainedTopics(filter).sort(byCodeUnit), page)
    const retained = []
    for await (const packet of persistence.readRetained(ids)) {
      retained.push({ topic: String(packet.topic), qos: qosOf(packet.qos), bytes: payloadBytes(packet.payload) })
    }
    return { retained, total, next }
  }

  async readRetained(topic: string): Promise<{ topic: string; qos: 0 | 1 | 2; payload: Buffer } | null> {
    const { persistence } = this.#deps
    if (persistence.retainedTopics(topic).length === 0) return null
    for await (const packet of persistence.readRetained([topic])) {
      return { topic, qos: qosOf(packet.qos), payload: payloadBuffer(packet.payload) }
    }
    return null
  }

  /** As an empty retained PUBLISH clears it [MQTT-3.3.1-10], without publishing anything; resolves once durable. */
  async deleteRetained(topic: string): Promise<boolean> {
    const { persistence, store } = this.#deps
    if (persistence.retainedTopics(topic).length === 0) return false
    await persistence.storeRetained({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true })
    await store.barrier()
    this.#deps.logger.info({ topic }, 'retained message deleted (admin API)')
    return true
  }

  #totals(): { received: number; sent: number } {
    const { stats } = this.#deps
    return { received: stats.received[0] + stats.received[1] + stats.received[2], sent: stats.sent[0] + stats.sent[1] + stats.sent[2] }
  }

  async summary(): Promise<{
    connected: number
    sessions: number
    subscriptions: number
    retained: number
    messages: { received: number; sent: number; receivedPerSecond: number; sentPerSecond: number; rateWindowSeconds: number }
  }> {
    const { aedes, persistence, stats } = this.#deps
    // subscriptions: the connected clients' and the stored ones of sessions not connected
    const connected = this.#clients()
    let subscriptions = 0
    for (const client of Object.values(connected)) subscriptions += client ? Object.keys(client.subscriptions).length : 0
    const sessions = persistence.sessionIds()
    for (const clientId of sessions) {
      if (!Object.hasOwn(connected, clientId)) subscriptions += (await persistence.subscriptionsByClient({ id: clientId })).length
    }
    const now = Date.now()
    const totals = this.#totals()
    // the oldest sample of the last minute, or the start
    const base = this.#samples[0] ?? { at: stats.startedAt, received: 0, sent: 0 }
    const seconds = Math.max((now - base.at) / 1000, 0.001)
    const rate = (n: number): number => Math.round((n / seconds) * 10) / 10
    return {
      connected: aedes.connectedClients,
      sessions: sessions.size,
      subscriptions,
      retained: persistence.retainedCount,
      messages: {
        ...totals,
        receivedPerSecond: rate(totals.received - base.received),
        sentPerSecond: rate(totals.sent - base.sent),
        rateWindowSeconds: Math.round(seconds)
      }
    }
  }
}

function payloadBuffer(payload: unknown): Buffer {
  if (Buffer.isBuffer(payload)) return payload
  if (payload instanceof Uint8Array) return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  return Buffer.from(typeof payload === 'string' ? payload : '')
}

function payloadBytes(payload: unknown): number {
  if (payload instanceof Uint8Array) return payload.byteLength
  return typeof payload === 'string' ? Buffer.byteLength(payload) : 0
}
