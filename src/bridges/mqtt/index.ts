import type { BridgeDriver } from '../types.js'
import { parseSource, parseTarget, type MqttSourceOptions, type MqttTarget } from './config.js'

// kind: mqtt, another MQTT broker: outbound publishes records to it (sink.ts), inbound subscribes
// to it with a persistent session (source.ts). MQTT.js is loaded only when such a bridge runs.

export const mqttDriver: BridgeDriver<MqttTarget, MqttSourceOptions> = {
  kind: 'mqtt',
  parseTarget,
  parseSource,
  async createSink(target, deps) {
    const { createSink } = await import('./sink.js')
    return createSink(target, deps)
  },
  async createSource(source, deps) {
    const { createSource } = await import('./source.js')
    return createSource(source, deps)
  }
}
