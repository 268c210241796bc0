import type { BridgeStatus } from './bridges/types.js'
import type { Listener } from './broker/listeners.js'
import type { Readiness } from './http/server.js'
import type { ReadinessCheck } from './http/wire.js'
import type { Store } from './store/store.js'

// What the gateway tells the HTTP API's probes and status about itself: readiness checks
// (GET /readyz: the store, the listeners, each bridge) and the version. The gateway hands these
// to the API; the API knows them only by its Readiness and GatewayInfo interfaces.

export interface ReadinessSources {
  store: Store
  /** The error that stopped the store's writer, if any (the gateway is then stopping). */
  storeFailure: () => Error | null
  /** The MQTT listeners, once started (the HTTP API starts before them). */
  listeners: () => Listener[] | undefined
  bridges: { list(): Promise<BridgeStatus[]> }
}

/** A bridge that is running or paused by an operator is ready; starting, retrying or stopped is not. */
const READY_BRIDGE_STATES: ReadonlySet<BridgeStatus['state']> = new Set(['running', 'paused'])

export function gatewayReadiness(sources: ReadinessSources): Readiness {
  return {
    async checks(): Promise<ReadinessCheck[]> {
      const checks: ReadinessCheck[] = []
      const failure = sources.storeFailure()
      const { store } = sources
      if (failure !== null) checks.push({ name: 'store', ok: false, detail: `the store refuses writes: ${failure.message}` })
      else if (!store.isOpen) checks.push({ name: 'store', ok: false, detail: 'the store is not open' })
      else {
        const backlog = store.backlog
        checks.push({ name: 'store', ok: true, detail: `open and writable${backlog.over ? ' (over store-high-water: writers are held)' : ''}` })
      }
      const listeners = sources.listeners()
      checks.push(
        listeners === undefined
          ? { name: 'listeners', ok: false, detail: 'the MQTT listeners are not started yet' }
          : { name: 'listeners', ok: true, detail: listeners.map((l) => `${l.kind} ${l.host}:${l.port}`).join(', ') || 'no MQTT listener configured' }
      )
      for (const b of await sources.bridges.list()) {
        const ok = READY_BRIDGE_STATES.has(b.state)
        const detail = b.state === 'retrying' && b.lastError !== null ? `retrying: ${b.lastError}` : b.state
        checks.push({ name: `bridge:${b.name}`, ok, detail })
      }
      return checks
    }
  }
}

export { packageVersion } from './version.js'
