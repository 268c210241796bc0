import type { Logger } from 'pino'
import { isLoopback, type CulexConfig } from './config.js'
import { createBroker, type Broker } from './broker/broker.js'
import { startListeners, type Listener } from './broker/listeners.js'
import { Store } from './store/store.js'
import { LogAppender } from './broker/log-appender.js'
import { Router } from './broker/router.js'
import { RocksLog } from './log/rocks-log.js'
import type { Log } from './log/types.js'

export interface ListenerAddress {
  kind: Listener['kind']
  host: string
  port: number
}

/** The composition root: opens the store and the log, starts the broker and its listeners, shuts down in order. */
export class Gateway {
  private stopping: Promise<void> | null = null

  private constructor(
    readonly config: CulexConfig,
    readonly store: Store,
    /** The partitioned log (streams from the config); routed MQTT publishes are appended to it. */
    readonly log: Log,
    readonly router: Router,
    readonly broker: Broker,
    private readonly listeners: Listener[],
    private readonly logger: Logger
  ) {}

  static async start(config: CulexConfig, logger: Logger): Promise<Gateway> {
    const store = await Store.open({
      dataDir: config.dataDir,
      durability: config.durability,
      onWriteError: (err) => logger.fatal({ err }, 'RocksDB write failed; acks are refused from now on')
    })
    let log: Log | null = null
    let broker: Broker | null = null
    try {
      log = await RocksLog.open(store, config.streams, {
        onRetentionError: (err) => logger.error({ err }, 'log retention failed')
      })
      const router = new Router(config.routes)
      broker = await createBroker({
        store,
        logger,
        allowAnonymous: config.allowAnonymous ?? isLoopback(config.host),
        maxClientIdLength: config.maxClientIdLength,
        brokerId: config.brokerId,
        publishHooks: router.size > 0 ? new LogAppender(router, log, logger) : undefined
      })
      const aedes = broker.aedes
      const listeners = await startListeners(config, (stream, request) => aedes.handle(stream, request))
      const gateway = new Gateway(config, store, log, router, broker, listeners, logger)
      for (const l of listeners) logger.info({ listener: l.kind, host: l.host, port: l.port }, 'listening')
      for (const s of config.streams) logger.info({ stream: s.name, partitions: s.partitions, retention: s.retention }, 'stream')
      for (const r of config.routes) logger.info({ filter: r.filter, stream: r.stream, key: r.key }, 'route')
      logger.info({ dataDir: config.dataDir, durability: config.durability, brokerId: aedes.id }, 'ready')
      return gateway
    } catch (err) {
      if (broker) await broker.close()
      if (log) await log.close()
      await store.close()
      throw err
    }
  }

  addresses(): ListenerAddress[] {
    return this.listeners.map(({ kind, host, port }) => ({ kind, host, port }))
  }

  /** Stops accepting, disconnects clients, commits pending writes and closes RocksDB. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown()
    return this.stopping
  }

  private async shutdown(): Promise<void> {
    this.logger.info('shutting down')
    // server.close stops accepting now and settles once the broker has closed the open connections
    const closed = this.listeners.map((l) => l.close())
    await this.broker.close()
    await Promise.all(closed)
    // the broker is closed, so no publish appends any more; the log goes before the store under it
    await this.log.close()
    await this.store.close()
    this.logger.info('stopped')
  }
}
