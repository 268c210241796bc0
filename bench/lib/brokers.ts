// The brokers under test. Each is started as its own process on a free 127.0.0.1 port, one at a time.
import { execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { freePort, isAlive, nowMs, listeningPorts, nofileLimit, spawnTracked, stopChild, waitForPort } from './procs.js'

export const ROOT = resolve(import.meta.dirname, '../../..')
export const CULEX_CLI = join(ROOT, 'dist/src/cli.js')
export const AEDES_SERVER = join(ROOT, 'dist/bench/aedes-server.js')

export type BrokerName = 'culex-fsync' | 'culex-none' | 'culex-acl' | 'base-fsync' | 'base-none' | 'mosquitto' | 'aedes'
/** The brokers run by default; base-* only with --baseline. */
export const BROKERS: BrokerName[] = ['culex-fsync', 'culex-none', 'mosquitto', 'aedes']
export const ALL_BROKERS: BrokerName[] = ['culex-fsync', 'culex-none', 'culex-acl', 'base-fsync', 'base-none', 'mosquitto', 'aedes']

export const BROKER_TITLES: Record<BrokerName, string> = {
  'culex-fsync': 'Culex fsync',
  'culex-none': 'Culex none',
  'culex-acl': 'Culex none+ACL',
  'base-fsync': 'baseline fsync',
  'base-none': 'baseline none',
  'mosquitto': 'mosquitto',
  'aedes': 'aedes (mem)'
}

/**
 * `--baseline <dir>`: another built checkout of Culex (e.g. a git worktree of the landed main),
 * run as base-fsync / base-none beside this one, so before and after are measured in one run.
 */
let baselineRoot: string | null = null
export function setBaseline(dir: string): void {
  baselineRoot = resolve(dir)
  if (!existsSync(join(baselineRoot, 'dist/src/cli.js'))) throw new Error(`--baseline ${dir}: no dist/src/cli.js there (npm ci && npm run build in it first)`)
}

export function isCulex(name: BrokerName): boolean {
  return name.startsWith('culex') || name.startsWith('base')
}

function culexCli(name: BrokerName): string {
  if (!name.startsWith('base')) return CULEX_CLI
  if (!baselineRoot) throw new Error(`${name} needs --baseline <dir>`)
  return join(baselineRoot, 'dist/src/cli.js')
}

export interface StartOptions {
  /** write a V8 CPU profile of the Culex process into this directory */
  cpuProfDir?: string
  /** Culex only: a config file with these contents (streams, routes); flags still win */
  culexConfig?: Record<string, unknown>
  /** Culex only: start the HTTP admin API on a free port (otherwise it is off) */
  admin?: boolean
  /** Culex only: use this data dir and keep it at stop (for restarts on the same data) */
  dataDir?: string
}

export interface RunningBroker {
  name: BrokerName
  pid: number
  port: number
  child: ChildProcess
  /** the command line, for the results file */
  command: string[]
  /** "Max open files" in force for the broker process */
  nofile: number
  /** Culex's HTTP admin API port, when started with `admin` */
  adminPort: number | null
  /** Culex's data dir */
  dataDir: string | null
  /** from spawn until the MQTT port accepted a connection (and the admin port, if any) */
  startMs: number
  /** the tail of what the broker wrote to stdout/stderr */
  output(): string
  stop(): Promise<void>
}

/** The mosquitto binary (often in /usr/sbin, which a normal user's PATH lacks), or null. */
export function mosquittoPath(): string | null {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(p)) return p
  try {
    return execFileSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' }).trim() || null
  } catch {
    return null
  }
}

export function mosquittoVersion(): string {
  const bin = mosquittoPath()
  if (!bin) return 'not installed'
  try {
    // `mosquitto -h` prints the version and exits with 3
    execFileSync(bin, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const out = (err as { stdout?: string }).stdout ?? ''
    const m = /mosquitto version (\S+)/.exec(out)
    if (m?.[1]) return m[1]
  }
  return 'unknown'
}

export function packageVersion(dir: string): string {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

const culexFlags = new Map<string, string>()
/** Whether `culex start` knows a flag (the CLI grows while the bench is used; a baseline may be older). */
export function culexHasFlag(flag: string, cli = CULEX_CLI): boolean {
  let help = culexFlags.get(cli)
  if (help === undefined) culexFlags.set(cli, (help = execFileSync(process.execPath, [cli, 'start', '--help'], { encoding: 'utf8' })))
  return help.includes(flag)
}

/** The Culex start arguments the bench uses (every listener but MQTT/TCP off). */
export function culexArgs(dataDir: string, port: number, durability: 'fsync' | 'none', adminPort: number | null = null, cli = CULEX_CLI): string[] {
  const args = ['start', '--data-dir', dataDir, '--mqtt-port', String(port), '--ws-port', 'off']
  if (adminPort !== null) args.push('--admin-port', String(adminPort))
  else if (culexHasFlag('--admin-port', cli)) args.push('--admin-port', 'off')
  args.push('--durability', durability, '--log-level', 'warn')
  // every load client connects from 127.0.0.1: no per-address cap, as mosquitto has none
  if (culexHasFlag('--max-connections-per-address', cli)) args.push('--max-connections-per-address', '0')
  return args
}

/**
 * culex-acl's ACL file: the bench's anonymous clients may use bench/#, behind 200 user sections
 * and two patterns, so every publish and every delivery is checked against a file of real size.
 */
export function benchAcl(): string {
  const lines = ['topic deny bench/forbidden/#', 'topic readwrite bench/#', 'pattern readwrite clients/%c/#', 'pattern read users/%u/#']
  for (let i = 0; i < 200; i++) lines.push(`user device-${i}`, `topic write devices/device-${i}/#`, `topic read commands/device-${i}/#`)
  return lines.join('\n') + '\n'
}

/** mosquitto config: one listener on 127.0.0.1, nothing on 1883, nothing written to disk. */
export function mosquittoConfig(port: number): string {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    // Without a limit mosquitto never drops QoS 1/2 messages queued for a slow subscriber (the
    // default, 1000, drops): the bench counts deliveries, so it must not drop what the others keep.
    'max_queued_messages 0',
    // quiet: a log line per connection would cost mosquitto CPU in the connections scenario
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'connection_messages false',
    ''
  ].join('\n')
}

const READY_TIMEOUT_MS = 20_000

export async function startBroker(name: BrokerName, options: StartOptions = {}): Promise<RunningBroker> {
  const port = await freePort()
  const culex = isCulex(name)
  if (!culex && (options.culexConfig || options.admin || options.dataDir)) throw new Error(`${name}: Culex-only start options`)
  const adminPort = culex && options.admin ? await freePort() : null
  const work = mkdtempSync(join(tmpdir(), `culex-bench-${name}-`))
  const dataDir = culex ? (options.dataDir ?? join(work, 'data')) : null
  let file: string
  let args: string[]
  const env: NodeJS.ProcessEnv = { ...process.env }
  switch (name) {
    case 'culex-fsync':
    case 'culex-none':
    case 'culex-acl':
    case 'base-fsync':
    case 'base-none': {
      // CULEX_* variables of the caller's shell must not change what is measured
      for (const k of Object.keys(env)) if (k.startsWith('CULEX_')) Reflect.deleteProperty(env, k)
      const nodeFlags: string[] = []
      if (options.cpuProfDir) {
        mkdirSync(options.cpuProfDir, { recursive: true })
        nodeFlags.push('--cpu-prof', '--cpu-prof-dir', options.cpuProfDir)
      }
      file = process.execPath
      const cli = culexCli(name)
      args = [...nodeFlags, cli, ...culexArgs(dataDir!, port, name.endsWith('fsync') ? 'fsync' : 'none', adminPort, cli)]
      if (name === 'culex-acl') {
        const acl = join(work, 'acl')
        writeFileSync(acl, benchAcl())
        args.push('--acl-file', acl)
      }
      if (options.culexConfig) {
        const conf = join(work, 'culex.json')
        writeFileSync(conf, JSON.stringify(options.culexConfig, null, 2))
        args.push('--config', conf)
      }
      break
    }
    case 'mosquitto': {
      const bin = mosquittoPath()
      if (!bin) throw new Error('mosquitto is not installed: run `node test/provision.mjs --bench`')
      const conf = join(work, 'mosquitto.conf')
      writeFileSync(conf, mosquittoConfig(port), { mode: 0o644 })
      file = bin
      args = ['-c', conf]
      break
    }
    case 'aedes':
      file = process.execPath
      args = [AEDES_SERVER, '--port', String(port)]
      break
  }
  const spawnedAt = nowMs()
  const child = spawnTracked(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: work })
  let output = ''
  const keep = (d: Buffer): void => {
    output = (output + d.toString()).slice(-8000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const command = [file, ...args]
  try {
    await waitForPort(port, child, READY_TIMEOUT_MS, () => output)
    if (adminPort !== null) await waitForPort(adminPort, child, READY_TIMEOUT_MS, () => output)
    const startMs = nowMs() - spawnedAt
    const pid = child.pid
    if (pid === undefined) throw new Error('no pid')
    // Exactly the listeners we asked for: no 1883, no WebSocket, no admin port unless asked.
    const ports = listeningPorts(pid)
    const expected = [port, ...(adminPort === null ? [] : [adminPort])].sort((a, b) => a - b)
    if (ports.join() !== expected.join()) {
      throw new Error(`${name} listens on ${ports.join(', ')}; expected only ${expected.join(', ')}`)
    }
    return {
      name,
      pid,
      port,
      child,
      command,
      nofile: nofileLimit(pid),
      adminPort,
      dataDir,
      startMs,
      output: () => output,
      async stop() {
        // SIGTERM: Culex shuts down cleanly (and writes its CPU profile), mosquitto and aedes exit
        await stopChild(child, 10_000)
        // a data dir given by the caller stays (the caller restarts on it and removes it)
        rmSync(work, { recursive: true, force: true })
      }
    }
  } catch (err) {
    await stopChild(child, 2000)
    rmSync(work, { recursive: true, force: true })
    throw new Error(`${name} did not start: ${(err as Error).message}`, { cause: err })
  }
}

export { isAlive }
