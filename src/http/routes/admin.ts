import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ConsumerGroups } from '../../log/groups/types.js'
import type { SharedGroups } from '../../log/shared/shared-groups.js'
import type { Log } from '../../log/types.js'
import { topicFilterProblem, topicNameProblem } from '../../mqtt/topics.js'
import { STREAM_RIGHTS, need } from '../auth.js'
import { ApiError, badField } from '../errors.js'
import { encodingSchema } from '../schemas.js'
import type { ApiClientInfo, ClientList, Encoding, ListenerKind, MessageStats, RetainedList, RetainedMessage, SessionList, StatusResponse } from '../wire.js'
import type { BridgeControl } from './bridges.js'
import { readinessOf, type Readiness } from './health.js'
import { streamSummary } from './streams.js'

// The admin API: the broker's connected clients (list, show, kick), its stored sessions, its
// retained messages (browse by filter, read, delete), and GET /api/v1/status (one screen for
// `culex status`). These are broker-wide: every route needs every stream right on every stream
// (`stream all *` in the ACL file); without an ACL file any caller the API lets in may use them.
// Every list is bounded: `?limit` (default 100, at most 1000) and a cursor `?after` (the `next`
// of the previous page); lists are in id / topic order.

export const ADMIN_LIMITS = { defaultPage: 100, maxPage: 1000 } as const

/** A page to read: items after `after` (exclusive) in the list's order, at most `limit`. */
export interface PageRequest {
  after: string | null
  limit: number
}

/** A retained message as the broker stores it. */
export interface StoredRetained {
  topic: string
  qos: 0 | 1 | 2
  payload: Buffer
}

/** The broker as the admin API sees it (src/broker/admin.ts implements it). */
export interface BrokerAdmin {
  clients(page: PageRequest): ClientList
  /** null: no client with this id is connected. */
  client(id: string): ApiClientInfo | null
  /** Closes the client's connection (its will, if any, is published); false: no such client. */
  kick(id: string): boolean
  sessions(page: PageRequest): Promise<SessionList>
  /** `filter` is a valid MQTT topic filter. */
  retained(filter: string, page: PageRequest): Promise<RetainedList>
  /** `topic` is a valid topic name; null: nothing retained there. */
  readRetained(topic: string): Promise<StoredRetained | null>
  /** Clears the topic's retained message (as an empty retained publish would, without publishing); false: there was none. */
  deleteRetained(topic: string): Promise<boolean>
  /** Counts for GET /api/v1/status; `messages` null: the broker keeps no message counters. */
  summary(): Promise<{ connected: number; sessions: number; subscriptions: number; retained: number; messages: MessageStats | null }>
}

/** What GET /api/v1/status says about the process (the gateway fills it). */
export interface GatewayInfo {
  version: string
  /** ms since the epoch. */
  startedAt: number
  listeners(): Array<{ kind: ListenerKind | 'admin'; host: string; port: number }>
}

export interface AdminDeps {
  broker: BrokerAdmin
  gateway: GatewayInfo
  log: Log
  groups: ConsumerGroups
  shared?: SharedGroups
  bridges: BridgeControl
  readiness?: Readiness
}

/** 403 unless the caller has every stream right on every stream (`stream all *`). */
export function needAdmin(request: FastifyRequest): void {
  for (const right of STREAM_RIGHTS) need(request, right, '*')
}

interface PageQuery {
  limit: number
  after?: string
}

const pageProperties = {
  limit: { type: 'integer', minimum: 1, maximum: ADMIN_LIMITS.maxPage, default: ADMIN_LIMITS.defaultPage },
  after: { type: 'string', minLength: 1, maxLength: 65_535 }
} as const

const pageQuery = { type: 'object', additionalProperties: false, properties: pageProperties } as const

interface RetainedQuery extends PageQuery {
  filter: string
}

const retainedQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { ...pageProperties, filter: { type: 'string', default: '#' } }
} as const

interface ClientParams {
  id: string
}

const clientParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1 } } } as const

interface TopicParams {
  '*': string
}

interface EncodingQuery {
  encoding: Encoding
}

const encodingQuery = { type: 'object', additionalProperties: false, properties: { encoding: { ...encodingSchema, default: 'base64' } } } as const

const pageOf = (q: PageQuery): PageRequest => ({ after: q.after ?? null, limit: q.limit })

function unknownClient(id: string): ApiError {
  return new ApiError(404, 'UNKNOWN_CLIENT', `no client with id "${id}" is connected; GET /api/v1/clients lists them`, { clientId: id })
}

/** The topic of /api/v1/retained/<topic>: each level percent-encoded (`#` and `+` are no topic name characters). */
function topicOf(params: TopicParams): string {
  const topic = params['*']
  const problem = topic === '' ? 'is empty' : topicNameProblem(topic)
  if (problem !== null) throw badField('path', 'topic', `is not a valid topic name: ${problem}`)
  return topic
}

function noRetained(topic: string): ApiError {
  return new ApiError(404, 'NO_RETAINED_MESSAGE', `no message is retained on topic "${topic}"`, { topic })
}

export function adminRoutes(app: FastifyInstance, deps: AdminDeps): void {
  const { broker } = deps

  app.get<{ Querystring: PageQuery }>('/api/v1/clients', { schema: { querystring: pageQuery } }, async (request) => {
    needAdmin(request)
    return broker.clients(pageOf(request.query))
  })

  app.get<{ Params: ClientParams }>('/api/v1/clients/:id', { schema: { params: clientParams } }, async (request) => {
    needAdmin(request)
    const client = broker.client(request.params.id)
    if (client === null) throw unknownClient(request.params.id)
    return client
  })

  app.delete<{ Params: ClientParams }>('/api/v1/clients/:id', { schema: { params: clientParams } }, async (request, reply) => {
    needAdmin(request)
    if (!broker.kick(request.params.id)) throw unknownClient(request.params.id)
    void reply.code(204)
  })

  app.get<{ Querystring: PageQuery }>('/api/v1/sessions', { schema: { querystring: pageQuery } }, async (request) => {
    needAdmin(request)
    return broker.sessions(pageOf(request.query))
  })

  app.get<{ Querystring: RetainedQuery }>('/api/v1/retained', { schema: { querystring: retainedQuery } }, async (request) => {
    needAdmin(request)
    const { filter } = request.query
    const problem = topicFilterProblem(filter)
    if (problem !== null) throw badField('query', 'filter', `is not a valid MQTT topic filter: ${problem}`)
    return broker.retained(filter, pageOf(request.query))
  })

  app.get<{ Params: TopicParams; Querystring: EncodingQuery }>(
    '/api/v1/retained/*',
    { schema: { querystring: encodingQuery } },
    async (request): Promise<RetainedMessage> => {
      needAdmin(request)
      const topic = topicOf(request.params)
      const message = await broker.readRetained(topic)
      if (message === null) throw noRetained(topic)
      const { encoding } = request.query
      return { topic, qos: message.qos, bytes: message.payload.length, encoding, payload: message.payload.toString(encoding) }
    }
  )

  app.delete<{ Params: TopicParams }>('/api/v1/retained/*', async (request, reply) => {
    needAdmin(request)
    const topic = topicOf(request.params)
    if (!(await broker.deleteRetained(topic))) throw noRetained(topic)
    void reply.code(204)
  })

  app.get('/api/v1/status', async (request): Promise<StatusResponse> => {
    needAdmin(request)
    const { gateway, log, groups, shared, bridges } = deps
    const counts = await broker.summary()
    const sharedGroups: StatusResponse['sharedGroups'] = []
    for (const name of shared?.list() ?? []) {
      const d = await shared?.describe(name)
      if (d) sharedGroups.push({ group: name, streams: shared?.config(name).streams ?? [], lag: d.lag, deadLettered: d.deadLettered })
    }
    const now = Date.now()
    return {
      version: gateway.version,
      startedAt: new Date(gateway.startedAt).toISOString(),
      uptimeSeconds: Math.floor((now - gateway.startedAt) / 1000),
      listeners: gateway.listeners(),
      clients: { connected: counts.connected, sessions: counts.sessions },
      subscriptions: counts.subscriptions,
      retained: counts.retained,
      messages: counts.messages,
      streams: (await log.listStreams()).map(streamSummary),
      groups: await groups.list(),
      sharedGroups,
      bridges: await bridges.list(),
      ready: await readinessOf(deps.readiness ?? { checks: () => Promise.resolve([]) })
    }
  })
}
