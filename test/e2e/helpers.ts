import { spawn } from 'node:child_process'
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

export type { ApiRecord as ApiRecordJson } from '../../src/admin/encoding.js'

/** Runs `culex <args>` to completion (bounded by timeoutMs); returns its exit code and output. */
export function runCli(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
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
  })
}
