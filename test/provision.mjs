#!/usr/bin/env node
// Makes sure the programs the test suite runs for real are installed (Debian packages).
// As root it installs what is missing; otherwise it fails with the exact command to run.
// No test is skipped for a missing program: the suite stops here instead.
import { execFileSync, spawnSync } from 'node:child_process'

/** command the tests run -> Debian package that provides it */
export const REQUIRED = [
  { command: 'strace', pkg: 'strace', why: 'proves that group commit fsyncs (test/store/fsync.test.ts)' },
  { command: 'openssl', pkg: 'openssl', why: 'makes the TLS test certificates (test/broker/tls.test.ts)' }
]

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

const missing = REQUIRED.filter((r) => !has(r.command))
if (missing.length === 0) process.exit(0)

const pkgs = [...new Set(missing.map((m) => m.pkg))]
const install = `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(' ')}`
for (const m of missing) console.error(`provision: ${m.command} is missing (${m.why})`)
if (process.getuid?.() !== 0) {
  console.error(`provision: run as root:\n  sudo sh -c '${install}'`)
  process.exit(1)
}
console.error(`provision: installing ${pkgs.join(' ')}`)
execFileSync('sh', ['-c', install], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
const still = missing.filter((m) => !has(m.command))
if (still.length > 0) {
  console.error(`provision: still missing after install: ${still.map((m) => m.command).join(', ')}`)
  process.exit(1)
}
