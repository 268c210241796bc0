import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { HookChain } from '../../src/broker/hooks.js'
import { HOOK_URL, SOURCE_PATCHES } from '../../src/broker/source-patches.js'
import { brokersClosedAfterEach } from '../helpers/broker.js'
import { closeAll, connect } from '../helpers/mqtt.js'

const require = createRequire(import.meta.url)

interface HookModule {
  initialize(data: typeof SOURCE_PATCHES): void
  patch(url: string, source: string): string
}

/** The loader hook exactly as Node loads it (the data: URL), with the patches it is given. */
async function hookModule(): Promise<HookModule> {
  const hook = (await import(HOOK_URL)) as HookModule
  hook.initialize(SOURCE_PATCHES)
  return hook
}

const PUBLISH_URL = 'file:///x/node_modules/aedes/lib/handlers/publish.js'
const WRITE_URL = 'file:///x/node_modules/aedes/lib/write.js'
const aedesFile = (file: string): string => readFileSync(require.resolve('aedes').replace(/aedes\.js$/, file), 'utf8')

describe('aedes QoS 1 ack order', () => {
  it('pins aedes to the version the patch was written for', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> }
    expect(pkg.dependencies.aedes).toBe('1.2.0')
    const installed = JSON.parse(readFileSync(require.resolve('aedes').replace(/aedes\.js$/, 'package.json'), 'utf8')) as { version: string }
    expect(installed.version).toBe('1.2.0')
  })

  it('rewrites the installed aedes handler to publish before PUBACK', async () => {
    const patched = (await hookModule()).patch(PUBLISH_URL, aedesFile('lib/handlers/publish.js'))
    const qos1 = patched.slice(patched.indexOf('case 1:'), patched.indexOf('case 0:'))
    expect(qos1.indexOf('client.broker.publish')).toBeGreaterThan(-1)
    expect(qos1.indexOf('client.broker.publish')).toBeLessThan(qos1.indexOf('new PubAck'))
  })

  it('makes aedes write through the outgoing guard and never wait for a slow reader to drain', async () => {
    const patched = (await hookModule()).patch(WRITE_URL, aedesFile('lib/write.js'))
    expect(patched.indexOf('culexOutgoingGuard')).toBeGreaterThan(-1)
    expect(patched.indexOf('culexOutgoingGuard')).toBeLessThan(patched.indexOf('writeToStream'))
    expect(patched).toMatch(/guard === undefined\) \{\s*\/\/ Socket buffer is full - wait for drain/)
  })

  it('refuses to patch an aedes whose files changed shape, and leaves other files alone', async () => {
    const hook = await hookModule()
    await expect(hookModule().then((h) => h.patch(PUBLISH_URL, 'case 1: somethingElse()'))).rejects.toThrow(/QoS 1 PUBACK after publish" cannot be applied/)
    expect(() => hook.patch(WRITE_URL, 'function write () {}')).toThrow(/no waiting for a slow subscriber" cannot be applied/)
    expect(hook.patch('file:///x/node_modules/aedes/lib/utils.js', 'export const x = 1')).toBe('export const x = 1')
  })

  describe('in a running broker, imported from the TypeScript sources', () => {
    const start = brokersClosedAfterEach()

    it('sends PUBACK and PUBREC only after the publish pipeline (retained, queues, hooks) finished', async () => {
      const released: string[] = []
      let release: () => void = () => {}
      const gate = new Promise<void>((r) => (release = r))
      const b = await start(
        new HookChain([
          { name: 'anyone', stage: 'authenticate', authenticate: () => ({ allow: true }) },
          {
            name: 'held',
            stage: 'observe',
            published: async (publish) => {
              if (!publish.topic.startsWith('held/')) return
              await gate
              released.push(publish.topic)
            }
          }
        ])
      )
      const client = await connect(b.url)
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
