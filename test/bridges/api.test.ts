import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Culex, sleep } from './e2e.js'

// The bridges' HTTP API and gateway wiring, through a real Culex process and a webhook bridge to
// an HTTP receiver in this test: list, describe, pause and resume; the bridge's progress group is
// visible but no consumer may join or reset it.

let receiver: Server
const received: string[] = []
let culex: Culex

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      const batch = JSON.parse(body) as { records: Array<{ value: string }> }
      for (const r of batch.records) received.push(r.value)
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  const port = (receiver.address() as AddressInfo).port
  culex = await Culex.start({
    streams: { orders: { partitions: 2 } },
    bridges: [
      { 'name': 'hook', 'kind': 'webhook', 'direction': 'out', 'streams': ['orders'], 'batch-size': 50, 'target': { url: `http://127.0.0.1:${port}/in` } }
    ]
  })
}, 30_000)

afterAll(async () => {
  await culex?.dispose()
  await new Promise((r) => receiver?.close(r))
})

async function until(test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(20)
  }
}

describe('bridges over the HTTP API', () => {
  it('lists the bridge with its state, streams, counters and lag', async () => {
    await culex.produce('orders', [
      { key: 'a', value: 'a1' },
      { key: 'b', value: 'b1' }
    ])
    await until(() => received.length === 2)
    const list = await culex.call<{ bridges: Array<Record<string, unknown>> }>('GET', '/api/v1/bridges')
    expect(list.status).toBe(200)
    expect(list.body.bridges).toHaveLength(1)
    const s = await culex.waitForBridge('hook', (b) => b.lag === 0 && b.delivered === 2)
    expect(s).toMatchObject({ name: 'hook', kind: 'webhook', direction: 'out', streams: ['orders'], state: 'running', lastError: null, deadLettered: 0 })
  })

  it('pause stops deliveries and lag grows; resume delivers what was held back, in order', async () => {
    const paused = await culex.call<{ state: string }>('POST', '/api/v1/bridges/hook/pause')
    expect(paused.status).toBe(200)
    expect(paused.body.state).toBe('paused')
    const before = received.length
    await culex.produce('orders', [
      { key: 'a', value: 'a2' },
      { key: 'a', value: 'a3' }
    ])
    await sleep(300)
    expect(received.length).toBe(before)
    expect((await culex.bridge('hook')).lag).toBe(2)
    const resumed = await culex.call<{ state: string }>('POST', '/api/v1/bridges/hook/resume')
    expect(resumed.status).toBe(200)
    await until(() => received.length === before + 2)
    expect(received.slice(before)).toEqual(['a2', 'a3'])
  })

  it('answers 404 UNKNOWN_BRIDGE for a bridge that is not configured', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/bridges/nope'],
      ['POST', '/api/v1/bridges/nope/pause'],
      ['POST', '/api/v1/bridges/nope/resume']
    ] as const) {
      const r = await culex.call<{ error: string; message: string }>(method, path)
      expect(r.status).toBe(404)
      expect(r.body.error).toBe('UNKNOWN_BRIDGE')
      expect(r.body.message).toMatch(/no bridge is named "nope"/)
    }
  })

  it("shows the bridge's progress as the group bridge.<name>, and refuses consumers joining or resetting it", async () => {
    const group = await culex.call<{ partitions: Array<{ committed: number | null }> }>('GET', '/api/v1/groups/bridge.hook')
    expect(group.status).toBe(200)
    const join = await culex.call<{ error: string; message: string }>('POST', '/api/v1/groups/bridge.hook/members', { streams: ['orders'] })
    expect(join.status).toBe(409)
    expect(join.body.error).toBe('GROUP_ACTIVE')
    expect(join.body.message).toMatch(/stored progress of bridge hook/)
    const reset = await culex.call<{ error: string }>('POST', '/api/v1/groups/bridge.hook/reset', { stream: 'orders', to: 'earliest' })
    expect(reset.status).toBe(409)
    expect(reset.body.error).toBe('GROUP_ACTIVE')
  })
})
