import type { Logger } from 'pino'
import type { BrokerHook, PublishContext } from '../broker/hooks.js'
import type { AppendOnce, AppendOnceResult, Log } from '../log/types.js'
import { StoreError } from '../store/errors.js'
import { publishOnce } from './publish-dedup.js'
import type { Router } from './router.js'
import { keyFor, type RouteConfig } from './routes.js'

// The bridge from MQTT to the log: every publish whose topic matches a route is appended to the
// route's stream. The append starts at admission, in the order packets arrive on a connection,
// so offsets follow the client's publish order whatever the packet's QoS or retain flag (a
// retained or offline-queued publish waits for its own writes before later steps). `published`,
// which runs before the QoS 1 PUBACK / QoS 2 PUBREC, waits for that append: the ack follows the
// record's commit, and a failed append means no ack. Publishes that were never admitted (the
// broker's own) are appended in `published`; replays of the log are never appended again.

const noop = (): void => {}

/**
 * The append started at admission, kept on the publish itself: a property, unlike a WeakMap
 * entry, costs the garbage collector nothing extra, and goes with a publish aedes drops.
 */
const APPEND = Symbol('log append')
type Admitted = PublishContext & { [APPEND]?: Promise<void> }

export class LogAdmission implements BrokerHook {
  readonly name = 'log'
  readonly stage = 'admit'
  constructor(
    private readonly router: Router,
    private readonly log: Log,
    private readonly logger: Logger
  ) {}

  readonly admit = (publish: PublishContext): void => {
    // aedes answers a QoS 2 duplicate with PUBREC and does not publish it again: nothing to append
    if (publish.duplicate) return
    const routes = this.routesOf(publish)
    if (routes.length === 0) return
    const appended = this.append(publish, routes)
    appended.catch(noop) // awaited (and reported) in published; a publish aedes drops must not crash us
    ;(publish as Admitted)[APPEND] = appended
  }

  readonly published = (publish: PublishContext): Promise<void> | void => {
    let appended = (publish as Admitted)[APPEND]
    if (!appended) {
      const routes = this.routesOf(publish)
      if (routes.length === 0) return
      appended = this.append(publish, routes)
    }
    // QoS 0 has no ack to hold back (errors are logged by append)
    if (publish.qos === 0) return void appended.catch(noop)
    return appended
  }

  private logDuplicate({ duplicate, results }: AppendOnceResult, publish: PublishContext, route: RouteConfig): void {
    if (!duplicate) return
    const { clientId, messageId, topic } = publish
    this.logger.debug(
      { clientId, messageId, topic, stream: route.stream, offsets: results },
      'QoS 1 retransmission (DUP) already in the log: not appended again'
    )
  }

  private routesOf(publish: PublishContext): RouteConfig[] {
    return publish.origin === 'replay' ? [] : this.router.match(publish.topic)
  }

  private append(publish: PublishContext, routes: RouteConfig[]): Promise<void> {
    // a QoS 1 retransmission (DUP) is appended once (publish-dedup.ts)
    const once = publishOnce(publish)
    // one route is the common case: one promise, no Promise.all
    if (routes.length === 1 && routes[0]) return this.appendTo(publish, routes[0], once)
    return Promise.all(routes.map((route) => this.appendTo(publish, route, once))).then(noop)
  }

  private appendTo(publish: PublishContext, route: RouteConfig, once: AppendOnce | undefined): Promise<void> {
    const { topic, qos, clientId, payload: value } = publish
    const record = { key: keyFor(route, topic, clientId), value, topic, qos, clientId }
    const appended = once
      ? this.log.appendOnce(route.stream, [record], once).then((r) => this.logDuplicate(r, publish, route))
      : this.log.append(route.stream, [record])
    return appended.then(noop, (err: unknown) => {
      // a store that refuses writes was reported once, as a state change: not once per publish
      if (!(err instanceof StoreError)) this.logger.error({ err, stream: route.stream, topic, clientId, qos }, 'log append failed')
      throw err
    })
  }
}
