// What a scenario module exports, and what it reports.
import type { BrokerName, RunningBroker, StartOptions } from './brokers.js'
import type { WorkerSet } from './workers.js'

export type Mode = 'quick' | 'default' | 'full'

export interface Metric {
  /** stable key for the JSON file */
  key: string
  /** row label in the table */
  label: string
  value: number | null
  unit: string
  better: 'higher' | 'lower'
  /** shown in the table (others only go to the JSON file) */
  show?: boolean
  /** false: no ratio columns on this row (a number about the load generator, not the broker) */
  ratio?: boolean
}

export interface CpuReport {
  /** wall time of the measured window */
  wallMs: number
  /** broker process utime+stime during the window (/proc/<pid>/stat) */
  brokerMs: number
  /** all load-generator workers' process.cpuUsage() during the window */
  clientMs: number
}

export interface ScenarioResult {
  metrics: Metric[]
  cpu: CpuReport | null
  /** anything worth a look: losses, errors, limits */
  notes: string[]
  /** details for the JSON file */
  details: Record<string, unknown>
}

export interface ScenarioContext {
  /** the broker to drive (for `setup: 'own'` scenarios: null, they start their own) */
  broker: RunningBroker | null
  brokerName: BrokerName
  /** starts a broker of this kind; the runner stops every broker started so when the scenario ends */
  startBroker(options?: Omit<StartOptions, 'cpuProfDir'>): Promise<RunningBroker>
  mode: Mode
  /** workers started through this set are killed by the runner if the scenario fails or times out */
  workers: WorkerSet
  /** the scenario's hard deadline (ms, on nowMs()); loops must end before it */
  deadline: number
  log(line: string): void
  /** overrides from the command line (--publishers, --window, --pub-procs, --sub-procs, --sub-conns, --read-pause) */
  tuning: Tuning
}

export interface Tuning {
  /** publisher clients in the fan-in scenarios (qos0, qos1, qos2) */
  publishers?: number
  /** in-flight window per publisher in the qos1/qos2 scenarios */
  window?: number
  /** raw scenarios: publisher processes (default 2) */
  pubProcesses?: number
  /** raw scenarios: subscriber processes (default 1) */
  subProcesses?: number
  /** raw scenarios: subscriber connections per subscriber process; several split the topics between them */
  subConnections?: number
  /** raw scenarios: a socket stops reading for this long (ms) after a read, so reads and writes batch; 0 = never */
  readPauseMs?: number
  /** bridges: the bridge kinds to measure (default: all) */
  bridges?: string[]
  /** bridges: batch sizes (records per delivery), each measured in turn */
  bridgeBatches?: number[]
  /** bridges: partitions of the stream = batches in flight at once (the in-flight window is partitions x batch) */
  bridgePartitions?: number
}

export interface Scenario {
  id: string
  title: string
  /**
   * shared (default): the broker the earlier scenarios used; fresh: a newly started one (memory
   * measurements must not see earlier scenarios' heap), with `culexStart` for Culex; own: none, the
   * scenario starts and stops brokers itself through ctx.startBroker.
   */
  setup?: 'shared' | 'fresh' | 'own'
  /** Culex start options for a fresh broker (a config file with routes, the admin API) */
  culexStart?: Omit<StartOptions, 'cpuProfDir' | 'dataDir'>
  /** brokers the scenario applies to (default: all); the others show "–" */
  appliesTo?: BrokerName[]
  /** hard limit for the whole scenario, including start-up and drain */
  deadlineMs(mode: Mode): number
  run(ctx: ScenarioContext): Promise<ScenarioResult>
}

/** The broker of a scenario that drives a running broker. */
export function brokerOf(ctx: ScenarioContext): RunningBroker {
  if (!ctx.broker) throw new Error('this scenario needs a running broker')
  return ctx.broker
}

export function pick<T>(mode: Mode, values: Record<Mode, T>): T {
  return values[mode]
}

/** p-th percentile (0-100) of an ascending array, nearest rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] ?? null
}
