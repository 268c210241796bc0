import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { DropReason } from '../broker/counters.js'
import { PUBLISH_DROP_REASONS, type BrokerStatsSnapshot } from '../broker/stats.js'
import type { BridgeStatus } from '../bridges/types.js'
import type { GroupDescription, GroupSummary } from '../log/groups/types.js'
import type { ShareGroupDescription } from '../log/shared/types.js'
import type { StreamInfo } from '../log/types.js'

// The Prometheus metrics of a gateway (GET /metrics): a prom-client Registry whose values are read
// when scraped, from the small interfaces below that the gateway fills. Nothing here is on the
// publish path: the broker counts plain integers (src/broker/stats.ts), and everything that can be
// computed at scrape time (end offsets, lag, bridges, sessions) is. The group-commit histograms are
// observed once per committed batch. Names follow Prometheus's conventions: the `culex_` prefix,
// `_total` counters, `_seconds` and `_bytes` units, and no client ids in labels. Consumer-group lag
// is named as kafka_exporter names it.

export interface MetricsSources {
  broker?: { snapshot: () => Promise<BrokerStatsSnapshot> }
  log?: { listStreams: () => Promise<StreamInfo[]> }
  groups?: { list: () => Promise<GroupSummary[]>; describe: (group: string) => Promise<GroupDescription> }
  shared?: { list: () => string[]; describe: (group: string) => Promise<ShareGroupDescription> }
  delayed?: { stats: () => { pending: number; delivered: number; dropped: number } }
  bridges?: { list: () => Promise<BridgeStatus[]> }
  /** Bytes written to the store and not committed yet. */
  storeBacklogBytes?: () => number
}

export interface CommitObservation {
  ops: number
  bytes: number
  seconds: number
}

const BRIDGE_STATES = ['starting', 'running', 'retrying', 'paused', 'stopped'] as const

/** Refusals that are failed or throttled logins. */
const AUTH_REASONS = new Set(['login-failed', 'login-throttled'])

/** Counts of events counted elsewhere: each scrape sets the family to the current totals. */
class Totals<L extends string> {
  constructor(readonly counter: Counter<L>) {}
  set(values: Array<[Partial<Record<L, string | number>>, number]>): void {
    this.counter.reset()
    for (const [labels, value] of values) this.counter.inc(labels, value)
  }
}

/** The registry and what GET /metrics serves (src/http/routes/metrics.ts's MetricsExposition). */
export class Metrics {
  readonly registry = new Registry()
  readonly contentType: string
  private readonly sources: MetricsSources
  private readonly g: ReturnType<Metrics['families']>

  constructor(sources: MetricsSources, options: { defaultMetrics?: boolean } = {}) {
    this.sources = sources
    this.contentType = this.registry.contentType
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'culex_' })
    this.g = this.families()
  }

  private families() {
    const r = [this.registry]
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) => new Gauge<L>({ name, help, labelNames, registers: r })
    const totals = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
      new Totals(new Counter<L>({ name, help, labelNames, registers: r }))
    return {
      clientsConnected: gauge('culex_clients_connected', 'MQTT clients connected, by listener', ['listener']),
      clientsMaximum: gauge('culex_clients_maximum', 'Most MQTT clients connected at once since the start'),
      connections: totals('culex_connections_accepted_total', 'MQTT connections accepted (CONNACK 0)'),
      sessions: gauge('culex_sessions', 'MQTT sessions with stored subscriptions, connected or not'),
      sessionsDisconnected: gauge('culex_sessions_disconnected', 'Persistent MQTT sessions whose client is not connected'),
      subscriptions: gauge('culex_subscriptions', 'MQTT subscriptions'),
      retained: gauge('culex_retained_messages', 'Retained messages stored'),
      received: totals('culex_messages_received_total', 'PUBLISH packets received from clients, by QoS', ['qos']),
      sent: totals('culex_messages_sent_total', 'PUBLISH packets sent to clients, by QoS', ['qos']),
      packetsReceived: totals('culex_packets_received_total', 'MQTT packets received, every type'),
      packetsSent: totals('culex_packets_sent_total', 'MQTT packets sent, every type'),
      bytesReceived: totals('culex_received_bytes_total', 'MQTT bytes received'),
      bytesSent: totals('culex_sent_bytes_total', "Bytes written to MQTT clients' sockets"),
      dropped: totals('culex_messages_dropped_total', 'PUBLISH messages dropped, by reason', ['reason']),
      authFailures: totals('culex_authentication_failures_total', 'Failed or throttled MQTT logins, by reason', ['reason']),
      refusals: totals('culex_refusals_total', 'Everything the broker refused or dropped, by reason', ['reason']),
      endOffset: gauge('culex_log_end_offset', 'Offset the next record of a partition gets', ['stream', 'partition']),
      startOffset: gauge('culex_log_start_offset', 'First offset still stored in a partition', ['stream', 'partition']),
      records: gauge('culex_log_records', 'Records stored in a partition', ['stream', 'partition']),
      logBytes: gauge('culex_log_size_bytes', 'Bytes stored in a partition', ['stream', 'partition']),
      appended: totals('culex_log_appended_records_total', 'Records appended to a stream since it was created', ['stream']),
      storeBacklog: gauge('culex_store_backlog_bytes', 'Bytes written to the store and not committed yet'),
      lag: gauge('culex_consumergroup_lag', 'Records of a partition not yet committed by an ordered consumer group', ['group', 'stream', 'partition']),
      currentOffset: gauge('culex_consumergroup_current_offset', "An ordered consumer group's committed offset", ['group', 'stream', 'partition']),
      members: gauge('culex_consumergroup_members', 'Members of an ordered consumer group', ['group']),
      shareLag: gauge('culex_sharegroup_lag', 'Records of a partition not yet acknowledged by a shared group', ['group', 'stream', 'partition']),
      deadLettered: totals('culex_sharegroup_dead_lettered_total', 'Records a shared group moved to the dead-letter stream', ['group']),
      delayedPending: gauge('culex_delayed_messages_pending', 'Delayed messages and records waiting for their time'),
      delayedDelivered: totals('culex_delayed_messages_delivered_total', 'Delayed messages and records delivered'),
      delayedDropped: totals('culex_delayed_messages_dropped_total', 'Delayed entries that could not be delivered'),
      bridgeState: gauge('culex_bridge_state', "1 for a bridge's current state, 0 for the others", ['bridge', 'kind', 'direction', 'state']),
      bridgeDelivered: totals('culex_bridge_delivered_total', 'Outbound: records delivered; inbound: messages published into Culex', ['bridge']),
      bridgeDeadLettered: totals('culex_bridge_dead_lettered_total', 'Records refused by the target (dead-lettered) or by Culex', ['bridge']),
      bridgeRetries: totals('culex_bridge_retries_total', 'Deliveries or connects that failed and were retried', ['bridge']),
      bridgeLag: gauge('culex_bridge_lag', 'Outbound: records in the bridge streams not yet delivered', ['bridge']),
      commitOps: new Histogram({
        name: 'culex_store_commit_batch_ops',
        help: 'Writes per group-commit batch',
        buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000],
        registers: r
      }),
      commitBytes: new Histogram({
        name: 'culex_store_commit_batch_bytes',
        help: 'Bytes per group-commit batch',
        buckets: [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216],
        registers: r
      }),
      commitSeconds: new Histogram({
        name: 'culex_store_commit_duration_seconds',
        help: 'Time a group-commit batch took on the commit thread, fsync included',
        buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
        registers: r
      })
    }
  }

  /** The store writer's observer (GroupCommitWriter#observeCommits). */
  readonly observeCommit = (commit: CommitObservation): void => {
    this.g.commitOps.observe(commit.ops)
    this.g.commitBytes.observe(commit.bytes)
    this.g.commitSeconds.observe(commit.seconds)
  }

  /** The Prometheus text exposition, every value read now. */
  async text(): Promise<string> {
    await this.refresh()
    return this.registry.metrics()
  }

  private async refresh(): Promise<void> {
    const s = this.sources
    // read everything first, then set the families in one synchronous pass
    const [broker, streams, groups, shared, bridges] = await Promise.all([
      s.broker?.snapshot(),
      s.log?.listStreams(),
      s.groups ? describeGroups(s.groups) : undefined,
      s.shared ? describeShared(s.shared) : undefined,
      s.bridges?.list()
    ])
    const g = this.g
    if (broker) setBroker(g, broker)
    if (streams) {
      for (const f of [g.endOffset, g.startOffset, g.records, g.logBytes]) f.reset()
      const appended: Array<[{ stream: string }, number]> = []
      for (const info of streams) {
        let total = 0
        for (const p of info.partitions) {
          const labels = { stream: info.config.name, partition: p.partition }
          g.endOffset.set(labels, p.endOffset)
          g.startOffset.set(labels, p.startOffset)
          g.records.set(labels, p.endOffset - p.startOffset)
          g.logBytes.set(labels, p.bytes)
          total += p.endOffset
        }
        appended.push([{ stream: info.config.name }, total])
      }
      g.appended.set(appended)
    }
    if (s.storeBacklogBytes) g.storeBacklog.set(s.storeBacklogBytes())
    if (groups) {
      g.lag.reset()
      g.currentOffset.reset()
      g.members.reset()
      for (const d of groups) {
        g.members.set({ group: d.group }, d.members.length)
        for (const p of d.partitions) {
          const labels = { group: d.group, stream: p.stream, partition: p.partition }
          g.lag.set(labels, p.lag)
          if (p.committed !== null) g.currentOffset.set(labels, p.committed)
        }
      }
    }
    if (shared) {
      g.shareLag.reset()
      const dead: Array<[{ group: string }, number]> = []
      for (const d of shared) {
        if (!d) continue
        for (const p of d.partitions) g.shareLag.set({ group: d.group, stream: p.stream, partition: p.partition }, p.lag)
        dead.push([{ group: d.group }, d.deadLettered])
      }
      g.deadLettered.set(dead)
    }
    if (s.delayed) {
      const d = s.delayed.stats()
      g.delayedPending.set(d.pending)
      g.delayedDelivered.set([[{}, d.delivered]])
      g.delayedDropped.set([[{}, d.dropped]])
    }
    if (bridges) {
      g.bridgeState.reset()
      g.bridgeLag.reset()
      for (const b of bridges) {
        for (const state of BRIDGE_STATES) g.bridgeState.set({ bridge: b.name, kind: b.kind, direction: b.direction, state }, b.state === state ? 1 : 0)
        if (b.lag !== null) g.bridgeLag.set({ bridge: b.name }, b.lag)
      }
      g.bridgeDelivered.set(bridges.map((b) => [{ bridge: b.name }, b.delivered]))
      g.bridgeDeadLettered.set(bridges.map((b) => [{ bridge: b.name }, b.deadLettered]))
      g.bridgeRetries.set(bridges.map((b) => [{ bridge: b.name }, b.retries]))
    }
  }
}

async function describeGroups(groups: NonNullable<MetricsSources['groups']>): Promise<GroupDescription[]> {
  const list = await groups.list()
  // a group deleted between list and describe is left out of this scrape
  const all = await Promise.all(list.map((summary) => groups.describe(summary.group).catch(() => null)))
  return all.filter((d): d is GroupDescription => d !== null)
}

function describeShared(shared: NonNullable<MetricsSources['shared']>): Promise<Array<ShareGroupDescription | null>> {
  return Promise.all(shared.list().map((name) => shared.describe(name).catch(() => null)))
}

function setBroker(g: ReturnType<Metrics['families']>, b: BrokerStatsSnapshot): void {
  g.clientsConnected.reset()
  for (const [listener, n] of Object.entries(b.clients.byListener)) g.clientsConnected.set({ listener }, n)
  g.clientsMaximum.set(b.clients.maximum)
  g.connections.set([[{}, b.clients.accepted]])
  g.sessions.set(b.sessions)
  g.sessionsDisconnected.set(b.clients.disconnected)
  g.subscriptions.set(b.subscriptions)
  g.retained.set(b.retained)
  g.received.set(b.publish.received.map((n, qos) => [{ qos }, n]))
  g.sent.set(b.publish.sent.map((n, qos) => [{ qos }, n]))
  g.packetsReceived.set([[{}, b.packets.received]])
  g.packetsSent.set([[{}, b.packets.sent]])
  g.bytesReceived.set([[{}, b.bytes.received]])
  g.bytesSent.set([[{}, b.bytes.sent]])
  const reasons = Object.entries(b.dropped)
  g.refusals.set(reasons.map(([reason, n]) => [{ reason }, n]))
  g.authFailures.set(reasons.filter(([reason]) => AUTH_REASONS.has(reason)).map(([reason, n]) => [{ reason }, n]))
  g.dropped.set(reasons.filter(([reason]) => PUBLISH_DROP_REASONS.has(reason as DropReason)).map(([reason, n]) => [{ reason }, n]))
}
