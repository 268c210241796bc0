import { connect, type ChannelModel } from 'amqplib'
import type { AmqpConnection } from './config.js'

// What the sink and the source share: opening a connection (bounded in time) and ending one at
// once. amqplib does not reconnect by itself here (its `recovery` option is not used): the runner
// owns the backoff, and the sink / source open a new connection on the next connect() / run().

/** The product name RabbitMQ shows for the connection (management UI, `rabbitmqctl list_connections`). */
function clientProperties(bridge: string): Record<string, unknown> {
  return { connection_name: `culex bridge ${bridge}`, product: 'culex' }
}

/** An AMQP connection: TCP connect and handshake within `connectTimeoutMs`. */
export async function openConnection(options: AmqpConnection, bridge: string): Promise<ChannelModel> {
  return connect(
    {
      protocol: 'amqp',
      hostname: options.host,
      port: options.port,
      vhost: options.vhost,
      username: options.username,
      password: options.password,
      heartbeat: options.heartbeatS
    },
    // the socket timeout covers the TCP connect and the AMQP handshake (amqplib lifts it once open)
    { timeout: options.connectTimeoutMs, clientProperties: clientProperties(bridge), noDelay: true }
  )
}

interface WithStream {
  connection?: { stream?: { destroy?: () => void } }
}

/**
 * Ends a connection without the close handshake: for a broker that stopped answering (a graceful
 * close would wait for a connection.close-ok that never comes). amqplib has no API for it, so the
 * socket is destroyed; the connection then closes as on any socket loss ('close' is emitted).
 */
export function destroyConnection(conn: ChannelModel): void {
  ;(conn as unknown as WithStream).connection?.stream?.destroy?.()
}

/** Closes gracefully within `ms`, else destroys the socket. Never throws. */
export async function closeConnection(conn: ChannelModel, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<void>((res) => {
    timer = setTimeout(res, ms)
  })
  await Promise.race([conn.close().catch(() => undefined), timeout])
  clearTimeout(timer)
  destroyConnection(conn)
}

/** Rejects with `what` after `ms` or when `signal` aborts, whichever is first; else as `promise`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string, signal?: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  const bound = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms} ms`)), ms)
    if (signal) {
      onAbort = () => rej(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    }
  })
  try {
    return await Promise.race([promise, bound])
  } finally {
    clearTimeout(timer)
    if (onAbort) signal?.removeEventListener('abort', onAbort)
  }
}
