import type { Aedes, AedesOptions, AedesPublishPacket, AuthenticateError, Client } from 'aedes'
import type { Logger } from 'pino'
import type { Store } from '../store/store.js'
import { RocksPersistence } from '../store/persistence.js'
import { installAedesPatch } from './aedes-patch.js'

export interface BrokerOptions {
  store: Store
  logger: Logger
  allowAnonymous: boolean
  maxClientIdLength: number
  brokerId: string | null
  /** Runs for every publish before its QoS 1/2 ack is sent (the log append hooks in here). */
  onPublished?: (packet: AedesPublishPacket, client: Client | null) => Promise<void>
}

export interface Broker {
  aedes: Aedes
  persistence: RocksPersistence
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
    published(packet, client, done) {
      if (!options.onPublished) return done()
      options.onPublished(packet, client).then(() => done(), done)
    }
  }
  if (options.brokerId) aedesOptions.id = options.brokerId
  const aedes = await Aedes.createBroker(aedesOptions)

  aedes.on('clientError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'client error'))
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client.id, err: err.message }, 'connection error'))
  aedes.on('error' as 'closed', (err?: unknown) => logger.error({ err }, 'broker error'))

  return {
    aedes,
    persistence,
    close: () =>
      new Promise<void>((resolve) => {
        aedes.close(() => resolve())
      })
  }
}
