import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'

// The Eclipse Paho MQTT 3.1.1 interoperability suite (test/interop/paho/README.md) against a gateway
// process: Paho's own Python client and assertions, Culex as a black box on a free port.

const CLIENT_TEST = join(import.meta.dirname, 'paho/client_test.py')

/** The suite sleeps about 45 s in all (test_keepalive alone 15 s); past this bound Python is killed. */
const PAHO_TIMEOUT_MS = 90_000

const ACL = `# everyone (anonymous clients) may publish and subscribe anywhere except subscribe to test/nosubscribe
topic readwrite #
topic readwrite $SYS/#
topic deny test/nosubscribe
`

const dir = tempDataDir('paho')
const aclPath = join(dir, 'acl')
// the ACL refuses test/nosubscribe: test_subscribe_failure expects SUBACK 0x80 there
const ACL_FLAGS: string[] = ['--acl-file', aclPath]

/**
 * Every test of client_test.py, in unittest's own (alphabetical) order: the tests share two clients and
 * their sessions. `will_message_test` lacks the `test` prefix, so unittest never collects it by itself;
 * it is run by name, last. Nothing is excluded.
 */
const PAHO_TESTS = [
  'testBasic',
  'test_dollar_topics',
  'test_keepalive',
  'test_offline_message_queueing',
  'test_overlapping_subscriptions',
  'test_redelivery_on_reconnect',
  'test_retained_messages',
  'test_subscribe_failure',
  'test_unsubscribe',
  'test_zero_length_clientid',
  'will_message_test'
]

/** Paho tests that fail today: name -> [why, a line of the failure's output that shows it]. Any other test must pass. */
const EXPECTED_FAILURES = new Map<string, [string, RegExp]>()

interface PahoResult {
  /** unittest's verdict: ok, FAIL, ERROR (or none if the run stopped during the test) */
  status: string | undefined
  /** what the test printed while it ran, tracebacks included */
  output: string
  /** unittest's FAIL/ERROR section for the test */
  details: string
}

const HEADER = /^(\w+) \(__main__\.Test(?:\.\w+)?\) \.\.\. /gm
const RULE = /^(?:={70}|-{70})$/m
const VERDICT = /^(ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$/gm
const DETAILS = /^(?:FAIL|ERROR): (\w+) \(__main__\.Test(?:\.\w+)?\)\n-{70}\n([\s\S]*?)(?=^={70}$|^-{70}$)/gm

/** Splits unittest's verbose output (`-v`) into one result per test. */
function parse(output: string): Map<string, PahoResult> {
  const results = new Map<string, PahoResult>()
  const headers = [...output.matchAll(HEADER)]
  headers.forEach((h, i) => {
    const start = h.index + h[0].length
    const next = headers[i + 1]
    let end = next?.index ?? output.length
    if (next === undefined) {
      const rule = RULE.exec(output.slice(start))
      if (rule) end = start + rule.index
    }
    const segment = output.slice(start, end)
    const status = [...segment.matchAll(VERDICT)].at(-1)?.[1]
    results.set(h[1]!, { status, output: segment, details: '' })
  })
  for (const d of output.matchAll(DETAILS)) {
    const r = results.get(d[1]!)
    if (r) r.details = d[2]!
  }
  return results
}

interface PahoRun {
  code: number | null
  signal: NodeJS.Signals | null
  output: string
}

async function runPaho(port: number): Promise<PahoRun> {
  const outPath = join(dir, 'paho.out')
  // one file for stdout and stderr keeps the tests' prints, tracebacks and unittest's verdicts in order
  const fd = openSync(outPath, 'w')
  // `--hostname=`, not `-h`: client_test.py reads `-h` as --help. After `--`, unittest's own arguments.
  const args = ['-W', 'ignore::DeprecationWarning', CLIENT_TEST, '--hostname=127.0.0.1', `--port=${port}`, '--', '-v', ...PAHO_TESTS.map((t) => `Test.${t}`)]
  const child = spawn('python3', args, {
    cwd: dir,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    timeout: PAHO_TIMEOUT_MS,
    killSignal: 'SIGKILL'
  })
  closeSync(fd)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run python3 (node test/provision.mjs installs it): ${err.message}`)))
    child.once('exit', (c, s) => resolve([c, s]))
  })
  return { code, signal, output: readFileSync(outPath, 'utf8') }
}

let gw: GatewayProcess
let run: PahoRun
let results: Map<string, PahoResult>
beforeAll(async () => {
  writeFileSync(aclPath, ACL)
  // Paho's client gives each CONNACK 0.5 s (its socket timeout), and a CONNACK with a will waits for a commit:
  // fsync latency on a disk shared with the other test files is not what this suite is about.
  gw = await GatewayProcess.start(join(dir, 'data'), ['--durability', 'none', ...ACL_FLAGS])
  run = await runPaho(gw.port('mqtt'))
  results = parse(run.output)
}, PAHO_TIMEOUT_MS + 20_000)
afterAll(async () => {
  expect(await gw.stop()).toBe(0)
  rmSync(dir, { recursive: true, force: true })
})

describe('Eclipse Paho MQTT 3.1.1 interoperability suite (client_test.py)', () => {
  it('runs every test of the vendored suite to the end, within the bound', () => {
    const source = readFileSync(CLIENT_TEST, 'utf8')
    const defined = [...source.matchAll(/^ {4}def (test\w*|\w+_test)\(self\):/gm)].map((m) => m[1]).sort()
    expect(defined, 'the vendored client_test.py defines other tests than PAHO_TESTS lists').toEqual([...PAHO_TESTS].sort())
    expect(run.signal, `client_test.py killed after ${PAHO_TIMEOUT_MS} ms:\n${run.output}`).toBeNull()
    expect(run.output, run.output).toMatch(new RegExp(`^Ran ${PAHO_TESTS.length} tests? in `, 'm'))
  })

  for (const name of PAHO_TESTS) {
    const failure = EXPECTED_FAILURES.get(name)
    it(failure ? `${name} fails today: ${failure[0]}` : name, () => {
      const r = results.get(name)
      const report = `Paho ${name}: ${r?.status ?? 'no verdict (the run stopped before or during it)'}\n--- output ---\n${r?.output ?? run.output}\n${r?.details ?? ''}`
      if (failure) {
        // when it passes, the reason is gone: remove it from EXPECTED_FAILURES
        expect(r?.status, report).toBe('FAIL')
        expect(r?.output, report).toMatch(failure[1])
      } else {
        expect(r?.status, report).toBe('ok')
      }
    })
  }
})
