import type { Section } from '../section.js'
import { key } from '../section.js'
import { BadValue, DURATION_EXPECTED, bool, integer, parseDuration } from '../values.js'

// Delayed delivery (src/delayed/): MQTT publishes to `$delayed/<seconds>/<topic>` and HTTP
// produce requests with deliverAt / delayMs, stored until they are due.

export interface DelayedSection {
  /** Whether `$delayed/` publishes and deliverAt / delayMs are taken (entries already stored are delivered either way). */
  delayedEnabled: boolean
  /** Longest delay accepted (ms). */
  delayedMaxDelayMs: number
  /** Most delayed messages and records pending at once (0 = no limit). */
  delayedMaxMessages: number
}

/** EMQX's longest `$delayed/` delay, 4,294,967 s (about 49.7 days): the most delayed-max-delay may be. */
export const MAX_DELAYED_DELAY_MS = 4_294_967 * 1000

function maxDelay(raw: unknown): number {
  const ms = parseDuration(raw)
  if (ms === null || ms < 1000 || ms > MAX_DELAYED_DELAY_MS) throw new BadValue()
  return ms
}

function maxMessages(raw: unknown): number {
  const n = integer(raw)
  if (n === null || n < 0) throw new BadValue()
  return n
}

export const delayedSection: Section<DelayedSection> = {
  name: 'delayed',
  defaults: {
    delayedEnabled: true,
    // a week: reminders, retries and timeouts fit; a longer wait is a job for a scheduler, and a
    // forgotten message should not hold storage for months
    delayedMaxDelayMs: 7 * 86_400_000,
    // bounded by default: 100,000 entries of at most max-packet-size each
    delayedMaxMessages: 100_000
  },
  keys: {
    'delayed-enabled': key({
      field: 'delayedEnabled',
      parse: bool,
      expected: 'true or false',
      help: 'take $delayed/<seconds>/<topic> publishes and deliverAt / delayMs on produce (pending ones are delivered either way)'
    }),
    'delayed-max-delay': key({
      field: 'delayedMaxDelayMs',
      parse: maxDelay,
      expected: `${DURATION_EXPECTED}, from 1s to 4294967s (about 49.7 days, EMQX's limit)`,
      help: 'longest delay of a delayed publish or record'
    }),
    'delayed-max-messages': key({
      field: 'delayedMaxMessages',
      parse: maxMessages,
      expected: 'an integer >= 0 (0 = no limit)',
      help: 'delayed messages and records pending at once; past it, $delayed publishes are refused and produce answers 507'
    })
  }
}
