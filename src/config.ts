import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import type { Durability } from './store/group-commit.js'
import type { StreamConfig } from './log/types.js'
import { parseRoutes, parseStreams, StructuredConfigError, type RouteConfig } from './config-routes.js'

export type { RouteConfig, RouteKey } from './config-routes.js'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/** A listener port: a number (0 = any free port) or null when the listener is off. */
export type Port = number | null

export interface CulexConfig {
  dataDir: string
  host: string
  mqttPort: Port
  wsPort: Port
  wsPath: string
  tlsPort: Port
  wssPort: Port
  tlsCert: string | null
  tlsKey: string | null
  tlsCa: string | null
  durability: Durability
  logLevel: LogLevel
  allowAnonymous: boolean | null
  maxConnections: number
  maxClientIdLength: number
  brokerId: string | null
  /** HTTP admin API (later: metrics, dashboard). */
  adminPort: Port
  /** Streams of the log, from the config file's `streams` mapping. */
  streams: StreamConfig[]
  /** MQTT topic filter -> stream, from the config file's `routes` list (order matters: first match's key wins). */
  routes: RouteConfig[]
}

export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** One config key: the same name is used in the file, as --flag and as CULEX_ env var. */
interface KeySpec<K extends keyof CulexConfig> {
  field: K
  help: string
  parse: (raw: unknown) => CulexConfig[K]
  /** What is allowed, for error messages. */
  expected: string
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

class BadValue extends Error {}

function text(raw: unknown): string {
  if (typeof raw === 'string' && raw.length > 0) return raw
  if (typeof raw === 'number') return String(raw)
  throw new BadValue()
}

function optionalText(raw: unknown): string | null {
  if (raw === null || raw === '' || raw === 'off') return null
  return text(raw)
}

function port(raw: unknown): Port {
  if (raw === null || raw === 'off' || raw === false) return null
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new BadValue()
  return n
}

function positiveInt(raw: unknown): number {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN
  if (!Number.isInteger(n) || n < 1) throw new BadValue()
  return n
}

function bool(raw: unknown): boolean {
  if (raw === true || raw === 'true' || raw === '1' || raw === 'yes') return true
  if (raw === false || raw === 'false' || raw === '0' || raw === 'no') return false
  throw new BadValue()
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: unknown): T => {
    if (typeof raw === 'string' && (values as readonly string[]).includes(raw)) return raw as T
    throw new BadValue()
  }
}

function spec<K extends keyof CulexConfig>(s: KeySpec<K>): KeySpec<K> {
  return s
}

/** Every config key, by its external (kebab-case) name. */
export const CONFIG_KEYS = {
  'config': null,
  'data-dir': spec({ field: 'dataDir', parse: text, expected: 'a directory path', help: 'where RocksDB keeps its files' }),
  'host': spec({ field: 'host', parse: text, expected: 'an address to bind, e.g. 127.0.0.1 or 0.0.0.0', help: 'address every listener binds to' }),
  'mqtt-port': spec({ field: 'mqttPort', parse: port, expected: 'a port 0-65535 (0 = any free port) or "off"', help: 'MQTT over TCP' }),
  'ws-port': spec({ field: 'wsPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'MQTT over WebSocket' }),
  'ws-path': spec({ field: 'wsPath', parse: (raw) => { const p = text(raw); if (!p.startsWith('/')) throw new BadValue(); return p }, expected: 'a URL path starting with /', help: 'HTTP path of the WebSocket listeners' }),
  'tls-port': spec({ field: 'tlsPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'MQTT over TLS (needs tls-cert and tls-key)' }),
  'wss-port': spec({ field: 'wssPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'MQTT over secure WebSocket (needs tls-cert and tls-key)' }),
  'tls-cert': spec({ field: 'tlsCert', parse: optionalText, expected: 'a PEM certificate file path', help: 'server certificate (PEM)' }),
  'tls-key': spec({ field: 'tlsKey', parse: optionalText, expected: 'a PEM private key file path', help: 'server private key (PEM)' }),
  'tls-ca': spec({ field: 'tlsCa', parse: optionalText, expected: 'a PEM CA bundle file path', help: 'CA for client certificates (enables client certificate requests)' }),
  'durability': spec({ field: 'durability', parse: oneOf(['fsync', 'none'] as const), expected: '"fsync" or "none"', help: 'fsync: acks wait for fsync; none: acks wait for the write, not the disk' }),
  'log-level': spec({ field: 'logLevel', parse: oneOf(LOG_LEVELS), expected: LOG_LEVELS.join(', '), help: 'pino log level' }),
  'allow-anonymous': spec({ field: 'allowAnonymous', parse: bool, expected: 'true or false', help: 'accept clients without credentials (default: only on loopback)' }),
  'max-connections': spec({ field: 'maxConnections', parse: positiveInt, expected: 'a positive integer', help: 'connections accepted per listener' }),
  'max-client-id-length': spec({ field: 'maxClientIdLength', parse: positiveInt, expected: 'a positive integer', help: 'longest accepted MQTT client id' }),
  'broker-id': spec({ field: 'brokerId', parse: optionalText, expected: 'a non-empty string', help: 'aedes broker id (default: random per start)' }),
  'admin-port': spec({ field: 'adminPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'HTTP admin API' })
} as const

/** Structured keys, accepted in the config file only (see config-routes.ts). */
const FILE_ONLY_KEYS = ['streams', 'routes'] as const
type FileOnlyKey = (typeof FILE_ONLY_KEYS)[number]

export type ConfigKey = Exclude<keyof typeof CONFIG_KEYS, 'config'>

export const DEFAULTS: CulexConfig = {
  dataDir: './data',
  host: '127.0.0.1',
  mqttPort: 1883,
  wsPort: 8083,
  wsPath: '/mqtt',
  tlsPort: 8883,
  wssPort: 8084,
  tlsCert: null,
  tlsKey: null,
  tlsCa: null,
  durability: 'fsync',
  logLevel: 'info',
  allowAnonymous: null,
  maxConnections: 100_000,
  maxClientIdLength: 256,
  brokerId: null,
  adminPort: 18083,
  streams: [],
  routes: []
}

export function envName(k: string): string {
  return 'CULEX_' + k.toUpperCase().replace(/-/g, '_')
}

type RawLayer = Partial<Record<ConfigKey, unknown>>

function isConfigKey(k: string): k is ConfigKey {
  return k !== 'config' && Object.hasOwn(CONFIG_KEYS, k)
}

interface FileLayer {
  layer: RawLayer
  structured: Partial<Record<FileOnlyKey, unknown>>
}

function isFileOnlyKey(k: string): k is FileOnlyKey {
  return (FILE_ONLY_KEYS as readonly string[]).includes(k)
}

function readFileLayer(path: string): FileLayer {
  let content: string
  try {
    content = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  let doc: unknown
  try {
    doc = parseYaml(content)
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML or JSON: ${(err as Error).message}`)
  }
  const layer: RawLayer = {}
  const structured: FileLayer['structured'] = {}
  if (doc === null || doc === undefined) return { layer, structured }
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`config file ${path} must hold a mapping of keys to values`)
  }
  for (const [k, v] of Object.entries(doc)) {
    if (isFileOnlyKey(k)) {
      structured[k] = v
    } else if (isConfigKey(k)) {
      layer[k] = v
    } else {
      const known = [...Object.keys(CONFIG_KEYS).filter((x) => x !== 'config'), ...FILE_ONLY_KEYS]
      throw new ConfigError(`unknown key "${k}" in config file ${path}; known keys: ${known.join(', ')}`)
    }
  }
  return { layer, structured }
}

function readEnvLayer(env: NodeJS.ProcessEnv): RawLayer {
  const layer: RawLayer = {}
  for (const k of Object.keys(CONFIG_KEYS)) {
    const v = env[envName(k)]
    if (v !== undefined && isConfigKey(k)) layer[k] = v
  }
  return layer
}

export interface ConfigSources {
  /** Flag values by config key (undefined = not given). `config` names the file. */
  flags?: Partial<Record<ConfigKey | 'config', unknown>>
  env?: NodeJS.ProcessEnv
}

/**
 * Resolves the config: defaults < file < environment < flags. Every value is validated;
 * the first bad one throws a ConfigError naming the key, where it came from and what is allowed.
 */
export function loadConfig(sources: ConfigSources = {}): CulexConfig {
  const env = sources.env ?? process.env
  const flags = sources.flags ?? {}
  const file = flags.config ?? env[envName('config')]
  const layers: Array<[string, RawLayer]> = []
  const fileLayer = file !== undefined ? readFileLayer(String(file)) : null
  if (fileLayer) layers.push([`config file ${String(file)}`, fileLayer.layer])
  layers.push(['environment', readEnvLayer(env)])
  const flagLayer: RawLayer = {}
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && isConfigKey(k)) flagLayer[k] = v
  layers.push(['flags', flagLayer])

  const config: CulexConfig = { ...DEFAULTS }
  const target = config as unknown as Record<string, unknown>
  for (const [origin, layer] of layers) {
    for (const [k, raw] of Object.entries(layer) as Array<[ConfigKey, unknown]>) {
      const s = CONFIG_KEYS[k]
      const where = origin === 'environment' ? `environment variable ${envName(k)}` : origin === 'flags' ? `flag --${k}` : origin
      try {
        target[s.field] = s.parse(raw)
      } catch (err) {
        if (!(err instanceof BadValue)) throw err
        throw new ConfigError(`invalid value for ${k} (${where}): ${JSON.stringify(raw)}; expected ${s.expected}`)
      }
    }
  }
  if (fileLayer) {
    try {
      config.streams = parseStreams(fileLayer.structured.streams, `config file ${String(file)}`)
      config.routes = parseRoutes(fileLayer.structured.routes, config.streams, `config file ${String(file)}`)
    } catch (err) {
      if (err instanceof StructuredConfigError) throw new ConfigError(err.message)
      throw err
    }
  }
  checkCombination(config)
  return config
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host)
}

function checkCombination(c: CulexConfig): void {
  const tlsWanted = c.tlsCert !== null || c.tlsKey !== null
  if (tlsWanted && (c.tlsCert === null || c.tlsKey === null)) {
    throw new ConfigError('tls-cert and tls-key must be given together')
  }
  if (c.tlsCa !== null && !tlsWanted) {
    throw new ConfigError('tls-ca needs tls-cert and tls-key')
  }
  if (!isLoopback(c.host) && c.allowAnonymous !== true) {
    // Security by default: beyond localhost, anonymous access must be an explicit decision.
    throw new ConfigError(
      `host ${c.host} is not loopback: clients there must authenticate, and no authentication is configured; ` +
        'set allow-anonymous to true to accept anonymous clients on this address'
    )
  }
  const ports = [
    ['mqtt-port', c.mqttPort],
    ['ws-port', c.wsPort],
    ['tls-port', tlsWanted ? c.tlsPort : null],
    ['wss-port', tlsWanted ? c.wssPort : null],
    ['admin-port', c.adminPort]
  ] as const
  const seen = new Map<number, string>()
  for (const [name, p] of ports) {
    if (p === null || p === 0) continue
    const other = seen.get(p)
    if (other) throw new ConfigError(`${name} and ${other} are both ${p}; each listener needs its own port`)
    seen.set(p, name)
  }
}

/** The key names and help, for the CLI. */
export function describeKeys(): Array<{ key: ConfigKey; help: string; expected: string; env: string }> {
  return (Object.keys(CONFIG_KEYS) as Array<keyof typeof CONFIG_KEYS>)
    .filter(isConfigKey)
    .map((k) => ({ key: k, help: CONFIG_KEYS[k].help, expected: CONFIG_KEYS[k].expected, env: envName(k) }))
}
