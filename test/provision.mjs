#!/usr/bin/env node
// Makes sure the programs the test suite (or the benchmarks) run for real are installed (Debian packages).
// As root it installs what is missing; otherwise it fails with the exact command to run.
// No test is skipped for a missing program: the suite stops here instead.
//
//   node test/provision.mjs           what the test suite needs (as `npm test` runs it)
//   node test/provision.mjs --bench   what the benchmarks need (as `npm run bench` runs it)
//   node test/provision.mjs --test --bench   both
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, unlinkSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

/** command the tests run -> Debian package that provides it */
export const REQUIRED = [
  { command: 'strace', pkg: 'strace', why: 'proves that group commit fsyncs (test/store/fsync.test.ts)' },
  { command: 'openssl', pkg: 'openssl', why: 'makes the TLS test certificates (test/broker/tls.test.ts, test/broker/mtls.test.ts)' },
  { command: 'python3', pkg: 'python3', why: 'runs the Eclipse Paho MQTT 3.1.1 interoperability suite (test/interop/paho.test.ts)' },
  { command: 'script', pkg: 'bsdutils', why: 'gives culex passwd a pseudo-terminal, to prove it never echoes a password (test/commands/passwd.test.ts)' },
  // the bridges' targets (test/bridges/): each test starts its own server process on a free port with
  // its own data dir; the packages' system services are not used and must not start (service: true)
  {
    command: 'nats-server',
    paths: ['/usr/sbin/nats-server', '/usr/bin/nats-server'],
    pkg: 'nats-server',
    service: true,
    why: 'the NATS JetStream bridges (test/bridges/nats*.test.ts)'
  },
  {
    command: 'redis-server',
    paths: ['/usr/bin/redis-server'],
    pkg: 'redis-server',
    service: true,
    why: 'the Redis Streams bridges (test/bridges/redis*.test.ts)'
  },
  {
    command: 'rabbitmq-server',
    paths: ['/usr/sbin/rabbitmq-server', '/usr/lib/rabbitmq/bin/rabbitmq-server'],
    pkg: 'rabbitmq-server',
    service: true,
    why: 'the RabbitMQ (AMQP 0-9-1) bridges (test/bridges/amqp*.test.ts)'
  },
  {
    command: 'mosquitto',
    paths: ['/usr/sbin/mosquitto'],
    pkg: 'mosquitto',
    service: true,
    why: 'the remote broker of the MQTT bridges (test/bridges/mqtt*.test.ts)'
  },
  {
    command: 'chromium',
    paths: ['/usr/bin/chromium'],
    pkg: 'chromium',
    why: 'headless browser that playwright-core drives for the dashboard tests (test/dashboard/dashboard.test.ts)'
  }
]

/**
 * command the benchmarks run -> Debian package. `paths` are looked at too, since /usr/sbin is often not
 * on a normal user's PATH. `service: true`: the package ships a system service that the bench does not
 * use (it starts its own process on a free port), so the install must not start it (nothing may bind 1883).
 */
export const BENCH_REQUIRED = [
  {
    command: 'mosquitto',
    paths: ['/usr/sbin/mosquitto'],
    pkg: 'mosquitto',
    service: true,
    why: 'the reference broker the benchmarks compare Culex with (bench/), and the MQTT bridge target (bench/scenarios/bridges/)'
  },
  // the `bridges` scenario's targets: started on free ports with their own data dirs, as in the tests
  {
    command: 'nats-server',
    paths: ['/usr/sbin/nats-server', '/usr/bin/nats-server'],
    pkg: 'nats-server',
    service: true,
    why: 'the NATS JetStream bridge target (bench/scenarios/bridges/)'
  },
  {
    command: 'redis-server',
    paths: ['/usr/bin/redis-server'],
    pkg: 'redis-server',
    service: true,
    why: 'the Redis Streams bridge target (bench/scenarios/bridges/)'
  },
  {
    command: 'rabbitmq-server',
    paths: ['/usr/sbin/rabbitmq-server', '/usr/lib/rabbitmq/bin/rabbitmq-server'],
    pkg: 'rabbitmq-server',
    service: true,
    why: 'the RabbitMQ (AMQP 0-9-1) bridge target (bench/scenarios/bridges/)'
  }
]

export const GROUPS = { test: REQUIRED, bench: BENCH_REQUIRED }

/** The path of a program, or null: PATH first, then the listed fallback paths. */
export function locate(requirement) {
  const r = spawnSync('sh', ['-c', `command -v ${requirement.command}`], { encoding: 'utf8' })
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim()
  for (const p of requirement.paths ?? []) if (existsSync(p)) return p
  return null
}

function parseGroups(argv) {
  const groups = new Set()
  for (const arg of argv) {
    const name = arg.startsWith('--') ? arg.slice(2) : null
    if (name === null || !Object.hasOwn(GROUPS, name)) {
      console.error(
        `provision: unknown argument ${arg}; use ${Object.keys(GROUPS)
          .map((g) => `--${g}`)
          .join(', ')}`
      )
      process.exit(2)
    }
    groups.add(name)
  }
  if (groups.size === 0) groups.add('test')
  return [...groups]
}

// Debian's invoke-rc.d asks this script whether a maintainer script may start a service; 101 = no.
const POLICY_RC_D = '/usr/sbin/policy-rc.d'

function main() {
  const groups = parseGroups(process.argv.slice(2))
  const wanted = groups.flatMap((g) => GROUPS[g])
  const missing = wanted.filter((r) => locate(r) === null)
  if (missing.length === 0) process.exit(0)

  const pkgs = [...new Set(missing.map((m) => m.pkg))]
  const services = missing.filter((m) => m.service).map((m) => m.pkg)
  const install = `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(' ')}`
  for (const m of missing) console.error(`provision: ${m.command} is missing (${m.why})`)
  if (process.getuid?.() !== 0) {
    console.error(`provision: run as root:\n  sudo sh -c '${install}'`)
    if (services.length > 0) {
      console.error(
        `provision: the benchmarks start their own ${services.join(', ')} process on a free port; ` +
          `the system service is not needed (systemctl disable --now ${services.join(' ')})`
      )
    }
    process.exit(1)
  }
  console.error(`provision: installing ${pkgs.join(' ')}`)
  // Keep the packages' system services from starting during the install (so nothing binds 1883),
  // unless the machine already has its own policy.
  const ownPolicy = services.length > 0 && !existsSync(POLICY_RC_D)
  if (ownPolicy) {
    writeFileSync(POLICY_RC_D, '#!/bin/sh\n# written by culex test/provision.mjs during an install; removed after it\nexit 101\n')
    chmodSync(POLICY_RC_D, 0o755)
  }
  try {
    execFileSync('sh', ['-c', install], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  } finally {
    if (ownPolicy) unlinkSync(POLICY_RC_D)
  }
  const still = missing.filter((m) => locate(m) === null)
  if (still.length > 0) {
    console.error(`provision: still missing after install: ${still.map((m) => m.command).join(', ')}`)
    process.exit(1)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main()
