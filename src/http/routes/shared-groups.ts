import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { SHARE_LIMITS, deadLetterStream, parseShareConfig, type ShareGroupConfig } from '../../log/shared/config.js'
import { MAX_REDRIVE_SCAN, redrive, type RedriveRequest } from '../../log/shared/redrive.js'
import type { SharedGroups } from '../../log/shared/shared-groups.js'
import type { Log } from '../../log/types.js'
import { may, need } from '../auth.js'
import { toApiRecord } from '../encoding.js'
import { holdRequest } from '../long-poll.js'
import { LIMITS, encodingSchema, groupParams, streamParams, type GroupParams, type StreamParams } from '../schemas.js'
import type { SharedAckRequest, SharedAckResponse, SharedFetchRequest, SharedFetchResponse } from '../wire.js'

// Shared groups over HTTP (src/log/shared/): create or change one with its config, fetch
// (long-poll), answer each record (ack, nack, extend, reject), describe, delete. Every route needs
// the groups right on the group's streams; creating one that dead-letters needs produce on the
// dead-letter streams too, as rejecting a record writes there.

const CONSUMER = { type: 'string', minLength: 1, maxLength: 128 } as const

const fetchBody = {
  type: 'object',
  required: ['consumer'],
  additionalProperties: false,
  properties: {
    consumer: CONSUMER,
    maxRecords: { type: 'integer', minimum: 1, maximum: LIMITS.readRecords, default: LIMITS.defaultReadRecords },
    maxBytes: { type: 'integer', minimum: 1, maximum: LIMITS.readBytes, default: LIMITS.defaultReadBytes },
    waitMs: { type: 'integer', minimum: 0, maximum: LIMITS.waitMs, default: 0 },
    encoding: { ...encodingSchema, default: 'base64' }
  }
} as const

const acksBody = {
  type: 'object',
  required: ['consumer', 'acks'],
  additionalProperties: false,
  properties: {
    consumer: CONSUMER,
    acks: {
      type: 'array',
      minItems: 1,
      maxItems: LIMITS.readRecords,
      items: {
        type: 'object',
        required: ['stream', 'partition', 'offset', 'action'],
        additionalProperties: false,
        properties: {
          stream: { type: 'string', minLength: 1, maxLength: 128 },
          partition: { type: 'integer', minimum: 0 },
          offset: { type: 'integer', minimum: 0 },
          deliveryCount: { type: 'integer', minimum: 1 },
          action: { type: 'string', enum: ['ack', 'nack', 'extend', 'reject'] },
          delayMs: { type: 'integer', minimum: 0, maximum: SHARE_LIMITS.maxDelayMs },
          error: { type: 'string', maxLength: 1024 }
        }
      }
    }
  }
} as const

const redriveBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    requestId: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' },
    partition: { type: 'integer', minimum: 0 },
    fromOffset: { type: 'integer', minimum: 0 },
    toOffset: { type: 'integer', minimum: 0 },
    limit: { type: 'integer', minimum: 1, maximum: MAX_REDRIVE_SCAN },
    filter: {
      type: 'object',
      additionalProperties: false,
      properties: {
        stream: { type: 'string', minLength: 1, maxLength: 128 },
        key: { type: 'string', maxLength: LIMITS.keyLength },
        reason: { type: 'string', enum: ['max-deliveries', 'rejected'] },
        error: { type: 'string', minLength: 1, maxLength: 1024 }
      }
    }
  }
} as const

/** The group's streams: the groups right on each is needed for anything about the group. */
function needGroup(request: FastifyRequest, config: ShareGroupConfig): void {
  need(request, 'groups', ...config.streams)
}

export function sharedGroupRoutes(app: FastifyInstance, groups: SharedGroups, log: Log, closing: AbortSignal): void {
  const base = '/api/v1/shared-groups/:group'

  // dead letters back to where they came from: read on the dead-letter stream, produce on each target
  app.post<{ Params: StreamParams; Body: Partial<RedriveRequest> | null }>(
    '/api/v1/streams/:stream/redrive',
    { schema: { params: streamParams, body: redriveBody } },
    async (request) => {
      need(request, 'read', request.params.stream)
      const body = request.body ?? {}
      return redrive(log, request.params.stream, { ...body, requestId: body.requestId ?? randomUUID() }, (s) => need(request, 'produce', s))
    }
  )

  app.get('/api/v1/shared-groups', async (request) => {
    const out = []
    for (const name of groups.list()) {
      const config = groups.config(name)
      if (!config.streams.every((s) => may(request, 'groups', s))) continue
      const d = await groups.describe(name)
      out.push({ group: name, streams: config.streams, lag: d.lag, deadLettered: d.deadLettered, lagAlert: d.lagAlert })
    }
    return { groups: out }
  })

  app.put<{ Params: GroupParams; Body: unknown }>(base, { schema: { params: groupParams } }, async (request) => {
    const name = request.params.group
    // changing a group needs the rights on what it consumes now, and on what it will
    if (groups.list().includes(name)) needGroup(request, groups.config(name))
    const config = parseShareConfig(request.body)
    need(request, 'groups', ...config.streams)
    need(request, 'produce', ...new Set(config.streams.map((s) => deadLetterStream(config, s))))
    return groups.put(name, request.body)
  })

  app.get<{ Params: GroupParams }>(base, { schema: { params: groupParams } }, async (request) => {
    needGroup(request, groups.config(request.params.group))
    return groups.describe(request.params.group)
  })

  app.delete<{ Params: GroupParams }>(base, { schema: { params: groupParams } }, async (request, reply) => {
    needGroup(request, groups.config(request.params.group))
    await groups.delete(request.params.group)
    return reply.code(204).send()
  })

  app.post<{ Params: GroupParams; Body: SharedFetchRequest }>(
    `${base}/fetch`,
    { schema: { params: groupParams, body: fetchBody } },
    async (request, reply): Promise<SharedFetchResponse> => {
      needGroup(request, groups.config(request.params.group))
      const body = request.body
      const held = holdRequest(reply, closing)
      try {
        const records = await groups.fetch(request.params.group, {
          consumer: body.consumer,
          maxRecords: body.maxRecords,
          maxBytes: body.maxBytes,
          waitMs: body.waitMs,
          signal: held.signal
        })
        if (held.signal.aborted && records.length > 0) {
          // the client went away while the records were acquired: they never reached it
          await groups.acknowledge(
            request.params.group,
            body.consumer,
            records.map((r) => ({ stream: r.stream, partition: r.partition, offset: r.offset, deliveryCount: r.deliveryCount, action: 'nack', delayMs: 0 }))
          )
        }
        return { records: records.map((r) => ({ ...toApiRecord(r, body.encoding), deliveryCount: r.deliveryCount, lockedUntil: r.lockedUntil })) }
      } finally {
        held.done()
      }
    }
  )

  app.post<{ Params: GroupParams; Body: SharedAckRequest }>(
    `${base}/acks`,
    { schema: { params: groupParams, body: acksBody } },
    async (request): Promise<SharedAckResponse> => {
      needGroup(request, groups.config(request.params.group))
      return { results: await groups.acknowledge(request.params.group, request.body.consumer, request.body.acks) }
    }
  )
}
