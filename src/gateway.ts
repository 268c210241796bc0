import type { Logger } from 'pino'
import { Authentication, type ReloadReport } from './auth/authentication.js'
import { admission } from './broker/admission.js'
import { createBroker, type Broker } from './broker/broker.js'
import { BrokerCounters } from './broker/counters.js'
import { HookChain } from './broker/hooks.js'
import { reloadTls, startListeners, type Listener } from './broker/listeners.js'
import { reservedTopics } from './broker/reserved-topics.js'
import { apiHost, tlsEnabled, type CulexConfig } from './config/index.js'
import { startHttpServer, type HttpServer } from './http/server.js'
import { GroupCoordinator } from './log/groups/coordinator.js'
import type { ConsumerGroups } from './log/groups/types.js'
import { ReplayJobs } from './log/replay.js'
import { RocksLog } from './log/rocks/rocks-log.js'
import type { Log } from './log/types.js'
import { LogAdmission } from './routing/log-admission.js'
import { Router } from './routing/router.js'
import { Store } from './store/store.js'

export interface ListenerAddress {
  kind: Listener['kind'] | 'admin'
  host: string
  port: number
}

/** What a gateway has started so far; shutdown closes whatever is there. */
interface Parts {
  auth?: Authentication
  store?: Store
  log?: Log
  groups?: ConsumerGroups
  broker?: Broker
  replays?: ReplayJobs
  http?: HttpServer
  listeners?: Listener[]
}

type StartedParts = Required<Omit<Parts, 'http'>> & Pick<Parts, 'http'>

/**
 * The broker's hook chain (src/broker/hooks.ts gives the stage order): who may connect, what
 * may be published, and where publishes go besides MQTT subscribers.
 */
export function composeHooks(auth: Authentication, log: Log, router: Router, logger: Logger): HookChain {
  // reserved topics before the ACL: a publish to $SYS closes the connection whatever the ACL says
  const [authenticators, authorizers] = partition(auth.hooks(), (h) => h.stage === 'authenticate')
  return new HookChain([...authenticators, reservedTopics, ...authorizers, ...(router.size > 0 ? [new LogAdmission(router, log, logger)] : [])])
}

function partition<T>(items: T[], test: (item: T) => boolean): [T[], T[]] {
  return [items.filter(test), items.filter((i) => !test(i))]
}

/** The composition root: store -> log -> consumer groups -> broker -> HTTP API -> listeners; shutdown in reverse. */
export class Gateway {
  private stopping: Promise<void> | null = null

  private constructor(
    readonly config: CulexConfig,
    private readonly parts: StartedParts,
    private readonly logger: Logger
  ) {}

  get store(): Store {
    return this.parts.store
  }

  /** The partitioned log (streams from the config); routed MQTT publishes are appended to it. */
  get log(): Log {
    return this.parts.log
  }

  get broker(): Broker {
    return this.parts.broker
  }

  /**
   * `onStoreFailure` is told once when the store refuses a write (the disk is full, say): from then
   * on nothing is acknowledged, and the caller stops the gateway (the CLI exits with 75, so a
   * supervisor restarts it once there is room; RocksDB does not take writes again in-process).
   */
  static async start(config: CulexConfig, logger: Logger, onStoreFailure: (err: Error) => void = () => {}): Promise<Gateway> {
    const parts: Parts = {}
    try {
      const store = (parts.store = await Store.open({
        dataDir: config.dataDir,
        durability: config.durability,
        // one line for the state change, not one per refused publish or request
        onWriteError: (err) => {
          logger.fatal({ reason: err.message }, 'the store refuses writes: nothing is acknowledged from now on; stopping')
          onStoreFailure(err)
        }
      }))
      const log = (parts.log = await RocksLog.open(store, config.streams, {
        onRetentionError: (err) => logger.error({ err }, 'log retention failed')
      }))
      const groups = (parts.groups = new GroupCoordinator(log))
      const counters = new BrokerCounters(logger)
      const auth = (parts.auth = await Authentication.load(config, logger, counters))
      const hooks = composeHooks(auth, log, new Router(config.routes), logger)
      const broker = (parts.broker = await createBroker({
        store,
        logger,
        hooks,
        counters,
        maxClientIdLength: config.maxClientIdLength,
        limits: config,
        brokerId: config.brokerId
      }))
      const replays = (parts.replays = new ReplayJobs(log, broker.publishReplay))
      if (config.adminPort !== null) {
        parts.http = await startHttpServer({ log, groups, host: apiHost(config), port: config.adminPort, logger, replay: replays, access: auth.api() })
      }
      const aedes = broker.aedes
      // every connection goes through admission (per-address limit, packet guard) to aedes
      parts.listeners = await startListeners(
        config,
        admission(config, counters, (stream, request) => aedes.handle(stream, request))
      )
      const gateway = new Gateway(config, parts as StartedParts, logger)
      for (const a of gateway.addresses()) logger.info({ listener: a.kind, host: a.host, port: a.port }, 'listening')
      for (const s of config.streams) logger.info({ stream: s.name, partitions: s.partitions, retention: s.retention }, 'stream')
      for (const r of config.routes) logger.info({ filter: r.filter, stream: r.stream, key: r.key }, 'route')
      logger.info({ dataDir: config.dataDir, durability: config.durability, brokerId: aedes.id, hooks: hooks.hooks.map((h) => h.name) }, 'ready')
      return gateway
    } catch (err) {
      await shutdown(parts)
      throw err
    }
  }

  addresses(): ListenerAddress[] {
    const listeners: ListenerAddress[] = this.parts.listeners.map(({ kind, host, port }) => ({ kind, host, port }))
    if (this.parts.http) listeners.push({ kind: 'admin', host: apiHost(this.config), port: this.parts.http.port })
    return listeners
  }

  /**
   * SIGHUP: re-reads the password file, the ACL file, the JWT key and the TLS files without
   * dropping clients (except those whose user was removed). A file that fails keeps what it had.
   */
  async reload(): Promise<ReloadReport> {
    const report = await this.parts.auth.reload((match, reason) => this.parts.broker.disconnect(match, reason))
    if (tlsEnabled(this.config)) {
      try {
        await reloadTls(this.parts.listeners, this.config)
        report.reloaded.push('tls')
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err)
        report.failed.push({ what: 'tls', error })
        this.logger.error({ file: 'tls', error }, 'reload failed; the TLS files in force stay')
      }
    }
    this.logger.info({ reloaded: report.reloaded, failed: report.failed.map((f) => f.what), disconnected: report.disconnected }, 'reloaded')
    return report
  }

  /** Stops accepting, disconnects clients, commits pending writes and closes RocksDB. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info('shutting down')
      await shutdown(this.parts)
      this.logger.info('stopped')
    })()
    return this.stopping
  }
}

async function shutdown(parts: Parts): Promise<void> {
  // stop taking work: server.close stops accepting now and settles once the broker has closed the
  // open connections; held HTTP requests and replays end at once
  const listenersClosed = Promise.all((parts.listeners ?? []).map((l) => l.close()))
  parts.replays?.cancelAll()
  await parts.http?.close()
  await parts.broker?.close()
  await listenersClosed
  // no publish appends any more: the log goes before the store under it
  parts.groups?.close()
  await parts.log?.close()
  await parts.store?.close()
}
