import { jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ServerProcess, freePort, tempDir } from './process.js'

// A real nats-server with JetStream for the bridge tests: its own port and store dir (-sd), so
// kill9() + start() is an outage that keeps the streams, the consumers and the dedup window.
// JetStream's file store writes before it sends the PubAck, so an acknowledged message survives
// kill -9 of the server (not a power cut: nats-server does not fsync every write by default).

export const NATS_SERVER = '/usr/sbin/nats-server'

export interface NatsAuth {
  user?: string
  pass?: string
  token?: string
}

export interface NatsServer extends ServerProcess {
  url: string
  auth: NatsAuth
}

/** A client connection to the test server (no reconnect: each test decides). */
export function natsClient(server: { url: string; auth: NatsAuth }): Promise<NatsConnection> {
  return connect({ servers: server.url, reconnect: false, timeout: 2000, ...server.auth })
}

/**
 * Starts nats-server with JetStream. `auth` becomes --user/--pass or --auth; `config` is the text of
 * a config file (authorization with permissions, ...), given with -c; the flags still win.
 */
export async function startNats(auth: NatsAuth = {}, config?: string): Promise<NatsServer> {
  const port = await freePort()
  const dir = tempDir('nats')
  const args = ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir]
  if (config !== undefined) {
    const file = join(dir, 'nats.conf')
    writeFileSync(file, config)
    args.push('-c', file)
  }
  if (auth.user !== undefined) args.push('--user', auth.user, '--pass', auth.pass ?? '')
  if (auth.token !== undefined) args.push('--auth', auth.token)
  const url = `nats://127.0.0.1:${port}`
  const server = new ServerProcess({
    name: 'nats-server',
    command: NATS_SERVER,
    args,
    port,
    // ready = JetStream answers (the account info request), not only the port
    ready: async () => {
      const nc = await natsClient({ url, auth })
      try {
        await jetstreamManager(nc, { timeout: 1000 })
        return true
      } finally {
        await nc.close()
      }
    },
    dirs: [dir]
  }) as NatsServer
  server.url = url
  server.auth = auth
  await server.start()
  return server
}
