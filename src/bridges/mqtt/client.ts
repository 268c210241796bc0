import { readFileSync } from 'node:fs'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import type { MqttConnection } from './config.js'

// One MQTT.js connection of a bridge, sink or source alike. MQTT.js's own reconnect is off
// (reconnectPeriod 0): a connection that breaks is over, what it had in flight is settled by the
// sink or the source (retry / not acked), and the next connect makes a new client with empty
// in-memory stores, so nothing is resent behind the runner's back.

export function clientId(options: MqttConnection, bridge: string): string {
  return options.clientId ?? `culex-bridge-${bridge}`
}

/** MQTT.js options from the bridge's connection options (TLS files are read now, at each connect). */
export function clientOptions(options: MqttConnection, bridge: string): IClientOptions {
  const o: IClientOptions = {
    clientId: clientId(options, bridge),
    protocolVersion: options.protocolVersion,
    keepalive: options.keepaliveS,
    connectTimeout: options.connectTimeoutMs,
    reconnectPeriod: 0,
    // MQTT.js would queue QoS 0 publishes while offline and send them later: a bridge never publishes offline
    queueQoSZero: false,
    // the source subscribes itself on every connect
    resubscribe: false
  }
  if (options.username !== null) o.username = options.username
  if (options.password !== null) o.password = options.password
  if (options.ca !== null) o.ca = readFileSync(options.ca)
  if (options.cert !== null) o.cert = readFileSync(options.cert)
  if (options.key !== null) o.key = readFileSync(options.key)
  return o
}

export class ConnectError extends Error {}

/**
 * Opens a connection and resolves with the client and its CONNACK. `setup` runs before the CONNECT
 * is sent (handlers that must see the first packets: a resumed session's queued messages arrive
 * right after the CONNACK). Rejects on a refused or failed connect, the connect timeout, or abort;
 * the client is then closed.
 */
export async function openClient(
  url: string,
  options: IClientOptions,
  signal: AbortSignal,
  setup?: (client: MqttClient) => void
): Promise<{ client: MqttClient; connack: IConnackPacket }> {
  signal.throwIfAborted()
  const client = mqtt.connect(url, { ...options, manualConnect: true })
  setup?.(client)
  // only our own listeners come off again: MQTT.js keeps its state with listeners of its own
  let onConnect = (_: IConnackPacket): void => undefined
  let onError = (_: Error): void => undefined
  let onClose = (): void => undefined
  let onAbort = (): void => undefined
  try {
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      onConnect = resolve
      onError = reject
      // a refused TCP connect emits 'error' first; a socket closed without CONNACK only 'close'
      onClose = () => reject(new ConnectError('connection closed before CONNACK'))
      onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      client.once('connect', onConnect)
      client.on('error', onError)
      client.once('close', onClose)
      signal.addEventListener('abort', onAbort, { once: true })
      client.connect()
    })
    return { client, connack }
  } catch (err) {
    destroy(client)
    throw err instanceof Error ? err : new ConnectError(String(err))
  } finally {
    client.removeListener('connect', onConnect)
    client.removeListener('error', onError)
    client.removeListener('close', onClose)
    signal.removeEventListener('abort', onAbort)
  }
}

const ignore = (): void => undefined

/** Closes without waiting for anything in flight (no DISCONNECT: the session, if any, stays). */
export function destroy(client: MqttClient): void {
  // MQTT.js may still emit an error (a late CONNACK refusal, a socket error): never unhandled
  if (!client.listeners('error').includes(ignore)) client.on('error', ignore)
  client.end(true)
}

/** DISCONNECT (normal disconnection, MQTT 3.14), then the socket closes; bounded by `ms`. */
export function disconnect(client: MqttClient, ms = 2000): Promise<void> {
  return new Promise((resolve) => {
    if (!client.listeners('error').includes(ignore)) client.on('error', ignore)
    const timer = setTimeout(() => {
      client.end(true)
      resolve()
    }, ms)
    client.end(false, {}, () => {
      clearTimeout(timer)
      resolve()
    })
  })
}
