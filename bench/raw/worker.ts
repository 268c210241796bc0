// A raw-socket load-generator process: MQTT 3.1.1 over plain node:net sockets, no MQTT.js. CONNECT,
// SUBSCRIBE and one PUBLISH per connection are encoded once (mqtt-packet); each publish then only
// patches its packet id (QoS 1) and its sequence number in a preallocated batch buffer, and a batch
// of up to `window` packets goes out in one socket write. Incoming bytes are split by the fixed
// header only (wire.ts). Driven by the bench runner over the same IPC protocol as bench/worker.ts
// (see lib/protocol.ts). Only ever connects to 127.0.0.1.
import { connect as netConnect, type Socket } from 'node:net'
import { RAW_MISSING_CAP, type Progress, type RawPubConnection, type RawPubTask, type RawSubPublisher, type RawSubTask, type RawTask } from '../lib/protocol.js'
import { newWorkerState, noteError as noteErrorOf, nowMs, progressOf, requireRunner, send, serveRunner } from '../lib/worker-side.js'
import {
  CONNACK,
  encodeConnect,
  encodeDisconnect,
  encodeSubscribe,
  MAX_WINDOW,
  MIN_PAYLOAD,
  packetIdOf,
  PAYLOAD_SEQ,
  PINGRESP,
  PUBACK,
  PUBLISH,
  publishTemplate,
  Scanner,
  SUBACK,
  type PublishTemplate
} from './wire.js'

const HOST = '127.0.0.1'
const PROGRESS_EVERY_MS = 10
/** every socket reads into its own buffer (no 64 KiB allocation per read, as Node's default does) */
const READ_BUFFER_BYTES = 256 * 1024
/** publishers check the clock (end of the run, connections done) this often */
const TICK_MS = 10
/** sequence numbers are uint32 in the payload; the per-publisher bitsets stay below 256 MiB */
const MAX_SEQ = 2 ** 31
const MAX_PUBLISHERS = 1 << 16
/** batches per connection in one pump of all connections */
const MAX_ROUNDS = 1024

requireRunner('bench raw worker')

const state = newWorkerState()
let protocolErrors = 0
let pubacksSent = 0
let running = false
let stopping = false
let task: RawTask | null = null
let onGo: () => void = () => {}
let onCredit: (upTo: number) => void = () => {}
let detail: () => { publishers?: RawPubConnection[]; subscribed?: RawSubPublisher[] } = () => ({})
const sockets: Socket[] = []

const noteError = (err: unknown): void => noteErrorOf(state, err)

function protocolError(what: string): void {
  protocolErrors++
  noteError(what)
}

// ---- progress ----------------------------------------------------------------------------

let reported: Progress = { sent: -1, acked: -1, received: -1, connected: -1, failed: -1, pubDone: false }

function report(): void {
  const p = progressOf(state)
  const r = reported
  if (
    p.sent === r.sent &&
    p.acked === r.acked &&
    p.received === r.received &&
    p.connected === r.connected &&
    p.failed === r.failed &&
    p.pubDone === r.pubDone
  ) {
    return
  }
  reported = p
  send({ type: 'progress', ...p })
}

const progressTimer = setInterval(report, PROGRESS_EVERY_MS)

// ---- connections -------------------------------------------------------------------------

/**
 * Opens a socket, sends CONNECT (and SUBSCRIBE), and resolves on CONNACK (and SUBACK). Afterwards
 * every packet goes to `onPacket`, and `afterChunk` runs once per chunk read. With `pauseMs` > 0,
 * a socket that read less than a full buffer while the run is on stops reading for that long, so
 * the next read brings many packets at once: a client that wakes up for every packet the broker
 * writes spends more CPU per message than the broker does.
 */
function open(
  port: number,
  clientId: string,
  subscribe: Buffer | null,
  onPacket: (type: number, flags: number, buf: Buffer, body: number, length: number) => void,
  afterChunk: () => void,
  onClose: () => void,
  pauseMs: number
): Promise<Socket> {
  return new Promise((res, rej) => {
    const scanner = new Scanner()
    const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)
    const resume = (): void => {
      if (!socket.destroyed) socket.resume()
    }
    const onRead = (bytes: number): boolean => {
      try {
        scanner.push(readBuffer.subarray(0, bytes), ready ? onPacket : setup)
      } catch (err) {
        protocolError(`${clientId}: ${(err as Error).message}`)
        socket.destroy()
        return false
      }
      afterChunk()
      if (pauseMs > 0 && running && bytes < readBuffer.length) {
        setTimeout(resume, pauseMs)
        return false
      }
      return true
    }
    const socket = netConnect({ host: HOST, port, onread: { buffer: readBuffer, callback: onRead } })
    sockets.push(socket)
    socket.setNoDelay(true)
    let ready = false
    let settled = false
    const fail = (err: Error): void => {
      if (!settled) {
        settled = true
        rej(err)
      }
    }
    const setup = (type: number, _flags: number, buf: Buffer, body: number, length: number): void => {
      if (type === CONNACK) {
        const code = length >= 2 ? buf[body + 1]! : -1
        if (code !== 0) return fail(new Error(`${clientId}: CONNACK return code ${code}`))
        if (subscribe === null) ready = true
        else socket.write(subscribe)
      } else if (type === SUBACK && subscribe !== null) {
        // body: packet id (2 bytes), then one granted QoS per filter; 0x80 = refused
        for (let i = body + 2; i < body + length; i++) if (buf[i] === 0x80) return fail(new Error(`${clientId}: SUBSCRIBE refused`))
        ready = true
      } else onPacket(type, _flags, buf, body, length)
      if (ready && !settled) {
        settled = true
        res(socket)
      }
    }
    socket.once('connect', () => socket.write(encodeConnect(clientId)))
    socket.on('error', (err) => {
      if (!stopping) noteError(err)
      fail(err)
    })
    socket.once('close', () => {
      fail(new Error(`${clientId}: connection closed before it was ready`))
      if (!stopping && running) noteError(`${clientId}: connection closed by the broker`)
      onClose()
    })
  })
}

// ---- publishers --------------------------------------------------------------------------

class Publisher {
  sent = 0
  acked = 0
  /** lowest unacknowledged sequence number: 0 .. low-1 are all acknowledged */
  low = 0
  done = false
  closed = false
  waitingDrain = false
  socket: Socket | null = null
  private readonly ackFlags: Uint8Array
  private readonly packetLength: number
  private readonly batchBytes: number
  /** batch buffers no write holds any more (a socket write keeps its buffer until flushed) */
  private readonly free: Buffer[] = []

  constructor(
    readonly publisher: number,
    private readonly t: RawPubTask,
    private readonly template: PublishTemplate
  ) {
    this.ackFlags = new Uint8Array(t.qos === 1 ? t.window : 0)
    this.packetLength = template.packet.length
    this.batchBytes = this.packetLength * t.window
  }

  private newBatch(): Buffer {
    const buf = Buffer.allocUnsafe(this.batchBytes)
    for (let off = 0; off < this.batchBytes; off += this.packetLength) this.template.packet.copy(buf, off)
    return buf
  }

  /** Writes one batch if window, count and credit allow; returns whether it wrote. */
  writeBatch(now: number, endAt: number, credit: number): boolean {
    const socket = this.socket
    if (this.done || this.closed || this.waitingDrain || socket === null || now >= endAt) return false
    const t = this.t
    let k = Math.min(t.window, t.maxPerConnection - this.sent, credit - state.sent)
    if (t.qos === 1) k = Math.min(k, t.window - (this.sent - this.low))
    if (k <= 0) return false
    const buf = this.free.pop() ?? this.newBatch()
    const len = this.packetLength
    const idOffset = this.template.idOffset
    const seqOffset = this.template.payloadOffset + PAYLOAD_SEQ
    for (let i = 0, seq = this.sent, base = 0; i < k; i++, seq++, base += len) {
      if (idOffset >= 0) {
        const id = packetIdOf(seq)
        buf[base + idOffset] = id >> 8
        buf[base + idOffset + 1] = id & 0xff
      }
      buf.writeUInt32LE(seq, base + seqOffset)
    }
    this.sent += k
    state.sent += k
    state.firstSendAt ??= now
    const bytes = k * len
    const ok = socket.write(bytes === buf.length ? buf : buf.subarray(0, bytes), (err) => {
      if (!err) this.free.push(buf)
    })
    if (!ok) this.waitingDrain = true
    return true
  }

  onAck(id: number): void {
    if (this.low === this.sent) return protocolError(`publisher ${this.publisher}: PUBACK ${id} with nothing outstanding`)
    const seq = this.low + ((id - packetIdOf(this.low) + 65_535) % 65_535)
    if (seq >= this.sent) return protocolError(`publisher ${this.publisher}: PUBACK for unknown packet id ${id}`)
    const w = this.t.window
    if (seq === this.low) {
      this.low++
      while (this.low < this.sent && this.ackFlags[this.low % w] === 1) {
        this.ackFlags[this.low % w] = 0
        this.low++
      }
    } else {
      if (this.ackFlags[seq % w] === 1) return protocolError(`publisher ${this.publisher}: duplicate PUBACK ${id}`)
      this.ackFlags[seq % w] = 1
    }
    this.acked++
    state.acked++
  }

  /** Finished: time or count reached and every publish acknowledged (QoS 1) or flushed (QoS 0). */
  checkDone(now: number, endAt: number): boolean {
    if (this.done) return true
    if (this.closed) this.done = true
    else if (now >= endAt || this.sent >= this.t.maxPerConnection) {
      this.done = this.t.qos === 1 ? this.low === this.sent : (this.socket?.writableLength ?? 0) === 0
    }
    return this.done
  }

  result(): RawPubConnection {
    return { publisher: this.publisher, sent: this.sent, acked: this.acked, ackedPrefix: this.t.qos === 1 ? this.low : 0 }
  }
}

async function initPub(t: RawPubTask): Promise<void> {
  if (t.window < 1 || t.window > MAX_WINDOW) throw new Error(`window ${t.window} outside 1..${MAX_WINDOW}`)
  if (t.maxPerConnection > MAX_SEQ) throw new Error(`more than ${MAX_SEQ} messages per connection`)
  let credit = t.initialCredit ?? Infinity
  let endAt = Infinity
  const pubs: Publisher[] = []

  const checkAllDone = (now: number): void => {
    if (state.pubDone) return
    let all = true
    for (const p of pubs) if (!p.checkDone(now, endAt)) all = false
    if (all) {
      state.pubDone = true
      report()
    }
  }
  /** Round robin, one batch per connection per round, so the connections share the credit. */
  const pumpAll = (): void => {
    if (!running) return
    const now = nowMs()
    let wrote = true
    // bounded by window, credit and backpressure, and in any case by MAX_ROUNDS (the tick goes on)
    for (let round = 0; wrote && round < MAX_ROUNDS; round++) {
      wrote = false
      for (const p of pubs) if (p.writeBatch(now, endAt, credit)) wrote = true
    }
    checkAllDone(now)
  }

  const setup = async (c: number): Promise<void> => {
    const publisher = t.firstPublisher + c
    const p = new Publisher(publisher, t, publishTemplate(`bench/${publisher}/t`, t.qos, Math.max(MIN_PAYLOAD, t.payloadBytes), publisher))
    pubs.push(p)
    let acks = 0
    const onPacket = (type: number, _flags: number, buf: Buffer, body: number, length: number): void => {
      if (type === PUBACK && length >= 2) {
        p.onAck((buf[body]! << 8) | buf[body + 1]!)
        acks++
      } else if (type !== PINGRESP) protocolError(`publisher ${publisher}: unexpected packet type ${type}`)
    }
    const afterChunk = (): void => {
      if (acks === 0 || !running) return
      acks = 0
      const now = nowMs()
      state.lastAckAt = now
      // the acks just freed window slots: refill this connection at once, in one write
      p.writeBatch(now, endAt, credit)
      if (now >= endAt || p.low === p.sent) checkAllDone(now)
    }
    const onClose = (): void => {
      p.closed = true
      if (running) checkAllDone(nowMs())
    }
    p.socket = await open(t.port, `raw-pub-${publisher}`, null, onPacket, afterChunk, onClose, t.readPauseMs)
    p.socket.on('drain', () => {
      p.waitingDrain = false
      pumpAll()
    })
    state.connected++
  }

  onGo = () => {
    running = true
    endAt = state.goAt + t.durationMs
    pumpAll()
    // the end of the run, and connections waiting for credit or a drain, need a clock tick
    const tick = setInterval(() => {
      pumpAll()
      if (state.pubDone || stopping) clearInterval(tick)
    }, TICK_MS)
  }
  onCredit = (upTo) => {
    if (upTo <= credit) return
    credit = upTo
    pumpAll()
  }
  detail = () => ({ publishers: pubs.map((p) => p.result()) })
  await Promise.all(Array.from({ length: t.connections }, (_, c) => setup(c)))
}

// ---- subscribers -------------------------------------------------------------------------

/** What one subscriber process saw of one publisher: a bitset of the sequence numbers received. */
interface Track {
  bits: Uint8Array
  distinct: number
  maxSeq: number
  duplicates: number
  reordered: number
}

const tracks: (Track | undefined)[] = []

function track(publisher: number, seq: number): void {
  let t = tracks[publisher]
  if (t === undefined) {
    if (publisher >= MAX_PUBLISHERS) return protocolError(`payload names publisher ${publisher}`)
    t = { bits: new Uint8Array(1 << 16), distinct: 0, maxSeq: -1, duplicates: 0, reordered: 0 }
    tracks[publisher] = t
  }
  if (seq >= MAX_SEQ) return protocolError(`payload carries sequence number ${seq}`)
  const byte = seq >>> 3
  if (byte >= t.bits.length) {
    const bigger = new Uint8Array(Math.max(byte + 1, t.bits.length * 2))
    bigger.set(t.bits)
    t.bits = bigger
  }
  const mask = 1 << (seq & 7)
  const b = t.bits[byte]!
  if ((b & mask) !== 0) {
    t.duplicates++
    return
  }
  t.bits[byte] = b | mask
  t.distinct++
  if (seq > t.maxSeq) t.maxSeq = seq
  else t.reordered++
}

function trackResult(publisher: number, t: Track): RawSubPublisher {
  const missing: number[] = []
  const gaps = t.maxSeq + 1 - t.distinct
  if (gaps > 0) {
    for (let byte = 0; byte <= t.maxSeq >>> 3 && missing.length < RAW_MISSING_CAP; byte++) {
      const b = t.bits[byte]!
      if (b === 0xff) continue
      for (let bit = 0; bit < 8; bit++) {
        const seq = byte * 8 + bit
        if (seq > t.maxSeq || missing.length >= RAW_MISSING_CAP) break
        if ((b & (1 << bit)) === 0) missing.push(seq)
      }
    }
  }
  return {
    publisher,
    distinct: t.distinct,
    maxSeq: t.maxSeq,
    duplicates: t.duplicates,
    reordered: t.reordered,
    missing,
    missingTruncated: gaps > missing.length
  }
}

async function initSub(t: RawSubTask): Promise<void> {
  let lastReported = 0
  const setup = async (c: number, filters: string[]): Promise<void> => {
    const clientId = `raw-sub-${process.pid}-${c}`
    // packet ids of the QoS 1 deliveries of the current chunk, answered with one write after it
    let ids = new Uint16Array(1024)
    let count = 0
    let published = 0
    let socket: Socket | null = null
    const onPacket = (type: number, flags: number, buf: Buffer, body: number, length: number): void => {
      if (type !== PUBLISH) {
        if (type !== PINGRESP) protocolError(`${clientId}: unexpected packet type ${type}`)
        return
      }
      const end = body + length
      let p = body + 2 + ((buf[body]! << 8) | buf[body + 1]!)
      if ((flags & 0x06) !== 0) {
        if (count === ids.length) {
          const bigger = new Uint16Array(ids.length * 2)
          bigger.set(ids)
          ids = bigger
        }
        ids[count++] = (buf[p]! << 8) | buf[p + 1]!
        p += 2
      }
      published++
      if (end - p >= MIN_PAYLOAD) track(buf.readUInt32LE(p), buf.readUInt32LE(p + PAYLOAD_SEQ))
      else protocolError(`${clientId}: a PUBLISH with a ${end - p}-byte payload`)
    }
    const afterChunk = (): void => {
      if (count > 0 && socket !== null) {
        const acks = Buffer.allocUnsafe(4 * count)
        for (let i = 0, o = 0; i < count; i++, o += 4) {
          const id = ids[i]!
          acks[o] = PUBACK << 4
          acks[o + 1] = 2
          acks[o + 2] = id >> 8
          acks[o + 3] = id & 0xff
        }
        socket.write(acks)
        pubacksSent += count
        count = 0
      }
      if (published > 0) {
        const now = nowMs()
        state.received += published
        state.firstRecvAt ??= now
        state.lastRecvAt = now
        published = 0
        // the publishers' credit follows these reports: send one as soon as enough arrived
        if (state.received - lastReported >= t.reportEvery) {
          lastReported = state.received
          report()
        }
      }
    }
    socket = await open(t.port, clientId, encodeSubscribe(filters, t.qos), onPacket, afterChunk, () => {}, t.readPauseMs)
    state.connected++
  }
  detail = () => ({ subscribed: tracks.flatMap((tr, publisher) => (tr === undefined ? [] : [trackResult(publisher, tr)])) })
  await Promise.all(t.filters.map((filters, c) => setup(c, filters)))
}

// ---- control -----------------------------------------------------------------------------

serveRunner<RawTask>(state, {
  init(t) {
    task = t
    return t.kind === 'raw-pub' ? initPub(t) : initSub(t)
  },
  go() {
    running = true
    onGo()
  },
  credit: (upTo) => onCredit(upTo),
  result() {
    stopping = true
    running = false
    clearInterval(progressTimer)
    return { ...state, latencies: null, raw: { ...detail(), protocolErrors, ...(task?.kind === 'raw-sub' ? { pubacksSent } : {}) } }
  },
  close() {
    const disconnect = encodeDisconnect()
    for (const socket of sockets) if (!socket.destroyed) socket.end(disconnect)
  }
})
