import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { ConfigError } from './errors.js'
import type { KeySpec, Section } from './section.js'
import { apiSection, type ApiSection } from './sections/api.js'
import { authSection, type AuthSection } from './sections/auth.js'
import { brokerSection, type BrokerSection } from './sections/broker.js'
import { bridgesSection, type BridgesSection } from './sections/bridges.js'
import { dedupSection, type DedupSection } from './sections/dedup.js'
import { delayedSection, type DelayedSection } from './sections/delayed.js'
import { limitsSection, type LimitsSection } from './sections/limits.js'
import { listenerSection, type ListenerSection } from './sections/listeners.js'
import { logSection, type LogSection } from './sections/log.js'
import { loggingSection, type LoggingSection } from './sections/logging.js'
import { storeSection, type StoreSection } from './sections/store.js'
import { sysSection, type SysSection } from './sections/sys.js'
import { BadValue, SectionContext } from './values.js'

// The config: built-in defaults < config file (YAML or JSON) < environment < flags. Each flat key
// has one name, used in the file, as `--flag` and as `CULEX_` variable; structured sections
// (streams, routes) are file-only. Every value is validated before anything starts, and the first
// bad one is a ConfigError naming the key, where it came from and what is allowed.

export { ConfigError } from './errors.js'
export { isLoopback, tlsEnabled, type Port } from './sections/listeners.js'
export type { LogLevel } from './sections/logging.js'
export { apiHost } from './sections/api.js'
export { anonymousAllowed, apiCredentialsRequired, jwtEnabled, mqttCredentialsConfigured, TOKEN_NAME } from './sections/auth.js'
export type { ApiSection, AuthSection, BrokerSection, LimitsSection, ListenerSection, LogSection, LoggingSection, StoreSection }
export type { QueueFullPolicy } from './sections/limits.js'
export type { DedupSection } from './sections/dedup.js'
export type { DelayedSection } from './sections/delayed.js'
export type { BridgesSection } from './sections/bridges.js'

export type CulexConfig = StoreSection &
  ListenerSection &
  BrokerSection &
  AuthSection &
  LimitsSection &
  ApiSection &
  LoggingSection &
  LogSection &
  DedupSection &
  DelayedSection &
  BridgesSection &
  SysSection

/** Every section, in the order their structured keys are parsed and their checks run. */
const SECTIONS = [
  storeSection,
  listenerSection,
  brokerSection,
  authSection,
  limitsSection,
  apiSection,
  loggingSection,
  logSection,
  dedupSection,
  delayedSection,
  // after log: bridges name its streams
  bridgesSection,
  sysSection
] as ReadonlyArray<Section<unknown, CulexConfig>>

export const DEFAULTS: CulexConfig = Object.assign({}, ...SECTIONS.map((s) => structuredClone(s.defaults))) as CulexConfig

type AnyKeySpec = KeySpec<CulexConfig>

/** Every flat key by its external (kebab-case) name. */
const KEYS = new Map<string, AnyKeySpec>(SECTIONS.flatMap((s) => Object.entries(s.keys) as Array<[string, AnyKeySpec]>))
const STRUCTURED = SECTIONS.flatMap((s) => Object.entries(s.structured ?? {}))
const STRUCTURED_KEYS = new Set(STRUCTURED.map(([k]) => k))

export type ConfigKey = string

export function envName(k: string): string {
  return 'CULEX_' + k.toUpperCase().replace(/-/g, '_')
}

type RawLayer = Map<string, unknown>

interface FileLayer {
  path: string
  flat: RawLayer
  structured: Map<string, unknown>
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
  const layer: FileLayer = { path, flat: new Map(), structured: new Map() }
  if (doc === null || doc === undefined) return layer
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path} must hold a mapping of keys to values`)
  for (const [k, v] of Object.entries(doc)) {
    if (STRUCTURED_KEYS.has(k)) layer.structured.set(k, v)
    else if (KEYS.has(k)) layer.flat.set(k, v)
    else throw new ConfigError(`unknown key "${k}" in config file ${path}; known keys: ${[...KEYS.keys(), ...STRUCTURED_KEYS].join(', ')}`)
  }
  return layer
}

export interface ConfigSources {
  /** Flag values by config key (undefined = not given). `config` names the file. */
  flags?: Record<string, unknown>
  env?: NodeJS.ProcessEnv
}

export function loadConfig(sources: ConfigSources = {}): CulexConfig {
  const env = sources.env ?? process.env
  const flags = sources.flags ?? {}
  const file = flags.config ?? env[envName('config')]
  if (file !== undefined && typeof file !== 'string') throw new ConfigError(`config: expected a file path, got ${JSON.stringify(file)}`)
  const fileLayer = file !== undefined ? readFileLayer(file) : null

  const layers: Array<{ origin: (k: string) => string; values: RawLayer }> = []
  if (fileLayer) layers.push({ origin: () => `config file ${fileLayer.path}`, values: fileLayer.flat })
  const fromEnv: RawLayer = new Map()
  for (const k of KEYS.keys()) if (env[envName(k)] !== undefined) fromEnv.set(k, env[envName(k)])
  layers.push({ origin: (k) => `environment variable ${envName(k)}`, values: fromEnv })
  const fromFlags: RawLayer = new Map()
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && KEYS.has(k)) fromFlags.set(k, v)
  layers.push({ origin: (k) => `flag --${k}`, values: fromFlags })

  const config = structuredClone(DEFAULTS)
  const target = config as unknown as Record<string, unknown>
  for (const { origin, values } of layers) {
    for (const [k, raw] of values) {
      const spec = KEYS.get(k)
      if (!spec) continue
      try {
        target[spec.field] = spec.parse(raw)
      } catch (err) {
        if (!(err instanceof BadValue)) throw err
        throw new ConfigError(`invalid value for ${k} (${origin(k)}): ${JSON.stringify(raw)}; expected ${spec.expected}`)
      }
    }
  }
  if (fileLayer) {
    const ctx = new SectionContext(`config file ${fileLayer.path}`)
    for (const [k, parse] of STRUCTURED) {
      if (fileLayer.structured.has(k)) Object.assign(config, parse(fileLayer.structured.get(k), ctx, config))
    }
  }
  for (const section of SECTIONS) section.check?.(config)
  checkPorts(config)
  return config
}

/** Each listener (and the HTTP API) needs its own port. */
function checkPorts(c: CulexConfig): void {
  const tls = c.tlsCert !== null && c.tlsKey !== null
  const ports = [
    ['mqtt-port', c.mqttPort],
    ['ws-port', c.wsPort],
    ['tls-port', tls ? c.tlsPort : null],
    ['wss-port', tls ? c.wssPort : null],
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

/** The flat keys with their help, for the CLI. */
export function describeKeys(): Array<{ key: string; help: string; expected: string; env: string }> {
  return [...KEYS].map(([k, s]) => ({ key: k, help: s.help, expected: s.expected, env: envName(k) }))
}
