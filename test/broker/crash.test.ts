import { describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'

// Acknowledged means durable: kill -9 right after the last PUBACK, restart on the same data dir,
// and every acknowledged retained message and every message queued for an offline session is there.
describe('crash durability (kill -9 after the acks)', () => {
  it.each(['fsync', 'none'] as const)('keeps every acknowledged QoS 1 message with durability %s', async (durability) => {
    const dataDir = tempDataDir(`crash-${durability}`)
    const count = 300
    const clientId = 'offline-sub'
    let gw = await GatewayProcess.start(dataDir, ['--durability', durability])
    try {
      const sub = await connect(gw.url('mqtt'), { clientId, clean: false })
      await sub.subscribeAsync('queue/#', { qos: 1 })
      await sub.endAsync()

      // Several publishers at once, so acks come out of shared group commits.
      const publishers = await Promise.all([1, 2, 3].map(() => connect(gw.url('mqtt'))))
      await Promise.all(
        publishers.flatMap((pub, p) =>
          Array.from({ length: count / publishers.length }, (_, j) => {
            const i = p * (count / publishers.length) + j
            return [pub.publishAsync(`retained/${i}`, `r${i}`, { qos: 1, retain: true }), pub.publishAsync(`queue/${i}`, `q${i}`, { qos: 1 })]
          }).flat()
        )
      )
      await gw.kill9()
      await closeAll(...publishers)
    } finally {
      await gw.kill9()
    }

    gw = await GatewayProcess.start(dataDir, ['--durability', durability])
    try {
      const [reader, retainedInbox] = await connectWithInbox(gw.url('mqtt'))
      await reader.subscribeAsync('retained/#', { qos: 1 })
      const retained = await retainedInbox.waitFor(count, 15_000)
      expect(new Set(retained.map((m) => `${m.topic}=${m.payload}`)).size).toBe(count)
      for (const m of retained) expect(m.payload).toBe(`r${m.topic.split('/')[1]}`)

      const [sub, queued] = await connectWithInbox(gw.url('mqtt'), { clientId, clean: false })
      const got = await queued.waitFor(count, 15_000)
      const ids = got.map((m) => Number(m.topic.split('/')[1]))
      expect(new Set(ids).size).toBe(count)
      // each publisher's messages keep their order in the offline queue
      for (let p = 0; p < 3; p++) {
        const mine = ids.filter((i) => Math.floor(i / (count / 3)) === p)
        expect(mine).toEqual([...mine].sort((a, b) => a - b))
      }
      await closeAll(reader, sub)
    } finally {
      expect(await gw.stop()).toBe(0)
    }
  })
})
