import type { AddressInfo } from 'node:net'
import websocket from '@fastify/websocket'
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify'
import type { Logger } from 'pino'
import type { ConsumerGroups } from '../log/groups/types.js'
import type { SharedGroups } from '../log/shared/shared-groups.js'
import type { Log } from '../log/types.js'
import { authenticateRequests, type ApiAccess } from './auth.js'
import type { WriteBackpressure } from './backpressure.js'
import { errorHandler, notFoundHandler } from './errors.js'
import { PUSH, pushRoutes } from './push.js'
import { groupRoutes } from './routes/groups.js'
import type { DelayedAppends } from './routes/delayed.js'
import { replayRoutes, type ReplayService } from './routes/replays.js'
import { sharedGroupRoutes } from './routes/shared-groups.js'
import { bridgeRoutes, type BridgeControl } from './routes/bridges.js'
import { adminRoutes, type BrokerAdmin, type GatewayInfo } from './routes/admin.js'
import { healthRoutes, type Readiness } from './routes/health.js'
import { metricsRoutes, type MetricsExposition } from './routes/metrics.js'
import { dashboardRoutes, dashboardStaticRoutes, type DashboardOptions } from './routes/dashboard.js'
import { streamRoutes } from './routes/streams.js'
import { LIMITS } from './schemas.js'
import { schemaErrorFormatter, validatorCompiler } from './validation.js'

// The HTTP API (fastify): the data plane (produce, read, consumer groups, push over WebSocket),
// replay, and (to come) admin, metrics and the dashboard.
// Routes live in routes/ and push.ts; this file only assembles and starts the server.

export type { ReplayService } from './routes/replays.js'
export type { ApiAccess, StreamRight } from './auth.js'
export type { DelayedAppends } from './routes/delayed.js'
export type { BridgeControl } from './routes/bridges.js'
export type { BrokerAdmin, GatewayInfo } from './routes/admin.js'
export type { Readiness } from './routes/health.js'
export type { MetricsExposition } from './routes/metrics.js'
export type { DashboardEndpoint } from './routes/dashboard.js'

/** How long close() lets requests in flight finish before it cuts their connections (ms). */
const CLOSE_GRACE_MS = 2000

export interface HttpServerOptions {
  log: Log
  groups: ConsumerGroups
  /** Shared groups (per-record acks); without them /api/v1/shared-groups is not served. */
  shared?: SharedGroups
  host: string
  /** 0 = any free port. */
  port: number
  logger: Logger
  /** Replay into MQTT; without it POST /api/v1/streams/:stream/replay answers 501. */
  replay?: ReplayService
  /** Who may call the API (src/auth/); without it every request is anonymous and allowed. */
  access?: ApiAccess
  /** The store's backlog: while it is over store-high-water, produce answers 429 (backpressure.ts). */
  backpressure?: WriteBackpressure
  /** Delayed delivery (deliverAt / delayMs on produce); without it those fields answer 501. */
  delayed?: DelayedAppends
  /** The configured bridges (/api/v1/bridges); without them the list is empty. */
  bridges?: BridgeControl
  /** GET /metrics (Prometheus); without it /metrics is not served. */
  metrics?: MetricsExposition
  /** GET /readyz's checks; without them the server is ready while it answers. */
  readiness?: Readiness
  /** The admin API (/api/v1/clients, sessions, retained, status); without it those are not served. */
  admin?: { broker: BrokerAdmin; gateway: GatewayInfo }
  /** The web dashboard's MQTT-over-WebSocket endpoint; without it the page's live views say "not available". */
  dashboard?: DashboardOptions
}

export interface HttpServer {
  /** The port actually bound. */
  port: number
  /** Ends held requests and push sockets, then stops the server. */
  close(): Promise<void>
}

const NO_BRIDGES: BridgeControl = {
  list: () => Promise.resolve([]),
  describe: () => Promise.resolve(null),
  pause: () => Promise.resolve(null),
  resume: () => Promise.resolve(null)
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const logger = options.logger.child({ component: 'http' })
  const app = Fastify({
    // widened so the instance has fastify's default type, which the route modules take
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- fastify's route types want its base logger type
    loggerInstance: logger as FastifyBaseLogger,
    // no line per request (long-polls and pushes would flood the log); errors are logged by errorHandler
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: LIMITS.bodyBytes,
    // stream and group names go up to 128 characters, URL-encoded up to 3x that (fastify's default: 100)
    routerOptions: { maxParamLength: 512 },
    schemaErrorFormatter,
    // idle keep-alive sockets close at once on close(); held requests are ended by the preClose hook
    forceCloseConnections: 'idle'
  })
  app.setValidatorCompiler(validatorCompiler)
  app.setErrorHandler(errorHandler(logger))
  app.setNotFoundHandler(notFoundHandler)

  // aborted when the server starts closing, so long-polls answer at once instead of holding it open
  const closing = new AbortController()
  app.addHook('preClose', async () => closing.abort())

  await app.register(websocket, {
    options: { maxPayload: PUSH.maxFrameBytes },
    errorHandler: (err, socket) => {
      logger.debug({ err }, 'push socket error')
      socket.terminate()
    }
  })
  authenticateRequests(app, options.access ?? null)
  // the dashboard's files hold no data and load without credentials (route config `anonymous`)
  dashboardStaticRoutes(app)
  streamRoutes(app, options.log, closing.signal, options.backpressure, options.delayed)
  groupRoutes(app, options.groups, closing.signal)
  if (options.shared) sharedGroupRoutes(app, options.shared, options.log, closing.signal)
  pushRoutes(app, options.groups, logger)
  replayRoutes(app, options.replay)
  bridgeRoutes(app, options.bridges ?? NO_BRIDGES)
  healthRoutes(app, options.readiness)
  if (options.metrics) metricsRoutes(app, options.metrics)
  if (options.admin) {
    const { log, groups, shared, readiness } = options
    adminRoutes(app, { ...options.admin, log, groups, shared, bridges: options.bridges ?? NO_BRIDGES, readiness })
  }
  dashboardRoutes(app, options.dashboard ?? { websocket: () => null })

  try {
    await app.listen({ host: options.host, port: options.port })
  } catch (err) {
    await app.close()
    throw err
  }
  const port = (app.server.address() as AddressInfo).port
  logger.info({ host: options.host, port }, 'HTTP API listening')
  let closed: Promise<void> | null = null
  const close = async (): Promise<void> => {
    // held requests end at once (preClose); requests in flight get a grace period, then any
    // connection still open (a client that keeps a socket without a request, say) is cut
    const force = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS)
    force.unref()
    try {
      await app.close()
    } finally {
      clearTimeout(force)
    }
  }
  return {
    port,
    close: () => (closed ??= close())
  }
}
