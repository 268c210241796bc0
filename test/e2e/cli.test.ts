import { spawn } from 'node:child_process'
import { getEventListeners } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { tail as tailCommand } from '../../src/commands/tail.js'
import { FREE_PORTS, GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { RunningCli, call, runCli } from './helpers.js'

// What a new user meets first: `npm start`, `culex --version`, and `culex tail` against a gateway
// that is idle, restarted, or asked for the wrong thing.

const ROOT = join(import.meta.dirname, '../..')
const CONFIG = 'streams:\n  telemetry:\n    partitions: 4\n  single:\n'

const gateways: GatewayProcess[] = []
const tails: RunningCli[] = []
afterEach(async () => {
  for (const t of tails.splice(0)) await t.interrupt()
  for (const g of gateways.splice(0)) await g.stop()
})

async function gateway(dir: string, extra: string[] = []): Promise<GatewayProcess> {
  const file = join(dir, 'culex.yaml')
  writeFileSync(file, CONFIG)
  const gw = await GatewayProcess.start(join(dir, 'data'), ['--config', file, ...extra])
  gateways.push(gw)
  return gw
}

function tail(args: string[]): RunningCli {
  const t = new RunningCli(['tail', ...args])
  tails.push(t)
  return t
}

async function produce(gw: GatewayProcess, stream: string, values: string[]): Promise<void> {
  const r = await call(gw.api, 'POST', `/api/v1/streams/${stream}/records`, { records: values.map((value) => ({ key: value, value })), encoding: 'utf8' })
  expect(r.status).toBe(200)
}

describe('npm start', () => {
  it('stops the gateway it started on SIGTERM to npm (no orphan left running)', async () => {
    // --ignore-scripts skips prestart (the build, done already): exactly the start script runs
    const npm = spawn('npm', ['start', '--ignore-scripts', '--', '--data-dir', join(tempDataDir('npm-start'), 'data'), ...FREE_PORTS], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)))
    let gatewayPid = 0
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('npm start: no ready line in 20 s')), 20_000)
      createInterface({ input: npm.stdout }).on('line', (line) => {
        // npm prints its own lines (the script it runs) before the gateway's JSON
        const entry = line.startsWith('{') ? (JSON.parse(line) as { msg: string; pid: number }) : null
        if (entry?.msg === 'ready') {
          gatewayPid = entry.pid
          clearTimeout(timer)
          resolve()
        }
      })
    })
    npm.kill('SIGTERM')
    expect(await exited).toBe(0)
    const alive = (): boolean => {
      try {
        process.kill(gatewayPid, 0)
        return true
      } catch {
        return false
      }
    }
    const deadline = Date.now() + 5000
    while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(alive()).toBe(false)
  })
})

describe('culex', () => {
  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    const r = await runCli(['--version'])
    expect(r).toMatchObject({ code: 0, stdout: `${version}\n` })
  })
})

describe('culex tail', () => {
  it('leaves no listener behind on its signal while it polls an idle stream', async () => {
    const gw = await gateway(tempDataDir('tail-idle'))
    const stop = new AbortController()
    const printed: string[] = []
    const counts: number[] = []
    const running = tailCommand('telemetry', { url: gw.api, from: 'latest', json: false }, { record: (l) => printed.push(l), notice: () => {} }, stop.signal)
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 500))
      counts.push(getEventListeners(stop.signal, 'abort').length)
    }
    await produce(gw, 'telemetry', ['late'])
    const deadline = Date.now() + 5000
    while (printed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25))
    stop.abort()
    await running
    expect(printed.map((l) => l.split(' ').pop())).toEqual(['late'])
    // a poll holds at most one listener at a time (sleep or request), none accumulate
    expect(Math.max(...counts)).toBeLessThanOrEqual(1)
  })

  it('takes an offset only within one partition (--partition), and names the exclusive end when out of range', async () => {
    const gw = await gateway(tempDataDir('tail-partition'))
    const stream = await call(gw.api, 'GET', '/api/v1/streams/telemetry')
    expect(stream.status).toBe(200)
    for (let p = 0; p < 4; p++) {
      const r = await call(gw.api, 'POST', '/api/v1/streams/telemetry/records', {
        records: [0, 1, 2].map((i) => ({ value: `p${p}-${i}`, partition: p })),
        encoding: 'utf8'
      })
      expect(r.status).toBe(200)
    }
    const ambiguous = await runCli(['tail', 'telemetry', '--from', '1', '--url', gw.api])
    expect(ambiguous.code).toBe(1)
    expect(ambiguous.stderr).toMatch(/--from 1 is an offset, which means something only within one partition; stream telemetry has 4: add --partition N/)

    const one = await runCli(['tail', 'telemetry', '--from', '1', '--partition', '2', '--max', '2', '--url', gw.api])
    expect(one.code).toBe(0)
    expect(
      one.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ').pop())
    ).toEqual(['p2-1', 'p2-2'])

    const beyond = await runCli(['tail', 'telemetry', '--from', '9', '--partition', '0', '--url', gw.api])
    expect(beyond.code).toBe(1)
    expect(beyond.stderr).toMatch(/offset 9 is out of range for telemetry\/0: offsets 0 to 2 are stored; 3 is the end, where the next record goes/)

    const unknown = await runCli(['tail', 'telemetry', '--partition', '7', '--url', gw.api])
    expect(unknown.stderr).toMatch(/--partition 7 is not one of them/)
    const bad = await runCli(['tail', 'telemetry', '--max', 'x', '--url', gw.api])
    expect(bad.stderr).toMatch(/--max takes a whole number >= 1, not "x"/)
    const both = await runCli(['tail', 'telemetry', '--group', 'g', '--partition', '1', '--url', gw.api])
    expect(both.stderr).toMatch(/--partition cannot be used with --group/)
  })

  it('--group waits with backoff while the gateway restarts, then carries on from the group commits', async () => {
    const dir = tempDataDir('tail-restart')
    let gw = await gateway(dir)
    const adminPort = gw.port('admin')
    const t = tail(['single', '--group', 'watchers', '--from', 'earliest', '--url', gw.api])
    await produce(gw, 'single', ['a', 'b', 'c'])
    await t.until('the first records', () => t.lines().length === 3)
    // the commit of what was printed is durable before the next fetch: give it that turn
    await new Promise((r) => setTimeout(r, 300))
    expect(await gw.stop()).toBe(0)
    gateways.splice(gateways.indexOf(gw), 1)
    await t.until('a retry notice', () => /trying again in/.test(t.stderr))

    gw = await gateway(dir, ['--admin-port', String(adminPort)])
    await produce(gw, 'single', ['d', 'e'])
    await t.until('the records after the restart', () => t.lines().length >= 5)
    expect(t.lines().map((l) => l.split(' ').pop())).toEqual(['a', 'b', 'c', 'd', 'e'])
    expect(t.stderr).toMatch(/is back/)
    expect(await t.interrupt()).toBe(0)
  })
})
