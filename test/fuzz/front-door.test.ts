import { connect as netConnect, type Socket } from 'node:net'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'
import { MUTATIONS, encode, int, mulberry32, mutate, validPacket, type Mutation, type Random } from './packets.js'

// The front door under fuzz: at least 100,000 generated inputs (valid packets, and packets broken
// in a dozen ways) over many connections against a gateway process, while a well-behaved client
// publishes and receives at QoS 1. The gateway must not exit, must close offending connections,
// must lose nothing of the well-behaved client's nor make it wait over a second, must keep what
// was stored before, and must give back its memory. The seed is printed; CULEX_FUZZ_SEED replays.

const SEED = Number(process.env.CULEX_FUZZ_SEED ?? Date.now() % 2 ** 31)
const INPUTS = 100_000
const FUZZERS = 24
const TIME_LIMIT_MS = 100_000
const RSS_BOUND_MB = 150
const ROUND_GROWTH_MB = 40

let gw: GatewayProcess

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) / 1024
}

function open(port: number): Promise<Socket | null> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port })
    s.once('connect', () => resolve(s))
    s.once('error', () => resolve(null))
    s.on('data', () => {}) // read and drop what the broker sends
  })
}

/** One fuzzing connection after another, until the shared budget of inputs is spent. */
async function fuzzer(r: Random, port: number, budget: { left: number; deadline: number; connections: number; closedByBroker: number }): Promise<void> {
  while (budget.left > 0 && Date.now() < budget.deadline) {
    const socket = await open(port)
    if (!socket) continue
    budget.connections++
    let closed = false
    socket.once('close', () => (closed = true))
    // most connections start properly; some send anything first
    if (r() < 0.85) socket.write(encode(validPacket(r, true)))
    const length = 1 + int(r, 40)
    for (let i = 0; i < length && !closed && budget.left > 0; i++) {
      budget.left--
      const m: Mutation = r() < 0.2 ? (MUTATIONS[int(r, MUTATIONS.length)] ?? 'none') : 'none'
      socket.write(mutate(r, encode(validPacket(r, false)), m))
      if (socket.writableLength > 256 * 1024) await new Promise((resolve) => socket.once('drain', resolve).once('close', resolve))
      if (i % 8 === 7) await new Promise((resolve) => setImmediate(resolve))
    }
    await new Promise((resolve) => setTimeout(resolve, int(r, 3)))
    if (closed) budget.closedByBroker++
    socket.destroy()
  }
}

/** A fresh, connected client sends one input that breaks the protocol; the broker must close it. */
async function offendingConnectionCloses(r: Random, port: number, kind: Mutation): Promise<boolean> {
  const socket = await open(port)
  if (!socket) return false
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true))
    setTimeout(() => resolve(false), 2000)
  })
  socket.write(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `bad-${int(r, 1e9)}`, keepalive: 0 }))
  const publish = encode({ cmd: 'publish', topic: 'fz/bad/topic', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false })
  socket.write(mutate(r, publish, kind))
  const result = await closed
  socket.destroy()
  return result
}

beforeAll(async () => {
  gw = await GatewayProcess.start(tempDataDir('fuzz'), ['--max-connections-per-address', '0'])
})
afterAll(async () => {
  await gw.stop()
})

describe('fuzzing the front door', () => {
  it(`survives ${INPUTS.toLocaleString('en-US')} generated inputs with nothing lost (seed from CULEX_FUZZ_SEED or printed)`, async () => {
    process.stdout.write(`fuzz seed ${SEED} (CULEX_FUZZ_SEED=${SEED} replays it)\n`)
    const r = mulberry32(SEED)
    const port = gw.port('mqtt')
    const pid = gw.child.pid!

    // stored before the run: a retained message and an offline session's queue
    const setup = await connect(gw.url('mqtt'))
    await setup.publishAsync('keep/r', 'kept', { qos: 1, retain: true })
    const keeper = await connect(gw.url('mqtt'), { clientId: 'keeper', clean: false })
    await keeper.subscribeAsync('keep/q', { qos: 1 })
    await keeper.endAsync()
    for (let i = 0; i < 5; i++) await setup.publishAsync('keep/q', `q${i}`, { qos: 1 })
    await closeAll(setup)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const rssBefore = rssMb(pid)

    // the well-behaved client: publishes QoS 1 one after another and receives them all, in order
    const [wb, wbInbox] = await connectWithInbox(gw.url('mqtt'), { clientId: 'well-behaved' })
    await wb.subscribeAsync('wb/#', { qos: 1 })
    let wbSent = 0
    let slowest = 0
    let fuzzing = true
    const wellBehaved = (async () => {
      while (fuzzing) {
        const t = Date.now()
        await wb.publishAsync('wb/x', String(wbSent), { qos: 1 })
        slowest = Math.max(slowest, Date.now() - t)
        wbSent++
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()

    // two rounds of half the inputs each: the first finds the high-water mark of the allocators,
    // the second must not raise it much (a leak grows with every round)
    const started = Date.now()
    const budget = { left: INPUTS / 2, deadline: started + TIME_LIMIT_MS, connections: 0, closedByBroker: 0 }
    await Promise.all(Array.from({ length: FUZZERS }, (_, i) => fuzzer(mulberry32(SEED + i + 1), port, budget)))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const rssFirstRound = rssMb(pid)
    budget.left += INPUTS / 2
    await Promise.all(Array.from({ length: FUZZERS }, (_, i) => fuzzer(mulberry32(SEED + FUZZERS + i + 1), port, budget)))
    const fuzzMs = Date.now() - started

    // connections that break the protocol are closed
    const kinds: Mutation[] = ['huge-length', 'bad-varint', 'qos3', 'bad-utf8', 'nul', 'wildcard-topic']
    const checks = await Promise.all(Array.from({ length: 60 }, (_, i) => offendingConnectionCloses(r, port, kinds[i % kinds.length] ?? 'qos3')))
    fuzzing = false
    await wellBehaved

    process.stdout.write(
      `fuzz: ${INPUTS - budget.left} inputs in ${fuzzMs} ms over ${budget.connections} connections (${budget.closedByBroker} closed by the broker); ` +
        `well-behaved client: ${wbSent} publishes, slowest ack ${slowest} ms\n`
    )
    expect(budget.left).toBe(0)
    expect(gw.child.exitCode).toBeNull()
    expect(checks.filter((closed) => !closed)).toEqual([])
    expect(budget.closedByBroker).toBeGreaterThan(0)

    // the well-behaved client lost nothing and never waited a second
    const received = await wbInbox.waitFor(wbSent, 10_000)
    expect(received.filter((m) => m.topic === 'wb/x').map((m) => Number(m.payload))).toEqual(Array.from({ length: wbSent }, (_, i) => i))
    expect(slowest).toBeLessThan(1000)
    await closeAll(wb)

    // what was stored before is intact
    const reader = await connect(gw.url('mqtt'))
    const retained = new Inbox(reader)
    await reader.subscribeAsync('keep/r', { qos: 1 })
    expect((await retained.waitFor(1)).map((m) => m.payload)).toEqual(['kept'])
    const [again, queued] = await connectWithInbox(gw.url('mqtt'), { clientId: 'keeper', clean: false })
    expect((await queued.waitFor(5)).map((m) => m.payload)).toEqual(['q0', 'q1', 'q2', 'q3', 'q4'])
    await closeAll(reader, again)

    // and the memory comes back (connections gone, buffers freed)
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const rssAfter = rssMb(pid)
    process.stdout.write(
      `fuzz: RSS ${rssBefore.toFixed(0)} MB before, ${rssFirstRound.toFixed(0)} MB after the first round, ${rssAfter.toFixed(0)} MB at the end ` +
        `(bounds: +${RSS_BOUND_MB} MB in all, +${ROUND_GROWTH_MB} MB in the second round)\n`
    )
    expect(rssAfter - rssBefore).toBeLessThan(RSS_BOUND_MB)
    expect(rssAfter - rssFirstRound).toBeLessThan(ROUND_GROWTH_MB)
  }, 180_000)
})
