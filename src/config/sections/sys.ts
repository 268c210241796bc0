import type { Section } from '../section.js'
import { key } from '../section.js'
import { BadValue, DURATION_EXPECTED, parseDuration } from '../values.js'

// The `$SYS` topics (src/sys/): broker statistics under mosquitto's names, and `$SYS/culex/...`
// for streams and groups, published as retained QoS 0 messages every sys-interval.

export interface SysSection {
  /** How often the `$SYS` topics are published (ms); 0 = never. */
  sysIntervalMs: number
}

/** The shortest sys-interval: mosquitto's unit is the second. */
export const MIN_SYS_INTERVAL_MS = 1000

function interval(raw: unknown): number {
  if (raw === 0 || raw === '0') return 0
  const ms = parseDuration(raw)
  if (ms === null || ms < MIN_SYS_INTERVAL_MS) throw new BadValue()
  return ms
}

export const sysSection: Section<SysSection> = {
  name: 'sys',
  // mosquitto's default sys_interval
  defaults: { sysIntervalMs: 10_000 },
  keys: {
    'sys-interval': key({
      field: 'sysIntervalMs',
      parse: interval,
      expected: `0 (off), or ${DURATION_EXPECTED}, at least 1s`,
      help: 'how often the $SYS topics (broker statistics, streams, groups) are published; 0 = never'
    })
  }
}
