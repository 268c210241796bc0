import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// Real servers for the bridge tests (nats-server, redis-server, rabbitmq-server, mosquitto): each is
// its own process on a free 127.0.0.1 port with its own data dir, never the system service. A test
// may kill one with -9 and start it again on the same port and data dir (an outage of the target).

export const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms))

/** A free TCP port on 127.0.0.1 (bound to port 0, read, released). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = createServer()
    server.once('error', rej)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') return rej(new Error('no port'))
      server.close(() => res(address.port))
    })
  })
}

/** Whether 127.0.0.1:port accepts a TCP connection now. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      res(true)
    })
    socket.once('error', () => res(false))
  })
}

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `culex-${tag}-`))
}

export interface ServerSpec {
  /** For messages: 'nats-server'. */
  name: string
  command: string
  args: string[]
  env?: NodeJS.ProcessEnv
  /** The port that accepts once the server is ready (the main one). */
  port: number
  /** Extra readiness check after the port accepts (e.g. a PING round trip); retried until it resolves true. */
  ready?: () => Promise<boolean>
  readyTimeoutMs?: number
  /** Directories removed by dispose(). */
  dirs?: string[]
}

const running = new Set<ServerProcess>()
process.once('exit', () => {
  for (const s of running) s.child?.kill('SIGKILL')
})

/** One server process; `kill9` and `start` again reuse its port and data dir. */
export class ServerProcess {
  child: ChildProcess | null = null
  output = ''

  constructor(readonly spec: ServerSpec) {}

  static async start(spec: ServerSpec): Promise<ServerProcess> {
    const s = new ServerProcess(spec)
    await s.start()
    return s
  }

  get port(): number {
    return this.spec.port
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.spec.name} is already running`)
    const child = spawn(this.spec.command, this.spec.args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.spec.env } })
    this.child = child
    running.add(this)
    const keep = (d: Buffer): void => {
      // the last 64 KiB is enough to say why a server did not start
      this.output = (this.output + d.toString()).slice(-65536)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    child.once('exit', () => {
      if (this.child === child) this.child = null
      running.delete(this)
    })
    const deadline = Date.now() + (this.spec.readyTimeoutMs ?? 20_000)
    for (;;) {
      if (this.child !== child) throw new Error(`${this.spec.name} exited before it was ready:\n${this.output}`)
      if ((await accepts(this.spec.port)) && (!this.spec.ready || (await this.spec.ready().catch(() => false)))) return
      if (Date.now() > deadline) {
        child.kill('SIGKILL')
        throw new Error(`${this.spec.name} not ready on port ${this.spec.port} in ${this.spec.readyTimeoutMs ?? 20_000} ms:\n${this.output}`)
      }
      await sleep(50)
    }
  }

  /** kill -9: the target's outage, as abrupt as it gets. Resolves once the process is gone. */
  async kill9(): Promise<void> {
    await this.#signal('SIGKILL')
  }

  /** SIGTERM (then SIGKILL after 10 s). */
  async stop(): Promise<void> {
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 10_000)
    await this.#signal('SIGTERM')
    clearTimeout(timer)
  }

  async #signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (!child) return
    const gone = new Promise<void>((res) => child.once('exit', () => res()))
    child.kill(signal)
    await gone
  }

  /** Stops the server and removes its directories. */
  async dispose(): Promise<void> {
    await this.stop()
    for (const d of this.spec.dirs ?? []) rmSync(d, { recursive: true, force: true })
  }
}
