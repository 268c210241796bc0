import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ApiError } from './errors.js'

// Who is calling the HTTP API, and whether they may do this to that stream. Credentials are a
// bearer token (`Authorization: Bearer culex_<name>_<secret>`, from `api-tokens`) or HTTP Basic
// against the password file. They are required whenever the API is bound beyond loopback or MQTT
// clients must authenticate (config/sections/auth.ts): 401 without a valid credential, 403 when
// the ACL file gives the user no such right on the stream, 429 while the address is over its
// failed-login budget. Without required credentials an anonymous caller may do what the ACL
// file's anonymous section allows (everything without an ACL file, as before); a caller who sends
// a credential anyway is checked.

export type StreamRight = 'read' | 'produce' | 'groups' | 'replay'
export const STREAM_RIGHTS: readonly StreamRight[] = ['read', 'produce', 'groups', 'replay']

/** What the API needs from the auth module (src/auth/authentication.ts implements it). */
export interface ApiAccess {
  readonly required: boolean
  /** The token's user name, or null when it is not valid. */
  bearer(token: string): Promise<string | null>
  basic(username: string, password: Buffer): Promise<boolean>
  /**
   * Rights of a user (from the ACL file's `stream` lines; every right without an ACL file). null:
   * an anonymous caller where credentials are not required, held to the file's anonymous lines.
   */
  allows(username: string | null, right: StreamRight, stream: string): boolean
  /** ms until this address may try again (0: now). */
  blocked(address: string): number
  failed(address: string, reason: string): void
}

/** The caller of a request: a user name, or null for an anonymous caller where credentials are not required. */
export interface ApiCaller {
  readonly name: string | null
  allows(right: StreamRight, stream: string): boolean
}

const CALLER = Symbol('api caller')
type Identified = FastifyRequest & { [CALLER]?: ApiCaller }

/** The caller of a server without access control (tests, embedding): anything goes. */
const UNCHECKED: ApiCaller = { name: null, allows: () => true }
const CHALLENGE = 'Bearer realm="culex", Basic realm="culex", charset="UTF-8"'

function named(access: ApiAccess, name: string | null): ApiCaller {
  return { name, allows: (right, stream) => access.allows(name, right, stream) }
}

async function identify(access: ApiAccess, header: string | undefined): Promise<ApiCaller | string> {
  if (header === undefined || header === '') return access.required ? 'credentials are required (a bearer token or HTTP Basic)' : named(access, null)
  const space = header.indexOf(' ')
  const scheme = header.slice(0, space).toLowerCase()
  const value = header.slice(space + 1).trim()
  if (space < 0 || value === '') return 'the Authorization header has no credential'
  if (scheme === 'bearer') {
    const name = await access.bearer(value)
    return name === null ? 'the bearer token is not valid' : named(access, name)
  }
  if (scheme === 'basic') {
    const decoded = Buffer.from(value, 'base64')
    const colon = decoded.indexOf(0x3a)
    if (colon <= 0) return 'HTTP Basic credentials must be user:password'
    const username = decoded.subarray(0, colon).toString('utf8')
    return (await access.basic(username, decoded.subarray(colon + 1))) ? named(access, username) : 'wrong user name or password'
  }
  return `unknown authorization scheme "${scheme}"; use Bearer or Basic`
}

/** Every request is identified before its route runs (and before a WebSocket upgrade). */
export function authenticateRequests(app: FastifyInstance, access: ApiAccess | null): void {
  if (access === null) return
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // probes (/healthz, /readyz) send no credentials; such routes reveal no data (routes/health.ts)
    if ((request.routeOptions.config as { anonymous?: boolean } | undefined)?.anonymous === true) return
    const address = request.socket.remoteAddress ?? 'unknown'
    const waitMs = access.blocked(address)
    if (waitMs > 0) {
      void reply.header('retry-after', String(Math.ceil(waitMs / 1000)))
      throw new ApiError(429, 'TOO_MANY_FAILED_LOGINS', `too many failed logins from this address; retry in ${Math.ceil(waitMs / 1000)} s`)
    }
    const caller = await identify(access, request.headers.authorization)
    if (typeof caller === 'string') {
      if (request.headers.authorization !== undefined) access.failed(address, caller)
      void reply.header('www-authenticate', CHALLENGE)
      throw new ApiError(401, 'UNAUTHENTICATED', caller)
    }
    ;(request as Identified)[CALLER] = caller
  })
}

export function callerOf(request: FastifyRequest): ApiCaller {
  return (request as Identified)[CALLER] ?? UNCHECKED
}

/** Whether the caller of `request` has `right` on `stream`. */
export function may(request: FastifyRequest, right: StreamRight, stream: string): boolean {
  return callerOf(request).allows(right, stream)
}

/** Throws 403 unless the caller has `right` on every stream given. */
export function need(request: FastifyRequest, right: StreamRight, ...streams: string[]): void {
  for (const stream of streams) {
    if (!may(request, right, stream)) {
      const name = callerOf(request).name
      const who = name === null ? 'anonymous callers have' : `user "${name}" has`
      throw new ApiError(403, 'FORBIDDEN', `${who} no ${right} right on stream "${stream}"`, { right, stream })
    }
  }
}
