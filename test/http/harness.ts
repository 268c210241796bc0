import { pino, type Logger } from 'pino'
import { afterEach } from 'vitest'
import { startHttpServer, type ApiAccess, type BridgeControl, type HttpServer, type ReplayService } from '../../src/http/server.js'
import { GroupCoordinator } from '../../src/log/groups/coordinator.js'
import { RocksLog } from '../../src/log/rocks/rocks-log.js'
import { SharedGroups } from '../../src/log/shared/shared-groups.js'
import type { Log, StreamConfig } from '../../src/log/types.js'
import { Store } from '../../src/store/store.js'
import { tempDataDir } from '../helpers/gateway-process.js'

// A real RocksLog on a temporary RocksDB and the real admin server on 127.0.0.1, any free port.
// The log the server sees counts its in-flight long-poll waits (to check that none leak).

export interface Harness {
  rocks: RocksLog
  groups: GroupCoordinator
  shared: SharedGroups
  server: HttpServer
  base: string
  /** waitForRecords calls that have not settled yet. */
  waitsInFlight(): number
  close(): Promise<void>
}

export interface HarnessOptions {
  /** Builds the replay service on the harness's log, if the test wants one. */
  replay?: (log: RocksLog) => ReplayService
  /** Who may call the API (e.g. `Authentication.api()`); without it every request is anonymous and allowed. */
  access?: ApiAccess
  /** The server's logger (default: silent, or CULEX_TEST_LOG_LEVEL). */
  logger?: Logger
  /** The bridges the API shows (/api/v1/bridges); none by default. */
  bridges?: BridgeControl
}

export async function startHarness(streams: StreamConfig[], options: HarnessOptions = {}): Promise<Harness> {
  const store = await Store.open({ dataDir: tempDataDir('admin'), durability: 'fsync' })
  const rocks = await RocksLog.open(store, streams, { retentionIntervalMs: 0 })
  let inFlight = 0
  const log = new Proxy(rocks, {
    get(target, prop) {
      if (prop === 'waitForRecords') {
        return (...args: Parameters<Log['waitForRecords']>) => {
          inFlight++
          return target.waitForRecords(...args).finally(() => inFlight--)
        }
      }
      const v: unknown = Reflect.get(target, prop, target)
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
  const groups = new GroupCoordinator(log, { sweepIntervalMs: 100 })
  const logger = options.logger ?? pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
  const shared = await SharedGroups.open(log)
  const server = await startHttpServer({
    log,
    groups,
    shared,
    host: '127.0.0.1',
    port: 0,
    logger,
    replay: options.replay?.(rocks),
    access: options.access,
    bridges: options.bridges
  })
  return {
    rocks,
    groups,
    shared,
    server,
    base: `http://127.0.0.1:${server.port}`,
    waitsInFlight: () => inFlight,
    close: async () => {
      await server.close()
      groups.close()
      shared.close()
      await rocks.close()
      await store.close()
    }
  }
}

export interface JsonResponse<T = Record<string, unknown>> {
  status: number
  body: T
}

/** fetch with a JSON body (when given) and a parsed JSON answer (or {} when empty). */
export async function api<T = Record<string, unknown>>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  signal?: AbortSignal
): Promise<JsonResponse<T>> {
  const res = await fetch(base + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal
  })
  const text = await res.text()
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`)
    await sleep(10)
  }
}

/**
 * For a test file: `const start = harnessesClosedAfterEach()` gives a startHarness whose
 * harnesses are closed after each test.
 */
export function harnessesClosedAfterEach(): (...args: Parameters<typeof startHarness>) => Promise<Harness> {
  const open: Harness[] = []
  afterEach(async () => {
    for (const h of open.splice(0)) await h.close()
  })
  return async (...args) => {
    const h = await startHarness(...args)
    open.push(h)
    return h
  }
}
