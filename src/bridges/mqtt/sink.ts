import type { Logger } from 'pino'
import { ErrorWithReasonCode, ReasonCodes, type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt'
import type { Headers, LogRecord } from '../../log/types.js'
import { MappingError, render } from '../mapping.js'
import type { DriverDeps, Outcome, Sink } from '../types.js'
import { clientId, clientOptions, destroy, disconnect, openClient } from './client.js'
import { topicProblem, type MqttTarget } from './config.js'

// Outbound: each record is published to the remote broker and is 'delivered' on its PUBACK (QoS 1)
// or PUBCOMP (QoS 2); QoS 0 has no acknowledgement, so there 'delivered' means written to the
// socket. A batch is pipelined up to the in-flight window. A PUBACK / PUBREC with a reason code
// >= 0x80 (MQTT 5 only; 3.1.1 has no way to refuse a publish) is a refusal: 'rejected', except
// the transient ones. A connection lost or a timeout fails what is still in flight as 'retry'
// and the connection is dropped: MQTT.js would resend its in-memory outgoing store after a
// reconnect, but the bridge does not rely on that; the runner resends from the first record not
// delivered, on a new connection (bounded, and the runner's counters stay true).

/** MQTT 5 3.4.2.1: reasons that may pass (0x97 Quota exceeded, 0x91 Packet Identifier in use). */
const TRANSIENT_REASONS = new Set([0x91, 0x97])

interface Slot {
  granted: boolean
  cancelled: boolean
  ready: Promise<void>
  grant: () => void
}

/** The in-flight window, shared by the partitions delivered at once on one connection. */
class Window {
  used = 0
  readonly #waiting: Slot[] = []
  constructor(readonly limit: number) {}

  /** A slot: granted now or once one is released; give it back with release(), or cancel() it. */
  take(): Slot {
    let grant = (): void => undefined
    const slot: Slot = { granted: false, cancelled: false, ready: new Promise<void>((resolve) => (grant = resolve)), grant: () => undefined }
    slot.grant = () => {
      slot.granted = true
      grant()
    }
    if (this.used < this.limit) {
      this.used++
      slot.grant()
    } else this.#waiting.push(slot)
    return slot
  }

  release(): void {
    for (let next = this.#waiting.shift(); next; next = this.#waiting.shift()) {
      if (next.cancelled) continue
      // the slot passes on: `used` stays
      next.grant()
      return
    }
    this.used--
  }

  /** A slot not used after all: out of the queue, or back to the window when it was granted. */
  cancel(slot: Slot): void {
    if (slot.granted) this.release()
    else slot.cancelled = true
  }
}

interface Connection {
  client: MqttClient
  window: Window
  /** Called once the connection is lost: fails every batch in flight on it. */
  lost: Set<(reason: string) => void>
  /** MQTT 5 Maximum Packet Size the server accepts (3.2.2.3.6); null = no limit but the protocol's. */
  maxPacketSize: number | null
  /** QoS 1/2 publishes without their PUBACK / PUBREC yet, by packet identifier, in the order sent. */
  unanswered: Map<number, (error: string, headers: Headers) => void>
}

// mqtt-packet refuses a PUBACK / PUBREC whose reason code MQTT 5 3.4.2.1 does not list (mosquitto
// 2.0 answers a message over its message_size_limit with 0x95 Packet too large): MQTT.js emits
// this error, drops the packet and what came after it in the same read.
const INVALID_ACK = /^Invalid (puback|pubrec) reason code/

/** Bytes of a Variable Byte Integer (MQTT 1.5.5). */
function varintBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

/** The size of the PUBLISH packet (MQTT 3.3), to check it against the server's Maximum Packet Size. */
function publishSize(topic: string, payload: Buffer, qos: number, userProperties: Record<string, string> | null): number {
  let properties = 0
  for (const [k, v] of Object.entries(userProperties ?? {})) properties += 1 + 2 + Buffer.byteLength(k) + 2 + Buffer.byteLength(v)
  const remaining = 2 + Buffer.byteLength(topic) + (qos > 0 ? 2 : 0) + (userProperties === null ? 0 : varintBytes(properties) + properties) + payload.length
  return 1 + varintBytes(remaining) + remaining
}

export class MqttSink implements Sink {
  readonly #target: MqttTarget
  readonly #bridge: string
  readonly #logger: Logger
  #connection: Connection | null = null
  #connecting: Promise<Connection> | null = null

  constructor(target: MqttTarget, deps: DriverDeps) {
    this.#target = target
    this.#bridge = deps.bridge
    this.#logger = deps.logger.child({ url: target.url, clientId: clientId(target, deps.bridge) })
  }

  async connect(signal: AbortSignal): Promise<void> {
    await this.#connect(signal)
  }

  async #connect(signal: AbortSignal): Promise<Connection> {
    const current = this.#connection
    if (current && current.client.connected && !current.client.disconnecting) return current
    // a connection being closed: its 'close' event may not have come yet
    if (current) this.#drop(current)
    this.#connecting ??= this.#open(signal).finally(() => (this.#connecting = null))
    return this.#connecting
  }

  async #open(signal: AbortSignal): Promise<Connection> {
    const t = this.#target
    // Clean Start, no session: what is not acknowledged is resent by the runner, not by a session
    const { client, connack } = await openClient(t.url, { ...clientOptions(t, this.#bridge), clean: true }, signal)
    // MQTT 5 3.3.4: never more QoS 1/2 publishes unacknowledged than the server's Receive Maximum
    const receiveMaximum = connack.properties?.receiveMaximum ?? 65535
    const connection: Connection = {
      client,
      window: new Window(t.qos === 0 ? t.maxInflight : Math.min(t.maxInflight, receiveMaximum)),
      lost: new Set(),
      maxPacketSize: connack.properties?.maximumPacketSize ?? null,
      unanswered: new Map()
    }
    client.on('packetreceive', (packet) => {
      if ((packet.cmd === 'puback' || packet.cmd === 'pubrec') && packet.messageId !== undefined) connection.unanswered.delete(packet.messageId)
    })
    client.on('error', (err) => {
      this.#logger.warn({ err }, 'mqtt bridge connection error')
      if (!INVALID_ACK.test(err.message)) return
      // the server sends PUBACKs (PUBRECs) in the order of the PUBLISHes [MQTT-4.6.0-2, -3], so the invalid
      // one answers the oldest publish not answered yet, once the packets parsed before it are handled
      setImmediate(() => {
        const first = connection.unanswered.entries().next()
        if (!first.done) {
          const [id, refuse] = first.value
          connection.unanswered.delete(id)
          const ack = /puback/.test(err.message) ? 'PUBACK' : 'PUBREC'
          refuse(
            `${t.url} answered the publish with a ${ack} reason code that MQTT 5 does not allow (mosquitto 2.0 does so for a message over its message_size_limit)`,
            {
              'mqtt-reason': err.message
            }
          )
        }
        // what came after the bad packet in the same read is lost: the rest is sent again on a new connection
        this.#drop(connection)
      })
    })
    client.on('disconnect', (packet) =>
      this.#logger.warn({ reasonCode: packet.reasonCode, reason: packet.properties?.reasonString }, 'mqtt bridge target sent DISCONNECT')
    )
    client.once('close', () => {
      if (this.#connection === connection) this.#connection = null
      for (const fail of connection.lost) fail(`connection to ${t.url} lost`)
      connection.lost.clear()
      destroy(client)
    })
    if (!client.connected) throw new Error(`connection to ${t.url} lost right after CONNACK`)
    this.#connection = connection
    this.#logger.info({ protocolVersion: t.protocolVersion, receiveMaximum, window: connection.window.limit }, 'mqtt bridge connected to the target')
    return connection
  }

  /** Closes a connection at once; the next deliver makes a new one. */
  #drop(connection: Connection): void {
    if (this.#connection === connection) this.#connection = null
    destroy(connection.client)
  }

  async deliver(records: readonly LogRecord[], signal: AbortSignal): Promise<Outcome[]> {
    if (records.length === 0) return []
    // a connection lost in an earlier deliver is made again here (the runner calls connect only after a throw)
    const connection = await this.#connect(signal)
    const t = this.#target
    const outcomes: Array<Outcome | undefined> = new Array<Outcome | undefined>(records.length)
    const held = new Array<boolean>(records.length).fill(false)
    let open = records.length
    // set by end(), from timers and events: an object, so the loop below reads it afresh
    const batch: { ended: string | null } = { ended: null }
    const over = (): boolean => batch.ended !== null
    let allSettled = (): void => undefined
    const done = new Promise<void>((resolve) => (allSettled = resolve))
    const settle = (i: number, outcome: Outcome): void => {
      if (outcomes[i] !== undefined) return
      outcomes[i] = outcome
      if (held[i]) {
        held[i] = false
        connection.window.release()
      }
      if (--open === 0) allSettled()
    }
    // the batch ends early: everything not acknowledged yet is tried again by the runner
    const end = (reason: string): void => {
      batch.ended ??= reason
      for (let i = 0; i < records.length; i++) settle(i, { status: 'retry', error: reason })
    }
    let wake = (): void => undefined
    const ending = new Promise<void>((resolve) => (wake = resolve))
    const stop = (reason: string): void => {
      end(reason)
      wake()
    }
    const timer = setTimeout(() => {
      stop(`no acknowledgement from ${t.url} within ${t.timeoutMs} ms`)
      // a broker that stopped answering: the next deliver starts on a new connection
      this.#drop(connection)
    }, t.timeoutMs)
    const onAbort = (): void => stop('the bridge is stopping')
    signal.addEventListener('abort', onAbort, { once: true })
    connection.lost.add(stop)
    if (signal.aborted) stop('the bridge is stopping')
    if (!connection.client.connected) stop(`connection to ${t.url} lost`)
    try {
      for (let i = 0; i < records.length && !over(); i++) {
        const record = records[i] as LogRecord
        const prepared = this.#prepare(record, connection)
        if ('status' in prepared) {
          settle(i, prepared)
          continue
        }
        const slot = connection.window.take()
        if (!slot.granted) await Promise.race([slot.ready, ending])
        if (over()) {
          connection.window.cancel(slot)
          break
        }
        held[i] = true
        const index = i
        connection.client.publish(prepared.topic, record.value, prepared.options, (err, packet) => settle(index, this.#outcome(err, packet)))
        // a publish refused at once (the client is closing) got no packet identifier
        if (t.qos > 0 && outcomes[index] === undefined) {
          connection.unanswered.set(connection.client.getLastMessageId(), (error, headers) => settle(index, { status: 'rejected', error, headers }))
        }
      }
      await done
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      connection.lost.delete(stop)
    }
    return outcomes as Outcome[]
  }

  /** The topic and publish options of a record, or the refusal when it cannot be published. */
  #prepare(record: LogRecord, connection: Connection): { topic: string; options: IClientPublishOptions } | Outcome {
    const t = this.#target
    let topic: string
    try {
      topic = render(t.topic, record)
    } catch (err) {
      if (err instanceof MappingError) return { status: 'rejected', error: err.message }
      throw err
    }
    const problem = topicProblem(topic, false)
    if (problem !== null) return { status: 'rejected', error: `topic ${JSON.stringify(topic)} is not an MQTT topic name: ${problem}` }
    const options: IClientPublishOptions = { qos: t.qos, retain: t.retain }
    let userProperties: Record<string, string> | null = null
    if (t.protocolVersion === 5) {
      // MQTT 5 3.3.2.3.7: User Properties carry the key, the record's place in the log and its headers
      userProperties = { ...record.headers, 'culex-stream': record.stream, 'culex-partition': String(record.partition), 'culex-offset': String(record.offset) }
      if (record.key !== null) userProperties['culex-key'] = record.key
      options.properties = { userProperties }
    }
    const size = publishSize(topic, record.value, t.qos, userProperties)
    // MQTT 5 3.1.2.24 / 3.2.2.3.6: a client does not send a packet larger than the server's Maximum Packet Size
    const limit = Math.min(connection.maxPacketSize ?? Infinity, 268_435_460)
    if (size > limit) return { status: 'rejected', error: `the PUBLISH packet (${size} bytes) is larger than ${t.url} accepts (${limit} bytes)` }
    return { topic, options }
  }

  #outcome(err: Error | undefined, packet: Packet | undefined): Outcome {
    if (!err) return { status: 'delivered' }
    if (err instanceof ErrorWithReasonCode && err.code >= 0x80) {
      const code = `0x${err.code.toString(16).padStart(2, '0')}`
      const reason = (ReasonCodes as Record<number, string | undefined>)[err.code] ?? 'unknown reason'
      // MQTT 5 3.4.2.2.2: the PUBACK may say why in a Reason String
      const properties = packet && 'properties' in packet ? (packet.properties as { reasonString?: string } | undefined) : undefined
      const reasonString = properties?.reasonString
      const error = `${this.#target.url} refused the publish: ${code} ${reason}${reasonString ? ` (${reasonString})` : ''}`
      if (TRANSIENT_REASONS.has(err.code)) return { status: 'retry', error }
      const headers: Headers = { 'mqtt-reason-code': code, 'mqtt-reason': reason }
      if (reasonString) headers['mqtt-reason-string'] = reasonString
      return { status: 'rejected', error, headers }
    }
    return { status: 'retry', error: err.message }
  }

  async close(): Promise<void> {
    const connection = this.#connection ?? (await this.#connecting?.catch(() => null)) ?? null
    this.#connection = null
    if (!connection) return
    for (const fail of connection.lost) fail('the bridge is stopping')
    await disconnect(connection.client)
  }
}

export async function createSink(target: MqttTarget, deps: DriverDeps): Promise<Sink> {
  return new MqttSink(target, deps)
}
