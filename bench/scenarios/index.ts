// The scenarios, in the order they run against each broker. One module per scenario (or family).
// The raw-socket ones run after the MQTT.js ones that share a broker, so those see the same broker as before.
import type { Scenario } from '../lib/scenario.js'
import { bridges } from './bridges/index.js'
import { connections } from './connections.js'
import { delayed } from './delayed.js'
import { fanout } from './fanout.js'
import { latency, latencyLog } from './latency.js'
import { logAppend } from './log-append.js'
import { logReplay } from './log-replay.js'
import { rawQos0, rawQos0Log, rawQos1, rawQos1Log } from './raw.js'
import { shareMqtt } from './share-mqtt.js'
import { sharedAck } from './shared-ack.js'
import { qos0, qos1, qos2 } from './throughput.js'

export const SCENARIOS: Scenario[] = [
  qos0,
  qos1,
  qos2,
  fanout,
  latency,
  rawQos0,
  rawQos1,
  connections,
  logAppend,
  latencyLog,
  rawQos0Log,
  rawQos1Log,
  logReplay,
  sharedAck,
  shareMqtt,
  delayed,
  bridges
]
