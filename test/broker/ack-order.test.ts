import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { Broker } from '../../src/broker/broker.js'
import type { Listener } from '../../src/broker/listeners.js'
import { patchPublishHandler } from '../../src/broker/qos1-ack-hook.js'
import { DEFAULTS } from '../../src/config.js'
import type { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect } from '../helpers/mqtt.js'

const require = createRequire(import.meta.url)

// The running-broker test loads the compiled modules: the load hook runs in Node's loader
// thread, which reads the compiled qos1-ack-hook.js next to the compiled aedes-patch.js.
async function compiled<T>(path: string): Promise<T> {
  return (await import(new URL(`../../dist/src/${path}`, import.meta.url).href)) as T
}

describe('aedes QoS 1 ack order', () => {
  it('rewrites the installed aedes handler to publish before PUBACK', () => {
    const source = readFileSync(require.resolve('aedes').replace(/aedes\.js$/, 'lib/handlers/publish.js'), 'utf8')
    const patched = patchPublishHandler(source)
    const qos1 = patched.slice(patched.indexOf('case 1:'), patched.indexOf('case 0:'))
    expect(qos1.indexOf('client.broker.publish')).toBeGreaterThan(-1)
    expect(qos1.indexOf('client.broker.publish')).toBeLessThan(qos1.indexOf('new PubAck'))
  })

  it('refuses to patch an aedes whose handler changed shape', () => {
    expect(() => patchPublishHandler('case 1: somethingElse()')).toThrow(/cannot be applied/)
  })

  describe('in a running broker', () => {
    let store: Store | undefined
    let broker: Broker | undefined
    let listeners: Listener[] = []
    afterEach(async () => {
      await Promise.all(listeners.map((l) => l.close()))
      await broker?.close()
      await store?.close()
    })

    it('sends PUBACK and PUBREC only after the publish pipeline (retained, queues, hooks) finished', async () => {
      const { createBroker } = await compiled<typeof import('../../src/broker/broker.js')>('broker/broker.js')
      const { startListeners } = await compiled<typeof import('../../src/broker/listeners.js')>('broker/listeners.js')
      const { Store } = await compiled<typeof import('../../src/store/store.js')>('store/store.js')
      store = await Store.open({ dataDir: tempDataDir('ackorder'), durability: 'fsync' })
      const released: string[] = []
      let release: () => void = () => {}
      const gate = new Promise<void>((r) => (release = r))
      broker = await createBroker({
        store,
        logger: pino({ level: 'silent' }),
        allowAnonymous: true,
        maxClientIdLength: 64,
        brokerId: null,
        publishHooks: {
          admit: () => {},
          clientClosed: () => {},
          published: async (packet) => {
            if (!packet.topic.startsWith('held/')) return
            await gate
            released.push(packet.topic)
          }
        }
      })
      const aedes = broker.aedes
      listeners = await startListeners({ ...DEFAULTS, mqttPort: 0, wsPort: null }, (s, r) => aedes.handle(s, r))
      const client = await connect(`mqtt://127.0.0.1:${listeners[0]!.port}`)
      try {
        const acked: string[] = []
        const q1 = client.publishAsync('held/q1', 'x', { qos: 1 }).then(() => acked.push('held/q1'))
        const q2 = client.publishAsync('held/q2', 'x', { qos: 2 }).then(() => acked.push('held/q2'))
        await new Promise((r) => setTimeout(r, 300))
        expect(acked).toEqual([])
        release()
        await Promise.all([q1, q2])
        expect(released.sort()).toEqual(['held/q1', 'held/q2'])
        expect(acked.sort()).toEqual(['held/q1', 'held/q2'])
      } finally {
        await closeAll(client)
      }
    })
  })
})
