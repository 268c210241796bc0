import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { RawData, WebSocket } from 'ws'
import { GroupError, type ConsumerGroups } from '../log/groups/types.js'
import type { PartitionOffset } from '../log/types.js'
import { toApiRecord } from './encoding.js'
import { ApiError, badField, toErrorResponse } from './errors.js'
import { keepMemberAlive } from './long-poll.js'
import { memberOf } from './routes/groups.js'
import { LIMITS, encodingSchema, memberParams, offsetsSchema, type MemberParams } from './schemas.js'
import { compileStrict } from './validation.js'
import type { Encoding, PushClientFrame, PushServerFrame } from './wire.js'

// Push delivery to a consumer-group member over a WebSocket, with credit-based flow control
// (as in AMQP 1.0 link credit or reactive streams' request(n)):
//   client -> server  { "credit": n }             grants n more records
//                     { "commit": [{ stream, partition, offset }] }
//   server -> client  { "records": [...], "generation", "assignments" }
//                     { "committed": [...] }      after a commit is durable
//                     { "error": CODE, "message" }
// The server never sends more records in total than the credit granted so far. While the socket
// is open the member's session is kept alive; when the member leaves or its session ends the
// server sends an error frame and closes with code 4404.

export const PUSH = {
  /** Most credit a client may have outstanding. */
  maxCredit: 100_000,
  /** Most records in one frame. */
  maxBatch: LIMITS.readRecords,
  /** Long-poll slice of the fetch loop (ms). */
  pollMs: 5_000,
  /** A peer that does not answer a ping within this long is dropped (ms). */
  pingMs: 30_000,
  /** Largest frame a client may send (bytes). */
  maxFrameBytes: 256 * 1024
} as const

export const CLOSE_CODES = { memberGone: 4404, internalError: 1011 } as const

const parseFrame = compileStrict<PushClientFrame>({
  type: 'object',
  minProperties: 1,
  additionalProperties: false,
  properties: {
    credit: { type: 'integer', minimum: 1, maximum: PUSH.maxCredit },
    commit: offsetsSchema
  }
})

interface PushQuery {
  encoding: Encoding
  maxBytes: number
}

const pushQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    encoding: { ...encodingSchema, default: 'base64' },
    maxBytes: { type: 'integer', minimum: 1, maximum: LIMITS.readBytes, default: LIMITS.defaultReadBytes }
  }
} as const

export function pushRoutes(app: FastifyInstance, groups: ConsumerGroups, logger: Logger): void {
  app.route<{ Params: MemberParams; Querystring: PushQuery }>({
    method: 'GET',
    url: '/api/v1/groups/:group/members/:member/push',
    schema: { params: memberParams, querystring: pushQuery },
    // before the upgrade: an unknown member gets a plain HTTP 404
    preHandler: async (request) => {
      memberOf(request, groups, request.params)
    },
    handler: async () => {
      throw new ApiError(426, 'UPGRADE_REQUIRED', 'this endpoint speaks WebSocket; connect with a WebSocket client')
    },
    wsHandler: (socket, request) => {
      const { group, member } = request.params
      // @fastify/websocket hands over a ws WebSocket; its type is declared again there
      // eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
      new PushSession(socket, groups, group, member, request.query, logger).start()
    }
  })
}

class PushSession {
  private credit = 0
  private closed = false
  private generation = -1
  private readonly controller = new AbortController()
  private wakeForCredit: (() => void) | null = null
  private stopHeartbeats: () => void = () => {}
  private pinger: NodeJS.Timeout | undefined
  private answeredPing = true

  constructor(
    private readonly socket: WebSocket,
    private readonly groups: ConsumerGroups,
    private readonly group: string,
    private readonly member: string,
    private readonly options: PushQuery,
    private readonly logger: Logger
  ) {}

  start(): void {
    this.socket.on('message', (data, isBinary) => this.onMessage(data, isBinary))
    this.socket.on('close', () => this.stop())
    this.socket.on('pong', () => (this.answeredPing = true))
    this.pinger = setInterval(() => {
      if (!this.answeredPing) return void this.socket.terminate()
      this.answeredPing = false
      this.socket.ping()
    }, PUSH.pingMs)
    this.pinger.unref()
    this.stopHeartbeats = keepMemberAlive(this.groups, this.group, this.member, (err) => this.end(err))
    try {
      // tell the client its assignment at once, before any credit
      const m = this.groups.heartbeat(this.group, this.member)
      this.generation = m.generation
      this.send({ records: [], generation: m.generation, assignments: m.assignments })
    } catch (err) {
      return this.end(err)
    }
    this.loop().catch((err: unknown) => this.end(err))
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    let frame: PushClientFrame
    try {
      if (isBinary) throw new ApiError(400, 'INVALID_ARGUMENT', 'frames must be JSON text')
      let json: unknown
      try {
        json = JSON.parse(frameText(data))
      } catch {
        throw new ApiError(400, 'INVALID_JSON', 'frame is not valid JSON')
      }
      frame = parseFrame(json, 'frame')
      if (frame.credit !== undefined && this.credit + frame.credit > PUSH.maxCredit) {
        throw badField('frame', 'credit', `would make the outstanding credit exceed ${PUSH.maxCredit} (it is ${this.credit})`)
      }
    } catch (err) {
      return this.sendError(err)
    }
    if (frame.credit !== undefined) {
      this.credit += frame.credit
      this.wakeForCredit?.()
    }
    if (frame.commit) void this.commit(frame.commit)
  }

  private async commit(offsets: PartitionOffset[]): Promise<void> {
    try {
      await this.groups.commit(this.group, this.member, offsets)
      this.send({ committed: offsets })
    } catch (err) {
      if (isMemberGone(err)) return this.end(err)
      this.sendError(err)
    }
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      // yield to I/O each turn, so a fetch that keeps returning at once can never starve the process
      await new Promise((resolve) => setImmediate(resolve))
      if (this.credit === 0) {
        await new Promise<void>((resolve) => (this.wakeForCredit = resolve))
        this.wakeForCredit = null
        continue
      }
      const result = await this.groups.fetch(this.group, this.member, {
        maxRecords: Math.min(this.credit, PUSH.maxBatch),
        maxBytes: this.options.maxBytes,
        waitMs: PUSH.pollMs,
        signal: this.controller.signal
      })
      if (this.isClosed()) return
      if (result.records.length > 0 || result.generation !== this.generation) {
        this.credit = Math.max(0, this.credit - result.records.length)
        this.generation = result.generation
        this.send({
          records: result.records.map((r) => toApiRecord(r, this.options.encoding)),
          generation: result.generation,
          assignments: result.assignments
        })
      }
    }
  }

  private send(frame: PushServerFrame): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(frame))
  }

  private sendError(err: unknown): void {
    const { body, internal } = toErrorResponse(err)
    if (internal) this.logger.error({ err, group: this.group, member: this.member }, 'push delivery failed')
    this.send(body)
  }

  /** Ends the session after an error: tells the client why, then closes. */
  private end(err: unknown): void {
    if (this.closed) return
    this.sendError(err)
    const code = isMemberGone(err) ? CLOSE_CODES.memberGone : CLOSE_CODES.internalError
    this.stop()
    this.socket.close(code, isMemberGone(err) ? 'member gone' : 'internal error')
  }

  /** Read through a call: the session may close while a fetch is awaited. */
  private isClosed(): boolean {
    return this.closed
  }

  private stop(): void {
    if (this.closed) return
    this.closed = true
    this.controller.abort()
    this.wakeForCredit?.()
    this.stopHeartbeats()
    clearInterval(this.pinger)
  }
}

function frameText(data: RawData): string {
  const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data
  return bytes.toString('utf8')
}

function isMemberGone(err: unknown): boolean {
  return err instanceof GroupError && (err.code === 'UNKNOWN_MEMBER' || err.code === 'UNKNOWN_GROUP')
}
