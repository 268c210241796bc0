import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect } from 'amqplib'
import { ServerProcess, accepts, freePort, sleep, tempDir } from './process.js'

// A private RabbitMQ node for the amqp bridge tests, never the system service: its own temp dir
// (mnesia, logs, config, HOME for the Erlang cookie), a unique node name, free ports for AMQP and
// Erlang distribution, and its own epmd on a free port (epmd's 4369 is shared by every node of
// the machine). No plugins: the management plugin alone adds seconds to a start.
//
// The process spawned is the Erlang VM itself: with RABBITMQ_ALLOW_INPUT set, rabbitmq-server
// `exec`s erl, which `exec`s erlexec, which `exec`s beam.smp (the script otherwise stays as a
// wrapper that traps signals). So kill9() is a SIGKILL of the broker, not of a shell in front of it.
//
// A start takes about 8-14 s here (mostly CPU: the feature-flag registry is compiled at boot), so
// a test file shares one node and restarts it only for an outage.

const RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'
const EPMD = '/usr/bin/epmd'

export interface RabbitMQ {
  server: ServerProcess
  /** The AMQP port on 127.0.0.1. */
  port: number
  /** amqp://guest:guest@127.0.0.1:<port> (guest may connect from loopback only: RabbitMQ's default). */
  url: string
  /** The pid of the broker's Erlang VM (beam.smp), for SIGSTOP / SIGCONT. */
  pid(): number
  kill9(): Promise<void>
  /** Starts the node again on the same dir and ports (after kill9). Resolves when an AMQP connect works. */
  start(): Promise<void>
  /** Milliseconds the last start took until an AMQP connect worked. */
  lastStartMs: number
  /** Stops the node and its epmd, removes the temp dir. */
  dispose(): Promise<void>
}

async function amqpReady(port: number): Promise<boolean> {
  const conn = await connect({ protocol: 'amqp', hostname: '127.0.0.1', port, username: 'guest', password: 'guest' }, { timeout: 2000 })
  await conn.close()
  return true
}

function startEpmd(port: number): { child: ChildProcess; output: () => string } {
  let output = ''
  // not -daemon: it stays our child, so dispose() can end it by its pid
  const child = spawn(EPMD, ['-port', String(port), '-address', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const keep = (d: Buffer): void => {
    output = (output + d.toString()).slice(-8192)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => output }
}

export async function startRabbitMQ(): Promise<RabbitMQ> {
  const dir = tempDir('rabbitmq')
  const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()]
  if (new Set([port, distPort, epmdPort]).size !== 3) throw new Error('freePort gave the same port twice')
  const node = `culex-${randomBytes(4).toString('hex')}@localhost`
  writeFileSync(join(dir, 'rabbitmq.conf'), [`listeners.tcp.1 = 127.0.0.1:${port}`, 'loopback_users.guest = true', ''].join('\n'))
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n')

  const epmd = startEpmd(epmdPort)
  const killEpmd = (): void => {
    if (epmd.child.exitCode === null && epmd.child.signalCode === null) epmd.child.kill('SIGKILL')
  }
  process.once('exit', killEpmd)
  for (let i = 0; !(await accepts(epmdPort)); i++) {
    if (i > 100 || epmd.child.exitCode !== null) {
      killEpmd()
      throw new Error(`epmd did not start on port ${epmdPort}:\n${epmd.output()}`)
    }
    await sleep(50)
  }

  const server = new ServerProcess({
    name: 'rabbitmq-server',
    command: RABBITMQ_SERVER,
    // -noinput: RABBITMQ_ALLOW_INPUT drops it, and the VM must not read the (closed) stdin
    args: ['-noinput'],
    env: {
      HOME: dir,
      RABBITMQ_NODENAME: node,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      ERL_EPMD_PORT: String(epmdPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_LOGS: '-',
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
      RABBITMQ_ALLOW_INPUT: '1',
      // epmd is ours (above); distribution listens on loopback only
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}',
      ERL_CRASH_DUMP: join(dir, 'erl_crash.dump'),
      // not /etc/rabbitmq/rabbitmq-env.conf: nothing of the system's node applies to this one
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf')
    },
    port,
    ready: () => amqpReady(port),
    readyTimeoutMs: 90_000,
    dirs: [dir]
  })

  const pid = (): number => {
    const p = server.child?.pid
    if (p === undefined) throw new Error('rabbitmq-server is not running')
    return p
  }
  const rabbit: RabbitMQ = {
    server,
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    lastStartMs: 0,
    pid,
    kill9: () => server.kill9(),
    async start() {
      const t0 = Date.now()
      await server.start()
      rabbit.lastStartMs = Date.now() - t0
      // the spawned process must be the VM, or kill9 would only kill a wrapper
      const comm = readFileSync(`/proc/${pid()}/comm`, 'utf8').trim()
      if (comm !== 'beam.smp') throw new Error(`expected the spawned process to be beam.smp, it is ${comm}`)
    },
    async dispose() {
      try {
        await server.dispose()
      } finally {
        killEpmd()
        process.removeListener('exit', killEpmd)
      }
    }
  }
  try {
    await rabbit.start()
  } catch (err) {
    await rabbit.dispose()
    throw err
  }
  return rabbit
}
