import type { Logger } from 'pino'
import {
  ReasonCodes,
  type IClientOptions,
  type IClientSubscribeOptions,
  type IPublishPacket,
  type ISubscriptionGrant,
  type ISubscriptionMap,
  type MqttClient
} from 'mqtt'
import { InboundRefused, type DriverDeps, type Source, type SourceContext } from '../types.js'
import { clientId, clientOptions, destroy, disconnect, openClient } from './client.js'
import type { MqttSourceOptions } from './config.js'

// Inbound: a persistent session at the remote broker (a fixed client id, no Clean Start, an MQTT 5
// Session Expiry Interval), so the remote queues what matches the filters while Culex is away.
// Each message is published into Culex and acknowledged to the remote only after that publish
// resolved: MQTT.js sends the PUBACK (QoS 1) or PUBREC (QoS 2) when the acknowledgement callback
// is called, and handles the packets of a connection one at a time, so the messages go into Culex
// in the order the remote sent them, one after the other.
//  - MQTT 5: `customHandleAcks` runs before the PUBACK / PUBREC and gives its reason code; a
//    message Culex refuses (InboundRefused) is acknowledged with 0x80 (Unspecified error) and
//    dropped. QoS 2 is acknowledged (PUBREC) after the publish too, so a Culex crash before it
//    makes the remote send the message again.
//  - MQTT 3.1.1: MQTT.js ignores customHandleAcks; the PUBACK goes out when `handleMessage` calls
//    back. A refused message is acknowledged (3.1.1 has no refusal) and dropped. QoS 2 is not
//    offered (config.ts): MQTT.js would send PUBREC before handleMessage runs.
// Any other publish error leaves the message unacknowledged and ends the connection (run
// rejects): the remote sends it again on the next connection, as MQTT 4.4 requires for a session.

/** What one run shares with its connection: whether it is over, and how it ends. */
interface RunState {
  over: () => boolean
  abortedNow: () => boolean
  failed: (err: Error) => void
  /** Rejects once the run failed (connection lost, a publish error). */
  failure: Promise<never>
  /** Resolves once ctx.signal aborted. */
  aborted: Promise<void>
  stop: () => void
}

/** MQTT 5 3.4.2.1: 0x80 Unspecified error, the PUBACK of a message Culex refused. */
const REFUSED = 0x80

export class MqttSource implements Source {
  readonly #options: MqttSourceOptions
  readonly #bridge: string

  constructor(options: MqttSourceOptions, deps: DriverDeps) {
    this.#options = options
    this.#bridge = deps.bridge
  }

  /** The Culex topic for a remote topic: strip-prefix, then the template. */
  mapTopic(remote: string): string {
    const o = this.#options
    const stripped = o.stripPrefix !== null && remote.startsWith(o.stripPrefix) ? remote.slice(o.stripPrefix.length) : remote
    return o.topic.replaceAll('{topic}', stripped)
  }

  async run(ctx: SourceContext): Promise<void> {
    const o = this.#options
    const logger = ctx.logger.child({ url: o.url, clientId: clientId(o, this.#bridge) })
    if (ctx.signal.aborted) return

    // set from events and callbacks: an object, so every check reads it afresh
    const state = { stopped: false }
    const abortedNow = (): boolean => ctx.signal.aborted
    const over = (): boolean => state.stopped || abortedNow()
    let fail = (_: Error): void => undefined
    const failure = new Promise<never>((_, reject) => (fail = reject))
    // whoever ends the run first wins; later failures are moot
    failure.catch(() => undefined)
    const failed = (err: Error): void => {
      if (state.stopped) return
      state.stopped = true
      fail(err)
    }
    let onAbort = (): void => undefined
    const aborted = new Promise<void>((resolve) => (onAbort = resolve))
    // the runner keeps one signal across runs: the listener goes when this run ends
    ctx.signal.addEventListener('abort', onAbort, { once: true })
    try {
      await this.#session(ctx, logger, { over, abortedNow, failed, failure, aborted, stop: () => (state.stopped = true) })
    } finally {
      ctx.signal.removeEventListener('abort', onAbort)
    }
  }

  /** One connection: connect, subscribe, consume until aborted (resolves) or failed (rejects). */
  async #session(ctx: SourceContext, logger: Logger, run: RunState): Promise<void> {
    const o = this.#options
    const v5 = o.protocolVersion === 5
    const { over, abortedNow, failed, failure, aborted } = run

    /** Publishes one message into Culex; the reason code to acknowledge it with, or null: do not acknowledge. */
    const take = async (packet: IPublishPacket): Promise<number | null> => {
      if (over()) return null
      const remote = packet.topic
      const topic = this.mapTopic(remote)
      const retain = o.retain === 'as-published' ? packet.retain : o.retain
      try {
        await ctx.publish({ topic, payload: Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), qos: o.qos, retain })
      } catch (err) {
        if (err instanceof InboundRefused) {
          logger.warn({ topic: remote, culexTopic: topic, err }, 'Culex refused a message from the remote broker: acknowledged and dropped')
          return over() ? null : v5 ? REFUSED : 0
        }
        // not acknowledged: the remote sends it again on the next connection
        failed(new Error(`publishing a message from ${remote} into Culex failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }))
        return null
      }
      // after an abort nothing more is acknowledged (the message may come again: at least once)
      return over() ? null : 0
    }

    const options: IClientOptions = { ...clientOptions(o, this.#bridge), clean: false }
    if (v5) {
      options.properties = { sessionExpiryInterval: o.sessionExpiryS }
      // MQTT.js calls this before it sends the PUBACK / PUBREC of a QoS 1 / 2 message, and sends it
      // with the code given to the callback; a callback never called sends nothing
      options.customHandleAcks = (_topic, _message, packet: IPublishPacket, ack) => {
        void take(packet).then((code) => {
          if (code !== null) ack(code)
        })
      }
    }
    // QoS 0 (both versions) and QoS 1 (3.1.1) come here; the PUBACK of 3.1.1 QoS 1 follows `done`.
    // In MQTT 5 a QoS 1 / 2 message was taken in customHandleAcks already (QoS 2: this runs on PUBREL).
    const handleMessage = (packet: IPublishPacket, done: (err?: Error) => void): void => {
      if (v5 && packet.qos > 0) return done()
      void take(packet).then((code) => {
        if (code !== null) done()
      })
    }

    let client: MqttClient
    try {
      ;({ client } = await openClient(o.url, options, ctx.signal, (c) => {
        c.handleMessage = handleMessage
        c.on('error', (err) => logger.warn({ err }, 'mqtt bridge connection error'))
        c.on('disconnect', (packet) =>
          logger.warn({ reasonCode: packet.reasonCode, reason: packet.properties?.reasonString }, 'mqtt bridge source sent DISCONNECT')
        )
        c.once('close', () => failed(new Error(`connection to ${o.url} lost`)))
      }).then((opened) => {
        logger.info({ sessionPresent: opened.connack.sessionPresent, protocolVersion: o.protocolVersion }, 'mqtt bridge connected to the source broker')
        return opened
      }))
    } catch (err) {
      run.stop()
      if (abortedNow()) return
      throw err
    }

    try {
      // the subscriptions of a resumed session are still there; subscribing again is harmless (MQTT
      // 3.8.4: it replaces them) and takes a changed QoS. MQTT 5 Retain Handling 1: retained
      // messages only for a subscription that did not exist, not again at every reconnect.
      const map: ISubscriptionMap = {}
      for (const f of o.filters) {
        const s: IClientSubscribeOptions = { qos: f.qos }
        if (v5) Object.assign(s, { rh: 1, rap: o.retain === 'as-published', nl: false })
        map[f.filter] = s
      }
      const granted = await Promise.race([
        new Promise<ISubscriptionGrant[]>((resolve, reject) =>
          client.subscribe(map, (err, grants, packet) => {
            if (!err) return resolve(grants ?? [])
            // MQTT 5 3.9.3: a SUBACK reason code >= 0x80 refuses that filter (0x87 Not authorized, ...)
            const refused = (grants ?? [])
              .map((g, i) => ({ filter: g.topic, code: packet?.granted[i] }))
              .filter((g) => typeof g.code === 'number' && g.code >= 0x80)
              .map((g) =>
                `${g.filter}: 0x${(g.code as number).toString(16)} ${(ReasonCodes as Record<number, string | undefined>)[g.code as number] ?? ''}`.trim()
              )
            reject(new Error(`${o.url} refused the subscription (${refused.length > 0 ? refused.join(', ') : err.message})`, { cause: err }))
          })
        ),
        failure,
        aborted.then(() => null)
      ])
      if (granted === null) {
        run.stop()
        await disconnect(client)
        return
      }
      for (const g of granted) {
        const asked = o.filters.find((f) => f.filter === g.topic)?.qos
        if (asked !== undefined && g.qos < asked) logger.warn({ filter: g.topic, asked, granted: g.qos }, 'the source broker granted a lower QoS than asked')
      }
      ctx.connected()
      await Promise.race([failure, aborted])
      run.stop()
      await disconnect(client)
    } catch (err) {
      run.stop()
      destroy(client)
      throw err
    }
  }
}

export async function createSource(options: MqttSourceOptions, deps: DriverDeps): Promise<Source> {
  return new MqttSource(options, deps)
}
