import { pino, type Logger } from 'pino'
import type { LogLevel } from './config/index.js'

/** Structured JSON logs on stdout (pino); one line per event. */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { name: 'culex', pid: process.pid } })
}
