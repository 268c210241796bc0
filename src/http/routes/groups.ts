import type { FastifyInstance, FastifyRequest } from 'fastify'
import { SESSION_TIMEOUT, type ConsumerGroups, type Membership } from '../../log/groups/types.js'
import { may, need } from '../auth.js'
import { toApiRecord } from '../encoding.js'
import { holdRequest, keepMemberAlive } from '../long-poll.js'
import { offsetSpecSchema, parseOffsetSpec } from '../positions.js'
import { LIMITS, encodingSchema, groupParams, memberParams, offsetsSchema, type GroupParams, type MemberParams } from '../schemas.js'
import type { CommitRequest, FetchRequest, FetchResponse, GroupList, JoinRequest } from '../wire.js'

// Consumer groups over HTTP: join / heartbeat / leave, fetch (long-poll), commit, describe, reset.
// Offsets committed are "next offset to consume", as in Kafka.

const joinBody = {
  type: 'object',
  required: ['streams'],
  additionalProperties: false,
  properties: {
    streams: { type: 'array', minItems: 1, maxItems: 100, items: { type: 'string', minLength: 1, maxLength: 128 } },
    sessionTimeoutMs: { type: 'integer', minimum: SESSION_TIMEOUT.min, maximum: SESSION_TIMEOUT.max },
    clientId: { type: 'string', maxLength: 256 },
    autoOffsetReset: { type: 'string', enum: ['earliest', 'latest'] },
    memberId: { type: 'string', minLength: 1, maxLength: 128 }
  }
} as const

const fetchBody = {
  // no body at all (null here) means every default
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    maxRecords: { type: 'integer', minimum: 1, maximum: LIMITS.readRecords, default: LIMITS.defaultReadRecords },
    maxBytes: { type: 'integer', minimum: 1, maximum: LIMITS.readBytes, default: LIMITS.defaultReadBytes },
    waitMs: { type: 'integer', minimum: 0, maximum: LIMITS.waitMs, default: 0 },
    encoding: { ...encodingSchema, default: 'base64' }
  }
} as const

const commitBody = { type: 'object', required: ['offsets'], additionalProperties: false, properties: { offsets: offsetsSchema } } as const

interface ResetBody {
  stream: string
  to: unknown
}

const resetBody = {
  type: 'object',
  required: ['stream', 'to'],
  additionalProperties: false,
  properties: { stream: { type: 'string', minLength: 1, maxLength: 128 }, to: offsetSpecSchema }
} as const

export function groupRoutes(app: FastifyInstance, groups: ConsumerGroups, closing: AbortSignal): void {
  const base = '/api/v1/groups/:group'
  const memberBase = `${base}/members/:member`

  // the groups whose every stream the caller may consume
  app.get('/api/v1/groups', async (request): Promise<GroupList> => ({
    groups: (await groups.list()).filter((g) => g.streams.every((s) => may(request, 'groups', s)))
  }))

  app.get<{ Params: GroupParams }>(base, { schema: { params: groupParams } }, async (request) => {
    const description = await groups.describe(request.params.group)
    need(request, 'groups', ...new Set(description.partitions.map((p) => p.stream)))
    return description
  })

  app.post<{ Params: GroupParams; Body: JoinRequest }>(`${base}/members`, { schema: { params: groupParams, body: joinBody } }, async (request) => {
    need(request, 'groups', ...request.body.streams)
    // rejoining as an existing member takes it over: that needs the right on what it consumes now
    const { memberId } = request.body
    if (memberId !== undefined) need(request, 'groups', ...(groups.memberStreams(request.params.group, memberId) ?? []))
    return groups.join(request.params.group, request.body)
  })

  app.post<{ Params: MemberParams }>(`${memberBase}/heartbeat`, { schema: { params: memberParams } }, async (request) =>
    memberOf(request, groups, request.params)
  )

  app.delete<{ Params: MemberParams }>(memberBase, { schema: { params: memberParams } }, async (request, reply) => {
    memberOf(request, groups, request.params)
    groups.leave(request.params.group, request.params.member)
    return reply.code(204).send()
  })

  app.post<{ Params: MemberParams; Body: FetchRequest | undefined }>(
    `${memberBase}/fetch`,
    { schema: { params: memberParams, body: fetchBody } },
    async (request, reply): Promise<FetchResponse> => {
      const { group, member } = request.params
      memberOf(request, groups, request.params)
      const body = request.body ?? { maxRecords: LIMITS.defaultReadRecords, maxBytes: LIMITS.defaultReadBytes, waitMs: 0, encoding: 'base64' }
      const held = holdRequest(reply, closing)
      const controller = new AbortController()
      held.signal.addEventListener('abort', () => controller.abort(), { once: true })
      // the member may be removed while we wait (left, or ended elsewhere): stop waiting then
      const stopHeartbeats = body.waitMs > 0 ? keepMemberAlive(groups, group, member, () => controller.abort()) : () => {}
      try {
        const result = await groups.fetch(group, member, {
          maxRecords: body.maxRecords,
          maxBytes: body.maxBytes,
          waitMs: body.waitMs,
          signal: controller.signal
        })
        return {
          memberId: result.memberId,
          generation: result.generation,
          assignments: result.assignments,
          records: result.records.map((r) => toApiRecord(r, body.encoding))
        }
      } finally {
        stopHeartbeats()
        held.done()
      }
    }
  )

  app.post<{ Params: MemberParams; Body: CommitRequest }>(`${memberBase}/commit`, { schema: { params: memberParams, body: commitBody } }, async (request) => {
    memberOf(request, groups, request.params)
    need(request, 'groups', ...new Set(request.body.offsets.map((o) => o.stream)))
    await groups.commit(request.params.group, request.params.member, request.body.offsets)
    return { offsets: request.body.offsets }
  })

  app.post<{ Params: GroupParams; Body: ResetBody }>(`${base}/reset`, { schema: { params: groupParams, body: resetBody } }, async (request) => {
    need(request, 'groups', request.body.stream)
    return { offsets: await groups.reset(request.params.group, request.body.stream, parseOffsetSpec(request.body.to, 'body', 'to')) }
  })
}

/**
 * A member's routes (heartbeat, fetch, commit, leave, push) need the groups right on the streams
 * it joined with: a member id someone else got is no way to read a stream one may not. Checked
 * before the heartbeat each of these routes counts as, so a refused caller keeps nobody alive.
 */
export function memberOf(request: FastifyRequest, groups: ConsumerGroups, params: MemberParams): Membership {
  need(request, 'groups', ...(groups.memberStreams(params.group, params.member) ?? []))
  // an unknown member: UNKNOWN_MEMBER (404) from here
  return groups.heartbeat(params.group, params.member)
}
