import { topicNameProblem, type TopicLimits } from '../mqtt/topics.js'

// The rules of a CONNECT that aedes 1.2 does not enforce (the raw-byte rules are in wire-checks.ts).

export interface ConnectFields {
  clientId: string
  clean: boolean
  protocolVersion: number
  will?: { topic: string; qos: number } | null
}

export type ConnectRefusal =
  /** CONNACK 0x02, then the connection closes [MQTT-3.2.2-5]. */
  | { connack: 2; reason: string }
  /** No CONNACK: a protocol violation closes the connection [MQTT-4.8.0-1]. */
  | { connack: null; reason: string }

export function checkConnect(packet: ConnectFields, maxClientIdLength: number, limits: TopicLimits): ConnectRefusal | null {
  // a zero-length client id needs a clean session [MQTT-3.1.3-8]
  if (packet.clientId.length === 0 && !packet.clean) {
    return { connack: 2, reason: 'a zero-length client identifier needs CleanSession 1 [MQTT-3.1.3-8]' }
  }
  // aedes checks the length only for MQTT 3.1; Culex for every version (a server must accept 1 to
  // 23 bytes and may accept more [MQTT-3.1.3-5]: max-client-id-length is at least 23)
  const length = Buffer.byteLength(packet.clientId, 'utf8')
  if (length > maxClientIdLength) {
    return { connack: 2, reason: `the client identifier is ${length} bytes; max-client-id-length is ${maxClientIdLength}` }
  }
  if (packet.will) {
    // the will topic is a topic name: no wildcards, not empty [MQTT-3.1.3-10, MQTT-4.7.1-1, MQTT-4.7.3-1]
    const problem = topicNameProblem(packet.will.topic, limits)
    if (problem) return { connack: null, reason: `will topic ${JSON.stringify(packet.will.topic)}: ${problem}` }
    if (packet.will.qos > 2) return { connack: null, reason: 'will QoS 3 [MQTT-3.1.2-14]' }
  }
  return null
}
