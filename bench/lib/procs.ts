// Child processes of the bench: spawning with a raised fd limit, /proc readings, and cleanup.
// Every child the bench starts is registered here and killed when the bench ends, fails or is interrupted.
import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { createServer, connect } from 'node:net'

const children = new Set<ChildProcess>()

/** Monotonic clock in ms, comparable between processes of this machine (CLOCK_MONOTONIC). */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

export const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms))

/** The fd limit children ask for; `ulimit -n` in a shell that execs the real program. */
export const WANTED_NOFILE = 65536

/**
 * Spawns `file args...` through `sh -c 'ulimit -n N; exec "$0" "$@"'` so the child (after exec it is
 * the same pid) gets a raised fd limit. If N cannot be set, it falls back to the hard limit; the limit
 * actually in force is read back from /proc/<pid>/limits by `nofileLimit`.
 */
export function spawnTracked(file: string, args: string[], options: SpawnOptions): ChildProcess {
  const script = `ulimit -n ${WANTED_NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"`
  const child = spawn('sh', ['-c', script, file, ...args], { ...options, detached: false })
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null
}

/** SIGTERM, then SIGKILL after `graceMs`. Resolves when the child is gone. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (!isAlive(child)) return
  const gone = new Promise<void>((res) => child.once('exit', () => res()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => {
    if (isAlive(child)) child.kill('SIGKILL')
  }, graceMs)
  await gone
  clearTimeout(timer)
}

export function killChild(child: ChildProcess): void {
  if (isAlive(child)) child.kill('SIGKILL')
}

/** Kills every child still running (synchronous: usable from an 'exit' handler). */
export function killAll(): void {
  for (const child of children) killChild(child)
}

let cleanupInstalled = false
/** Kills all children on exit, SIGINT, SIGTERM and uncaught errors. */
export function installCleanup(): void {
  if (cleanupInstalled) return
  cleanupInstalled = true
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}: killing ${children.size} child process(es)\n`)
      killAll()
      process.exit(130)
    })
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: uncaught: ${err.stack ?? String(err)}\n`)
    killAll()
    process.exit(1)
  })
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: unhandled rejection: ${err instanceof Error ? err.stack : String(err)}\n`)
    killAll()
    process.exit(1)
  })
}

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

/** Resolves once 127.0.0.1:port accepts a TCP connection; fails when `child` exits or on timeout. */
export async function waitForPort(port: number, child: ChildProcess, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (!isAlive(child)) throw new Error(`exited (${child.exitCode ?? child.signalCode}) before listening: ${describe()}`)
    const ok = await new Promise<boolean>((res) => {
      const socket = connect({ host: '127.0.0.1', port })
      socket.once('connect', () => {
        socket.destroy()
        res(true)
      })
      socket.once('error', () => res(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`not listening on ${port} after ${timeoutMs} ms: ${describe()}`)
    await sleep(50)
  }
}

let clkTck: number | null = null
function ticksPerSecond(): number {
  if (clkTck === null) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

/** utime + stime of a process, in ms (from /proc/<pid>/stat). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the command name (field 2) may contain spaces; fields after the closing paren are fixed
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(rest[11])
  const stime = Number(rest[12])
  return ((utime + stime) * 1000) / ticksPerSecond()
}

/** VmRSS of a process in KiB (from /proc/<pid>/status). */
export function procRssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  return m ? Number(m[1]) : NaN
}

/** Number of threads (from /proc/<pid>/status). */
export function procThreads(pid: number): number {
  const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

/** The soft "Max open files" limit in force for a process. */
export function nofileLimit(pid: number): number {
  const m = /^Max open files\s+(\d+|unlimited)\s+/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : NaN
}

/** TCP ports (IPv4 and IPv6) on which process `pid` has a listening socket. */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>()
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m?.[1]) inodes.add(m[1])
    } catch {
      // the fd closed meanwhile
    }
  }
  const ports = new Set<number>()
  for (const table of [`/proc/${pid}/net/tcp`, `/proc/${pid}/net/tcp6`]) {
    let lines: string[]
    try {
      lines = readFileSync(table, 'utf8').split('\n').slice(1)
    } catch {
      continue
    }
    for (const line of lines) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10) continue
      // f[1] local address:port (hex), f[3] state (0A = LISTEN), f[9] inode
      if (f[3] === '0A' && inodes.has(f[9] ?? '')) ports.add(parseInt(f[1]?.split(':')[1] ?? '', 16))
    }
  }
  return [...ports].sort((a, b) => a - b)
}
