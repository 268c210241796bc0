import { readFile } from 'node:fs/promises'
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import type { AuthDecision, BrokerHook, ConnectInfo, TopicGrants } from '../broker/hooks.js'
import { CulexError } from '../errors.js'
import { topicFilterProblem } from '../mqtt/topics.js'

// JSON Web Tokens as MQTT passwords (jose): a device presents a token signed by the operator's
// key instead of a password in the file. The token must carry `exp`; the broker disconnects the
// client when it passes. `sub` is the user name (for the ACL file's `user` sections and `%u`); a
// CONNECT user name, if given, must equal it. An optional claim (default `acl`, EMQX's format)
// lists the filters the client may publish to and subscribe to, and then stands in for the ACL
// file for that client: `{ "pub": ["devices/d7/#"], "sub": ["commands/d7/#"], "all": [] }`.

export interface JwtOptions {
  /** A file holding an HMAC secret (HS256/384/512). */
  secretFile: string | null
  /** A JWKS file (RFC 7517) of public keys (RS*, PS*, ES*, EdDSA). */
  jwksFile: string | null
  issuer: string | null
  audience: string | null
  /** The claim with the topic grants. */
  aclClaim: string
}

const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512']
const PUBLIC_KEY_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']

/** An HMAC secret shorter than this is refused: HS256 wants at least its hash size (RFC 7518 §3.2). */
const MIN_SECRET_BYTES = 32

export class JwtKeyError extends CulexError<'JWT_KEYS'> {
  constructor(message: string) {
    super('JWT_KEYS', message)
  }
}

/** Three base64url parts, the first a JSON header: a JWT, not a password someone typed. */
export function looksLikeJwt(password: Buffer): boolean {
  if (password.length < 20 || password.length > 16_384 || password[0] !== 0x65 /* 'e' of '{"' encoded */) return false
  return /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(password.toString('latin1'))
}

type Key = { kind: 'secret'; secret: Uint8Array } | { kind: 'jwks'; keys: JWTVerifyGetKey }

async function loadKey(options: JwtOptions): Promise<Key> {
  if (options.secretFile !== null) {
    let text: string
    try {
      text = (await readFile(options.secretFile, 'utf8')).trim()
    } catch (err) {
      throw new JwtKeyError(`cannot read jwt-secret-file ${options.secretFile}: ${(err as Error).message}`)
    }
    const secret = new TextEncoder().encode(text)
    if (secret.length < MIN_SECRET_BYTES)
      throw new JwtKeyError(`jwt-secret-file ${options.secretFile}: the secret has ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are needed`)
    return { kind: 'secret', secret }
  }
  if (options.jwksFile !== null) {
    let jwks: unknown
    try {
      jwks = JSON.parse(await readFile(options.jwksFile, 'utf8'))
    } catch (err) {
      throw new JwtKeyError(`cannot read jwt-jwks-file ${options.jwksFile}: ${(err as Error).message}`)
    }
    if (typeof jwks !== 'object' || jwks === null || !Array.isArray((jwks as { keys?: unknown }).keys)) {
      throw new JwtKeyError(`jwt-jwks-file ${options.jwksFile}: expected a JSON Web Key Set ({"keys": [...]})`)
    }
    return { kind: 'jwks', keys: createLocalJWKSet(jwks as JSONWebKeySet) }
  }
  throw new JwtKeyError('JWT authentication needs jwt-secret-file or jwt-jwks-file')
}

export interface VerifiedToken {
  subject: string | null
  expiresAt: number
  grants: TopicGrants | null
}

export class TokenRefused extends Error {}

function grantsFrom(claim: unknown, name: string): TopicGrants {
  if (typeof claim !== 'object' || claim === null || Array.isArray(claim))
    throw new TokenRefused(`claim "${name}" must be an object with pub, sub and all lists`)
  const list = (field: 'pub' | 'sub' | 'all'): string[] => {
    const v = (claim as Record<string, unknown>)[field]
    if (v === undefined) return []
    if (!Array.isArray(v) || v.some((f) => typeof f !== 'string')) throw new TokenRefused(`claim "${name}.${field}" must be a list of topic filters`)
    const filters = v as string[]
    for (const f of filters) {
      const problem = topicFilterProblem(f)
      if (problem) throw new TokenRefused(`claim "${name}.${field}": ${JSON.stringify(f)} is not a topic filter: ${problem}`)
    }
    return filters
  }
  const all = list('all')
  return { publish: [...list('pub'), ...all], subscribe: [...list('sub'), ...all] }
}

export class JwtVerifier {
  private constructor(
    private readonly options: JwtOptions,
    private key: Key
  ) {}

  static async load(options: JwtOptions): Promise<JwtVerifier> {
    return new JwtVerifier(options, await loadKey(options))
  }

  /** Re-reads the key file; on failure the old key stays and the error is thrown. */
  async reload(): Promise<void> {
    this.key = await loadKey(this.options)
  }

  async verify(token: string): Promise<VerifiedToken> {
    let payload: JWTPayload
    try {
      const common = {
        requiredClaims: ['exp'],
        ...(this.options.issuer !== null ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience !== null ? { audience: this.options.audience } : {})
      }
      const key = this.key
      payload =
        key.kind === 'secret'
          ? (await jwtVerify(token, key.secret, { ...common, algorithms: HMAC_ALGORITHMS })).payload
          : (await jwtVerify(token, key.keys, { ...common, algorithms: PUBLIC_KEY_ALGORITHMS })).payload
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new TokenRefused('token expired')
      if (err instanceof errors.JOSEError) throw new TokenRefused(`token refused: ${err.code}: ${err.message}`)
      throw err
    }
    const claim = payload[this.options.aclClaim]
    return {
      subject: typeof payload.sub === 'string' && payload.sub.length > 0 ? payload.sub : null,
      expiresAt: (payload.exp ?? 0) * 1000,
      grants: claim === undefined ? null : grantsFrom(claim, this.options.aclClaim)
    }
  }
}

export function tokenAuthenticator(verifier: JwtVerifier): BrokerHook {
  return {
    name: 'jwt',
    stage: 'authenticate',
    authenticate: async (connect: ConnectInfo): Promise<AuthDecision | undefined> => {
      if (connect.password === undefined || !looksLikeJwt(connect.password)) return undefined
      try {
        const token = await verifier.verify(connect.password.toString('latin1'))
        // 3.1.1 sends a password only beside a user name [MQTT-3.1.2-22]: a client holding only
        // a token sends an empty one, which names nobody
        const claimed = connect.username === undefined || connect.username === '' ? null : connect.username
        if (claimed !== null && token.subject !== null && claimed !== token.subject) {
          return { allow: false, returnCode: 4, reason: `the token is for "${token.subject}", not "${claimed}"` }
        }
        const username = token.subject ?? claimed
        return { allow: true, method: 'token', username, expiresAt: token.expiresAt, ...(token.grants ? { grants: token.grants } : {}) }
      } catch (err) {
        if (err instanceof TokenRefused) return { allow: false, returnCode: 4, reason: err.message }
        throw err
      }
    }
  }
}
