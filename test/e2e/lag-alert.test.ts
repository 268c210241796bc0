import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/index.js'
import { Gateway } from '../../src/gateway.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connectWithInbox } from '../helpers/mqtt.js'

// A shared group's lag alert, end to end: the gateway publishes each crossing on $SYS.

describe('shared group lag alerts', () => {
  it('publishes on $SYS/culex/alerts/lag/<group> when lag reaches lagAlert, and when it falls back', async () => {
    const dir = tempDataDir('lag-alert')
    const file = join(dir, 'culex.yaml')
    writeFileSync(file, 'streams:\n  jobs:\n    partitions: 1\n')
    const flags = { 'config': file, 'data-dir': join(dir, 'data'), 'mqtt-port': 0, 'ws-port': 0, 'tls-port': 0, 'wss-port': 0, 'admin-port': 0 }
    const gateway = await Gateway.start(loadConfig({ env: {}, flags }), pino({ level: 'silent' }))
    const port = (kind: string): number => gateway.addresses().find((a) => a.kind === kind)?.port ?? 0
    const api = `http://127.0.0.1:${port('admin')}`
    const call = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const res = await fetch(api + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      expect(res.status, path).toBeLessThan(300)
      return (await res.json()) as Record<string, unknown>
    }
    const [watcher, inbox] = await connectWithInbox(`mqtt://127.0.0.1:${port('mqtt')}`, { clientId: 'ops' })
    try {
      await watcher.subscribeAsync('$SYS/culex/alerts/lag/#', { qos: 0 })
      await call('PUT', '/api/v1/shared-groups/billing', { streams: ['jobs'], lagAlert: 3 })
      await call('POST', '/api/v1/streams/jobs/records', { records: [{ value: 'a' }, { value: 'b' }], encoding: 'utf8' })
      // under the threshold: nothing yet (a fetch checks lag)
      const none = (await call('POST', '/api/v1/shared-groups/billing/fetch', { consumer: 'w' })).records as unknown[]
      expect(none).toHaveLength(2)
      await call('POST', '/api/v1/streams/jobs/records', { value: 'c', encoding: 'utf8' })
      const got = (await call('POST', '/api/v1/shared-groups/billing/fetch', { consumer: 'w' })).records as Array<Record<string, unknown>>
      const [raised] = await inbox.waitFor(1)
      expect(raised?.topic).toBe('$SYS/culex/alerts/lag/billing')
      expect(JSON.parse(raised!.payload)).toMatchObject({ group: 'billing', lag: 3, alerting: true })
      expect((await call('GET', '/api/v1/shared-groups/billing')).lagAlert).toBe(true)
      const all = [...(none as Array<Record<string, unknown>>), ...got]
      await call('POST', '/api/v1/shared-groups/billing/acks', {
        consumer: 'w',
        acks: all.map((r) => ({ stream: 'jobs', partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, action: 'ack' }))
      })
      const messages = await inbox.waitFor(2)
      expect(JSON.parse(messages[1]!.payload)).toMatchObject({ group: 'billing', lag: 0, alerting: false })
    } finally {
      await closeAll(watcher)
      await gateway.stop()
    }
  })
})
