import type { FastifyInstance } from 'fastify'
import type { Log, RecordInput, StreamInfo } from '../../log/types.js'
import { frameHeader } from '../../log/record-codec.js'
import { decodeValue, toApiRecord } from '../encoding.js'
import { STREAM_RIGHTS, may, need } from '../auth.js'
import { refuseWhileBacklogged, type WriteBackpressure } from '../backpressure.js'
import { badField } from '../errors.js'
import { delayProperties, dueTime, scheduleRecords, type DelayedAppends } from './delayed.js'
import { IDEMPOTENCY_HEADER, idempotencyKey, produceIdempotent } from '../idempotency.js'
import { holdRequest } from '../long-poll.js'
import { parseTimestamp } from '../positions.js'
import { LIMITS, encodingSchema, partitionParams, streamParams, type PartitionParams, type StreamParams } from '../schemas.js'
import {
  FRAMES_CONTENT_TYPE,
  type Encoding,
  type ProduceRequest,
  type ProduceResponse,
  type ProducedRecord,
  type ReadResponse,
  type ScheduledResponse,
  type StreamSummary
} from '../wire.js'

// Streams: list and describe, produce (answered once the records are durable), and read a
// partition by offset or by time.

export function streamSummary(info: StreamInfo): StreamSummary {
  return {
    name: info.config.name,
    partitionCount: info.config.partitions,
    retention: info.config.retention,
    bytes: info.partitions.reduce((n, p) => n + p.bytes, 0),
    records: info.partitions.reduce((n, p) => n + (p.endOffset - p.startOffset), 0),
    partitions: info.partitions.map(({ partition, startOffset, endOffset, bytes }) => ({ partition, startOffset, endOffset, bytes }))
  }
}

const recordProperties = {
  key: { type: ['string', 'null'], maxLength: LIMITS.keyLength },
  value: { type: 'string' },
  headers: { type: 'object', maxProperties: LIMITS.headers, additionalProperties: { type: 'string' } },
  partition: { type: 'integer', minimum: 0 }
} as const

const produceBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    records: {
      type: 'array',
      minItems: 1,
      maxItems: LIMITS.produceRecords,
      items: { type: 'object', required: ['value'], additionalProperties: false, properties: recordProperties }
    },
    encoding: encodingSchema,
    ...recordProperties,
    ...delayProperties
  }
} as const

interface ReadQuery {
  offset?: number
  timestamp?: string
  limit: number
  maxBytes: number
  waitMs: number
  encoding: Encoding
}

const readQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    offset: { type: 'integer', minimum: 0 },
    timestamp: { type: 'string', minLength: 1 },
    limit: { type: 'integer', minimum: 1, maximum: LIMITS.readRecords, default: LIMITS.defaultReadRecords },
    maxBytes: { type: 'integer', minimum: 1, maximum: LIMITS.readBytes, default: LIMITS.defaultReadBytes },
    waitMs: { type: 'integer', minimum: 0, maximum: LIMITS.waitMs, default: 0 },
    encoding: { ...encodingSchema, default: 'base64' }
  }
} as const

export function streamRoutes(app: FastifyInstance, log: Log, closing: AbortSignal, backpressure?: WriteBackpressure, delayed?: DelayedAppends): void {
  // the streams the caller has any right on
  app.get('/api/v1/streams', async (request) => ({
    streams: (await log.listStreams()).filter((s) => STREAM_RIGHTS.some((right) => may(request, right, s.config.name))).map(streamSummary)
  }))

  app.get<{ Params: StreamParams }>('/api/v1/streams/:stream', { schema: { params: streamParams } }, async (request) => {
    need(request, 'read', request.params.stream)
    return streamSummary(await log.describeStream(request.params.stream))
  })

  app.post<{ Params: StreamParams; Body: ProduceRequest; Querystring: { encoding?: Encoding } }>(
    '/api/v1/streams/:stream/records',
    {
      schema: {
        params: streamParams,
        body: produceBody,
        querystring: { type: 'object', additionalProperties: false, properties: { encoding: encodingSchema } }
      }
    },
    async (request, reply): Promise<ProduceResponse | ScheduledResponse> => {
      const { stream } = request.params
      need(request, 'produce', stream)
      const idempotency = idempotencyKey(request.headers[IDEMPOTENCY_HEADER])
      // the store over store-high-water: 429 with Retry-After, nothing appended
      refuseWhileBacklogged(backpressure, reply)
      const body = request.body
      const encoding = body.encoding ?? request.query.encoding ?? 'base64'
      const single = body.records === undefined
      if (single && body.value === undefined) throw badField('body', 'value', 'is required (or give records: [...])')
      if (!single) {
        const mixed = (['key', 'value', 'headers', 'partition'] as const).find((f) => body[f] !== undefined)
        if (mixed) throw badField('body', mixed, 'cannot be given next to records; put it inside each record')
      }
      // deliverAt / delayMs: stored now, appended at the due time (202, routes/delayed.ts)
      const dueAt = dueTime(body, delayed)
      if (dueAt !== null && idempotency !== null) {
        throw badField('body', body.deliverAt !== undefined ? 'deliverAt' : 'delayMs', 'cannot be used with an Idempotency-Key header yet')
      }
      const produced: ProducedRecord[] = body.records ?? [{ key: body.key, value: body.value ?? '', headers: body.headers, partition: body.partition }]
      const partitions = (await log.describeStream(stream)).config.partitions
      const inputs = produced.map((r, i): { input: RecordInput; partition: number | undefined } => {
        const field = single ? '' : `records[${i}].`
        if (r.partition !== undefined && r.partition >= partitions) {
          throw badField('body', `${field}partition`, `must be below ${partitions} (stream ${stream} has ${partitions} partitions)`)
        }
        return {
          input: { key: r.key ?? null, value: decodeValue(r.value, encoding, 'body', `${field}value`), headers: r.headers ?? {}, topic: null },
          partition: r.partition
        }
      })
      if (dueAt !== null && delayed) {
        void reply.code(202)
        return scheduleRecords(delayed, stream, inputs, dueAt)
      }
      // one append, in the request's order; a record with an explicit partition carries it
      const records = inputs.map((x) => (x.partition === undefined ? x.input : { ...x.input, partition: x.partition }))
      if (idempotency === null) return { offsets: await log.append(stream, records) }
      const { duplicate, offsets } = await produceIdempotent(log, stream, records, idempotency)
      if (duplicate) void reply.header('idempotent-replayed', 'true')
      return { offsets }
    }
  )

  app.get<{ Params: PartitionParams; Querystring: ReadQuery }>(
    '/api/v1/streams/:stream/partitions/:p/records',
    { schema: { params: partitionParams, querystring: readQuery } },
    async (request, reply): Promise<ReadResponse> => {
      const { stream, p } = request.params
      need(request, 'read', stream)
      const q = request.query
      const from = await readStart(log, stream, p, q)
      let records = await log.read(stream, p, from, { limit: q.limit, maxBytes: q.maxBytes })
      if (records.length === 0 && q.waitMs > 0) {
        const held = holdRequest(reply, closing)
        try {
          if (await log.waitForRecords([{ stream, partition: p, offset: from }], q.waitMs, held.signal)) {
            records = await log.read(stream, p, from, { limit: q.limit, maxBytes: q.maxBytes })
          }
        } finally {
          held.done()
        }
      }
      const [startOffset, endOffset] = await Promise.all([log.resolveOffset(stream, p, 'earliest'), log.resolveOffset(stream, p, 'latest')])
      const last = records[records.length - 1]
      return {
        records: records.map((r) => toApiRecord(r, q.encoding)),
        nextOffset: last ? last.offset + 1 : from,
        startOffset,
        endOffset
      }
    }
  )

  // Bulk reads: the records' binary form, framed (src/log/record-codec.ts), streamed with
  // backpressure from `offset` / `timestamp` to `end` (exclusive; default: the end offset when the
  // request starts) or `limit` records. Nothing is decoded or re-encoded on the way.
  app.get<{ Params: PartitionParams; Querystring: FramesQuery }>(
    '/api/v1/streams/:stream/partitions/:p/frames',
    { schema: { params: partitionParams, querystring: framesQuery } },
    async (request, reply) => {
      const { stream, p } = request.params
      need(request, 'read', stream)
      const q = request.query
      const from = await readStart(log, stream, p, q)
      const latest = await log.resolveOffset(stream, p, 'latest')
      const end = Math.min(q.end ?? latest, latest, from + q.limit)
      if (q.end !== undefined && q.end < from) throw badField('query', 'end', `must not be below the start offset ${from}`)
      const held = holdRequest(reply, closing)
      reply.hijack()
      const out = reply.raw
      out.writeHead(200, { 'content-type': FRAMES_CONTENT_TYPE, 'x-culex-start-offset': String(from), 'x-culex-end-offset': String(end) })
      try {
        for (let next = from; next < end && !held.signal.aborted;) {
          const page = await log.readEncoded(stream, p, next, { limit: Math.min(FRAMES_PAGE, end - next) })
          const last = page[page.length - 1]
          if (!last) break
          const parts: Buffer[] = []
          for (const r of page) parts.push(frameHeader(r.offset, r.bytes.length), r.bytes)
          if (!out.write(Buffer.concat(parts))) await drained(out, held.signal)
          next = last.offset + 1
        }
      } catch (err) {
        // the status is sent: cut the stream, so the client sees it incomplete (its length framing says so)
        request.log.error({ err, stream, partition: p }, 'frames stream failed')
        out.destroy()
        return
      } finally {
        held.done()
      }
      out.end()
    }
  )
}

const FRAMES_PAGE = 1000

interface FramesQuery {
  offset?: number
  timestamp?: string
  end?: number
  limit: number
}

const framesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    offset: { type: 'integer', minimum: 0 },
    timestamp: { type: 'string', minLength: 1 },
    end: { type: 'integer', minimum: 0 },
    limit: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, default: Number.MAX_SAFE_INTEGER }
  }
} as const

/** Where a read starts: `offset`, the first record at `timestamp`, or the head. */
async function readStart(log: Log, stream: string, p: number, q: { offset?: number; timestamp?: string }): Promise<number> {
  if (q.offset !== undefined && q.timestamp !== undefined) throw badField('query', 'timestamp', 'cannot be given with offset; give one of them')
  if (q.offset !== undefined) return log.resolveOffset(stream, p, { offset: q.offset })
  if (q.timestamp !== undefined) return log.offsetForTime(stream, p, parseTimestamp(q.timestamp, 'query', 'timestamp'))
  return log.resolveOffset(stream, p, 'earliest')
}

function drained(out: NodeJS.WritableStream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      out.removeListener('drain', done)
      signal.removeEventListener('abort', done)
      resolve()
    }
    out.once('drain', done)
    signal.addEventListener('abort', done, { once: true })
  })
}
