import { randomUUID } from 'node:crypto'
import { isDollarTopic, topicNameProblem } from '../mqtt/topics.js'
import { LogError, type Log, type LogRecord, type OffsetSpec } from './types.js'

// Replay: republishes a stream's historic records to MQTT under a topic prefix, so a dashboard
// can watch a device's history again. Records of all partitions are merged in timestamp order.
// The publish function is the broker's; the gateway marks those packets so the router does not
// append them to the log a second time.

export interface ReplayRequest {
  stream: string
  from: OffsetSpec
  /** Exclusive end: an offset, or a time (records before it); default: the end when the job starts. */
  to?: OffsetSpec
  /** Prepended to each record's topic (or to the stream name for records without one), e.g. "replay/". */
  topicPrefix: string
  /** Only these partitions (default: all). */
  partitions?: number[]
}

export type ReplayPublish = (message: { topic: string; payload: Buffer; qos: 0 | 1 | 2 }) => Promise<void>

export interface ReplayStatus {
  id: string
  stream: string
  state: 'running' | 'done' | 'failed' | 'cancelled'
  total: number
  published: number
  startedAt: number
  finishedAt: number | null
  error: string | null
}

interface Cursor {
  partition: number
  next: number
  end: number
  buffer: LogRecord[]
}

const CHUNK = 512
const FINISHED_JOBS_KEPT = 100

/** Why a replay prefix cannot start MQTT topic names, or null. */
export function validateTopicPrefix(prefix: string): string | null {
  if (prefix.length === 0) return 'topicPrefix must not be empty (replayed messages would look like live ones)'
  const problem = topicNameProblem(prefix)
  if (problem) return `topicPrefix must be the start of a valid MQTT topic name: ${problem}`
  if (isDollarTopic(prefix)) return "topicPrefix must not start with $ (topics starting with $ are the broker's)"
  return null
}

export class ReplayJobs {
  private readonly jobs = new Map<string, { status: ReplayStatus; cancelled: boolean }>()

  constructor(
    private readonly log: Log,
    private readonly publish: ReplayPublish
  ) {}

  /** Resolves the range and starts the job in the background; returns its first status. */
  async start(request: ReplayRequest): Promise<ReplayStatus> {
    const problem = validateTopicPrefix(request.topicPrefix)
    if (problem) throw new LogError('INVALID_ARGUMENT', problem, { field: 'topicPrefix' })
    const info = await this.log.describeStream(request.stream)
    const partitions = request.partitions ?? info.partitions.map((p) => p.partition)
    const cursors: Cursor[] = []
    for (const partition of partitions) {
      const from = await this.log.resolveOffset(request.stream, partition, request.from)
      const end = info.partitions[partition]?.endOffset ?? 0
      const to = request.to === undefined ? end : await this.endOffset(request.stream, partition, request.to)
      if (to > from) cursors.push({ partition, next: from, end: to, buffer: [] })
    }
    const status: ReplayStatus = {
      id: randomUUID(),
      stream: request.stream,
      state: 'running',
      total: cursors.reduce((n, c) => n + (c.end - c.next), 0),
      published: 0,
      startedAt: Date.now(),
      finishedAt: null,
      error: null
    }
    const job = { status, cancelled: false }
    this.jobs.set(status.id, job)
    this.forgetOldJobs()
    void this.run(request, cursors, job)
    return { ...status }
  }

  get(id: string): ReplayStatus | undefined {
    const job = this.jobs.get(id)
    return job ? { ...job.status } : undefined
  }

  cancel(id: string): ReplayStatus | undefined {
    const job = this.jobs.get(id)
    if (job && job.status.state === 'running') job.cancelled = true
    return job ? { ...job.status } : undefined
  }

  list(): ReplayStatus[] {
    return [...this.jobs.values()].map((j) => ({ ...j.status }))
  }

  cancelAll(): void {
    for (const job of this.jobs.values()) job.cancelled = true
  }

  private async endOffset(stream: string, partition: number, to: OffsetSpec): Promise<number> {
    // an offset end may lie beyond the records; clamp it instead of refusing
    if (typeof to === 'object' && 'offset' in to) {
      const [start, end] = await Promise.all([this.log.resolveOffset(stream, partition, 'earliest'), this.log.resolveOffset(stream, partition, 'latest')])
      return Math.max(start, Math.min(to.offset, end))
    }
    return this.log.resolveOffset(stream, partition, to)
  }

  private async run(request: ReplayRequest, cursors: Cursor[], job: { status: ReplayStatus; cancelled: boolean }): Promise<void> {
    const status = job.status
    try {
      for (;;) {
        if (job.cancelled) {
          status.state = 'cancelled'
          break
        }
        const record = (await this.earliest(request.stream, cursors))?.buffer.shift()
        if (!record) {
          status.state = 'done'
          break
        }
        await this.publish({
          topic: request.topicPrefix + (record.topic ?? request.stream),
          payload: record.value,
          qos: record.qos
        })
        status.published++
      }
    } catch (err) {
      status.state = 'failed'
      status.error = err instanceof Error ? err.message : String(err)
    }
    status.finishedAt = Date.now()
  }

  /** The cursor whose next record is the oldest (ties: lower partition), refilling buffers. */
  private async earliest(stream: string, cursors: Cursor[]): Promise<Cursor | undefined> {
    let best: { cursor: Cursor; timestamp: number } | undefined
    for (const c of cursors) {
      if (c.buffer.length === 0 && c.next < c.end) await this.refill(stream, c)
      const head = c.buffer[0]
      if (head && (!best || head.timestamp < best.timestamp)) best = { cursor: c, timestamp: head.timestamp }
    }
    return best?.cursor
  }

  private async refill(stream: string, c: Cursor): Promise<void> {
    try {
      c.buffer = await this.log.read(stream, c.partition, c.next, { limit: Math.min(CHUNK, c.end - c.next) })
    } catch (err) {
      // retention removed records ahead of the replay: continue from the new head
      if (!(err instanceof LogError && err.code === 'OFFSET_OUT_OF_RANGE')) throw err
      c.next = Math.min(c.end, Number(err.details.earliest))
      c.buffer = c.next < c.end ? await this.log.read(stream, c.partition, c.next, { limit: Math.min(CHUNK, c.end - c.next) }) : []
    }
    c.next += c.buffer.length
    if (c.buffer.length === 0) c.next = c.end
  }

  private forgetOldJobs(): void {
    const finished = [...this.jobs.values()].filter((j) => j.status.state !== 'running')
    for (const j of finished.slice(0, Math.max(0, finished.length - FINISHED_JOBS_KEPT))) this.jobs.delete(j.status.id)
  }
}
