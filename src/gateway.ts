import type { Logger } from 'pino'
import { Authentication, type ReloadReport } from './auth/authentication.js'
import { admission } from './broker/admission.js'
import { BrokerAdmin } from './broker/admin.js'
import { gatewayReadiness, packageVersion } from './gateway-status.js'
import { createBroker, type Broker } from './broker/broker.js'
import { BrokerCounters } from './broker/counters.js'
import { HookChain, type BrokerHook } from './broker/hooks.js'
import { reloadTls, startListeners, type Listener } from './broker/listeners.js'
import { reservedTopics } from './broker/reserved-topics.js'
import { apiHost, tlsEnabled, type CulexConfig } from './config/index.js'
import { Bridges } from './bridges/bridges.js'
import { progressGroup } from './bridges/config.js'
import { DelayedPublishHook } from './delayed/hook.js'
import { DelayedQueue } from './delayed/queue.js'
import { startHttpServer, type HttpServer } from './http/server.js'
import { GroupCoordinator } from './log/groups/coordinator.js'
import type { ConsumerGroups } from './log/groups/types.js'
import { SharedGroups } from './log/shared/shared-groups.js'
import { ReplayJobs } from './log/replay.js'
import { RocksLog } from './log/rocks/rocks-log.js'
import type { Log } from './log/types.js'
import { LogAdmission } from './routing/log-admission.js'
import { LogShareDispatch } from './routing/log-shares.js'
import { Router } from './routing/router.js'
import { Store } from './store/store.js'
import { storeWatermarks } from './config/sections/limits.js'
import { Metrics } from './metrics/metrics.js'
import { SysPublisher } from './sys/publisher.js'

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
  delayed?: DelayedQueue
  shared?: SharedGroups
  shares?: LogShareDispatch
  broker?: Broker
  replays?: ReplayJobs
  http?: HttpServer
  listeners?: Listener[]
  bridges?: Bridges
  sys?: SysPublisher
}

type StartedParts = Required<Omit<Parts, 'http' | 'sys'>> & Pick<Parts, 'http' | 'sys'>

/**
 * The broker's hook chain (src/broker/hooks.ts gives the stage order): who may connect, what
 * may be published, and where publishes go besides MQTT subscribers.
 */
export function composeHooks(auth: Authentication, log: Log, router: Router, logger: Logger, delayed: BrokerHook | null = null): HookChain {
  // reserved topics before the ACL: a publish to $SYS closes the connection whatever the ACL says
  const [authenticators, authorizers] = partition(auth.hooks(), (h) => h.stage === 'authenticate')
  // delayed claims `$delayed/` publishes before authorize, which then judges the target topic (hooks.ts)
  const admitters = [...(delayed ? [delayed] : []), ...(router.size > 0 ? [new LogAdmission(router, log, logger)] : [])]
  return new HookChain([...authenticators, reservedTopics, ...authorizers, ...admitters])
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
    // for the HTTP API's /readyz and status (set below)
    let storeFailure: Error | null = null
    let started: Gateway | null = null
    try {
      const store = (parts.store = await Store.open({
        dataDir: config.dataDir,
        durability: config.durability,
        // backpressure: publishers held and HTTP produce answered 429 over store-high-water
        watermarks: storeWatermarks(config),
        // one line for the state change, not one per refused publish or request
        onWriteError: (err) => {
          storeFailure = err
          logger.fatal({ reason: err.message }, 'the store refuses writes: nothing is acknowledged from now on; stopping')
          onStoreFailure(err)
        }
      }))
      const log = (parts.log = await RocksLog.open(store, config.streams, {
        onRetentionError: (err) => logger.error({ err }, 'log retention failed'),
        dedup: { windowMs: config.dedupWindowMs, maxKeys: config.dedupMaxKeys, onEvicted: dedupEvictions(logger, config.dedupMaxKeys) },
        onDedupSweepError: (err) => logger.error({ err }, 'dedup sweep failed')
      }))
      // delayed delivery: opened (pending entries counted) before the broker, whose hook stores new
      // ones; it starts delivering below, once the broker can publish
      const delayed = (parts.delayed = await DelayedQueue.open(store, {
        maxMessages: config.delayedMaxMessages,
        maxDelayMs: config.delayedMaxDelayMs,
        logger: logger.child({ component: 'delayed' })
      }))
      // an outbound bridge's progress is the group bridge.<name>: no consumer may join or reset it
      const bridgeGroups = new Map(config.bridges.filter((b) => b.direction === 'out').map((b) => [progressGroup(b.name), b.name]))
      const groups = (parts.groups = new GroupCoordinator(log, {
        owned: (group) => {
          const bridge = bridgeGroups.get(group)
          return bridge === undefined ? null : `it holds the stored progress of bridge ${bridge}`
        }
      }))
      // lag alerts go out on $SYS once the broker is up (below)
      let lagAlert = (group: string, lag: number, alerting: boolean): void => void [group, lag, alerting]
      const shared = (parts.shared = await SharedGroups.open(log, { onLagAlert: (g, lag, on) => lagAlert(g, lag, on) }))
      const counters = new BrokerCounters(logger)
      const auth = (parts.auth = await Authentication.load(config, logger, counters))
      const hooks = composeHooks(auth, log, new Router(config.routes), logger, config.delayedEnabled ? new DelayedPublishHook(delayed, counters) : null)
      // MQTT consumers of the log: `$share/<group>/<filter>` over routed topics, served from the shared group
      const shares = (parts.shares = new LogShareDispatch(config.routes, shared, {
        window: config.shareMaxInflight,
        logger: logger.child({ component: 'mqtt-share' })
      }))
      const broker = (parts.broker = await createBroker({
        store,
        logger,
        hooks,
        counters,
        maxClientIdLength: config.maxClientIdLength,
        limits: config,
        brokerId: config.brokerId,
        logShares: config.routes.length > 0 ? shares : undefined
      }))
      const replays = (parts.replays = new ReplayJobs(log, broker.publishReplay))
      // entries due while the gateway was down go now. RocksLog issues an append's write at once,
      // on this store: the queue's delete goes in the same batch (appendSharesBatch)
      delayed.start({ publish: broker.publishDelayed, append: (stream, records, partition) => log.append(stream, records, partition), appendSharesBatch: true })
      lagAlert = (group, lag, alerting) => {
        logger.warn({ group, lag, alerting }, alerting ? 'shared group lag over its alert' : 'shared group lag back under its alert')
        const payload = Buffer.from(JSON.stringify({ group, lag, alerting, at: new Date().toISOString() }))
        broker
          .publishReplay({ topic: `$SYS/culex/alerts/lag/${group}`, payload, qos: 0 })
          .catch((err: unknown) => logger.error({ err }, 'lag alert not published'))
      }
      // bridges: outbound ones read the log, inbound ones publish through the broker; both are up
      const bridges = (parts.bridges = await Bridges.create(config.bridges, {
        log,
        publish: (m) => broker.publishBridged(m),
        whenWritable: (signal) => writable(store, signal),
        topicLimits: { maxBytes: config.maxTopicLength, maxLevels: config.maxTopicLevels },
        logger: logger.child({ component: 'bridge' })
      }))
      bridges.start()
      // read at scrape time (src/metrics/); the store's commits feed its histograms
      const sources = { broker: broker.stats, log, groups, shared, delayed, bridges }
      const metrics = new Metrics({ ...sources, storeBacklogBytes: () => store.backlog.bytes })
      store.writer.observeCommits(metrics.observeCommit)
      // $SYS/broker/... (mosquitto's names) and $SYS/culex/..., retained, every sys-interval
      if (config.sysIntervalMs > 0) {
        parts.sys = new SysPublisher(sources, {
          intervalMs: config.sysIntervalMs,
          publish: (topic, payload) => broker.publishSys(topic, payload),
          onError: (err) => logger.warn({ err }, '$SYS topics not published')
        })
        parts.sys.start()
      }
      if (config.adminPort !== null) {
        parts.http = await startHttpServer({
          log,
          groups,
          shared,
          host: apiHost(config),
          port: config.adminPort,
          logger,
          replay: replays,
          access: auth.api(),
          backpressure: store.backlog,
          delayed: config.delayedEnabled ? delayed : undefined,
          bridges,
          metrics,
          readiness: gatewayReadiness({ store, storeFailure: () => storeFailure, listeners: () => parts.listeners, bridges }),
          admin: {
            broker: new BrokerAdmin({ aedes: broker.aedes, persistence: broker.persistence, store, stats: broker.stats, logger }),
            gateway: { version: packageVersion(), startedAt: broker.stats.startedAt, listeners: () => started?.addresses() ?? [] }
          },
          // the page connects to the plain WebSocket listener, started just below
          dashboard: { websocket: () => webSocketEndpoint(parts.listeners, config.wsPath) }
        })
      }
      const aedes = broker.aedes
      // every connection goes through admission (per-address limit, packet guard) to aedes
      parts.listeners = await startListeners(
        config,
        admission(config, counters, (stream, request) => aedes.handle(stream, request))
      )
      const gateway = (started = new Gateway(config, parts as StartedParts, logger))
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

/**
 * The dedup window at dedup-max-keys: the oldest ids are forgotten before their window ends (a
 * retry of one is appended again). One warning per 10 s, with the count since the last one.
 */
function dedupEvictions(logger: Logger, maxKeys: number): (count: number) => void {
  let last = 0
  let unreported = 0
  return (count) => {
    unreported += count
    const now = Date.now()
    if (now - last < 10_000) return
    logger.warn({ forgotten: unreported, maxKeys }, 'dedup window full (dedup-max-keys): oldest ids forgotten before their window ended')
    last = now
    unreported = 0
  }
}

/** Resolves once the store is under its low-water mark again (at once when it is not over). */
function writable(store: Store, signal: AbortSignal): Promise<void> {
  if (!store.backlog.over || signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const done = (): void => {
      off()
      signal.removeEventListener('abort', done)
      resolve()
    }
    const off = store.backlog.onChange((over) => {
      if (!over) done()
    })
    signal.addEventListener('abort', done, { once: true })
  })
}

async function shutdown(parts: Parts): Promise<void> {
  // no $SYS publish once anything below begins to close
  await parts.sys?.stop()
  // stop taking work: server.close stops accepting now and settles once the broker has closed the
  // open connections; held HTTP requests and replays end at once
  const listenersClosed = Promise.all((parts.listeners ?? []).map((l) => l.close()))
  parts.replays?.cancelAll()
  await parts.http?.close()
  // no delivery, commit or ack of a bridge after this; stored progress and unacked sources stay
  await parts.bridges?.stop()
  // no delayed publish or append after this; what is stored stays for the next start
  await parts.delayed?.stop()
  await parts.broker?.close()
  await listenersClosed
  // no publish appends any more: the log goes before the store under it
  parts.groups?.close()
  // the acks and releases of MQTT members that left as the broker closed, then no more fetches
  await parts.shares?.close()
  parts.shared?.close()
  await parts.log?.close()
  await parts.store?.close()
}

/** The plain MQTT-over-WebSocket listener, for the dashboard (null until the listeners are up, or when it is off). */
function webSocketEndpoint(listeners: Listener[] | undefined, path: string): { port: number; path: string } | null {
  const ws = listeners?.find((l) => l.kind === 'ws')
  return ws === undefined ? null : { port: ws.port, path }
}
