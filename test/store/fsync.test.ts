import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { CLI, FREE_PORTS, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect } from '../helpers/mqtt.js'

// These tests watch the real system calls with strace: "the ack waits for fsync" is checked on
// what the process does, not on what the code says. The fsync runs on the commit thread
// (src/store/commit-thread.ts): what must lie between a PUBLISH read and its PUBACK is a completed
// fdatasync of RocksDB's write-ahead log (*.log), and the event loop's thread must never sync.

interface Trace {
  lines: string[]
}

function traceLines(file: string): Trace {
  return { lines: readFileSync(file, 'utf8').split('\n') }
}

const thread = (l: string): string => l.split(' ', 1)[0]!
/** strace -y -xx prints an fd's path as \xNN bytes: fd 22<\x2f\x74...> */
const fdPath = (l: string): string => {
  const m = /\((\d+)<((?:\\x[0-9a-f]{2})*)>/.exec(l)
  return m ? Buffer.from(m[2]!.replace(/\\x/g, ''), 'hex').toString('utf8') : ''
}
/** A sync of a file of the database (not e.g. pino's fsync of stdout at exit). */
const isDatabaseSync = (l: string): boolean => /\b(fdatasync|fsync)\(/.test(l) && fdPath(l).includes('culex.rocksdb')
const startsWalSync = (l: string): boolean => /\bfdatasync\(/.test(l) && fdPath(l).endsWith('.log')
// A PUBACK is 0x40 0x02 <id msb> <id lsb>. Node writes the packet's parts with one writev
// (iov_base="\x40", then "\x02", ...) or one write.
const isPuback = (l: string): boolean =>
  /\bwritev\(\d+(<[^>]*>)?, \[\{iov_base="\\x40", iov_len=1\}, \{iov_base="\\x02"/.test(l) ||
  /\bwrite\(\d+(<[^>]*>)?, "\\x40\\x02\\x[0-9a-f]{2}\\x[0-9a-f]{2}", 4\)/.test(l)
// The test's QoS 1 PUBLISH packets: 0x32 (0x33 when retained), remaining length, topic "s/N" (length 3)
const isQos1PublishRead = (l: string): boolean => /\bread\(\d+(<[^>]*>)?, "\\x3[23]\\x[0-9a-f]{2}\\x00\\x03\\x73\\x2f/.test(l)

/** Indexes of the lines where a WAL fdatasync completes (in one line, or as the "resumed" half). */
function walSyncsDone(lines: string[]): Set<number> {
  const done = new Set<number>()
  const open = new Set<string>()
  lines.forEach((l, i) => {
    if (startsWalSync(l)) {
      if (l.includes('<unfinished ...>')) open.add(thread(l))
      else if (/\) = 0$/.test(l)) done.add(i)
    } else if (/<\.\.\. fdatasync resumed>.*= 0$/.test(l) && open.delete(thread(l))) {
      done.add(i)
    }
  })
  return done
}

async function tracedGateway(durability: 'fsync' | 'none', dir: string): Promise<{ mqttPort: number; stop: () => Promise<Trace> }> {
  const traceFile = join(dir, 'strace.txt')
  const child = spawn(
    'strace',
    [
      '-f',
      '-y',
      '-xx',
      '-s',
      '64',
      '-e',
      'trace=fdatasync,fsync,read,write,writev',
      '-o',
      traceFile,
      process.execPath,
      CLI,
      'start',
      '--data-dir',
      join(dir, 'data'),
      ...FREE_PORTS,
      '--ws-port',
      'off',
      '--durability',
      durability
    ],
    // its own process group, so SIGTERM reaches the gateway and not only strace
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true }
  )
  let out = ''
  let err = ''
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  const mqttPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`traced gateway not ready in 30 s; stdout: ${out}; stderr: ${err}`)), 30_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`traced gateway exited with ${code} before it was ready; stderr: ${err}`))
    })
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /"listener":"mqtt","host":"[^"]+","port":(\d+)/.exec(out)
      if (m && out.includes('"msg":"ready"')) {
        clearTimeout(timer)
        resolve(Number(m[1]))
      }
    })
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    mqttPort,
    stop: async () => {
      process.kill(-child.pid!, 'SIGTERM')
      await exited
      return traceLines(traceFile)
    }
  }
}

describe('fsync before ack (strace)', () => {
  it('strace is installed (test/provision.mjs)', () => {
    expect(execFileSync('strace', ['-V']).toString()).toMatch(/strace/)
  })

  it.each([
    ['fsync', true],
    ['none', false]
  ] as const)(
    'with durability %s, a WAL fdatasync completes between a QoS 1 PUBLISH and its PUBACK: %s',
    async (durability, expectSync) => {
      const gw = await tracedGateway(durability, tempDataDir(`strace-${durability}`))
      const sub = await connect(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: 'strace-sub', clean: false })
      await sub.subscribeAsync('s/#', { qos: 1 })
      await sub.endAsync()
      const pub = await connect(`mqtt://127.0.0.1:${gw.mqttPort}`)
      for (let i = 0; i < 5; i++) await pub.publishAsync(`s/${i}`, `m${i}`, { qos: 1, retain: true })
      await closeAll(pub)
      const trace = await gw.stop()

      const lines = trace.lines
      const publishes = lines.flatMap((l, i) => (isQos1PublishRead(l) ? [i] : []))
      const pubacks = lines.flatMap((l, i) => (isPuback(l) ? [i] : []))
      const walSyncs = walSyncsDone(lines)
      expect(publishes.length).toBeGreaterThanOrEqual(5)
      expect(pubacks.length).toBe(publishes.length)
      for (let k = 0; k < pubacks.length; k++) {
        const between = [...walSyncs].filter((i) => i > publishes[k]! && i < pubacks[k]!).length
        // one barrier: the retained message and the offline session's copy share one commit
        expect(between, `WAL fdatasyncs between publish ${k} and its puback`).toBe(expectSync ? 1 : 0)
      }
      // the event loop's thread (the one reading the sockets) never waits for the disk
      const js = thread(lines[publishes[0]!]!)
      expect(lines.slice(publishes[0]).filter((l) => thread(l) === js && isDatabaseSync(l))).toEqual([])
      if (expectSync) expect(walSyncs.size).toBeGreaterThanOrEqual(5)
    },
    60_000
  )
})
