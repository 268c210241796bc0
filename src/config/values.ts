import { ConfigError } from './errors.js'

// Parsers for config values. Each returns the value or throws BadValue; the caller knows the key
// and the origin and turns that into a ConfigError that names them (see keys.ts, context.ts).

export class BadValue extends Error {}

export function text(raw: unknown): string {
  if (typeof raw === 'string' && raw.length > 0) return raw
  if (typeof raw === 'number') return String(raw)
  throw new BadValue()
}

/** A string, or null for absent / '' / 'off'. */
export function optionalText(raw: unknown): string | null {
  if (raw === null || raw === '' || raw === 'off') return null
  return text(raw)
}

/** A listener port: 0-65535 (0 = any free port), or null for 'off'. */
export function port(raw: unknown): number | null {
  if (raw === null || raw === 'off' || raw === false) return null
  const n = integer(raw)
  if (n === null || n < 0 || n > 65535) throw new BadValue()
  return n
}

/** A safe integer from a number or a string of digits, or null. */
export function integer(raw: unknown): number | null {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN
  return Number.isSafeInteger(n) ? n : null
}

/** An integer >= 1, or null when not one. */
export function positiveInteger(raw: unknown): number | null {
  const n = integer(raw)
  return n !== null && n >= 1 ? n : null
}

export function positiveInt(raw: unknown): number {
  return positiveInteger(raw) ?? badValue()
}

export function bool(raw: unknown): boolean {
  if (raw === true || raw === 'true' || raw === '1' || raw === 'yes') return true
  if (raw === false || raw === 'false' || raw === '0' || raw === 'no') return false
  throw new BadValue()
}

export function oneOf<T extends string>(values: readonly T[]): (raw: unknown) => T {
  return (raw) => {
    if (typeof raw === 'string' && (values as readonly string[]).includes(raw)) return raw as T
    throw new BadValue()
  }
}

function badValue(): never {
  throw new BadValue()
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const BYTE_UNITS: Record<string, number> = {
  B: 1,
  kB: 1e3,
  KiB: 2 ** 10,
  MB: 1e6,
  MiB: 2 ** 20,
  GB: 1e9,
  GiB: 2 ** 30,
  TB: 1e12,
  TiB: 2 ** 40
}

/** Milliseconds from a number (ms) or a duration such as 500ms, 30s, 15m, 12h, 7d; null when not valid. */
export function parseDuration(raw: unknown): number | null {
  const plain = positiveInteger(raw)
  if (plain !== null) return plain
  if (typeof raw !== 'string') return null
  const m = /^(\d+)\s*(ms|s|m|h|d)$/.exec(raw.trim())
  const unit = m?.[2] === undefined ? undefined : DURATION_UNITS[m[2]]
  if (!m || unit === undefined) return null
  const ms = Number(m[1]) * unit
  return Number.isSafeInteger(ms) && ms >= 1 ? ms : null
}

/** Bytes from a number or a size string (decimal kB/MB/GB/TB, binary KiB/MiB/GiB/TiB); null when not valid. */
export function parseByteSize(raw: unknown): number | null {
  const plain = positiveInteger(raw)
  if (plain !== null) return plain
  if (typeof raw !== 'string') return null
  const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]+)$/.exec(raw.trim())
  const unit = m?.[2] === undefined ? undefined : BYTE_UNITS[m[2]]
  if (!m || unit === undefined) return null
  const bytes = Math.floor(Number(m[1]) * unit)
  return Number.isSafeInteger(bytes) && bytes >= 1 ? bytes : null
}

export const DURATION_EXPECTED = 'a positive number of milliseconds or a duration such as 500ms, 30s, 15m, 12h, 7d'
export const BYTE_SIZE_EXPECTED = 'a positive number of bytes or a size such as 10kB, 10KiB, 100MB, 100MiB, 1GB, 1GiB'

/** Where a section's values came from, for messages: `config file culex.yaml`. */
export class SectionContext {
  constructor(readonly origin: string) {}

  /** Throws a ConfigError for the value at `path`. */
  bad(path: string, raw: unknown, expected: string): never {
    throw new ConfigError(`invalid value for ${path} in ${this.origin}: ${show(raw)}; expected ${expected}`)
  }

  /** A mapping with only the known keys. */
  mapping(path: string, raw: unknown, known: readonly string[], expected: string): Record<string, unknown> {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) this.bad(path, raw, expected)
    for (const k of Object.keys(raw)) {
      if (!known.includes(k)) throw new ConfigError(`unknown key "${k}" in ${path} in ${this.origin}; known keys: ${known.join(', ')}`)
    }
    return raw as Record<string, unknown>
  }
}

export function show(raw: unknown): string {
  return raw === undefined ? 'undefined' : JSON.stringify(raw)
}
