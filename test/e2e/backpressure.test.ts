import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqttPacket from 'mqtt-packet'
import { afterEach, describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { RawClient } from '../helpers/raw-mqtt.js'

// store-high-water in a real gateway (node dist/src/cli.js; `npm run build` first): the key reaches
// the store, the broker holds publishers over it (and logs the reason once), HTTP producers get 429
// meanwhile, and nothing the flood sent is lost. The disk is the real one, so the mark is the
// smallest allowed (64 KiB): a few 64 KiB publishes are over it.

let gw: GatewayProcess | undefined
const clients: RawClient[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.end()
  await gw?.stop()
  gw = undefined
})

const KiB = 1024

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) / 1024
}

async function recordCount(api: string): Promise<number> {
  const res = await fetch(`${api}/api/v1/streams/bulk`)
  return ((await res.json()) as { records: number }).records
}

function produce(api: string): Promise<Response> {
  return fetch(`${api}/api/v1/streams/bulk/records`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ value: 'over http', encoding: 'utf8' })
  })
}

describe('store-high-water in the gateway', () => {
  it('holds MQTT publishers and answers HTTP produce 429 while the store is over the mark, and loses nothing', async () => {
    const dir = tempDataDir('e2e-backpressure')
    const config = join(dir, 'culex.yaml')
    writeFileSync(config, 'streams:\n  bulk:\n    partitions: 2\nroutes:\n  - filter: flood/#\n    stream: bulk\n    key: none\n')
    gw = await GatewayProcess.start(join(dir, 'data'), ['--config', config, '--store-high-water', '64KiB', '--durability', 'fsync'])
    const pid = gw.child.pid ?? 0
    const rssBefore = rssMiB(pid)
    let rssPeak = rssBefore

    // four QoS 0 floods of 64 KiB publishes, at most 400 each or 4 s
    const deadline = Date.now() + 4000
    const packet = mqttPacket.generate({ cmd: 'publish', topic: 'flood/x', payload: Buffer.alloc(64 * KiB, 0x62), qos: 0, retain: false, dup: false })
    let sent = 0
    const flood = async (i: number): Promise<void> => {
      const c = await RawClient.connected(gw?.port('mqtt') ?? 0, `flood-${i}`)
      clients.push(c)
      for (let n = 0; n < 400 && Date.now() < deadline && !c.closed; n++) {
        sent++
        if (!c.socket.write(packet)) {
          const late = new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())))
          await Promise.race([once(c.socket, 'drain'), late])
        }
        rssPeak = Math.max(rssPeak, rssMiB(pid))
      }
    }
    // meanwhile, HTTP produce until the store refuses one (bounded in count and time)
    const statuses: number[] = []
    let refused: Response | undefined
    const http = async (): Promise<void> => {
      await new Promise((resolve) => setTimeout(resolve, 200))
      while (!refused && statuses.length < 300 && Date.now() < deadline) {
        const res = await produce(gw?.api ?? '')
        statuses.push(res.status)
        if (res.status === 429) refused = res
        else await res.arrayBuffer()
      }
    }
    await Promise.all([flood(1), flood(2), flood(3), flood(4), http()])
    const accepted = statuses.filter((s) => s === 200).length
    expect(refused?.status).toBe(429)
    expect(refused?.headers.get('retry-after')).toBe('1')
    expect(((await refused?.json()) as { error?: string }).error).toBe('STORE_BACKPRESSURE')
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true)

    // nothing is dropped: every publish the floods wrote, and every produce answered 200, is in the log
    const until = Date.now() + 30_000
    while ((await recordCount(gw.api)) < sent + accepted && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100))
    expect(await recordCount(gw.api)).toBe(sent + accepted)
    // the broker said why it held publishers (once per 10 s, with the count)
    expect(gw.logs.some((l) => l.msg === 'refused' && l.reason === 'store-backpressure')).toBe(true)
    process.stdout.write(
      `e2e backpressure: ${sent} x 64 KiB QoS 0, ${statuses.length} HTTP produces (${accepted} accepted before the first 429); ` +
        `gateway RSS ${rssBefore.toFixed(0)} MiB before, ${rssPeak.toFixed(0)} MiB at most\n`
    )

    // drained: the store takes HTTP producers again
    const after = await produce(gw.api)
    expect(after.status).toBe(200)
  }, 60_000)
})
