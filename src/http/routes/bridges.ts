import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { BridgeStatus } from '../../bridges/types.js'
import { need } from '../auth.js'
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

export function bridgeRoutes(app: FastifyInstance, bridges: BridgeControl): void {
  app.get('/api/v1/bridges', async () => ({ bridges: await bridges.list() }))
  app.get<{ Params: NameParams }>('/api/v1/bridges/:name', { schema: { params: nameParams } }, async (request) =>
    found(await bridges.describe(request.params.name), request.params.name)
  )
  // pausing an outbound bridge stops a consumer of its streams: the groups right on each of them;
  // an inbound one writes anywhere its mapping leads: the groups right on every stream ('*')
  const control = async (name: string, request: FastifyRequest, action: 'pause' | 'resume'): Promise<BridgeStatus> => {
    const status = found(await bridges.describe(name), name)
    need(request, 'groups', ...(status.direction === 'out' ? status.streams : ['*']))
    return found(await bridges[action](name), name)
  }
  app.post<{ Params: NameParams }>('/api/v1/bridges/:name/pause', { schema: { params: nameParams } }, (request) =>
    control(request.params.name, request, 'pause')
  )
  app.post<{ Params: NameParams }>('/api/v1/bridges/:name/resume', { schema: { params: nameParams } }, (request) =>
    control(request.params.name, request, 'resume')
  )
}
