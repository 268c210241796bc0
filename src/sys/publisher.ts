import { readFileSync } from 'node:fs'
import type { BrokerStatsSnapshot } from '../broker/stats.js'
import type { BridgeStatus } from '../bridges/types.js'
import type { GroupSummary } from '../log/groups/types.js'
import type { ShareGroupDescription } from '../log/shared/types.js'
import type { StreamInfo } from '../log/types.js'

// The `$SYS` topics, every sys-interval, as retained QoS 0 messages from the broker itself:
// - `$SYS/broker/...` with mosquitto's names and formats (mosquitto(8), "BROKER STATUS"; its
//   src/sys_tree.c), so that dashboards and tools written for mosquitto work: counts as integers,
//   `uptime` as "N seconds", `load/...` as mosquitto's exponential moving averages of the rate per
//   minute over 1, 5 and 15 minutes, with two decimals;
// - `$SYS/culex/...` for streams, consumer groups, shared groups, delayed messages and bridges.
// As mosquitto does, a topic is published when its value changed (every topic at the first pass);
// a topic whose subject went away (a group deleted) is cleared (an empty retained message).
// Who may read them is the ACL's business: '#' does not match `$SYS/...` [MQTT-4.7.2-1], and an
// ACL'd user needs a rule such as `topic read $SYS/#`.

export interface SysSources {
  broker: { snapshot: () => Promise<BrokerStatsSnapshot> }
  log?: { listStreams: () => Promise<StreamInfo[]> }
  groups?: { list: () => Promise<GroupSummary[]> }
  shared?: { list: () => string[]; describe: (group: string) => Promise<ShareGroupDescription> }
  delayed?: { stats: () => { pending: number } }
  bridges?: { list: () => Promise<BridgeStatus[]> }
}

export interface SysPublisherOptions {
  /** ms between passes (> 0; the gateway does not start a publisher for sys-interval 0). */
  intervalMs: number
  /** A retained QoS 0 publish from the broker (Broker#publishSys). */
  publish: (topic: string, payload: Buffer) => Promise<void>
  onError: (err: unknown) => void
  /** The `$SYS/broker/version` text; default "culex version <package.json version>". */
  version?: string
  now?: () => number
}

/** The rates mosquitto keeps load averages of, by their `load/` topic, and how to count them. */
const LOADS: Array<[string, (s: BrokerStatsSnapshot) => number]> = [
  ['messages/received', (s) => s.packets.received],
  ['messages/sent', (s) => s.packets.sent],
  ['publish/received', (s) => sum(s.publish.received)],
  ['publish/sent', (s) => sum(s.publish.sent)],
  ['publish/dropped', (s) => s.publish.dropped],
  ['bytes/received', (s) => s.bytes.received],
  ['bytes/sent', (s) => s.bytes.sent],
  ['connections', (s) => s.clients.accepted]
]

/** mosquitto's load periods: the topic suffix and the time constant (s). */
const PERIODS: Array<[string, number]> = [
  ['1min', 60],
  ['5min', 300],
  ['15min', 900]
]

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

function describeShared(shared: NonNullable<SysSources['shared']>): Promise<Array<ShareGroupDescription | null>> {
  return Promise.all(shared.list().map((name) => shared.describe(name).catch(() => null)))
}

/** "culex version X.Y.Z", from package.json (two levels up from src/sys/, three from dist/src/sys/). */
export function culexVersion(): string {
  for (const path of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'culex' && pkg.version) return `culex version ${pkg.version}`
    } catch {
      // not at this level
    }
  }
  return 'culex version unknown'
}

export class SysPublisher {
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private stopped = false
  /** The last value published per topic. */
  private readonly last = new Map<string, string>()
  /** Load averages: the counts at the last pass, and each average. */
  private loadAt: number | null = null
  private readonly loadCounts = new Map<string, number>()
  private readonly loads = new Map<string, number>()
  private heapMaximum = 0
  private readonly now: () => number
  private readonly version: string

  constructor(
    private readonly sources: SysSources,
    private readonly options: SysPublisherOptions
  ) {
    if (!(options.intervalMs > 0)) throw new Error('sys-interval must be positive to start the $SYS publisher')
    this.now = options.now ?? Date.now
    this.version = options.version ?? culexVersion()
  }

  /** Publishes now, then every interval. */
  start(): void {
    this.stopped = false
    this.schedule(0)
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.timer = null
      this.running = this.tick()
        .catch((err: unknown) => this.options.onError(err))
        .finally(() => {
          this.running = null
          this.schedule(this.options.intervalMs)
        })
    }, ms)
    this.timer.unref()
  }

  /** Stops the passes; resolves once a pass under way has ended. */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    await this.running
  }

  /** One pass: computes every topic and publishes those whose value changed. */
  async tick(): Promise<void> {
    const values = await this.values()
    const publishes: Array<Promise<void>> = []
    for (const [topic, value] of values) {
      if (this.last.get(topic) === value) continue
      this.last.set(topic, value)
      publishes.push(this.options.publish(topic, Buffer.from(value)))
    }
    // gone since the last pass (a group deleted, a bridge removed): cleared
    for (const topic of [...this.last.keys()]) {
      if (values.has(topic)) continue
      this.last.delete(topic)
      publishes.push(this.options.publish(topic, Buffer.alloc(0)))
    }
    await Promise.all(publishes)
  }

  /** Every topic and its value now. */
  async values(): Promise<Map<string, string>> {
    const s = this.sources
    const [stats, streams, groups, shared, bridges] = await Promise.all([
      s.broker.snapshot(),
      s.log?.listStreams(),
      s.groups?.list(),
      s.shared ? describeShared(s.shared) : undefined,
      s.bridges?.list()
    ])
    const now = this.now()
    const out = new Map<string, string>()
    const b = (topic: string, value: string | number): void => void out.set(`$SYS/broker/${topic}`, String(value))
    const c = (topic: string, value: string | number): void => void out.set(`$SYS/culex/${topic}`, String(value))

    b('version', this.version)
    b('uptime', `${Math.floor((now - stats.startedAt) / 1000)} seconds`)
    const { clients } = stats
    b('clients/connected', clients.connected)
    b('clients/active', clients.connected)
    b('clients/disconnected', clients.disconnected)
    b('clients/inactive', clients.disconnected)
    b('clients/total', clients.connected + clients.disconnected)
    b('clients/maximum', clients.maximum)
    b('messages/received', stats.packets.received)
    b('messages/sent', stats.packets.sent)
    b('publish/messages/received', sum(stats.publish.received))
    b('publish/messages/sent', sum(stats.publish.sent))
    b('publish/messages/dropped', stats.publish.dropped)
    b('bytes/received', stats.bytes.received)
    b('bytes/sent', stats.bytes.sent)
    b('subscriptions/count', stats.subscriptions)
    b('retained messages/count', stats.retained)
    const heap = process.memoryUsage().heapUsed
    if (heap > this.heapMaximum) this.heapMaximum = heap
    b('heap/current', heap)
    b('heap/maximum', this.heapMaximum)
    for (const [topic, value] of this.updateLoads(stats, now)) b(`load/${topic}`, value)

    if (streams) {
      for (const info of streams) {
        const name = info.config.name
        c(`streams/${name}/partitions`, info.partitions.length)
        c(`streams/${name}/end-offset`, sum(info.partitions.map((p) => p.endOffset)))
        c(`streams/${name}/records`, sum(info.partitions.map((p) => p.endOffset - p.startOffset)))
        c(`streams/${name}/bytes`, sum(info.partitions.map((p) => p.bytes)))
      }
    }
    if (groups) {
      for (const g of groups) {
        c(`groups/${g.group}/lag`, g.lag)
        c(`groups/${g.group}/members`, g.members)
      }
    }
    if (shared) {
      for (const d of shared) {
        if (!d) continue
        c(`shared-groups/${d.group}/lag`, d.lag)
        c(`shared-groups/${d.group}/dead-lettered`, d.deadLettered)
      }
    }
    if (s.delayed) c('delayed/pending', s.delayed.stats().pending)
    if (bridges) {
      for (const br of bridges) {
        c(`bridges/${br.name}/state`, br.state)
        c(`bridges/${br.name}/delivered`, br.delivered)
        if (br.lag !== null) c(`bridges/${br.name}/lag`, br.lag)
      }
    }
    return out
  }

  /**
   * mosquitto's load averages (sys_tree.c, calc_load): over the time since the last pass, the
   * rate per minute, folded into each average with the weight exp(-dt / period). The first pass
   * starts every average at 0.
   */
  private updateLoads(stats: BrokerStatsSnapshot, now: number): Array<[string, string]> {
    const dt = this.loadAt === null ? 0 : (now - this.loadAt) / 1000
    const out: Array<[string, string]> = []
    for (const [name, count] of LOADS) {
      const value = count(stats)
      const before = this.loadCounts.get(name) ?? value
      const perMinute = dt > 0 ? ((value - before) * 60) / dt : 0
      for (const [suffix, period] of PERIODS) {
        const topic = `${name}/${suffix}`
        const current = this.loads.get(topic) ?? 0
        const next = dt > 0 ? Math.exp(-dt / period) * current + (1 - Math.exp(-dt / period)) * perMinute : current
        this.loads.set(topic, next)
        out.push([topic, next.toFixed(2)])
      }
      this.loadCounts.set(name, value)
    }
    if (dt > 0 || this.loadAt === null) this.loadAt = now
    return out
  }
}
