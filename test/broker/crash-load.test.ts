import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { ReadResponse } from '../../src/http/wire.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { pipelinedPublisher } from '../helpers/load.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'

// kill -9 in the middle of a pipelined load (every publisher keeps 64 QoS 1 publishes in flight,
// so acks come out of shared batches on the commit thread): after a restart, every acknowledged
// publish is in the log and in the offline session's queue. Unacknowledged ones may or may not be.

const CONFIG = 'streams:\n  crash:\n    partitions: 4\nroutes:\n  - filter: crash/#\n    stream: crash\n    key: topic-level:2\n'

describe('crash durability under load (kill -9 mid-stream)', () => {
  it.each(['fsync', 'none'] as const)(
    'loses no acknowledged message with durability %s',
    async (durability) => {
      const dir = tempDataDir(`crash-load-${durability}`)
      const config = join(dir, 'culex.yaml')
      writeFileSync(config, CONFIG)
      // no queue limit: the offline session must hold every acknowledged publish of the run
      const args = ['--config', config, '--durability', durability, '--max-queued-messages', '0']
      let gw = await GatewayProcess.start(join(dir, 'data'), args)
      const sub = await connect(gw.url('mqtt'), { clientId: 'offline', clean: false })
      await sub.subscribeAsync('crash/#', { qos: 1 })
      await sub.endAsync()

      // load for a while, then kill -9 while publishes are still in flight
      const started = Date.now()
      let killed = false
      const publishers = [0, 1, 2, 3].map((p) =>
        pipelinedPublisher(gw.port('mqtt'), `pub-${p}`, (seq) => `crash/p${p}/${seq}`, { window: 64, max: 20_000, until: () => killed })
      )
      while (Date.now() - started < 1500) await new Promise((r) => setTimeout(r, 50))
      await gw.kill9()
      killed = true
      const runs = await Promise.all(publishers)
      const acked = runs.flatMap((r) => r.acked)
      const sent = runs.reduce((n, r) => n + r.sent, 0)
      expect(acked.length).toBeGreaterThan(500)
      expect(sent).toBeGreaterThan(acked.length) // some were in flight at the kill

      gw = await GatewayProcess.start(join(dir, 'data'), args)
      try {
        // the log: every acknowledged publish is a record
        const inLog = new Set<string>()
        for (let p = 0; p < 4; p++) {
          for (let offset = 0; ;) {
            const res = await fetch(`${gw.api}/api/v1/streams/crash/partitions/${p}/records?offset=${offset}&limit=1000&encoding=utf8`)
            const page = (await res.json()) as ReadResponse
            for (const r of page.records) inLog.add(r.value)
            if (page.records.length === 0) break
            offset = page.nextOffset
          }
        }
        expect(acked.filter((m) => !inLog.has(m))).toEqual([])

        // the offline session's queue: every acknowledged publish is queued, each publisher in order
        const [again, inbox] = await connectWithInbox(gw.url('mqtt'), { clientId: 'offline', clean: false })
        const ackedSet = new Set(acked)
        const deadline = Date.now() + 20_000
        const queued = new Set<string>()
        while (Date.now() < deadline) {
          for (const m of inbox.messages) queued.add(m.payload)
          if (acked.every((m) => queued.has(m))) break
          await new Promise((r) => setTimeout(r, 50))
        }
        const missing = acked.filter((m) => !queued.has(m))
        expect(
          missing.length,
          `${missing.length} of ${acked.length} acked not queued (got ${queued.size} after ${Date.now() - deadline + 20_000} ms): ${missing.slice(0, 5).join(' ')} .. ${missing.slice(-5).join(' ')}`
        ).toBe(0)
        for (let p = 0; p < 4; p++) {
          const mine = inbox.messages.map((m) => m.payload).filter((m) => m.startsWith(`pub-${p}:`) && ackedSet.has(m))
          const seqs = mine.map((m) => Number(m.split(':')[1]))
          expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
        }
        await closeAll(again)
      } finally {
        expect(await gw.stop()).toBe(0)
      }
    },
    90_000
  )
})
