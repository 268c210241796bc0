import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { ApiRecord } from '../../src/http/wire.js'
import { call } from '../e2e/helpers.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'

// Delayed entries are durable: a real gateway process (dist/, `npm run build` first) is stopped
// with entries pending and started again on the same data dir. What is not due yet arrives at its
// due time, never before; what fell due while it was down is delivered at once at start.

const running: GatewayProcess[] = []
afterEach(async () => {
  for (const g of running.splice(0)) await g.kill9()
})

function configFile(dir: string): string {
  const file = join(dir, 'culex.yaml')
  writeFileSync(file, 'streams:\n  jobs:\n    partitions: 1\n')
  return file
}

async function start(dir: string, args: string[] = []): Promise<GatewayProcess> {
  const g = await GatewayProcess.start(dir, ['--config', configFile(dir), ...args])
  running.push(g)
  return g
}

async function jobs(g: GatewayProcess): Promise<ApiRecord[]> {
  const res = await call(g.api, 'GET', '/api/v1/streams/jobs/partitions/0/records?encoding=utf8')
  return res.body.records as ApiRecord[]
}

/** A persistent session subscribed to a/# at QoS 1, then disconnected: it gets what is published meanwhile. */
async function persistentSubscriber(g: GatewayProcess): Promise<void> {
  const sub = await connect(g.url('mqtt'), { clientId: 'delayed-sub', clean: false })
  await sub.subscribeAsync('a/#', { qos: 1 })
  await sub.endAsync()
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('delayed entries across a restart', () => {
  it('delivers an MQTT message and appends an HTTP record stored before a restart at their due time, not before', async () => {
    const dir = tempDataDir('delayed-restart')
    let g = await start(dir)
    await persistentSubscriber(g)
    const pub = await connect(g.url('mqtt'))
    const t0 = Date.now()
    await pub.publishAsync('$delayed/4/a/x', 'after the restart', { qos: 1 })
    await closeAll(pub)
    const produced = await call(g.api, 'POST', '/api/v1/streams/jobs/records', { value: 'job', encoding: 'utf8', delayMs: 4000 })
    expect(produced.status).toBe(202)
    expect(await g.stop()).toBe(0)
    running.splice(running.indexOf(g), 1)

    g = await start(dir)
    const [sub, inbox] = await connectWithInbox(g.url('mqtt'), { clientId: 'delayed-sub', clean: false })
    const arrived: number[] = []
    sub.on('message', () => arrived.push(Date.now()))
    // not before the due time
    while (Date.now() < t0 + 3500) {
      expect(inbox.messages).toEqual([])
      expect(await jobs(g)).toEqual([])
      await new Promise((r) => setTimeout(r, 100))
    }
    const [m] = await inbox.waitFor(1, 4000)
    expect(m).toMatchObject({ topic: 'a/x', payload: 'after the restart', qos: 1 })
    expect(arrived[0]! - t0).toBeGreaterThanOrEqual(4000)
    await until('the record appended', async () => (await jobs(g)).length === 1, 3000)
    const [r] = await jobs(g)
    expect(r).toMatchObject({ value: 'job' })
    expect(r!.timestamp - t0).toBeGreaterThanOrEqual(4000)
    // delivered once
    expect((await inbox.settle(500)).length).toBe(1)
    await closeAll(sub)
  })

  it('delivers at once at start what fell due while the gateway was down (killed with -9 after the PUBACK and the 202), even with delayed-enabled false', async () => {
    const dir = tempDataDir('delayed-past-due')
    let g = await start(dir)
    await persistentSubscriber(g)
    const pub = await connect(g.url('mqtt'))
    await pub.publishAsync('$delayed/1/a/y', 'while down', { qos: 1 })
    const produced = await call(g.api, 'POST', '/api/v1/streams/jobs/records', { value: 'overdue', encoding: 'utf8', delayMs: 1000 })
    expect(produced.status).toBe(202)
    // acknowledged means stored: a crash right after loses nothing
    await g.kill9()
    await closeAll(pub)
    running.splice(running.indexOf(g), 1)
    await new Promise((r) => setTimeout(r, 1500))

    // taking no new delayed work does not strand what is stored
    g = await start(dir, ['--delayed-enabled', 'false'])
    const ready = Date.now()
    await until('the record appended', async () => (await jobs(g)).length === 1, 1000)
    expect((await jobs(g))[0]).toMatchObject({ value: 'overdue' })
    const [sub, inbox] = await connectWithInbox(g.url('mqtt'), { clientId: 'delayed-sub', clean: false })
    const [m] = await inbox.waitFor(1, 1000)
    expect(m).toMatchObject({ topic: 'a/y', payload: 'while down' })
    expect(Date.now() - ready).toBeLessThan(1500)
    expect((await inbox.settle(300)).length).toBe(1)
    await closeAll(sub)
  })
})
