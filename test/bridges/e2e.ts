import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { BridgeStatus } from '../../src/bridges/types.js'
import type { ApiRecord, ReadResponse } from '../../src/http/wire.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'

// End-to-end bridge tests: a real `culex start` child process with a config file holding streams,
// routes and bridges, on free ports; kill -9 and restart on the same data dir; produce and read
// over the HTTP API; the bridge's status over GET /api/v1/bridges/:name.

export const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms))

export interface CulexSetup {
  /** streams mapping, as in the config file: { telemetry: { partitions: 4 } } */
  streams: Record<string, { partitions?: number } | null>
  /** routes list, as in the config file: [{ filter: 'dev/+/t', stream: 'telemetry', key: 'topic-level:2' }] */
  routes?: Array<{ filter: string; stream: string; key?: string }>
  /** bridges list, as in the config file (kebab-case keys) */
  bridges: Array<Record<string, unknown>>
  /** more flat config keys (kebab-case), e.g. { 'durability': 'fsync' } */
  extra?: Record<string, unknown>
}

export class Culex {
  gw: GatewayProcess

  private constructor(
    readonly dataDir: string,
    readonly configPath: string,
    gw: GatewayProcess
  ) {
    this.gw = gw
  }

  /** Writes `culex.yaml` into a new data dir and starts the gateway with it. */
  static async start(setup: CulexSetup): Promise<Culex> {
    const dataDir = tempDataDir('culex-bridge')
    const configPath = join(dataDir, '..', `${dataDir.split('/').pop() ?? 'culex'}.yaml`)
    writeFileSync(configPath, stringify({ streams: setup.streams, routes: setup.routes ?? [], bridges: setup.bridges, ...setup.extra }))
    const gw = await GatewayProcess.start(dataDir, ['--config', configPath])
    return new Culex(dataDir, configPath, gw)
  }

  get api(): string {
    return this.gw.api
  }

  /** The MQTT URL of the running gateway (mqtt://127.0.0.1:<port>). */
  get mqttUrl(): string {
    return this.gw.url('mqtt')
  }

  /** kill -9 (a crash: no shutdown code runs). */
  async kill9(): Promise<void> {
    await this.gw.kill9()
  }

  /** Starts the gateway again on the same data dir and config (new free ports). */
  async restart(): Promise<void> {
    await this.gw.stop()
    this.gw = await GatewayProcess.start(this.dataDir, ['--config', this.configPath])
  }

  /** Stops the gateway and removes its data dir and config file. */
  async dispose(): Promise<void> {
    await this.gw.stop()
    rmSync(this.dataDir, { recursive: true, force: true })
    rmSync(this.configPath, { force: true })
  }

  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the caller names the answer's shape
  async call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const res = await fetch(this.api + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T }
  }

  /**
   * Appends records to `stream` over HTTP (batches of 500; utf8 values); each record goes to the
   * partition its key hashes to. Resolves once every batch was appended durably.
   */
  async produce(stream: string, records: Array<{ key: string | null; value: string; headers?: Record<string, string> }>): Promise<void> {
    for (let i = 0; i < records.length; i += 500) {
      const r = await this.call<unknown>('POST', `/api/v1/streams/${stream}/records`, { encoding: 'utf8', records: records.slice(i, i + 500) })
      if (r.status !== 200 && r.status !== 201) throw new Error(`produce to ${stream} answered ${r.status}: ${JSON.stringify(r.body)}`)
    }
  }

  async bridge(name: string): Promise<BridgeStatus> {
    const r = await this.call<BridgeStatus>('GET', `/api/v1/bridges/${name}`)
    if (r.status !== 200) throw new Error(`GET /api/v1/bridges/${name} answered ${r.status}: ${JSON.stringify(r.body)}`)
    return r.body
  }

  /** Polls the bridge's status until `test` holds (every 100 ms, up to timeoutMs). */
  async waitForBridge(name: string, test: (s: BridgeStatus) => boolean, timeoutMs = 30_000): Promise<BridgeStatus> {
    const deadline = Date.now() + timeoutMs
    let last: BridgeStatus | null = null
    while (Date.now() < deadline) {
      last = await this.bridge(name)
      if (test(last)) return last
      await sleep(100)
    }
    throw new Error(`bridge ${name} did not reach the expected state in ${timeoutMs} ms; last: ${JSON.stringify(last)}`)
  }

  /** Every record of every partition of `stream` (utf8 values), in partition then offset order. */
  async readStream(stream: string): Promise<ApiRecord[]> {
    const info = await this.call<{ partitions: Array<{ partition: number; startOffset: number; endOffset: number }> }>('GET', `/api/v1/streams/${stream}`)
    if (info.status !== 200) throw new Error(`GET /api/v1/streams/${stream} answered ${info.status}: ${JSON.stringify(info.body)}`)
    const out: ApiRecord[] = []
    for (const p of info.body.partitions) {
      let offset = p.startOffset
      while (offset < p.endOffset) {
        const r = await this.call<ReadResponse>('GET', `/api/v1/streams/${stream}/partitions/${p.partition}/records?offset=${offset}&limit=1000&encoding=utf8`)
        if (r.status !== 200) throw new Error(`read ${stream}/${p.partition} answered ${r.status}: ${JSON.stringify(r.body)}`)
        out.push(...r.body.records)
        if (r.body.records.length === 0) break
        offset = r.body.nextOffset
      }
    }
    return out
  }
}

/** `n` records over `keys` keys: key `k<i % keys>`, value `<key>:<seq>` where seq counts per key from 0. */
export function keyedRecords(n: number, keys: number, from = 0): Array<{ key: string; value: string }> {
  const out: Array<{ key: string; value: string }> = []
  for (let i = from; i < from + n; i++) {
    const key = `k${i % keys}`
    out.push({ key, value: `${key}:${Math.floor(i / keys)}` })
  }
  return out
}

export interface OrderReport {
  /** Messages seen, duplicates included. */
  received: number
  /** Distinct (key, seq) pairs seen. */
  distinct: number
  /** Expected pairs never seen. */
  missing: number
  /** Pairs seen more than once (each extra copy counts). */
  duplicates: number
  /** First arrivals of a key that came after a later seq of the same key. */
  outOfOrder: number
}

/**
 * Checks what a target received against `keyedRecords(n, keys)`: every (key, seq) at least once,
 * and per key the first arrivals in seq order. Values are parsed as `<key>:<seq>`.
 */
export function checkOrder(values: string[], n: number, keys: number): OrderReport {
  const seen = new Set<string>()
  const high = new Map<string, number>()
  let duplicates = 0
  let outOfOrder = 0
  for (const v of values) {
    if (seen.has(v)) {
      duplicates++
      continue
    }
    seen.add(v)
    const colon = v.lastIndexOf(':')
    const key = v.slice(0, colon)
    const seq = Number(v.slice(colon + 1))
    if (seq < (high.get(key) ?? -1)) outOfOrder++
    high.set(key, Math.max(seq, high.get(key) ?? -1))
  }
  let missing = 0
  for (const r of keyedRecords(n, keys)) if (!seen.has(r.value)) missing++
  return { received: values.length, distinct: seen.size, missing, duplicates, outOfOrder }
}

/**
 * The one dead letter of `bridge` in `<stream>.dlq`: checks the headers every bridge's dead letter
 * has (origin stream, the bridge's progress group, reason 'rejected') and returns it for the
 * kind's own checks (its value, key and the target's answer in the headers).
 */
export async function onlyDeadLetter(culex: Culex, stream: string, bridge: string): Promise<ApiRecord> {
  const dead = await culex.readStream(`${stream}.dlq`)
  if (dead.length !== 1 || dead[0] === undefined) throw new Error(`expected one dead letter in ${stream}.dlq, found ${dead.length}: ${JSON.stringify(dead)}`)
  const letter = dead[0]
  const want = { 'culex-dlq-stream': stream, 'culex-dlq-group': `bridge.${bridge}`, 'culex-dlq-reason': 'rejected' }
  for (const [k, v] of Object.entries(want)) {
    if (letter.headers[k] !== v)
      throw new Error(`dead letter header ${k} is ${JSON.stringify(letter.headers[k])}, expected ${v}: ${JSON.stringify(letter.headers)}`)
  }
  return letter
}
