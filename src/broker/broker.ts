import type { Aedes, AedesOptions, AuthenticateError, Client, ConnectPacket, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import type { LimitsSection } from '../config/sections/limits.js'
import { REFUSED, RocksPersistence, type PersistenceSubscription } from '../persistence/persistence.js'
import type { Store } from '../store/store.js'
import { installAedesPatch } from './aedes-patch.js'
import { checkConnect, type ConnectRefusal } from './connect-checks.js'
import type { BrokerCounters } from './counters.js'
import type { HookChain, Principal, PublishContext, PublishOrigin, RefusalCode } from './hooks.js'
import { outgoingGuard } from './outgoing-guard.js'
import { Principals, certificateName } from './principals.js'
import { PublishRate } from './publish-rate.js'
import { StoreBackpressure, type StoreBackpressureStats } from './store-backpressure.js'
import { holdPublish } from './held-publishes.js'
import { Qos2Admissions } from './qos2-admissions.js'
import { SubscriptionCounter, checkFilter } from './subscribe-checks.js'
import { ShareSubscriptions, type LogShares } from './share-subscriptions.js'
import { BrokerStats, type StatsClient } from './stats.js'

// aedes wired to Culex: the RocksDB persistence, and the hook chain (hooks.ts) at aedes's
// authenticate / authorizePublish / published points. Only this folder and src/persistence/
// know aedes.

export interface BrokerOptions {
  store: Store
  logger: Logger
  hooks: HookChain
  counters: BrokerCounters
  maxClientIdLength: number
  limits: LimitsSection
  brokerId: string | null
  /** `$share/<group>/<filter>` subscriptions served from the log's shared groups (share-subscriptions.ts); none: all are aedes's. */
  logShares?: LogShares
}

export interface Broker {
  aedes: Aedes
  persistence: RocksPersistence
  /** Publishes a record replayed from the log (origin 'replay': not appended to the log again). */
  publishReplay: (message: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }) => Promise<void>
  /**
   * Publishes a delayed message at its due time (origin 'delayed', src/delayed/): as a publish of
   * its original client (whose id the log's key rules see), through the `published` hooks (so a
   * route appends it to the log), not authorized again (that was done when it was stored).
   * Resolves once aedes has published it (QoS 1/2: once its writes are durable).
   */
  publishDelayed: (message: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; clientId: string | null }) => Promise<void>
  /**
   * Publishes a message an inbound bridge brought in (origin 'bridge', src/bridges/), as
   * publishDelayed does: through the `published` hooks (a route appends it to the log), not
   * authorized (the operator configured the bridge). Resolves once its writes are durable.
   */
  publishBridged: (message: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; clientId: string }) => Promise<void>
  /** How often and how long publishes were held for the store's backlog (store-high-water). */
  storeBackpressure: () => StoreBackpressureStats
  /** Connections, messages, bytes and drops (stats.ts), for the metrics and `$SYS`. */
  stats: BrokerStats
  /**
   * Publishes a `$SYS` topic (src/sys/): retained, QoS 0, from the broker itself (origin
   * 'broker': no client, not authorized; deliveries go through the ACL's read rules).
   */
  publishSys: (topic: string, payload: Buffer) => Promise<void>
  /** Disconnects every client whose principal `match` accepts (a reload took its user away); returns how many. */
  disconnect: (match: (principal: Principal) => boolean, reason: string) => number
  close: () => Promise<void>
}

function payloadOf(packet: { payload?: unknown }): Buffer {
  const p = packet.payload
  if (Buffer.isBuffer(p)) return p
  if (p instanceof Uint8Array) return Buffer.from(p.buffer, p.byteOffset, p.byteLength)
  return Buffer.from(typeof p === 'string' ? p : '')
}

/** The owner of a stored will of an earlier run (aedes passes no client for those). */
function storedClientId(packet: object): string | null {
  const id = (packet as { clientId?: unknown }).clientId
  return typeof id === 'string' ? id : null
}

function remoteAddress(client: Client): string | undefined {
  const conn = client.conn as { remoteAddress?: string }
  return conn.remoteAddress ?? client.req?.socket.remoteAddress
}

function context(packet: PublishPacket, clientId: string | null, principal: Principal | null, origin: PublishOrigin, duplicate: boolean): PublishContext {
  return {
    topic: packet.topic,
    payload: payloadOf(packet),
    qos: packet.qos,
    retain: packet.retain,
    messageId: packet.messageId,
    clientId,
    principal,
    origin,
    duplicate,
    dupFlag: packet.dup
  }
}

/**
 * A publish the ACL refuses: acknowledged as MQTT 3.1.1 requires and not published (as mosquitto
 * does). The source patch of aedes's publish handler looks for this mark (source-patches.ts).
 */
const DENIED = Symbol.for('culex.denied')

/**
 * The context made at admission, kept on the packet (aedes hands `published` the same object):
 * a property, unlike a WeakMap entry, costs the garbage collector nothing extra.
 */
const CONTEXT = Symbol('publish context')
type Admitted = PublishPacket & { [CONTEXT]?: PublishContext }

/** A CONNECT refused by checkConnect, waiting for authenticate to answer it with CONNACK 2. */
const CONNECT_REFUSAL = Symbol('connect refusal')
type Connecting = Client & { [CONNECT_REFUSAL]?: ConnectRefusal }

/** Lets aedes go on with an admitted publish: after the first copy of a QoS 2 resend is stored, after a publish-rate hold. */
function proceed(done: (err: Error | null) => void, holdUntil: Promise<void> | undefined, holdMs: number): void {
  if (holdUntil) holdUntil.then(() => (holdMs > 0 ? setTimeout(done, holdMs, null) : done(null)), done)
  else if (holdMs > 0) setTimeout(done, holdMs, null)
  else done(null)
}

/**
 * A publish a hook kept to make later (a delayed publish): aedes goes on (and acknowledges it, the
 * packet being marked DENIED so that it is not published) only once it is stored; a failure to
 * store it closes the connection, unacknowledged. `settled` runs when the store write settles.
 */
function afterKept(kept: Promise<void>, settled: (() => void) | null, done: (err?: Error | null) => void): (err?: Error | null) => void {
  const stored = settled ? kept.finally(settled) : kept
  stored.catch(() => undefined) // answered through done below; a connection that closed first must not crash us
  return (err) => {
    if (err) return done(err)
    stored.then(
      () => done(null),
      (e: unknown) => done(e instanceof Error ? e : new Error(String(e)))
    )
  }
}

/** CONNACK 3 (MQTT 3.1.1 §3.2.2.3): the check itself failed, so the client may try again later. */
const SERVER_UNAVAILABLE = 3

function authError(message: string, returnCode: RefusalCode | typeof SERVER_UNAVAILABLE): AuthenticateError {
  // aedes types the code as a const enum of these same numbers (a const enum cannot be imported here)
  // eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment, @typescript-eslint/no-unnecessary-type-assertion
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

/** Creates the aedes broker on the RocksDB persistence, with the hook chain. */
export async function createBroker(options: BrokerOptions): Promise<Broker> {
  await installAedesPatch()
  const { Aedes } = await import('aedes')
  const { logger, hooks } = options
  const persistence = await RocksPersistence.open(options.store, {
    queueLimits: {
      maxMessages: options.limits.maxQueuedMessages,
      maxBytes: options.limits.maxQueuedBytes,
      policy: options.limits.queueFullPolicy,
      onDrop: (clientId) => options.counters.count('queue-full', { clientId, policy: options.limits.queueFullPolicy })
    },
    onInvalidRetained: (topic, problem) =>
      logger.warn({ topic: JSON.stringify(topic.slice(0, 200)), problem }, 'stored retained message skipped: its topic is not a valid topic name')
  })
  const qos2Admissions = new Qos2Admissions((clientId, messageId) => persistence.hasIncoming(clientId, messageId))
  /** Packets the broker publishes itself, by origin. */
  const internal = new WeakMap<object, PublishOrigin>()

  const { limits, counters } = options
  const topicLimits = { maxBytes: limits.maxTopicLength, maxLevels: limits.maxTopicLevels }
  const subscriptions = new SubscriptionCounter(limits.maxSubscriptions)
  const rate = new PublishRate<Client>(limits)
  const backpressure = new StoreBackpressure<Client>(options.store.backlog, counters)
  const stats = new BrokerStats(counters, {
    connectedClients: () => aedes.connectedClients,
    clients: () => Object.values((aedes as unknown as { clients: Record<string, StatsClient> }).clients),
    subscriptions: () => persistence.countOffline(),
    retained: () => persistence.retainedCount
  })
  const shares = options.logShares
    ? await ShareSubscriptions.create(options.logShares, {
        // the same per-delivery check aedes makes (authorizeForward below)
        mayReceive: (client, topic) => {
          const principal = principals.of(client)
          return principal === null || !hooks.filtersDeliveries || hooks.authorizeDelivery(principal, topic)
        },
        onDenied: (client, topic) => counters.count('delivery-denied', { clientId: client.id, topic }),
        maxOutgoingBytes: limits.maxOutgoingBytes,
        onError: (err, context) => logger.warn({ ...context, err }, 'shared subscription from the log refused')
      })
    : null
  const principals = new Principals((client, principal) => {
    logger.info({ clientId: principal.clientId, username: principal.username }, 'credential expired: client disconnected')
    counters.count('credential-expired', { clientId: principal.clientId })
    client.close()
  })

  const aedesOptions: AedesOptions = {
    persistence,
    // aedes's own check is for MQTT 3.1 only; checkConnect applies the limit to every version
    maxClientsIdLength: 65_535,
    connectTimeout: limits.connectTimeoutMs,
    maxInflightInbound: limits.maxInflightMessages,
    maxTopicLevels: limits.maxTopicLevels,
    preConnect(client, packet: ConnectPacket, done) {
      const refusal = checkConnect(
        {
          clientId: packet.clientId,
          clean: packet.clean ?? true,
          protocolVersion: packet.protocolVersion ?? 4,
          will: packet.will ? { topic: packet.will.topic, qos: packet.will.qos ?? 0 } : null
        },
        options.maxClientIdLength,
        topicLimits
      )
      if (refusal?.connack === null) {
        counters.count('connect-refused', { reason: refusal.reason, address: remoteAddress(client) })
        return done(new Error(refusal.reason), false)
      }
      // CONNACK 2 is sent by authenticate, the one step of aedes that can answer with a code
      if (refusal) (client as Connecting)[CONNECT_REFUSAL] = refusal
      done(null, true)
    },
    authenticate(client, username, password, done) {
      const refused = (client as Connecting)[CONNECT_REFUSAL]
      if (refused) {
        counters.count('connect-refused', { reason: refused.reason, address: remoteAddress(client) })
        return done(authError(refused.reason, 2), false)
      }
      const info = {
        clientId: client.id,
        username: username ?? undefined,
        password: password ?? undefined,
        remoteAddress: remoteAddress(client),
        certificateName: certificateName(client)
      }
      hooks.authenticate(info).then(
        (decision) => {
          if (!decision.allow) {
            // one line per refused CONNECT, with the address (what fail2ban reads); throttled ones are counted instead
            if (decision.quiet !== true)
              logger.warn({ clientId: client.id, username, address: info.remoteAddress, reason: decision.reason }, 'connection refused')
            return void done(authError(decision.reason, decision.returnCode), false)
          }
          const principal = principals.attach(client, decision)
          // a will the client may not publish is refused now, not when it would fire
          const will = (client as { _will?: PublishPacket })._will
          const refusal = will ? hooks.authorizeWill(context(will, client.id, principal, 'will', false)) : undefined
          if (refusal) {
            logger.warn(
              { clientId: client.id, username: principal.username, topic: will?.topic, reason: refusal.reason },
              'connection refused: will not authorized'
            )
            counters.count('will-denied', { clientId: client.id })
            principals.detach(client)
            return void done(authError(`will topic not authorized: ${refusal.reason}`, 5), false)
          }
          done(null, true)
        },
        (err: unknown) => {
          logger.error({ err, clientId: client.id }, 'authentication failed')
          done(authError('authentication failed', SERVER_UNAVAILABLE), false)
        }
      )
    },
    authorizePublish(client, packet, done) {
      // a will: of a client closing now (its own will packet) or stored by an earlier run (no client)
      const isWill = client === null || (client as { will?: unknown }).will === packet
      if (!isWill) stats.received[packet.qos]++
      const clientId = client?.id ?? storedClientId(packet)
      const qos2Client = packet.qos === 2 && client !== null && !isWill && packet.messageId !== undefined ? client.id : null
      const qos2 = qos2Client !== null ? qos2Admissions.admit(qos2Client, packet.messageId ?? 0) : undefined
      const ctx = context(packet, clientId, principals.of(client), isWill ? 'will' : 'client', qos2?.duplicate ?? false)
      const backlogBefore = options.store.backlog.bytes
      const admitted = hooks.admit(ctx)
      const refusal = admitted && 'reason' in admitted ? admitted : undefined
      if (admitted && 'kept' in admitted) {
        // kept by a hook to publish later (a delayed publish): acknowledged once stored, not published now
        ;(packet as PublishPacket & { [DENIED]?: boolean })[DENIED] = true
        const settled = qos2Client !== null && !ctx.duplicate ? () => qos2Admissions.settled(qos2Client, packet.messageId ?? 0) : null
        done = afterKept(admitted.kept, settled, done)
      }
      if (refusal) {
        if (qos2Client !== null && !ctx.duplicate) qos2Admissions.settled(qos2Client, packet.messageId ?? 0)
        if (refusal.drop === true && !isWill) {
          counters.count('publish-denied', { clientId, username: ctx.principal?.username ?? null, topic: packet.topic })
          ;(packet as PublishPacket & { [DENIED]?: boolean })[DENIED] = true
          return void done(null)
        }
        logger.debug({ clientId, topic: packet.topic, reason: refusal.reason }, 'publish refused')
        return void done(new Error(refusal.reason))
      }
      ;(packet as Admitted)[CONTEXT] = ctx
      // over publish-rate: held (aedes reads no more from the client meanwhile), never dropped
      const hold = rate.enabled && client !== null && !isWill ? rate.take(client, ctx.payload.length) : 0
      if (hold > 0) counters.count('publish-throttled', { clientId, holdMs: hold })
      // the store over store-high-water: a publish that writes (its admission did, or it will:
      // retained, QoS 1/2) is held, in order, until the store is back at store-low-water
      const writes = ctx.qos > 0 || ctx.retain || options.store.backlog.bytes !== backlogBefore
      const storeHold = backpressure.enabled && client !== null && !isWill && backpressure.mustHold(client, writes)
      // a held publish stops aedes's reads from its client until it goes on (held-publishes.ts)
      const go = client !== null && (storeHold || hold > 0) ? holdPublish(client, done) : done
      if (storeHold) backpressure.hold(client, clientId, () => proceed(go, qos2?.holdUntil, hold))
      else proceed(go, qos2?.holdUntil, hold)
    },
    authorizeSubscribe(client, sub, done) {
      const check = checkFilter(sub.topic, topicLimits)
      if (!check.ok) {
        counters.count('protocol-violation', { clientId: client.id, reason: check.reason })
        return done(new Error(check.reason), null)
      }
      const principal = principals.of(client)
      if (principal && !hooks.authorizeSubscribe(principal, sub.topic)) {
        counters.count('subscribe-denied', { clientId: client.id, username: principal.username, filter: sub.topic })
        ;(sub as PersistenceSubscription)[REFUSED] = true
        return done(null, null) // SUBACK 0x80 for this filter [MQTT-3.9.3-2]
      }
      if (!subscriptions.admit(client, sub.topic)) {
        counters.count('subscription-limit', { clientId: client.id, limit: limits.maxSubscriptions })
        ;(sub as PersistenceSubscription)[REFUSED] = true // not stored with the session
        return done(null, null) // SUBACK 0x80 for this filter [MQTT-3.9.3-2]
      }
      // `$share/<group>/<filter>` over routed topics: served from the log's shared group
      const share = shares?.subscribe(client, sub)
      if (share) {
        return void share.then((granted) => {
          if (granted === null) {
            subscriptions.removed(client, [sub.topic])
            ;(sub as PersistenceSubscription)[REFUSED] = true
          }
          done(null, granted)
        })
      }
      done(null, sub)
    },
    published(packet, client, done) {
      let ctx = (packet as Admitted)[CONTEXT]
      if (ctx) {
        // stored awaiting PUBREL by now: a resend held at admission may go on (aedes finds it)
        if (ctx.qos === 2 && ctx.origin === 'client' && !ctx.duplicate && ctx.clientId !== null && ctx.messageId !== undefined) {
          qos2Admissions.settled(ctx.clientId, ctx.messageId)
        }
      }
      // QoS 1/2 are acknowledged after this: every write the publish queued (retained, offline
      // copies, QoS 2 state) is made durable by one barrier, while the hooks (the log) finish
      const barrier = packet.qos > 0 ? options.store.barrier() : null
      if (!hooks.hasPublished) {
        if (barrier) barrier.then(() => done(), done)
        else done()
        return
      }
      // aedes passes no client for its own publishes, whatever its types say
      ctx ??= context(packet, (client as Client | null)?.id ?? null, null, internal.get(packet) ?? 'broker', false)
      const published = hooks.published(ctx)
      void (barrier ? Promise.all([barrier, published]) : published).then(() => done(), done)
    }
  }
  if (hooks.filtersDeliveries) {
    // each delivery (live, queued, retained) to a client the ACL does not let read its topic is skipped
    aedesOptions.authorizeForward = (client, packet) => {
      const principal = principals.of(client)
      if (principal === null || hooks.authorizeDelivery(principal, packet.topic)) return packet
      counters.count('delivery-denied', { clientId: client.id, topic: packet.topic })
      return null
    }
  }
  if (options.brokerId) aedesOptions.id = options.brokerId
  const aedes = await Aedes.createBroker(aedesOptions)

  // nothing waits for a slow subscriber; the guard bounds what is buffered for it (source-patches.ts)
  const guard = outgoingGuard(limits, counters)
  Object.assign(aedes, {
    culexOutgoingGuard: (client: Client, packet: { cmd: string; qos?: number }) => {
      if (!guard(client, packet)) return false
      stats.countWrite(packet) // every packet sent, counted once written (stats.ts)
      return true
    }
  })
  aedes.on('client', (client) => stats.clientConnected(client))
  shares?.install(aedes)
  aedes.on('unsubscribe', (unsubscriptions, client) => subscriptions.removed(client, unsubscriptions))
  aedes.on('clientDisconnect', (client) => {
    qos2Admissions.clientClosed(client.id)
    hooks.clientClosed(client.id)
  })
  aedes.on('clientError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'client error'))
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'connection error'))
  aedes.on('error' as 'closed', (err?: unknown) => logger.error({ err }, 'broker error'))

  /** A publish of the broker's own on behalf of `clientId`, past authorize, through the published hooks. */
  const publishAs = (
    origin: 'delayed' | 'bridge',
    { topic, payload, qos, retain, clientId }: { topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; clientId: string | null }
  ): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const packet: PublishPacket = { cmd: 'publish', topic, payload, qos, retain, dup: false }
      ;(packet as Admitted)[CONTEXT] = context(packet, clientId, null, origin, false)
      aedes.publish(packet, (err) => (err ? reject(err) : resolve()))
    })

  return {
    aedes,
    persistence,
    publishReplay: ({ topic, payload, qos }) =>
      new Promise<void>((resolve, reject) => {
        const packet: PublishPacket = { cmd: 'publish', topic, payload, qos, retain: false, dup: false }
        internal.set(packet, 'replay')
        aedes.publish(packet, (err) => (err ? reject(err) : resolve()))
      }),
    publishDelayed: (message) => publishAs('delayed', message),
    publishBridged: (message) => publishAs('bridge', message),
    storeBackpressure: () => backpressure.stats(),
    stats,
    publishSys: (topic, payload) =>
      new Promise<void>((resolve, reject) => {
        const packet: PublishPacket = { cmd: 'publish', topic, payload, qos: 0, retain: true, dup: false }
        internal.set(packet, 'broker')
        aedes.publish(packet, (err) => (err ? reject(err) : resolve()))
      }),
    disconnect: (match, reason) => {
      let n = 0
      for (const client of principals.matching(match)) {
        logger.info({ clientId: client.id, reason }, 'client disconnected')
        client.close()
        n++
      }
      return n
    },
    close: () =>
      new Promise<void>((resolve) => {
        backpressure.close()
        aedes.close(() => resolve())
      })
  }
}
