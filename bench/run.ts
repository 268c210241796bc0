// Culex side by side with mosquitto and plain aedes: starts each broker in turn on a free 127.0.0.1
// port, drives it with the same MQTT.js load generator, prints one table and writes a JSON file.
//
//   npm run bench                 default run (a few minutes)
//   npm run bench -- --quick      about a minute
//   npm run bench -- --full       longer runs, 50,000 connections
//   node dist/bench/run.js --help
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  AEDES_SERVER,
  BROKER_TITLES,
  ALL_BROKERS,
  BROKERS,
  isCulex,
  setBaseline,
  CULEX_CLI,
  culexArgs,
  mosquittoConfig,
  mosquittoPath,
  mosquittoVersion,
  packageVersion,
  ROOT,
  startBroker,
  type BrokerName,
  type RunningBroker
} from './lib/brokers.js'
import { cpuCapacity, type CpuCapacity } from './lib/calibrate.js'
import { renderProfile, summarizeProfile, type ProfileSummary } from './lib/cpuprofile.js'
import { installCleanup, isAlive, nofileLimit, nowMs, sleep, WANTED_NOFILE } from './lib/procs.js'
import type { Mode, Scenario, ScenarioContext, ScenarioResult, Tuning } from './lib/scenario.js'
import { renderNotes, renderTable, type Outcome } from './lib/table.js'
import { RAW_WORKER_JS, WORKER_JS, WorkerSet } from './lib/workers.js'
import { SCENARIOS } from './scenarios/index.js'

const USAGE = `usage: node dist/bench/run.js [options]   (npm run bench -- [options])
  --quick              short run, about a minute (2,000 connections)
  --full               long run (50,000 connections)
  --brokers <list>     comma-separated, from ${ALL_BROKERS.join(', ')} (default: ${BROKERS.join(', ')})
  --baseline <dir>     another built Culex checkout, run as base-fsync and base-none (before/after in one run)
  --only <list>        comma-separated scenario ids, from ${SCENARIOS.map((s) => s.id).join(', ')}
  --profile            run Culex under node --cpu-prof and print its hot spots
  --rounds <n>         run everything n times; the table shows medians (default: 1 quick, 3 otherwise)
  --publishers <n>     publisher clients in qos0/qos1/qos2 (default 8)
  --window <n>         in-flight window per publisher in qos1/qos2 (default 16) and raw-* (default 64)
  --pub-procs <n>      raw-*: publisher processes (default 2); --publishers sets their connections (default 8)
  --sub-procs <n>      raw-*: subscriber processes (default 1)
  --sub-conns <n>      raw-*: subscriber connections per subscriber process (default 1); several split the topics
  --read-pause <ms>    raw-*: a load socket stops reading this long after each read, to batch (default 2; 0 = never)
  --bridges <list>     bridges: the kinds to measure, from nats, redis, amqp, webhook, mqtt (default: all)
  --bridge-batch <list> bridges: batch sizes (records per delivery), comma-separated (default 10,100,500)
  --bridge-partitions <n> bridges: partitions of the stream, i.e. batches in flight at once (default 4)
  --out <file>         results JSON (default: bench/results/<timestamp>.json)
  --help`

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`)
  process.exit(2)
}

const { values } = parseArgs({
  options: {
    'quick': { type: 'boolean', default: false },
    'full': { type: 'boolean', default: false },
    'brokers': { type: 'string' },
    'baseline': { type: 'string' },
    'only': { type: 'string' },
    'profile': { type: 'boolean', default: false },
    'out': { type: 'string' },
    'publishers': { type: 'string' },
    'rounds': { type: 'string' },
    'window': { type: 'string' },
    'pub-procs': { type: 'string' },
    'sub-procs': { type: 'string' },
    'sub-conns': { type: 'string' },
    'read-pause': { type: 'string' },
    'bridges': { type: 'string' },
    'bridge-batch': { type: 'string' },
    'bridge-partitions': { type: 'string' },
    'help': { type: 'boolean', default: false }
  },
  strict: true
})
if (values.help) {
  process.stdout.write(USAGE + '\n')
  process.exit(0)
}
if (values.quick && values.full) fail('--quick and --full exclude each other')
const mode: Mode = values.quick ? 'quick' : values.full ? 'full' : 'default'

const brokers = (values.brokers
  ?.split(',')
  .map((s) => s.trim())
  .filter(Boolean) ?? BROKERS) as BrokerName[]
if (values.baseline) {
  try {
    setBaseline(values.baseline)
  } catch (err) {
    fail((err as Error).message)
  }
  if (!values.brokers) brokers.splice(2, 0, 'base-fsync', 'base-none')
}
for (const b of brokers) if (!ALL_BROKERS.includes(b)) fail(`unknown broker ${b}; known: ${ALL_BROKERS.join(', ')}`)
const only = values.only
  ?.split(',')
  .map((s) => s.trim())
  .filter(Boolean)
for (const id of only ?? []) if (!SCENARIOS.some((s) => s.id === id)) fail(`unknown scenario ${id}; known: ${SCENARIOS.map((s) => s.id).join(', ')}`)
function positive(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > 10_000) fail(`--${name} must be an integer 1-10000`)
  return n
}
function readPause(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 100) fail('--read-pause must be an integer 0-100 (ms)')
  return n
}
function list(raw: string | undefined): string[] | undefined {
  return raw
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}
const BRIDGE_KINDS = ['nats', 'redis', 'amqp', 'webhook', 'mqtt']
const bridges = list(values.bridges)
for (const k of bridges ?? []) if (!BRIDGE_KINDS.includes(k)) fail(`unknown bridge kind ${k}; known: ${BRIDGE_KINDS.join(', ')}`)
const bridgeBatches = list(values['bridge-batch'])?.map((b) => positive('bridge-batch', b) ?? 0)
const rounds = positive('rounds', values.rounds) ?? (mode === 'quick' ? 1 : 3)
const tuning: Tuning = {
  publishers: positive('publishers', values.publishers),
  window: positive('window', values.window),
  pubProcesses: positive('pub-procs', values['pub-procs']),
  subProcesses: positive('sub-procs', values['sub-procs']),
  subConnections: positive('sub-conns', values['sub-conns']),
  readPauseMs: readPause(values['read-pause']),
  bridges,
  bridgeBatches,
  bridgePartitions: positive('bridge-partitions', values['bridge-partitions'])
}
const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.id))

for (const f of [CULEX_CLI, AEDES_SERVER, WORKER_JS, RAW_WORKER_JS]) if (!existsSync(f)) fail(`${f} is missing: run npm run build first`)
if (brokers.includes('mosquitto') && !mosquittoPath()) fail('mosquitto is not installed: run node test/provision.mjs --bench')

installCleanup()

const startedAt = new Date()
const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
const resultsDir = join(ROOT, 'bench/results')
const outFile = values.out ?? join(resultsDir, `${stamp}.json`)
const profileDir = join(resultsDir, 'profiles', stamp)

function sh(cmd: string): string {
  try {
    return execFileSync('sh', ['-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return 'unknown'
  }
}

async function machine(): Promise<Record<string, unknown>> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const meminfo = readFileSync('/proc/meminfo', 'utf8')
  return {
    nproc: availableParallelism(),
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown',
    memTotal: /^MemTotal:\s*(.*)$/m.exec(meminfo)?.[1] ?? 'unknown',
    kernel: release(),
    node: process.version,
    mosquitto: mosquittoVersion(),
    aedes: packageVersion(join(ROOT, 'node_modules/aedes')),
    mqttJs: packageVersion(join(ROOT, 'node_modules/mqtt')),
    culex: packageVersion(ROOT),
    dataDirFilesystem: sh(`stat -f -c %T ${tmpdir()}`),
    ulimitNofile: { runner: nofileLimit(process.pid), wanted: WANTED_NOFILE },
    cpuCapacity: await cpuCapacity(),
    localPortRange: sh('cat /proc/sys/net/ipv4/ip_local_port_range').replace(/\s+/g, '-')
  }
}

function log(line: string): void {
  process.stderr.write(line + '\n')
}

function summary(r: ScenarioResult): string {
  const parts = r.metrics.filter((m) => m.show).map((m) => `${m.label} ${m.value === null ? '–' : Math.round(m.value * 100) / 100}`)
  if (r.cpu && r.cpu.wallMs > 0) {
    parts.push(`cpu broker ${Math.round((100 * r.cpu.brokerMs) / r.cpu.wallMs)}% clients ${Math.round((100 * r.cpu.clientMs) / r.cpu.wallMs)}%`)
  }
  return parts.join(', ')
}

async function runScenario(
  name: BrokerName,
  broker: RunningBroker | null,
  scenario: Scenario,
  round: number,
  cpuProfDir: string | undefined
): Promise<Outcome> {
  const workers = new WorkerSet()
  const started: RunningBroker[] = []
  const limit = scenario.deadlineMs(mode)
  const deadline = nowMs() + limit
  let timer: NodeJS.Timeout | undefined
  try {
    const ctx: ScenarioContext = {
      broker,
      brokerName: name,
      async startBroker(options = {}) {
        const b = await startBroker(name, { ...options, cpuProfDir })
        started.push(b)
        return b
      },
      mode,
      workers,
      deadline,
      log,
      tuning
    }
    const result = await Promise.race([
      scenario.run(ctx),
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`hard deadline of ${limit} ms reached`)), limit)
      })
    ])
    return { broker: name, scenario: scenario.id, round, result, error: null }
  } catch (err) {
    return { broker: name, scenario: scenario.id, round, result: null, error: err instanceof Error ? err.message : String(err) }
  } finally {
    clearTimeout(timer)
    workers.killAll()
    for (const b of started) await b.stop()
  }
}

function profileLines(dir: string | undefined, profiles: ProfileSummary[]): void {
  if (!dir || !existsSync(dir)) return
  const found = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => summarizeProfile(join(dir, f)))
  const busiest = Math.max(0, ...found.map((s) => s.busyMs))
  for (const s of found) {
    profiles.push(s)
    // module-loader hook threads and brief processes barely run: list them only in the JSON file
    if (s.busyMs >= 0.2 * busiest) log(renderProfile(s))
  }
}

async function main(): Promise<void> {
  const info = await machine()
  log(`bench: mode ${mode}, ${rounds} round(s); brokers ${brokers.join(', ')}; scenarios ${scenarios.map((s) => s.id).join(', ')}`)
  log(`bench: ${String(info.nproc)} cpu (${String(info.cpuModel)}), node ${process.version}, mosquitto ${String(info.mosquitto)}, aedes ${String(info.aedes)}`)
  log(`bench: two busy threads get ${String((info.cpuCapacity as CpuCapacity).speedup)}x the work of one (2.00x = two free cores)`)
  const outcomes: Outcome[] = []
  const brokerInfo: Record<string, unknown> = {}
  const profiles: ProfileSummary[] = []
  const t0 = Date.now()
  for (let round = 1; round <= rounds; round++) {
    if (rounds > 1) log(`\n######## round ${round} of ${rounds}`)
    for (const name of brokers) {
      const culex = isCulex(name)
      const cpuProfDir = values.profile && culex ? join(profileDir, rounds > 1 ? `${name}-round${round}` : name) : undefined
      const applicable = scenarios.filter((s) => !s.appliesTo || s.appliesTo.includes(name))
      if (applicable.length === 0) continue
      log(`\n== ${BROKER_TITLES[name]}`)
      // the broker the 'shared' scenarios drive; restarted when a 'fresh' or 'own' scenario needed another
      let shared: RunningBroker | null = null
      const announce = (b: RunningBroker, why: string): void => {
        brokerInfo[name] ??= { command: b.command, nofile: b.nofile, ...(name === 'mosquitto' ? { config: mosquittoConfig(b.port) } : {}) }
        log(
          `  (${why}: pid ${b.pid}, 127.0.0.1:${b.port}${b.adminPort ? `, admin ${b.adminPort}` : ''}, fd limit ${b.nofile}, up in ${b.startMs.toFixed(0)} ms)`
        )
      }
      try {
        for (const scenario of applicable) {
          const setup = scenario.setup ?? 'shared'
          const started = Date.now()
          let own: RunningBroker | null = null
          let outcome: Outcome
          try {
            let broker: RunningBroker | null = null
            if (setup === 'shared') {
              if (shared && !isAlive(shared.child)) {
                log(`  broker died: ${shared.output().slice(-500)}`)
                await shared.stop()
                shared = null
              }
              if (!shared) {
                shared = await startBroker(name, { cpuProfDir })
                announce(shared, 'started')
              }
              broker = shared
            } else {
              if (shared) await shared.stop()
              shared = null
              if (setup === 'fresh') {
                own = await startBroker(name, { cpuProfDir, ...(culex ? scenario.culexStart : {}) })
                announce(own, `fresh broker for ${scenario.id}`)
                broker = own
              }
            }
            outcome = await runScenario(name, broker, scenario, round, cpuProfDir)
          } catch (err) {
            // a broker that would not start fails this scenario only
            outcome = { broker: name, scenario: scenario.id, round, result: null, error: err instanceof Error ? err.message : String(err) }
          } finally {
            await own?.stop()
          }
          outcomes.push(outcome)
          const took = ((Date.now() - started) / 1000).toFixed(1)
          if (outcome.result) log(`  ${scenario.id.padEnd(12)} ${summary(outcome.result)}  (${took} s)`)
          else log(`  ${scenario.id.padEnd(12)} ERROR ${outcome.error}  (${took} s)`)
          for (const n of outcome.result?.notes ?? []) log(`  ${''.padEnd(12)} note: ${n}`)
          if (setup === 'shared') await sleep(200) // let the broker close the last scenario's connections
        }
      } finally {
        await shared?.stop()
      }
      profileLines(cpuProfDir, profiles)
    }
  }
  const elapsed = (Date.now() - t0) / 1000

  const table = renderTable(scenarios, brokers, outcomes)
  const notes = renderNotes(outcomes)
  process.stdout.write(`\n${rounds > 1 ? `median of ${rounds} rounds\n\n` : ''}${table}\n`)
  process.stdout.write(
    '\nratios: Culex / other broker of the same row; above 1.00x is better for Culex on "higher" rows, below 1.00x on "lower is better" rows.\n' +
      'CPU: % of one core during the measured window (broker process from /proc/<pid>/stat, clients = all load workers).\n'
  )
  if (notes) process.stdout.write(`\nnotes:\n${notes}\n`)

  mkdirSync(resultsDir, { recursive: true })
  const report = {
    date: startedAt.toISOString(),
    command: `node ${process.argv.slice(1).join(' ')}`,
    mode,
    rounds,
    tuning,
    elapsedSeconds: elapsed,
    machine: info,
    brokers: brokerInfo,
    culexStartArgs: culexArgs('<tmp>', 0, 'fsync'),
    scenarios: scenarios.map((s) => ({ id: s.id, title: s.title })),
    results: outcomes,
    profiles,
    table
  }
  writeFileSync(outFile, JSON.stringify(report, null, 2) + '\n')
  process.stdout.write(`\nresults: ${outFile} (${elapsed.toFixed(0)} s)\n`)
  if (profiles.length) process.stdout.write(`profiles: ${profileDir}\n`)
  if (outcomes.some((o) => o.error)) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
