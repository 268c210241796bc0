import { Redis } from 'ioredis'
import { connect } from 'node:net'
import { ServerProcess, freePort, tempDir } from './process.js'

// A real redis-server for the bridge tests: its own port and dir, AOF on with fsync on every write
// (`appendfsync always`: Redis fsyncs the AOF before it replies, so an acknowledged XADD survives
// kill -9), RDB snapshots off. kill9() + start() = an outage with the same port and data.

export const REDIS_SERVER = '/usr/bin/redis-server'

/** One round trip of a command in RESP; resolves with the raw reply text. */
export function redisRaw(port: number, ...args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const socket = connect({ host: '127.0.0.1', port })
    let reply = ''
    const timer = setTimeout(() => {
      socket.destroy()
      rej(new Error('no reply'))
    }, 2000)
    socket.once('error', (e) => {
      clearTimeout(timer)
      rej(e)
    })
    socket.on('data', (d: Buffer) => {
      reply += d.toString()
      if (reply.endsWith('\r\n')) {
        clearTimeout(timer)
        socket.destroy()
        res(reply)
      }
    })
    socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
  })
}

export async function startRedis(extraArgs: string[] = []): Promise<ServerProcess> {
  const port = await freePort()
  const dir = tempDir('redis')
  return ServerProcess.start({
    name: 'redis-server',
    command: REDIS_SERVER,
    args: [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--daemonize',
      'no',
      '--logfile',
      '',
      ...extraArgs
    ],
    port,
    // PING answers -LOADING while the AOF is replayed; ready means +PONG
    ready: async () => (await redisRaw(port, 'PING')).startsWith('+PONG'),
    dirs: [dir]
  })
}

/**
 * A test's own ioredis client to `port` (RESP2; no offline queue, so a command while the server is
 * down fails at once instead of waiting), connected.
 */
export async function redisClient(port: number): Promise<Redis> {
  const client = new Redis({
    port,
    host: '127.0.0.1',
    lazyConnect: true,
    protocol: 2,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => 100
  })
  client.on('error', () => undefined)
  await client.connect()
  return client
}
