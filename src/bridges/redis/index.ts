import type { BridgeDriver } from '../types.js'
import { parseRedisSource, parseRedisTarget, type RedisSourceOptions, type RedisTarget } from './config.js'

// Redis Streams: outbound XADD (sink.ts), inbound consumer group (source.ts). ioredis is loaded
// only when a redis bridge is configured.
export const redisDriver: BridgeDriver<RedisTarget, RedisSourceOptions> = {
  kind: 'redis',
  parseTarget: parseRedisTarget,
  parseSource: parseRedisSource,
  async createSink(target, deps) {
    const { RedisSink } = await import('./sink.js')
    return new RedisSink(target, deps)
  },
  async createSource(source, deps) {
    const { RedisSource } = await import('./source.js')
    return new RedisSource(source, deps)
  }
}
