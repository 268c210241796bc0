import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { BridgeStatus } from '../../bridges/types.js'
import { may, need } from '../auth.js'
import { ApiError } from '../errors.js'

// Bridges: GET /api/v1/bridges lists them with state, last error, lag and counters;
// GET /api/v1/bridges/:name shows one; POST .../pause and .../resume stop and restart one
// (a paused outbound bridge keeps its stored progress and goes on from it; a paused inbound one
// stops consuming, and its source keeps what was not acked).

/** The bridges as the HTTP API sees them (src/bridges/bridges.ts implements it). */
export interface BridgeControl {
  list(): Promise<BridgeStatus[]>
  describe(name: string): Promise<BridgeStatus | null>
  pause(name: string): Promise<BridgeStatus | null>
  resume(name: string): Promise<BridgeStatus | null>
}

interface NameParams {
  name: string
}

const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 128 } }
} as const

function found(status: BridgeStatus | null, name: string): BridgeStatus {
  if (status === null) throw new ApiError(404, 'UNKNOWN_BRIDGE', `no bridge is named "${name}"; GET /api/v1/bridges lists them`, { bridge: name })
  return status
}

/** The streams whose `groups` right a caller needs for a bridge: an outbound one's, or every stream ('*') for an inbound one. */
function streamsOf(status: BridgeStatus): string[] {
  return status.direction === 'out' ? status.streams : ['*']
}

export function bridgeRoutes(app: FastifyInstance, bridges: BridgeControl): void {
  // a bridge is a consumer of its streams: it is seen and controlled with the groups right on
  // them (as a consumer group is); an inbound one writes wherever its mapping leads, so it needs
  // the groups right on every stream ('*')
  app.get('/api/v1/bridges', async (request) => ({
    bridges: (await bridges.list()).filter((b) => streamsOf(b).every((s) => may(request, 'groups', s)))
  }))
  const visible = async (request: FastifyRequest, name: string): Promise<BridgeStatus> => {
    const status = found(await bridges.describe(name), name)
    need(request, 'groups', ...streamsOf(status))
    return status
  }
  app.get<{ Params: NameParams }>('/api/v1/bridges/:name', { schema: { params: nameParams } }, (request) => visible(request, request.params.name))
  const control = async (request: FastifyRequest, name: string, action: 'pause' | 'resume'): Promise<BridgeStatus> => {
    await visible(request, name)
    return found(await bridges[action](name), name)
  }
  app.post<{ Params: NameParams }>('/api/v1/bridges/:name/pause', { schema: { params: nameParams } }, (request) =>
    control(request, request.params.name, 'pause')
  )
  app.post<{ Params: NameParams }>('/api/v1/bridges/:name/resume', { schema: { params: nameParams } }, (request) =>
    control(request, request.params.name, 'resume')
  )
}
