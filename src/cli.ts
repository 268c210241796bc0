#!/usr/bin/env node
import { Command, Option } from 'commander'
import { ConfigError, describeKeys, loadConfig, type ConfigKey } from './config.js'
import { Gateway } from './gateway.js'
import { createLogger } from './logger.js'

const EXIT_CONFIG = 2
const EXIT_FAILURE = 1

function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

async function start(flags: Record<string, unknown>): Promise<void> {
  const byKey: Partial<Record<ConfigKey | 'config', unknown>> = { config: flags.config }
  for (const { key } of describeKeys()) byKey[key] = flags[camel(key)]
  const config = loadConfig({ flags: byKey })
  const logger = createLogger(config.logLevel)
  const gateway = await Gateway.start(config, logger)
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
}

const program = new Command()
program.name('culex').description('MQTT broker and durable partitioned log for IoT')

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
    process.stderr.write(`culex: failed to start: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(EXIT_FAILURE)
  }
})

await program.parseAsync(process.argv)
