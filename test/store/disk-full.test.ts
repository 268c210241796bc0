import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, expect, it } from 'vitest'
import { CLI, FREE_PORTS, tempDataDir } from '../helpers/gateway-process.js'

// A full disk, for real: the gateway runs on a small tmpfs in a private mount namespace
// (`unshare --mount`, and a user namespace when not root), beside a filler file. The test writes
// until the store refuses, checks what clients and operators see, frees the filler and checks
// that every acknowledged record is there after the restart.

const SCRIPT = `
set -e
mount -t tmpfs -o size=24m tmpfs "$MNT"
dd if=/dev/zero of="$MNT/filler" bs=1M count=8 status=none
set +e
node "$CLI" start --data-dir "$MNT/data" --config "$CONF" $PORTS
echo $? > "$OUT/exit-running"
node "$CLI" start --data-dir "$MNT/data" --config "$CONF" $PORTS 2> "$OUT/start-full.txt" > /dev/null
echo $? > "$OUT/exit-start-full"
while [ ! -f "$OUT/go" ]; do sleep 0.1; done
rm "$MNT/filler"
exec node "$CLI" start --data-dir "$MNT/data" --config "$CONF" $PORTS
`

interface Started {
  admin: number
  pid: number
}

describe('a full disk', () => {
  it('answers 507 with the cause, logs one line, exits 75, says why a start fails, and keeps every acked record', async () => {
    const dir = tempDataDir('disk-full')
    const conf = join(dir, 'culex.yaml')
    writeFileSync(conf, 'streams:\n  s:\n')
    mkdirSync(join(dir, 'mnt'))
    const root = process.getuid?.() === 0
    const child = spawn('unshare', [...(root ? [] : ['--map-root-user']), '--mount', '--propagation', 'private', 'sh', '-c', SCRIPT], {
      env: { ...process.env, MNT: join(dir, 'mnt'), CLI, CONF: conf, OUT: dir, PORTS: FREE_PORTS.join(' ') },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const lines: Array<Record<string, unknown>> = []
    const readies: Started[] = []
    const waiters: Array<() => void> = []
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>
      lines.push(entry)
      if (entry.msg === 'listening' && entry.listener === 'admin') readies.push({ admin: Number(entry.port), pid: Number(entry.pid) })
      for (const w of waiters.splice(0)) w()
    })
    const started = async (n: number): Promise<Started> => {
      const deadline = Date.now() + 20_000
      while (readies.length < n) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`gateway ${n} did not start: ${stderr}`)
        await new Promise<void>((r) => {
          waiters.push(r)
          setTimeout(r, 100)
        })
      }
      return readies[n - 1]!
    }
    try {
      const first = await started(1)
      let acked = 0
      let refused: { status: number; body: Record<string, unknown> } | null = null
      for (let i = 0; i < 200 && !refused; i++) {
        const res = await fetch(`http://127.0.0.1:${first.admin}/api/v1/streams/s/records`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ value: randomBytes(200_000).toString('base64') })
        })
        if (res.status === 200) acked++
        else refused = { status: res.status, body: (await res.json()) as Record<string, unknown> }
      }
      expect(acked).toBeGreaterThan(10)
      expect(refused).toMatchObject({ status: 507, body: { error: 'STORE_FULL', retriable: true } })
      expect(String(refused?.body.message)).toMatch(/the disk is full \(.*No space left on device/)

      // the gateway stops by itself with EX_TEMPFAIL, after one line that says why
      const deadline = Date.now() + 15_000
      while (!existsSync(join(dir, 'exit-start-full')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
      expect(readFileSync(join(dir, 'exit-running'), 'utf8').trim()).toBe('75')
      const fatal = lines.filter((l) => l.pid === first.pid && l.level === 60)
      expect(fatal).toHaveLength(1)
      expect(fatal[0]).toMatchObject({
        msg: expect.stringMatching(/the store refuses writes/) as string,
        reason: expect.stringMatching(/No space left/) as string
      })
      expect(lines.filter((l) => l.pid === first.pid && Number(l.level) >= 50)).toHaveLength(1)

      // a start on the full disk names the cause (not only "Database is not open")
      expect(readFileSync(join(dir, 'exit-start-full'), 'utf8').trim()).toBe('75')
      expect(readFileSync(join(dir, 'start-full.txt'), 'utf8')).toMatch(
        /culex: failed to start: cannot open the data dir .*: the disk is full \(.*No space left on device/
      )

      // room again: every acknowledged record is there
      writeFileSync(join(dir, 'go'), '')
      const again = await started(2)
      const stream = (await (await fetch(`http://127.0.0.1:${again.admin}/api/v1/streams/s`)).json()) as { records: number }
      expect(stream.records).toBeGreaterThanOrEqual(acked)
    } finally {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
    }
  }, 90_000)
})
