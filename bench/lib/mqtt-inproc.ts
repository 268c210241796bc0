// MQTT.js clients in the bench process itself, for the scenarios that check every message one by one
// (share-mqtt, delayed): there the per-message checks (each once, in key order, not before its due
// time) need the messages in one place, and the rates are low enough for one process. The clients
// are built as the workers' are (bench/worker.ts): a `net` socket with noDelay, MQTT 3.1.1, clean
// session, no reconnect. Only ever connects to 127.0.0.1.
import { connect as netConnect, type Socket } from 'node:net'
import { MqttClient, type IClientOptions } from 'mqtt'

const HOST = '127.0.0.1'
const CONNECT_TIMEOUT_MS = 10_000

/** A connected client; rejects on an error, a close before CONNACK, or after 10 s. */
export async function connectClient(port: number, clientId: string): Promise<MqttClient> {
  const options: IClientOptions = {
    clientId,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    protocolVersion: 4,
    resubscribe: false
  }
  const builder = (): Socket => {
    const socket = netConnect({ host: HOST, port })
    socket.setNoDelay(true)
    return socket
  }
  const client = new MqttClient(builder, options)
  try {
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => done(new Error(`${clientId}: no CONNACK after ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS)
      const onConnect = (): void => done()
      const onError = (err: Error): void => done(err)
      const onClose = (): void => done(new Error(`${clientId}: closed before CONNACK`))
      function done(err?: Error): void {
        clearTimeout(timer)
        client.off('connect', onConnect)
        client.off('error', onError)
        client.off('close', onClose)
        if (err) rej(err)
        else res()
      }
      client.once('connect', onConnect)
      client.once('error', onError)
      client.once('close', onClose)
    })
  } catch (err) {
    client.end(true)
    throw err
  }
  return client
}

/** Subscribes at `qos` and fails unless the broker granted exactly that QoS. */
export async function subscribeGranted(client: MqttClient, filter: string, qos: 0 | 1): Promise<void> {
  const granted = await client.subscribeAsync(filter, { qos })
  const g = granted[0]
  if (!g || g.qos !== qos) throw new Error(`SUBSCRIBE ${filter} at QoS ${qos}: granted ${g ? String(g.qos) : 'nothing'}`)
}

/** Closes the clients at once (no DISCONNECT wait), without throwing. */
export function closeClients(clients: MqttClient[]): void {
  for (const c of clients) {
    try {
      c.end(true)
    } catch {
      // already closed
    }
  }
}
