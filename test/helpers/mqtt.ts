import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

export interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
}

/** Connects an MQTT.js client and resolves once CONNACK arrived. */
export async function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  return client
}

/** Connects with an inbox attached before CONNACK, so queued session messages are not missed. */
export async function connectWithInbox(url: string, options: IClientOptions = {}): Promise<[MqttClient, Inbox]> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options })
  const inbox = new Inbox(client)
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  return [client, inbox]
}

/** Records every message a client receives, and waits for counts. */
export class Inbox {
  readonly messages: Received[] = []
  private waiters: Array<{ n: number; resolve: () => void }> = []

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain })
      this.waiters = this.waiters.filter((w) => {
        if (this.messages.length >= w.n) w.resolve()
        return this.messages.length < w.n
      })
    })
  }

  /** Waits until at least n messages arrived (bounded by timeoutMs). */
  waitFor(n: number, timeoutMs = 5000): Promise<Received[]> {
    if (this.messages.length >= n) return Promise.resolve(this.messages)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`got ${this.messages.length} of ${n} messages in ${timeoutMs} ms`)), timeoutMs)
      this.waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer)
          resolve(this.messages)
        }
      })
    })
  }

  /** Waits a while and returns what arrived: for asserting that nothing (more) comes. */
  async settle(ms = 300): Promise<Received[]> {
    await new Promise((r) => setTimeout(r, ms))
    return this.messages
  }
}

export async function closeAll(...clients: Array<MqttClient | undefined>): Promise<void> {
  await Promise.all(clients.filter((c): c is MqttClient => !!c).map((c) => c.endAsync(true)))
}

/** The SUBACK return code for one filter (MQTT.js rejects a 0x80 and keeps the SUBACK on the error). */
export async function subackCode(client: MqttClient, filter: string): Promise<number> {
  try {
    const [grant] = await client.subscribeAsync(filter, { qos: 1 })
    return grant?.qos ?? -1
  } catch (err) {
    const granted = (err as { packet?: { granted?: unknown[] } }).packet?.granted
    if (typeof granted?.[0] === 'number') return granted[0]
    throw err
  }
}
