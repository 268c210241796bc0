#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander'
import * as passwordFile from './auth/password-file.js'
import { PASSWD_HELP, PasswdError, passwd, type PasswdOptions } from './commands/passwd.js'
import type { ApiCredentials } from './commands/api-client.js'
import { replay } from './commands/replay.js'
import { tail } from './commands/tail.js'
import { status } from './commands/status.js'
import { newApiToken } from './auth/api-tokens.js'
import { ConfigError, TOKEN_NAME, describeKeys, loadConfig } from './config/index.js'
import { Gateway } from './gateway.js'
import { packageVersion } from './gateway-status.js'
import { StoreError, causeChain } from './store/errors.js'
import { createLogger } from './logger.js'

const EXIT_CONFIG = 2
const EXIT_FAILURE = 1
/** EX_TEMPFAIL: the store refused a write or could not open (a full disk); start again later. */
const EXIT_STORE = 75

function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

async function start(flags: Record<string, unknown>): Promise<void> {
  const byKey: Record<string, unknown> = { config: flags.config }
  for (const { key } of describeKeys()) byKey[key] = flags[camel(key)]
  const config = loadConfig({ flags: byKey })
  const logger = createLogger(config.logLevel)
  let started: Gateway | null = null
  const gateway = (started = await Gateway.start(config, logger, () => {
    void (started?.stop() ?? Promise.resolve()).finally(() => process.exit(EXIT_STORE))
  }))
  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without a clean shutdown')
      process.exit(EXIT_FAILURE)
    }
    logger.info({ signal }, 'signal received')
    gateway.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        process.exit(EXIT_FAILURE)
      }
    )
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // as mosquitto: SIGHUP re-reads the password file, the ACL file, the JWT key and the TLS files
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'signal received: reloading')
    gateway.reload().catch((err: unknown) => logger.error({ err }, 'reload failed'))
  })
}

/** A whole number >= min, for a flag; commander prints the message and exits 1. */
function wholeNumber(flag: string, min: number): (raw: string) => number {
  return (raw) => {
    const n = Number(raw)
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${flag} takes a whole number >= ${min}, not "${raw}"`)
    return n
  }
}

const program = new Command()
program.name('culex').description('MQTT broker and durable partitioned log for IoT').version(packageVersion(), '-V, --version')

const startCommand = program
  .command('start')
  .description('run the gateway (MQTT, MQTT over WebSocket, TLS) on its RocksDB store')
  .addOption(new Option('-c, --config <file>', 'config file (YAML or JSON)').env('CULEX_CONFIG'))
for (const { key, help, expected, env } of describeKeys()) {
  // Env vars are read by loadConfig (so it can name them in errors); here they are documented.
  startCommand.addOption(new Option(`--${key} <value>`, `${help}; ${expected} [env: ${env}]`))
}
startCommand.action(async (flags: Record<string, unknown>) => {
  try {
    await start(flags)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`culex: ${err.message}\n`)
      process.exit(EXIT_CONFIG)
    }
    // a StoreError's message holds its causes already; other errors may hide theirs (ENOSPC behind "Database is not open")
    process.stderr.write(`culex: failed to start: ${err instanceof StoreError ? err.message : causeChain(err)}\n`)
    process.exit(err instanceof StoreError ? EXIT_STORE : EXIT_FAILURE)
  }
})

const DEFAULT_URL = 'http://127.0.0.1:18083'

/** The API credential options of the client commands; the password only from the environment (not visible in ps). */
function withCredentials(command: Command): Command {
  return command
    .addOption(new Option('--token <token>', 'an API token (culex token makes one)').env('CULEX_API_TOKEN'))
    .addOption(new Option('--user <name>', 'a user of the password file (HTTP Basic); the password comes from CULEX_API_PASSWORD').env('CULEX_API_USER'))
}

function credentials(opts: { token?: string; user?: string }): ApiCredentials {
  return { token: opts.token, user: opts.user, password: process.env.CULEX_API_PASSWORD }
}

/** Runs a client command; errors print one clear line and exit 1. */
function client(action: () => Promise<void>): Promise<void> {
  return action().catch((err: unknown) => {
    process.stderr.write(`culex: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(EXIT_FAILURE)
  })
}

withCredentials(program.command('tail'))
  .description('print the records of a stream as they arrive')
  .argument('<stream>', 'stream name')
  .option('--group <group>', 'consume as a member of this consumer group, committing what was printed')
  .option('--from <position>', 'earliest, latest, an offset (with --partition) or an ISO 8601 time', 'latest')
  .option('--partition <p...>', 'only these partitions (not with --group)', (v: string, acc: number[] | undefined) => [
    ...(acc ?? []),
    wholeNumber('--partition', 0)(v)
  ])
  .option('--json', 'one JSON object per record', false)
  .option('--max <n>', 'stop after n records', wholeNumber('--max', 1))
  .addOption(new Option('--url <url>', 'the gateway API').env('CULEX_URL').default(DEFAULT_URL))
  .action(
    (stream: string, opts: { group?: string; from: string; partition?: number[]; json: boolean; max?: number; url: string; token?: string; user?: string }) =>
      client(async () => {
        if (opts.group && opts.partition) throw new Error('--partition cannot be used with --group (the group assigns partitions)')
        const controller = new AbortController()
        process.once('SIGINT', () => controller.abort())
        process.once('SIGTERM', () => controller.abort())
        await tail(
          stream,
          { ...opts, ...credentials(opts), partitions: opts.partition },
          { record: (line) => process.stdout.write(line + '\n'), notice: (line) => process.stderr.write(line + '\n') },
          controller.signal
        )
      })
  )

withCredentials(program.command('status'))
  .description('one screen about the running gateway: listeners, clients, message rates, streams, groups and their lag, bridges')
  .option('--json', 'the answer of GET /api/v1/status as JSON', false)
  .addOption(new Option('--url <url>', 'the gateway API').env('CULEX_URL').default(DEFAULT_URL))
  .action((opts: { json: boolean; url: string; token?: string; user?: string }) =>
    client(async () => {
      await status({ ...opts, ...credentials(opts) }, (text) => process.stdout.write(text + '\n'))
    })
  )

withCredentials(program.command('replay'))
  .description('republish historic records of a stream to MQTT under a topic prefix')
  .argument('<stream>', 'stream name')
  .requiredOption('--from <position>', 'earliest, an offset or an ISO 8601 time')
  .option('--to <position>', 'end (exclusive): latest, an offset or an ISO 8601 time; default: the end now')
  .option('--topic-prefix <prefix>', "prepended to each record's MQTT topic", 'replay/')
  .option('--partition <p...>', 'only these partitions', (v: string, acc: number[] | undefined) => [...(acc ?? []), wholeNumber('--partition', 0)(v)])
  .addOption(new Option('--url <url>', 'the gateway API').env('CULEX_URL').default(DEFAULT_URL))
  .action((stream: string, opts: { from: string; to?: string; topicPrefix: string; partition?: number[]; url: string; token?: string; user?: string }) =>
    client(async () => {
      const status = await replay(stream, { ...opts, ...credentials(opts), partitions: opts.partition }, (line) => process.stdout.write(line + '\n'))
      if (status.state !== 'done') process.exit(EXIT_FAILURE)
    })
  )

program
  .command('token')
  .description('make an HTTP API token: prints the token (shown once, stored nowhere) and its entry for api-tokens in the config file')
  .argument('<name>', 'the token name: 1-64 of a-z, 0-9 and -; it is the user name in the ACL file')
  .action((name: string) =>
    client(async () => {
      if (!TOKEN_NAME.test(name)) throw new Error(`invalid token name "${name}"; expected 1-64 of a-z, 0-9 and -, starting with a letter or digit`)
      const { token, hash } = await newApiToken(name)
      process.stdout.write(`token: ${token}\n\nput this under api-tokens in the config file:\n\napi-tokens:\n  ${name}: '${hash}'\n`)
    })
  )

program
  .command('passwd')
  .description('add a user to a password file or change its password; -D deletes it, -c starts a new file')
  .argument('<file>', 'the password file (created if missing)')
  .argument('<user>', 'the user name (the MQTT CONNECT username)')
  .option('-c, --create', 'create or overwrite the file with only this user')
  .option('-D, --delete', 'delete the user')
  .addHelpText('after', PASSWD_HELP)
  // usage errors exit 2, as config errors do
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT_CONFIG))
  .action((file: string, user: string, opts: PasswdOptions) =>
    passwd(file, user, opts, passwordFile).catch((err: unknown) => {
      // never the password: no message holds it
      const message = err instanceof Error ? err.message : String(err)
      if (message !== '') process.stderr.write(`culex: ${message}\n`)
      process.exit(err instanceof PasswdError ? err.exitCode : EXIT_FAILURE)
    })
  )

await program.parseAsync(process.argv)
