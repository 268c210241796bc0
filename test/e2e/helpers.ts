import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { CLI } from '../helpers/gateway-process.js'

export interface Json {
  status: number
  body: Record<string, unknown>
}

/** One HTTP call to the gateway API (127.0.0.1). */
export async function call(base: string, method: string, path: string, body?: unknown): Promise<Json> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const text = await res.text()
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
}

export type { ApiRecord as ApiRecordJson } from '../../src/http/wire.js'

/** Runs `culex <args>` to completion (bounded by timeoutMs), with `stdin` piped in (none: an empty stdin); returns its exit code and output. */
export function runCli(args: string[], timeoutMs = 20_000, stdin?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`culex ${args.join(' ')} did not finish in ${timeoutMs} ms: ${stderr}`))
    }, timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    // the command may exit (a usage error) before reading stdin
    child.stdin.on('error', () => undefined)
    child.stdin.end(stdin ?? '')
  })
}

export class RunningCli {
  stdout = ''
  stderr = ''
  private readonly exited: Promise<number | null>

  private readonly child: ChildProcessWithoutNullStreams

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stdout.on('data', (d: Buffer) => (this.stdout += d.toString()))
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()))
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)))
  }

  lines(): string[] {
    return this.stdout.split('\n').filter((l) => l.length > 0)
  }

  /** Waits until `check` holds (bounded by timeoutMs). */
  async until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`${what} not seen in ${timeoutMs} ms; stdout: ${this.stdout}; stderr: ${this.stderr}`)
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  /** SIGINT (as Ctrl-C) and the exit code. */
  async interrupt(): Promise<number | null> {
    this.child.kill('SIGINT')
    return this.exited
  }
}
