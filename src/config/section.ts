import type { SectionContext } from './values.js'

// A config section: the keys of one concern (listeners, store, log streams, ...), their
// defaults, their parsers and the checks that span its keys. config/index.ts merges the sections;
// a new concern (auth, limits, bridges) is a new section file, not a change to the loader.

/**
 * A flat key: one name in the config file, as `--flag` and as `CULEX_` environment variable.
 * `parse` returns the value or throws BadValue; the loader names the key and the origin.
 */
export interface KeySpec<C, F extends keyof C = keyof C> {
  field: F
  help: string
  /** What is allowed, for messages and --help. */
  expected: string
  parse: (raw: unknown) => C[F]
}

/**
 * A structured key (a mapping or a list), accepted in the config file only. `parse` sees the raw
 * value, a context for messages, and the config resolved so far (routes need the streams).
 */
export type StructuredParser<C, All> = (raw: unknown, ctx: SectionContext, config: All) => Partial<C>

export interface Section<C, All = C> {
  name: string
  defaults: C
  keys: Record<string, KeySpec<C>>
  structured?: Record<string, StructuredParser<C, All>>
  /** Checks across keys (and sections), on the resolved config; throws ConfigError. */
  check?: (config: All) => void
}

/** Types a key spec against its section's config. */
export function key<C, F extends keyof C>(spec: KeySpec<C, F>): KeySpec<C> {
  return spec
}
