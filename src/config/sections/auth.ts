import { ConfigError } from '../errors.js'
import type { Section } from '../section.js'
import { key } from '../section.js'
import { BadValue, bool, integer, optionalText, type SectionContext } from '../values.js'
import { apiHost, type ApiSection } from './api.js'
import type { BrokerSection } from './broker.js'
import { isLoopback, type ListenerSection } from './listeners.js'

// Who may connect and what they may touch: the password file, the ACL file, client certificates
// as identities, JWT, API tokens and the failed-login throttle. The files are read at start and
// again on SIGHUP (src/auth/authentication.ts); this section only names them.

export interface AuthSection {
  passwordFile: string | null
  aclFile: string | null
  /** The verified client certificate's subject CN is the user name (mosquitto's option). */
  useIdentityAsUsername: boolean
  jwtSecretFile: string | null
  jwtJwksFile: string | null
  jwtIssuer: string | null
  jwtAudience: string | null
  jwtAclClaim: string
  /** Failed logins allowed per minute and source address, MQTT and HTTP together (0 = no limit). */
  loginFailuresPerMinute: number
  /** HTTP API bearer tokens: name -> scrypt hash of the token (`culex token <name>` makes both). */
  apiTokens: Record<string, string>
}

/** API token names: they are part of the token (`culex_<name>_<secret>`) and ACL user names. */
export const TOKEN_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/
const PHC_SCRYPT = /^\$scrypt\$ln=\d+,r=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/

function nonNegative(raw: unknown): number {
  const n = integer(raw)
  if (n === null || n < 0 || n > 1_000_000) throw new BadValue()
  return n
}

function claimName(raw: unknown): string {
  const s = optionalText(raw)
  if (s === null) throw new BadValue()
  return s
}

function parseApiTokens(raw: unknown, ctx: SectionContext): Record<string, string> {
  if (raw === null || raw === undefined) return {}
  // the value may be a token pasted in the wrong place: never shown
  if (typeof raw !== 'object' || Array.isArray(raw)) ctx.bad('api-tokens', '(hidden)', 'a mapping of token names to hashes (culex token <name> prints one)')
  const out: Record<string, string> = {}
  for (const [name, hash] of Object.entries(raw)) {
    if (!TOKEN_NAME.test(name)) {
      const shown = name.startsWith('culex_') ? '(a token, not shown)' : JSON.stringify(name)
      throw new ConfigError(`invalid token name ${shown} under api-tokens in ${ctx.origin}; expected 1-64 of a-z, 0-9 and -`)
    }
    if (typeof hash !== 'string' || !PHC_SCRYPT.test(hash)) {
      ctx.bad(`api-tokens.${name}`, '(hidden)', 'a scrypt hash such as $scrypt$ln=14,r=8,p=1$...$... (culex token <name> prints one; never the token itself)')
    }
    out[name] = hash
  }
  return out
}

type All = AuthSection & BrokerSection & ListenerSection & ApiSection

export const authSection: Section<AuthSection, All> = {
  name: 'auth',
  defaults: {
    passwordFile: null,
    aclFile: null,
    useIdentityAsUsername: false,
    jwtSecretFile: null,
    jwtJwksFile: null,
    jwtIssuer: null,
    jwtAudience: null,
    jwtAclClaim: 'acl',
    loginFailuresPerMinute: 10,
    apiTokens: {}
  },
  keys: {
    'password-file': key({
      field: 'passwordFile',
      parse: optionalText,
      expected: 'a file path',
      help: 'users and scrypt password hashes (culex passwd edits it)'
    }),
    'acl-file': key({ field: 'aclFile', parse: optionalText, expected: 'a file path', help: 'topic and stream rights per user (mosquitto acl_file format)' }),
    'use-identity-as-username': key({
      field: 'useIdentityAsUsername',
      parse: bool,
      expected: 'true or false',
      help: "a verified client certificate's subject CN is the user name (needs tls-ca)"
    }),
    'jwt-secret-file': key({ field: 'jwtSecretFile', parse: optionalText, expected: 'a file path', help: 'HMAC secret for JWT passwords (HS256/384/512)' }),
    'jwt-jwks-file': key({
      field: 'jwtJwksFile',
      parse: optionalText,
      expected: 'a file path',
      help: 'JSON Web Key Set for JWT passwords (RS, PS, ES, EdDSA)'
    }),
    'jwt-issuer': key({ field: 'jwtIssuer', parse: optionalText, expected: 'a string', help: 'required iss claim of JWT passwords' }),
    'jwt-audience': key({ field: 'jwtAudience', parse: optionalText, expected: 'a string', help: 'required aud claim of JWT passwords' }),
    'jwt-acl-claim': key({
      field: 'jwtAclClaim',
      parse: claimName,
      expected: 'a claim name',
      help: 'claim of a JWT with the filters its client may publish and subscribe to'
    }),
    'login-failures-per-minute': key({
      field: 'loginFailuresPerMinute',
      parse: nonNegative,
      expected: 'an integer from 0 to 1000000 (0 = no limit)',
      help: 'failed logins per minute and source address before further attempts are refused'
    })
  },
  structured: {
    'api-tokens': (raw, ctx) => ({ apiTokens: parseApiTokens(raw, ctx) })
  },
  check(c) {
    if (c.useIdentityAsUsername && c.tlsCa === null)
      throw new ConfigError('use-identity-as-username needs tls-ca (clients must present certificates it verifies)')
    if (c.jwtSecretFile !== null && c.jwtJwksFile !== null) throw new ConfigError('jwt-secret-file and jwt-jwks-file exclude each other; give one')
    if ((c.jwtIssuer !== null || c.jwtAudience !== null) && !jwtEnabled(c))
      throw new ConfigError('jwt-issuer and jwt-audience need jwt-secret-file or jwt-jwks-file')
    if (!isLoopback(c.host) && c.allowAnonymous !== true && !mqttCredentialsConfigured(c)) {
      // Security by default: beyond localhost, clients must authenticate, or anonymous access must be an explicit decision.
      throw new ConfigError(
        `host ${c.host} is not loopback: clients there must authenticate, and no authentication is configured; ` +
          'set password-file, jwt-secret-file, jwt-jwks-file or use-identity-as-username, or set allow-anonymous to true to accept anonymous clients on this address'
      )
    }
  }
}

export function jwtEnabled(c: AuthSection): boolean {
  return c.jwtSecretFile !== null || c.jwtJwksFile !== null
}

/** Whether MQTT clients have a way to authenticate other than anonymously. */
export function mqttCredentialsConfigured(c: AuthSection): boolean {
  return c.passwordFile !== null || jwtEnabled(c) || c.useIdentityAsUsername
}

/**
 * Whether clients without credentials are accepted. Unless allow-anonymous says: only on
 * loopback and only while no credentials are configured (mosquitto without a config accepts
 * anonymous local clients; with a password file, an operator expects it to be used).
 */
export function anonymousAllowed(c: Pick<All, 'allowAnonymous' | 'host'> & AuthSection): boolean {
  return c.allowAnonymous ?? (isLoopback(c.host) && !mqttCredentialsConfigured(c))
}

/**
 * Whether the HTTP API requires credentials: whenever it is bound beyond loopback, and whenever
 * MQTT clients must authenticate.
 */
export function apiCredentialsRequired(c: All): boolean {
  return !isLoopback(apiHost(c)) || !anonymousAllowed(c)
}
