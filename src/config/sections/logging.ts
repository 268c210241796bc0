import type { Section } from '../section.js'
import { key } from '../section.js'
import { oneOf } from '../values.js'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export interface LoggingSection {
  logLevel: LogLevel
}

export const loggingSection: Section<LoggingSection> = {
  name: 'logging',
  defaults: { logLevel: 'info' },
  keys: {
    'log-level': key({ field: 'logLevel', parse: oneOf(LOG_LEVELS), expected: LOG_LEVELS.join(', '), help: 'pino log level' })
  }
}
