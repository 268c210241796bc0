import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import type { InboundBridgeConfig } from '../../src/bridges/config.js'
import { InboundBridge } from '../../src/bridges/inbound.js'
import { InboundRefused, type InboundMessage, type Source, type SourceContext } from '../../src/bridges/types.js'

// The inbound runner with a scripted source: reconnects with backoff, refuses topics Culex must
// not take, and refuses to publish once paused (so the source does not ack). The real sources
// are driven in the per-kind tests.

const logger = pino({ level: 'silent' })
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

const config: InboundBridgeConfig = {
  name: 'in',
  kind: 'test',
  direction: 'in',
  source: {},
  retry: { backoff: { initialMs: 30, maxMs: 100, multiplier: 2, jitter: 0 }, maxAttempts: 0 }
}

async function until(test: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 10))
  }
}

const msg = (topic: string): InboundMessage => ({ topic, payload: Buffer.from('x'), qos: 1, retain: false })

describe('inbound bridge runner', () => {
  it('publishes as bridge:<name>, reconnects with backoff after the source fails, and reports the state', async () => {
    const published: Array<InboundMessage & { clientId: string }> = []
    const runs: number[] = []
    let ctxSeen: SourceContext | null = null
    const source: Source = {
      run: async (ctx) => {
        runs.push(Date.now())
        ctxSeen = ctx
        if (runs.length <= 2) throw new Error('ECONNREFUSED')
        ctx.connected()
        await ctx.publish(msg('cmd/a'))
        await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }))
      }
    }
    const b = new InboundBridge(config, source, { publish: (m) => Promise.resolve(void published.push(m)) }, logger, () => 0.5)
    cleanups.push(() => b.stop())
    b.start()
    await until(() => published.length === 1)
    expect(published[0]).toMatchObject({ topic: 'cmd/a', clientId: 'bridge:in', qos: 1 })
    const s = await b.status()
    expect(s).toMatchObject({ state: 'running', retries: 2, delivered: 1, lastError: null, direction: 'in', lag: null })
    // 30 then 60 ms between the attempts
    expect((runs[1] ?? 0) - (runs[0] ?? 0)).toBeGreaterThanOrEqual(28)
    expect((runs[2] ?? 0) - (runs[1] ?? 0)).toBeGreaterThanOrEqual(58)
    await b.pause()
    expect((await b.status()).state).toBe('paused')
    // a message the source took after the pause is refused, so the source does not ack it
    await expect(ctxSeen!.publish(msg('cmd/b'))).rejects.toThrow(/stopping/)
    expect(published.length).toBe(1)
  })

  it('refuses topics Culex does not take ($SYS, wildcards, empty, over the limits) with InboundRefused, and counts them', async () => {
    const results: Array<string> = []
    const source: Source = {
      run: async (ctx) => {
        ctx.connected()
        for (const t of ['$SYS/broker/uptime', 'a/+/b', 'a/#', '', 'x'.repeat(40), 'a/b/c/d', 'ok/topic']) {
          try {
            await ctx.publish(msg(t))
            results.push(`ok ${t}`)
          } catch (err) {
            results.push(err instanceof InboundRefused ? `refused ${t}` : `error ${t}`)
          }
        }
        await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }))
      }
    }
    const b = new InboundBridge(config, source, { publish: () => Promise.resolve(), topicLimits: { maxBytes: 32, maxLevels: 3 } }, logger)
    cleanups.push(() => b.stop())
    b.start()
    await until(() => results.length === 7)
    expect(results).toEqual([
      'refused $SYS/broker/uptime',
      'refused a/+/b',
      'refused a/#',
      'refused ',
      `refused ${'x'.repeat(40)}`,
      'refused a/b/c/d',
      'ok ok/topic'
    ])
    expect(await b.status()).toMatchObject({ delivered: 1, deadLettered: 6 })
  })

  it('holds a publish while the store is over its high-water mark', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const published: string[] = []
    const source: Source = {
      run: async (ctx) => {
        ctx.connected()
        await ctx.publish(msg('a'))
        await new Promise<void>((r) => ctx.signal.addEventListener('abort', () => r(), { once: true }))
      }
    }
    const b = new InboundBridge(config, source, { publish: (m) => Promise.resolve(void published.push(m.topic)), whenWritable: () => gate }, logger)
    cleanups.push(() => b.stop())
    b.start()
    await new Promise((r) => setTimeout(r, 100))
    expect(published).toEqual([])
    release()
    await until(() => published.length === 1)
  })
})
