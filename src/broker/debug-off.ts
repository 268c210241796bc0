import { Module, createRequire } from 'node:module'

// mqtt-packet, aedes's parser and serializer, calls the `debug` package several times per packet
// (every parser state). With DEBUG unset each call still costs a function call and the `enabled`
// getter: measured 35-40% of the broker's CPU per QoS 0/1 message on the raw-socket bench
// (bench/RESULTS.md). Unless DEBUG is set when Culex starts, the module that mqtt-packet resolves
// as `debug` is replaced, in Node's CommonJS cache (require.cache, which Node documents as
// writable), by one whose loggers do nothing and say they are disabled: what `debug` does anyway
// when DEBUG is unset, without the cost. With DEBUG set, nothing changes.

interface Debugger {
  (...args: unknown[]): void
  enabled: boolean
  namespace: string
  extend(namespace: string): Debugger
}

function silent(namespace: string): Debugger {
  const log = (() => {}) as Debugger
  log.enabled = false
  log.namespace = namespace
  log.extend = (sub) => silent(`${namespace}:${sub}`)
  return log
}

/** The replacement `debug` module: createDebug(namespace) plus the functions callers use on it. */
const createDebug = Object.assign((namespace: string) => silent(namespace), {
  enable: () => {},
  disable: () => '',
  enabled: () => false,
  CULEX_SILENT: true
})
// `debug` exports itself as `default` too; CommonJS builds of TypeScript (ioredis) call debug.default(...)
Object.assign(createDebug, { default: createDebug })

let applied = false

/** Call before aedes is imported. Returns whether debug output is off (DEBUG unset). */
export function silenceDebugWhenOff(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.DEBUG) return false
  if (applied) return true
  const require = createRequire(import.meta.url)
  const fromAedes = createRequire(require.resolve('aedes'))
  const path = createRequire(fromAedes.resolve('mqtt-packet')).resolve('debug')
  const mod = new Module(path)
  mod.filename = path
  mod.exports = createDebug
  mod.loaded = true
  require.cache[path] = mod
  applied = true
  return true
}
