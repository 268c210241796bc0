import { Redis, type RedisOptions } from 'ioredis'
import type { RedisConnectionOptions } from './config.js'

// The ioredis client as the bridges use it: a command fails fast while the server is down instead
// of waiting in ioredis' offline queue (the runner owns retries and backoff), and a command in
// flight when the connection drops is failed, not sent again on the next connection.

export interface ClientRole {
  /** CLIENT SETNAME, shown by CLIENT LIST: `culex:<bridge>:<role>`. */
  name: string
  /** Reconnect by itself (the sink's one long-lived client); a source makes new clients on each run. */
  reconnect: boolean
  /** Per-command bound; the blocking connection's must exceed its BLOCK. */
  commandTimeoutMs: number
}

export function createClient(options: RedisConnectionOptions, role: ClientRole): Redis {
  const config: RedisOptions = {
    host: options.host,
    port: options.port,
    db: options.db,
    username: options.username ?? undefined,
    password: options.password ?? undefined,
    connectionName: role.name.replace(/[^\x21-\x7e]/g, '_'),
    lazyConnect: true,
    // RESP2: the reply shapes the parsers below read (RESP3 maps arrive flattened differently)
    protocol: 2,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: role.commandTimeoutMs,
    connectTimeout: options.commandTimeoutMs,
    // a local server is back within a second or two; the runner's own backoff spaces the deliveries
    retryStrategy: role.reconnect ? (times) => Math.min(100 * times, 1000) : null
  }
  const client = new Redis(config)
  // ioredis reports a refused SELECT (db out of range) as an 'error' event and goes on to 'ready'
  // on database 0; an error reply during the handshake ends the client instead, so that every
  // connect fails with it rather than writing to the wrong database
  client.on('error', (err: Error) => {
    if (isReplyError(err)) client.disconnect()
  })
  return client
}

/** Resolves once the client is ready; rejects with the connection's error, on timeout or abort. */
export async function whenReady(client: Redis, timeoutMs: number, signal: AbortSignal): Promise<void> {
  if (client.status === 'ready') return
  if (client.status === 'wait' || client.status === 'end') client.connect().catch(() => undefined)
  await new Promise<void>((res, rej) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('error', onError)
      client.off('end', onEnd)
      signal.removeEventListener('abort', onAbort)
      if (err) rej(err)
      else res()
    }
    const onReady = (): void => done()
    const onError = (err: Error): void => done(err)
    const onEnd = (): void => done(new Error('connection to Redis closed'))
    const onAbort = (): void => done(new Error('aborted'))
    const timer = setTimeout(
      () => done(new Error(`no connection to Redis at ${client.options.host ?? ''}:${client.options.port ?? ''} in ${timeoutMs} ms`)),
      timeoutMs
    )
    client.on('ready', onReady)
    client.on('error', onError)
    client.on('end', onEnd)
    signal.addEventListener('abort', onAbort)
    if (signal.aborted) onAbort()
  })
}

/** An operator's reading of a client error: ioredis names its own options rather than the cause. */
export function describeError(err: unknown, options: Pick<RedisConnectionOptions, 'host' | 'port'>): string {
  if (!(err instanceof Error)) return String(err)
  const where = `${options.host}:${options.port}`
  // with maxRetriesPerRequest 0, a command in flight when the connection drops fails with this
  if (err.name === 'MaxRetriesPerRequestError') return `connection to Redis at ${where} lost before the reply`
  if (err.message.startsWith("Stream isn't writeable")) return `not connected to Redis at ${where}`
  if (err.message === 'Command timed out') return `no reply from Redis at ${where} within command-timeout`
  if (err.message === 'Connection is closed.') return `connection to Redis at ${where} closed`
  return err.message
}

/** An error reply from Redis (-ERR, -WRONGTYPE, ...), not a client or connection error. */
export function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError'
}

// Error replies that clear by themselves (https://redis.io/docs/reference/protocol-spec/#simple-errors:
// the first word is the error code): memory over maxmemory with noeviction (OOM), the AOF/RDB
// being loaded (LOADING), a script running (BUSY), a replica or failover in progress (MASTERDOWN,
// READONLY, TRYAGAIN, CLUSTERDOWN, NOREPLICAS), writes stopped after a failed save (MISCONF), a
// server restarted with a password (NOAUTH). Any other error reply (WRONGTYPE, NOPERM, ERR ...)
// refuses the command itself and would refuse it again.
const TRANSIENT_CODES = new Set(['OOM', 'LOADING', 'BUSY', 'MASTERDOWN', 'READONLY', 'TRYAGAIN', 'CLUSTERDOWN', 'NOREPLICAS', 'MISCONF', 'NOAUTH'])

/** The code of an error reply: `WRONGTYPE Operation against a key ...` -> WRONGTYPE. */
export function replyCode(err: Error): string {
  return /^[A-Z]+/.exec(err.message)?.[0] ?? 'ERR'
}

/** Whether a failed command may succeed when sent again: a connection problem or a transient error reply. */
export function isTransient(err: unknown): boolean {
  if (!isReplyError(err)) return true
  return TRANSIENT_CODES.has(replyCode(err))
}

/** The promise, or a rejection as soon as the signal aborts (the work itself goes on unobserved). */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('aborted'))
  return new Promise<T>((res, rej) => {
    const onAbort = (): void => rej(new Error('aborted'))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        res(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        rej(e instanceof Error ? e : new Error(String(e)))
      }
    )
  })
}
