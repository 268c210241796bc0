import type { FastifyInstance } from 'fastify'
import type { ReplayRequest, ReplayStatus } from '../../log/replay.js'
import { may, need } from '../auth.js'
import { ApiError } from '../errors.js'
import { offsetSpecSchema, parseOffsetSpec } from '../positions.js'
import { streamParams, type StreamParams } from '../schemas.js'
import type { ReplayRequestBody } from '../wire.js'

// Replay into MQTT: the gateway passes its ReplayJobs (which own the broker's publish); the API
// starts jobs and lets clients poll and cancel them.

/** What the API needs of replay (implemented by the log's ReplayJobs, src/log/replay.ts). */
export interface ReplayService {
  /** Starts a job; rejects with LogError for a bad request. */
  start(request: ReplayRequest): Promise<ReplayStatus>
  get(id: string): ReplayStatus | undefined
  cancel(id: string): ReplayStatus | undefined
  list(): ReplayStatus[]
}

/** The body as it arrives, before the positions are parsed (they may be ISO 8601 strings). */
type ReplayBody = Omit<ReplayRequestBody, 'from' | 'to'> & { from: unknown; to?: unknown }

const replayBody = {
  type: 'object',
  required: ['from', 'topicPrefix'],
  additionalProperties: false,
  properties: {
    from: offsetSpecSchema,
    to: offsetSpecSchema,
    topicPrefix: { type: 'string', maxLength: 1024 },
    partitions: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'integer', minimum: 0 } }
  }
} as const

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } } as const

export function replayRoutes(app: FastifyInstance, replay: ReplayService | undefined): void {
  const service = (): ReplayService => {
    if (!replay) throw new ApiError(501, 'NOT_AVAILABLE', 'replay into MQTT is not available on this server')
    return replay
  }
  const find = (id: string): ReplayStatus => {
    const status = service().get(id)
    if (!status) throw new ApiError(404, 'UNKNOWN_REPLAY', `unknown replay "${id}" (finished replays are forgotten after a while)`)
    return status
  }

  app.post<{ Params: StreamParams; Body: ReplayBody }>(
    '/api/v1/streams/:stream/replay',
    { schema: { params: streamParams, body: replayBody } },
    async (request, reply) => {
      need(request, 'replay', request.params.stream)
      const body = request.body
      const status = await service().start({
        stream: request.params.stream,
        from: parseOffsetSpec(body.from, 'body', 'from'),
        to: body.to === undefined ? undefined : parseOffsetSpec(body.to, 'body', 'to'),
        topicPrefix: body.topicPrefix,
        partitions: body.partitions
      })
      return reply.code(202).send(status)
    }
  )

  app.get('/api/v1/replays', async (request) => ({
    replays: service()
      .list()
      .filter((r) => may(request, 'replay', r.stream))
  }))

  app.get<{ Params: { id: string } }>('/api/v1/replays/:id', { schema: { params: idParams } }, async (request) => {
    const status = find(request.params.id)
    need(request, 'replay', status.stream)
    return status
  })

  app.delete<{ Params: { id: string } }>('/api/v1/replays/:id', { schema: { params: idParams } }, async (request) => {
    need(request, 'replay', find(request.params.id).stream)
    return service().cancel(request.params.id)
  })
}
