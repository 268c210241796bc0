import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'

export const CLI = resolve(import.meta.dirname, '../../dist/src/cli.js')

export interface LogLine {
  level: number
  msg: string
  [k: string]: unknown
}

/** Every listener on a free port: tests never take a default port, so they pass beside a running gateway. */
export const FREE_PORTS = ['--mqtt-port', '0', '--ws-port', '0', '--tls-port', '0', '--wss-port', '0', '--admin-port', '0']

export function tempDataDir(tag = 'culex'): string {
  return mkdtempSync(join(tmpdir(), `${tag}-`))
}

/** A gateway started as a real child process (`node dist/src/cli.js start ...`) on free ports. */
export class GatewayProcess {
  readonly logs: LogLine[] = []
  readonly ports = new Map<string, number>()
  stderr = ''
  private exitPromise: Promise<number | null>

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    this.exitPromise = new Promise((res) => child.once('exit', (code) => res(code)))
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()))
  }

  static async start(dataDir: string, args: string[] = [], timeoutMs = 15_000): Promise<GatewayProcess> {
    const child = spawn(process.execPath, [CLI, 'start', '--data-dir', dataDir, ...FREE_PORTS, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, CULEX_CONFIG: undefined }
    })
    const gw = new GatewayProcess(child)
    const lines = createInterface({ input: child.stdout })
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`gateway not ready in ${timeoutMs} ms: ${gw.stderr}`)), timeoutMs)
      child.once('exit', (code) => {
        clearTimeout(timer)
        rej(new Error(`gateway exited with ${code} before ready: ${gw.stderr}`))
      })
      lines.on('line', (line) => {
        let entry: LogLine
        try {
          entry = JSON.parse(line) as LogLine
        } catch {
          return
        }
        gw.logs.push(entry)
        if (entry.msg === 'listening') gw.ports.set(String(entry.listener), Number(entry.port))
        if (entry.msg === 'ready') {
          clearTimeout(timer)
          res()
        }
      })
    })
    return gw
  }

  /** Base URL of the HTTP API. */
  get api(): string {
    return `http://127.0.0.1:${this.port('admin')}`
  }

  port(kind: 'mqtt' | 'ws' | 'mqtts' | 'wss' | 'admin'): number {
    const p = this.ports.get(kind)
    if (p === undefined) throw new Error(`no ${kind} listener`)
    return p
  }

  url(kind: 'mqtt' | 'ws' | 'mqtts' | 'wss'): string {
    const path = kind === 'ws' || kind === 'wss' ? '/mqtt' : ''
    return `${kind}://127.0.0.1:${this.port(kind)}${path}`
  }

  /** SIGKILL: no shutdown code runs, as in a crash. */
  async kill9(): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exitPromise
  }

  /** SIGTERM and wait for the clean exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode
    this.child.kill('SIGTERM')
    return this.exitPromise
  }
}
