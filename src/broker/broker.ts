import type { Aedes, AedesOptions, AedesPublishPacket, AuthenticateError, Client, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import type { Store } from '../store/store.js'
import { RocksPersistence } from '../store/persistence.js'
import { installAedesPatch } from './aedes-patch.js'
import { markReplay } from './log-appender.js'

export interface BrokerOptions {
  store: Store
  logger: Logger
  allowAnonymous: boolean
  maxClientIdLength: number
  brokerId: string | null
  /** How publishes reach the log (see log-appender.ts). */
  publishHooks?: PublishHooks
}

/**
 * The two points where a publish meets Culex. `admit` runs when a PUBLISH is authorized, in the
 * order packets arrive on a connection (aedes authorizes each packet synchronously as it parses
 * it), so work started there keeps the client's order even though aedes then processes the packets
 * of one read concurrently. `published` is aedes's published hook: it runs before the QoS 1 PUBACK
 * (ack-order patch) and the QoS 2 PUBREC, so what it awaits is durable before the ack.
 */
export interface PublishHooks {
  /** `duplicateQos2`: a QoS 2 PUBLISH whose id awaits PUBREL; aedes will not publish it again. */
  admit(packet: PublishPacket, clientId: string | null, duplicateQos2: boolean): void
  published(packet: AedesPublishPacket, clientId: string | null): Promise<void>
  clientClosed(clientId: string): void
}

/** The client id of a publish: its connection's, or the one stored in a will of an earlier run. */
function publisherId(packet: object, client: Client | null): string | null {
  if (client) return client.id
  const stored = (packet as { clientId?: unknown }).clientId
  return typeof stored === 'string' ? stored : null
}

const SYS_PREFIX = '$SYS/'

export interface Broker {
  aedes: Aedes
  persistence: RocksPersistence
  /** Publishes a record replayed from the log; it is not appended to the log again. */
  publishReplay(message: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }): Promise<void>
  close(): Promise<void>
}

const NOT_AUTHORIZED = 5

/** Creates the aedes broker on the RocksDB persistence, with Culex's hooks and limits. */
export async function createBroker(options: BrokerOptions): Promise<Broker> {
  await installAedesPatch()
  const { Aedes } = await import('aedes')
  const { logger } = options
  const persistence = await RocksPersistence.open(options.store)

  const aedesOptions: AedesOptions = {
    persistence,
    maxClientsIdLength: options.maxClientIdLength,
    authenticate(client, username, _password, done) {
      if (options.allowAnonymous) return done(null, true)
      // No credential store is configured yet, so nobody can authenticate (as mosquitto with
      // allow_anonymous false and no password file).
      const err = Object.assign(new Error('not authorized'), { returnCode: NOT_AUTHORIZED }) as AuthenticateError
      logger.warn({ clientId: client.id, username }, 'connection refused: anonymous access is off')
      done(err, false)
    },
    authorizePublish(client, packet, done) {
      // as aedes's default: clients may not publish to $SYS
      if (packet.topic.startsWith(SYS_PREFIX)) return done(new Error('$SYS topic is reserved'))
      const hooks = options.publishHooks
      if (hooks) {
        const duplicateQos2 = packet.qos === 2 && client !== null && persistence.hasIncoming(client.id, packet.messageId)
        hooks.admit(packet, publisherId(packet, client), duplicateQos2)
      }
      done(null)
    },
    published(packet, client, done) {
      const hooks = options.publishHooks
      if (!hooks) return done()
      hooks.published(packet, publisherId(packet, client)).then(() => done(), done)
    }
  }
  if (options.brokerId) aedesOptions.id = options.brokerId
  const aedes = await Aedes.createBroker(aedesOptions)

  if (options.publishHooks) {
    const hooks = options.publishHooks
    aedes.on('clientDisconnect', (client) => hooks.clientClosed(client.id))
  }
  aedes.on('clientError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'client error'))
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'connection error'))
  aedes.on('error' as 'closed', (err?: unknown) => logger.error({ err }, 'broker error'))

  return {
    aedes,
    persistence,
    publishReplay: ({ topic, payload, qos }) =>
      new Promise<void>((resolve, reject) => {
        const packet: PublishPacket = { cmd: 'publish', topic, payload, qos, retain: false, dup: false }
        markReplay(packet)
        aedes.publish(packet, (err) => (err ? reject(err) : resolve()))
      }),
    close: () =>
      new Promise<void>((resolve) => {
        aedes.close(() => resolve())
      })
  }
}
