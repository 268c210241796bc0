// A load-generator process: MQTT.js clients that publish, subscribe or just stay connected, driven by
// the bench runner over IPC (see lib/protocol.ts). Only ever connects to 127.0.0.1.
import { connect as netConnect, type Socket } from 'node:net'
import { MqttClient, type IClientOptions } from 'mqtt'
import type { IdleTask, PubTask, SubTask, Task } from './lib/protocol.js'
import { newWorkerState, noteError as noteErrorOf, nowMs, progressOf, requireRunner, send, serveRunner } from './lib/worker-side.js'

const HOST = '127.0.0.1'
const PROGRESS_EVERY_MS = 50

requireRunner('bench worker')

const state = newWorkerState()
const clients: MqttClient[] = []
let latencies: Float64Array | null = null
let latencyCount = 0
let index = 0
let onGo: () => void = () => {}
let onCredit: (upTo: number) => void = () => {}

const noteError = (err: unknown): void => noteErrorOf(state, err)

function newClient(port: number, clientId: string, localAddress?: string, keepalive = 60): MqttClient {
  const options: IClientOptions = {
    clientId,
    clean: true,
    keepalive,
    reconnectPeriod: 0,
    connectTimeout: 60_000,
    protocolVersion: 4,
    resubscribe: false
  }
  const builder = (): Socket => {
    const socket = netConnect({ host: HOST, port, localAddress })
    socket.setNoDelay(true)
    return socket
  }
  const client = new MqttClient(builder, options)
  clients.push(client)
  return client
}

function connected(client: MqttClient): Promise<void> {
  return new Promise((res, rej) => {
    const onConnect = (): void => {
      client.off('error', onError)
      client.off('close', onClose)
      res()
    }
    const onError = (err: Error): void => {
      client.off('connect', onConnect)
      client.off('close', onClose)
      rej(err)
    }
    const onClose = (): void => {
      client.off('connect', onConnect)
      client.off('error', onError)
      rej(new Error('closed before CONNACK'))
    }
    client.once('connect', onConnect)
    client.once('error', onError)
    client.once('close', onClose)
  })
}

// ---- subscribers -------------------------------------------------------------------------

async function initSub(t: SubTask): Promise<void> {
  if (t.latency) latencies = new Float64Array(1 << 16)
  let warmupUntil = Infinity
  onGo = () => {
    warmupUntil = state.goAt + t.warmupMs
  }
  const onMessage = (_topic: string, payload: Buffer): void => {
    const now = nowMs()
    state.received++
    state.firstRecvAt ??= now
    state.lastRecvAt = now
    if (latencies !== null && payload.length >= 8) {
      const sentAt = payload.readDoubleLE(0)
      if (sentAt >= warmupUntil) {
        if (latencyCount === latencies.length) {
          if (latencyCount >= 1 << 24) return
          const bigger = new Float64Array(latencies.length * 2)
          bigger.set(latencies)
          latencies = bigger
        }
        latencies[latencyCount++] = now - sentAt
      }
    }
  }
  await Promise.all(
    Array.from({ length: t.clients }, async (_, c) => {
      const client = newClient(t.port, `${t.clientIdPrefix}-w${index}-c${c}`)
      client.on('message', onMessage)
      client.on('error', noteError)
      await connected(client)
      state.connected++
      await client.subscribeAsync(t.filter, { qos: t.qos })
    })
  )
}

// ---- publishers --------------------------------------------------------------------------

async function initPub(t: PubTask): Promise<void> {
  let credit = t.initialCredit ?? Infinity
  let endAt = Infinity
  let startAt = 0
  let finished = 0
  const pumps: (() => void)[] = []

  const markDone = (): void => {
    if (++finished === t.clients) state.pubDone = true
  }

  const setup = async (c: number): Promise<void> => {
    const client = newClient(t.port, `${t.clientIdPrefix}-w${index}-c${c}`)
    client.on('error', noteError)
    await connected(client)
    state.connected++
    const topic = t.topic.replaceAll('{w}', String(index)).replaceAll('{c}', String(c))
    let sent = 0
    let outstanding = 0
    let done = false
    let pumping = false
    let again = false
    const publishOpts = { qos: t.qos }
    const onAck = (err?: Error): void => {
      outstanding--
      if (err) noteError(err)
      else {
        state.acked++
        state.lastAckAt = nowMs()
      }
      pump()
    }
    const pump = (): void => {
      if (pumping) {
        again = true
        return
      }
      pumping = true
      do {
        again = false
        while (!done && outstanding < t.window && sent < t.maxPerClient && state.sent < credit) {
          const now = nowMs()
          if (now >= endAt) break
          if (t.ratePerClient > 0 && sent >= ((now - startAt) * t.ratePerClient) / 1000) break
          const payload = Buffer.alloc(t.payloadBytes)
          payload.writeDoubleLE(now, 0)
          sent++
          state.sent++
          outstanding++
          state.firstSendAt ??= now
          client.publish(topic, payload, publishOpts, onAck)
        }
      } while (again)
      pumping = false
      if (!done && outstanding === 0 && (sent >= t.maxPerClient || nowMs() >= endAt)) {
        done = true
        markDone()
      }
    }
    pumps.push(pump)
  }

  onGo = () => {
    startAt = state.goAt
    endAt = startAt + t.durationMs
    for (const pump of pumps) pump()
    // time-based stop and paced sending need a clock tick; 1 ms is the finest Node timer
    const tick = setInterval(
      () => {
        for (const pump of pumps) pump()
        if (state.pubDone) clearInterval(tick)
      },
      t.ratePerClient > 0 ? 1 : 20
    )
  }
  onCredit = (upTo) => {
    if (upTo <= credit) return
    credit = upTo
    for (const pump of pumps) pump()
  }
  const ids = Array.from({ length: t.clients }, (_, c) => c)
  await Promise.all(ids.map(setup))
}

// ---- idle connections --------------------------------------------------------------------

async function initIdle(t: IdleTask): Promise<void> {
  onGo = () => {
    state.connectStartAt = nowMs()
    let next = 0
    const one = async (): Promise<void> => {
      while (next < t.clients) {
        const c = next++
        const local = t.localAddresses[c % t.localAddresses.length]
        // keepalive 0: no PINGREQ traffic while idle (the scenario measures connections, not pings)
        const client = newClient(t.port, `${t.clientIdPrefix}-w${index}-c${c}`, local, 0)
        try {
          await connected(client)
          state.connected++
          state.connectEndAt = nowMs()
          client.on('error', noteError)
        } catch (err) {
          state.failed++
          noteError(err)
          client.end(true)
        }
      }
    }
    void Promise.all(Array.from({ length: Math.min(t.concurrency, t.clients) }, one))
  }
}

// ---- control -----------------------------------------------------------------------------

let lastProgress = ''
const progressTimer = setInterval(() => {
  const p = progressOf(state)
  const key = JSON.stringify(p)
  if (key === lastProgress) return
  lastProgress = key
  send({ type: 'progress', ...p })
}, PROGRESS_EVERY_MS)

serveRunner<Task>(state, {
  init(t, i) {
    index = i
    return t.kind === 'sub' ? initSub(t) : t.kind === 'pub' ? initPub(t) : initIdle(t)
  },
  go: () => onGo(),
  credit: (upTo) => onCredit(upTo),
  result() {
    clearInterval(progressTimer)
    const samples = latencies === null ? null : Array.from(latencies.subarray(0, latencyCount))
    return { ...state, latencies: samples }
  },
  close() {
    for (const client of clients) client.end(true)
  }
})
