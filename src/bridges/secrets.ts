import type { SectionContext } from '../config/values.js'

// Secrets in a bridge's config (passwords, tokens, HMAC keys): given literally or named by an
// environment variable (`<key>-env`), never echoed in an error, and shown as `(hidden)` when the
// parsed options are serialised, so a status page or a log line cannot leak them.

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** The value of the environment variable `raw` names; a ConfigError when it is no name or not set. */
export function envValue(ctx: SectionContext, path: string, raw: unknown): string {
  if (typeof raw !== 'string' || !ENV_NAME.test(raw)) ctx.bad(path, raw, 'the name of an environment variable')
  const value = process.env[raw]
  if (value === undefined || value === '') ctx.bad(path, raw, `an environment variable that is set (${raw} is not set or empty)`)
  return value
}

/** A secret from `<key>` or `<key>-env` (never both), or null when neither is given. */
export function secret(ctx: SectionContext, m: Record<string, unknown>, path: string, key: string): string | null {
  const literal = m[key]
  const env = m[`${key}-env`]
  if (literal !== undefined && literal !== null && env !== undefined && env !== null) ctx.bad(`${path}.${key}-env`, env, `${key} or ${key}-env, not both`)
  if (env !== undefined && env !== null) return envValue(ctx, `${path}.${key}-env`, env)
  if (literal === undefined || literal === null) return null
  // the value itself is never echoed in the message
  if (typeof literal !== 'string' || literal === '') ctx.bad(`${path}.${key}`, '(hidden)', 'a non-empty text')
  return literal
}

/**
 * Gives `options` a toJSON (not enumerable: the options stay a plain record to spread or compare)
 * that shows `(hidden)` for each of `keys` that is set.
 */
export function hideSecrets<T extends object>(options: T, keys: ReadonlyArray<keyof T>): T {
  Object.defineProperty(options, 'toJSON', {
    enumerable: false,
    value: () => ({ ...options, ...Object.fromEntries(keys.map((k) => [k, options[k] === null ? null : '(hidden)'])) })
  })
  return options
}

/**
 * A URL of one of `protocols` (e.g. ['http:', 'https:']) with no user:password in it: credentials
 * go in their own keys, where they can come from the environment and are hidden.
 */
export function urlWithoutCredentials(ctx: SectionContext, path: string, raw: unknown, protocols: readonly string[], expected: string): URL {
  if (typeof raw !== 'string') ctx.bad(path, raw, expected)
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    ctx.bad(path, raw, expected)
  }
  if (!protocols.includes(url.protocol) || url.username !== '' || url.password !== '') ctx.bad(path, raw, expected)
  return url
}
