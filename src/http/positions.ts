import type { OffsetSpec } from '../log/types.js'
import { badField, type FieldLocation } from './errors.js'

// Positions in a partition as clients write them: 'earliest', 'latest', { offset: n } or
// { timestamp: t } where t is ms since the epoch or an ISO 8601 time ("2026-11-24T10:00:00Z").

const ISO_8601 = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/

/** ms since the epoch, or an ISO 8601 time, to ms. */
export function parseTimestamp(raw: unknown, where: FieldLocation, field: string): number {
  if (typeof raw === 'number' || (typeof raw === 'string' && /^\d+$/.test(raw))) {
    const ms = Number(raw)
    if (Number.isSafeInteger(ms) && ms >= 0) return ms
  } else if (typeof raw === 'string' && ISO_8601.test(raw)) {
    const ms = Date.parse(raw)
    if (!Number.isNaN(ms) && ms >= 0) return ms
  }
  throw badField(where, field, 'must be ms since the epoch or an ISO 8601 time (e.g. 2026-11-24T10:00:00Z)')
}

/** JSON schema for a position: checked in full by parseOffsetSpec, for clearer messages than anyOf gives. */
export const offsetSpecSchema = { type: ['string', 'object'] } as const

export function parseOffsetSpec(raw: unknown, where: FieldLocation, field: string): OffsetSpec {
  if (raw === 'earliest' || raw === 'latest') return raw
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const o = raw as Record<string, unknown>
    const keys = Object.keys(o)
    if (keys.length === 1 && keys[0] === 'offset') {
      if (Number.isSafeInteger(o.offset) && (o.offset as number) >= 0) return { offset: o.offset as number }
      throw badField(where, `${field}.offset`, 'must be an integer >= 0')
    }
    if (keys.length === 1 && keys[0] === 'timestamp') return { timestamp: parseTimestamp(o.timestamp, where, `${field}.timestamp`) }
  }
  throw badField(where, field, 'must be "earliest", "latest", { "offset": n } or { "timestamp": ms or ISO 8601 }')
}
