import type { Logger } from 'pino'
import type { Log } from '../log/types.js'
import type { TopicLimits } from '../mqtt/topics.js'
import type { BridgeConfig } from './config.js'
import { InboundBridge, type BridgePublish } from './inbound.js'
import { OutboundBridge } from './outbound.js'
import { DRIVERS } from './registry.js'
import type { BridgeStatus } from './types.js'

// Every configured bridge: made from its driver, started once the broker and the log are up,
// stopped before them. The HTTP API lists them and pauses and resumes one (routes/bridges.ts).

export interface BridgesDeps {
  log: Log
  publish: BridgePublish
  whenWritable?: (signal: AbortSignal) => Promise<void>
  topicLimits?: TopicLimits
  logger: Logger
}

type Bridge = OutboundBridge | InboundBridge

export class Bridges {
  private constructor(private readonly bridges: Map<string, Bridge>) {}

  /** Makes each bridge's sink or source (which loads its client library); starts none. */
  static async create(configs: BridgeConfig[], deps: BridgesDeps): Promise<Bridges> {
    const out = new Map<string, Bridge>()
    for (const config of configs) {
      const driver = DRIVERS.get(config.kind)
      const logger = deps.logger.child({ bridge: config.name, kind: config.kind, direction: config.direction })
      const driverDeps = { logger, bridge: config.name }
      if (config.direction === 'out') {
        if (!driver?.createSink) throw new Error(`bridge ${config.name}: kind ${config.kind} has no outbound direction`)
        out.set(config.name, new OutboundBridge(config, await driver.createSink(config.target, driverDeps), deps.log, logger))
      } else {
        if (!driver?.createSource) throw new Error(`bridge ${config.name}: kind ${config.kind} has no inbound direction`)
        const source = await driver.createSource(config.source, driverDeps)
        out.set(
          config.name,
          new InboundBridge(config, source, { publish: deps.publish, whenWritable: deps.whenWritable, topicLimits: deps.topicLimits }, logger)
        )
      }
    }
    return new Bridges(out)
  }

  get size(): number {
    return this.bridges.size
  }

  start(): void {
    for (const b of this.bridges.values()) b.start()
  }

  has(name: string): boolean {
    return this.bridges.has(name)
  }

  names(): string[] {
    return [...this.bridges.keys()]
  }

  list(): Promise<BridgeStatus[]> {
    return Promise.all([...this.bridges.values()].map((b) => b.status()))
  }

  /** null: no bridge has that name. */
  async describe(name: string): Promise<BridgeStatus | null> {
    return (await this.bridges.get(name)?.status()) ?? null
  }

  async pause(name: string): Promise<BridgeStatus | null> {
    const b = this.bridges.get(name)
    if (!b) return null
    await b.pause()
    return b.status()
  }

  async resume(name: string): Promise<BridgeStatus | null> {
    const b = this.bridges.get(name)
    if (!b) return null
    b.resume()
    return b.status()
  }

  /** Stops every bridge: nothing more is delivered or acked; stored progress stays. */
  async stop(): Promise<void> {
    await Promise.all([...this.bridges.values()].map((b) => b.stop()))
  }
}
