import type { Section } from '../section.js'
import { key } from '../section.js'
import { BadValue, DURATION_EXPECTED, integer, parseDuration } from '../values.js'

// Deduplication of appends within a window (as NATS JetStream's duplicate window): HTTP produce
// requests with an Idempotency-Key, and MQTT QoS 1 publishes retransmitted with the DUP flag.
// The log remembers each id for `dedup-window`, and at most `dedup-max-keys` ids: at the bound,
// the oldest is forgotten first (a retry of it would be appended again; nothing is refused).

export interface DedupSection {
  /** How long an append's id is remembered (ms); 0 = off. */
  dedupWindowMs: number
  /** Most ids remembered at once, over all streams. */
  dedupMaxKeys: number
}

/** A week: the window is held in memory, and a retry comes within minutes. */
export const MAX_DEDUP_WINDOW_MS = 7 * 86_400_000
export const MAX_DEDUP_KEYS = 10_000_000

function window(raw: unknown): number {
  if (raw === 0 || raw === '0' || raw === 'off' || raw === false) return 0
  const ms = parseDuration(raw)
  if (ms === null || ms > MAX_DEDUP_WINDOW_MS) throw new BadValue()
  return ms
}

function maxKeys(raw: unknown): number {
  const n = integer(raw)
  if (n === null || n < 1 || n > MAX_DEDUP_KEYS) throw new BadValue()
  return n
}

export const dedupSection: Section<DedupSection> = {
  name: 'dedup',
  // the log backend's defaults too (src/log/rocks/dedup-index.ts)
  defaults: { dedupWindowMs: 120_000, dedupMaxKeys: 100_000 },
  keys: {
    'dedup-window': key({
      field: 'dedupWindowMs',
      parse: window,
      expected: `${DURATION_EXPECTED}, at most 7d; or off (0)`,
      help: 'a repeated Idempotency-Key or MQTT QoS 1 retransmission (DUP) within this is not appended again'
    }),
    'dedup-max-keys': key({
      field: 'dedupMaxKeys',
      parse: maxKeys,
      expected: `an integer from 1 to ${MAX_DEDUP_KEYS}`,
      help: 'most ids the dedup window remembers (about 200 bytes of memory each); beyond, the oldest is forgotten first'
    })
  }
}
