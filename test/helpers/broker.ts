import { pino } from 'pino'
import { afterEach } from 'vitest'
import { createBroker, type Broker } from '../../src/broker/broker.js'
import type { HookChain } from '../../src/broker/hooks.js'
import { startListeners, type Listener } from '../../src/broker/listeners.js'
import { admission } from '../../src/broker/admission.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { DEFAULTS, type LimitsSection } from '../../src/config/index.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from './gateway-process.js'

// A broker in the test process, imported from the TypeScript sources (the ack-order patch loads
// from them too), on a fresh RocksDB and a free port on 127.0.0.1.

export interface InProcessBroker {
  broker: Broker
  counters: BrokerCounters
  store: Store
  port: number
  url: string
  close(): Promise<void>
}

export async function startBroker(hooks: HookChain, limits: Partial<LimitsSection> = {}): Promise<InProcessBroker> {
  const store = await Store.open({ dataDir: tempDataDir('broker'), durability: 'fsync' })
  let broker: Broker | undefined
  let listeners: Listener[] = []
  const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
  const counters = new BrokerCounters(logger)
  const close = async (): Promise<void> => {
    await Promise.all(listeners.map((l) => l.close()))
    await broker?.close()
    await store.close()
  }
  try {
    broker = await createBroker({ store, logger, hooks, counters, maxClientIdLength: 64, limits: { ...DEFAULTS, ...limits }, brokerId: null })
    const aedes = broker.aedes
    const config = { ...DEFAULTS, ...limits, mqttPort: 0, wsPort: null }
    listeners = await startListeners(
      config,
      admission(config, counters, (s, r) => aedes.handle(s, r))
    )
  } catch (err) {
    await close()
    throw err
  }
  const port = listeners[0]?.port ?? 0
  return { broker, counters, store, port, url: `mqtt://127.0.0.1:${port}`, close }
}

/** startBroker, with every broker closed after each test of the file. */
export function brokersClosedAfterEach(): (hooks: HookChain, limits?: Partial<LimitsSection>) => Promise<InProcessBroker> {
  const open: InProcessBroker[] = []
  afterEach(async () => {
    for (const b of open.splice(0)) await b.close()
  })
  return async (hooks, limits) => {
    const b = await startBroker(hooks, limits)
    open.push(b)
    return b
  }
}
