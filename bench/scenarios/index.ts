// The scenarios, in the order they run against each broker. One module per scenario (or family).
import type { Scenario } from '../lib/scenario.js'
import { connections } from './connections.js'
import { fanout } from './fanout.js'
import { latency, latencyLog } from './latency.js'
import { logAppend } from './log-append.js'
import { logReplay } from './log-replay.js'
import { qos0, qos1, qos2 } from './throughput.js'

export const SCENARIOS: Scenario[] = [qos0, qos1, qos2, fanout, latency, connections, logAppend, latencyLog, logReplay]
