import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { GroupError } from '../log/groups/types.js'
import { CulexError } from '../errors.js'
import { LogError } from '../log/types.js'
import { ShareConfigError } from '../log/shared/config.js'
import { ShareError } from '../log/shared/shared-groups.js'
import { ApiError, type ErrorBody } from './wire.js'

export { ApiError, type ErrorBody }

// One place that turns errors into HTTP answers. Every error body is JSON
// `{ error: CODE, message, ...details }`; CODE is stable, message is for people.

/** A 400 about one input field; `field` is a path such as `records[0].value`. */
export type FieldLocation = 'body' | 'query' | 'path' | 'frame' | 'header'

export function badField(where: FieldLocation, field: string, problem: string): ApiError {
  return new ApiError(400, 'INVALID_ARGUMENT', `${describeField(where, field)} ${problem}`, { field, in: where })
}

export function describeField(where: FieldLocation, field: string): string {
  const kind = { body: 'body field', query: 'query parameter', path: 'path parameter', frame: 'frame field', header: 'header' }[where]
  return field === '' ? `request ${where}` : `${kind} ${field}`
}

const LOG_STATUS: Record<LogError['code'], number> = {
  UNKNOWN_STREAM: 404,
  UNKNOWN_PARTITION: 404,
  OFFSET_OUT_OF_RANGE: 400,
  INVALID_ARGUMENT: 400,
  STREAM_EXISTS: 409,
  IDEMPOTENCY_CONFLICT: 422
}

const GROUP_STATUS: Record<GroupError['code'], number> = {
  UNKNOWN_MEMBER: 404,
  UNKNOWN_GROUP: 404,
  NOT_ASSIGNED: 409,
  GROUP_ACTIVE: 409,
  INVALID_ARGUMENT: 400
}

const SHARE_STATUS: Record<ShareError['code'], number> = { UNKNOWN_GROUP: 404, UNKNOWN_STREAM: 404, INVALID_ARGUMENT: 400 }

/** The store's codes (src/store/errors.ts). */
const STORE_STATUS: Record<string, number> = { STORE_FULL: 507, STORE_FAILED: 503 }

/** fastify's own client errors, by their code. */
const FASTIFY_CODES: Record<string, { status: number; code: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'PAYLOAD_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'BAD_REQUEST' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'INVALID_ARGUMENT' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'INVALID_JSON' }
}

export interface ErrorResponse {
  status: number
  body: ErrorBody
  /** True when the error is a bug or an outage (5xx): log it, do not show its message. */
  internal: boolean
}

/** Maps any thrown value to a status and a JSON body. */
export function toErrorResponse(err: unknown): ErrorResponse {
  if (err instanceof ApiError) return client(err.statusCode, err.code, err.message, err.details)
  if (err instanceof LogError) return client(LOG_STATUS[err.code], err.code, err.message, err.details)
  if (err instanceof GroupError) return client(GROUP_STATUS[err.code], err.code, err.message, err.details)
  if (err instanceof ShareError) return client(SHARE_STATUS[err.code], err.code, err.message, err.details)
  if (err instanceof ShareConfigError) return client(400, err.code, err.message, { ...err.details, in: 'body' })
  // the store refused the write: 507 Insufficient Storage when the disk is full, 503 otherwise;
  // the client may retry (elsewhere, or here once the gateway has been restarted with room)
  if (err instanceof CulexError) {
    const { code, message } = err as CulexError
    const status = STORE_STATUS[code]
    if (status !== undefined) return { status, body: { error: code, message, retriable: true }, internal: false }
  }
  const fe = err as Partial<FastifyError> | null
  if (fe && typeof fe === 'object' && typeof fe.code === 'string') {
    const known = FASTIFY_CODES[fe.code]
    if (known) return client(known.status, known.code, fe.message ?? known.code, {})
  }
  // other client errors fastify raises (e.g. bad JSON from the parser): keep their 4xx status
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return client(fe.statusCode, fe.statusCode === 400 ? 'BAD_REQUEST' : (fe.code ?? 'BAD_REQUEST'), fe.message ?? 'bad request', {})
  }
  return { status: 500, body: { error: 'INTERNAL', message: 'internal error; see the server log' }, internal: true }
}

function client(status: number, code: string, message: string, details: Record<string, unknown>): ErrorResponse {
  return { status, body: { ...details, error: code, message }, internal: false }
}

export function errorHandler(logger: Logger) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    const { status, body, internal } = toErrorResponse(err)
    if (internal) logger.error({ err, method: request.method, url: request.url }, 'HTTP API request failed')
    else logger.debug({ method: request.method, url: request.url, status, error: body.error }, 'HTTP API client error')
    void reply.code(status).type('application/json; charset=utf-8').send(body)
  }
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  void reply.code(404).send({ error: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` } satisfies ErrorBody)
}
