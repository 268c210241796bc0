import { connect, type NatsConnection as Connection } from '@nats-io/transport-node'
import type { NatsConnection } from './config.js'

// One NATS connection per sink or source run. The client does not reconnect by itself: a lost
// connection closes, the sink's deliver throws / the source's run rejects, and the bridge runner
// connects again with its backoff, so the bridge's state and last error show the outage.

/** Client pings: a server that stops answering is noticed in about PING_INTERVAL_MS × (MAX_PING_OUT + 1). */
const PING_INTERVAL_MS = 10_000
const MAX_PING_OUT = 2

export async function open(options: NatsConnection, name: string): Promise<Connection> {
  return connect({
    servers: options.servers,
    name,
    timeout: options.connectTimeoutMs,
    reconnect: false,
    maxReconnectAttempts: 0,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: MAX_PING_OUT,
    ...(options.user !== null ? { user: options.user, pass: options.password ?? undefined } : {}),
    ...(options.token !== null ? { token: options.token } : {})
  })
}

/** Whether a subject is captured by a stream's subject filter (NATS wildcards: '*' one token, '>' the rest). */
export function subjectMatches(subject: string, filter: string): boolean {
  const s = subject.split('.')
  const f = filter.split('.')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return s.length > i
    if (i >= s.length) return false
    if (f[i] !== '*' && f[i] !== s[i]) return false
  }
  return s.length === f.length
}

export function errorText(e: unknown): string {
  if (!(e instanceof Error)) return String(e)
  // nats.js wraps the cause (no responders, connection closed) in a generic error
  const cause = e.cause instanceof Error && e.cause.message !== e.message ? ` (${e.cause.message})` : ''
  return `${e.message}${cause}`
}
