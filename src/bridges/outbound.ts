import type { Logger } from 'pino'
import { backoffDelay } from '../log/shared/config.js'
import { deadLetter, ensureDeadLetterStream } from '../log/shared/shared-groups.js'
import { LogError, type Log, type LogRecord } from '../log/types.js'
import { progressGroup, type OutboundBridgeConfig } from './config.js'
import { BridgeCounters } from './counters.js'
import { abortableSleep, stopped } from './sleep.js'
import type { BridgeStatus, Outcome, Sink } from './types.js'

// An outbound bridge: log -> target. One loop per partition of each stream reads from the stored
// progress (the consumer group `bridge.<name>`), hands a batch to the sink and commits what the
// target acknowledged. A record is committed only after the target holds it or it is in the
// dead-letter stream, so neither a target outage nor a crash of Culex loses one; what was sent
// but not committed is sent again (at least once; exactly once where the target deduplicates).
// Within a partition records go in offset order and a failed record holds back the ones after
// it (a retry never overtakes), so per-key order holds in the target.

/** How long a partition with nothing new waits before it looks again (new appends wake it sooner). */
const IDLE_WAIT_MS = 5_000

interface PartitionProgress {
  stream: string
  partition: number
  /** The next offset to deliver; everything below it is committed. */
  position: number
}

export class OutboundBridge {
  readonly counters = new BridgeCounters()
  readonly #group: string
  readonly #progress = new Map<string, PartitionProgress>()
  #run: AbortController | null = null
  #loops: Promise<void> = Promise.resolve()
  #paused = false
  /** Set when a deliver threw: the next attempt connects first. */
  #connected: Promise<void> | null = null

  constructor(
    readonly config: OutboundBridgeConfig,
    private readonly sink: Sink,
    private readonly log: Log,
    private readonly logger: Logger,
    private readonly random: () => number = Math.random
  ) {
    this.#group = progressGroup(config.name)
  }

  get paused(): boolean {
    return this.#paused
  }

  /** Starts the partition loops (no-op while running). */
  start(): void {
    if (this.#run) return
    this.#paused = false
    const run = (this.#run = new AbortController())
    this.counters.state = 'starting'
    this.#loops = this.#partitions(run.signal).then(
      (parts) => Promise.all(parts.map((p) => this.#loop(p, run.signal))).then(() => undefined),
      (err: unknown) => {
        // the streams are the config's own, so this is the store failing: say so, do not spin
        this.counters.failed(err)
        this.logger.error({ err }, 'bridge stopped: its progress could not be read')
      }
    )
  }

  /** Stops delivering; what is in flight finishes or is sent again on resume. */
  async pause(): Promise<void> {
    this.#paused = true
    await this.#halt()
    this.counters.state = 'paused'
  }

  resume(): void {
    if (!this.#paused) return
    this.start()
  }

  async stop(): Promise<void> {
    await this.#halt()
    this.counters.state = 'stopped'
    await this.sink.close().catch((err: unknown) => this.logger.warn({ err }, 'bridge target did not close cleanly'))
  }

  async #halt(): Promise<void> {
    this.#run?.abort()
    this.#run = null
    await this.#loops
    this.#connected = null
  }

  async status(): Promise<BridgeStatus> {
    let lag = 0
    for (const stream of this.config.streams) {
      const info = await this.log.describeStream(stream)
      for (const p of info.partitions) {
        const position =
          this.#progress.get(`${stream}\u0000${p.partition}`)?.position ?? (await this.log.committed(this.#group, stream, p.partition)) ?? p.startOffset
        lag += Math.max(0, p.endOffset - Math.max(position, p.startOffset))
      }
    }
    return { name: this.config.name, kind: this.config.kind, direction: 'out', streams: this.config.streams, ...this.counters.snapshot(), lag }
  }

  /** Every partition's stored progress, or the start position where there is none (then stored). */
  async #partitions(signal: AbortSignal): Promise<PartitionProgress[]> {
    const out: PartitionProgress[] = []
    for (const stream of this.config.streams) {
      const info = await this.log.describeStream(stream)
      for (const p of info.partitions) {
        if (signal.aborted) return out
        const id = `${stream}\u0000${p.partition}`
        let progress = this.#progress.get(id)
        if (!progress) {
          const committed = await this.log.committed(this.#group, stream, p.partition)
          const position = committed ?? (this.config.startAt === 'earliest' ? p.startOffset : p.endOffset)
          // 'latest' is where the bridge started, not wherever the end is at the next start
          if (committed === null) await this.log.commit(this.#group, [{ stream, partition: p.partition, offset: position }])
          progress = { stream, partition: p.partition, position }
          this.#progress.set(id, progress)
        }
        out.push(progress)
      }
    }
    return out
  }

  async #loop(p: PartitionProgress, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const records = await this.#read(p)
        if (records.length === 0) {
          await this.log.waitForRecords([{ stream: p.stream, partition: p.partition, offset: p.position }], IDLE_WAIT_MS, signal)
          continue
        }
        await this.#deliverAll(p, records, signal)
      } catch (err) {
        if (stopped(signal)) return
        // the log itself failed (not the target): wait and try again rather than spin
        this.counters.failed(err)
        this.logger.error({ err, stream: p.stream, partition: p.partition }, 'bridge could not read or commit')
        await abortableSleep(this.#backoff(1), signal)
      }
    }
  }

  async #read(p: PartitionProgress): Promise<LogRecord[]> {
    try {
      return await this.log.read(p.stream, p.partition, p.position, { limit: this.config.batchSize })
    } catch (err) {
      if (!(err instanceof LogError && err.code === 'OFFSET_OUT_OF_RANGE')) throw err
      // retention removed records the bridge had not delivered: they are gone; say how many
      const info = await this.log.describeStream(p.stream)
      const start = info.partitions[p.partition]?.startOffset ?? p.position
      if (start > p.position) {
        this.logger.warn(
          { stream: p.stream, partition: p.partition, skipped: start - p.position },
          'retention removed records before the bridge delivered them'
        )
        await this.#commit(p, start)
      }
      return []
    }
  }

  async #commit(p: PartitionProgress, position: number): Promise<void> {
    await this.log.commit(this.#group, [{ stream: p.stream, partition: p.partition, offset: position }])
    p.position = position
  }

  #backoff(attempt: number): number {
    return backoffDelay(this.config.retry.backoff, attempt, this.random)
  }

  async #connect(signal: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.#connected ??= this.sink.connect(signal)
      try {
        await this.#connected
        return
      } catch (err) {
        this.#connected = null
        if (signal.aborted) throw err
        this.counters.retrying(err)
        this.logger.warn({ err: this.counters.lastError, attempt }, 'bridge target not reachable; retrying')
        await abortableSleep(this.#backoff(attempt), signal)
      }
    }
  }

  /** Delivers `records` (in order) until each is delivered or dead-lettered, or the run ends. */
  async #deliverAll(p: PartitionProgress, records: LogRecord[], signal: AbortSignal): Promise<void> {
    let pending = records
    let attempt = 0
    let firstAttemptAt = Date.now()
    while (pending.length > 0 && !signal.aborted) {
      await this.#connect(signal)
      let outcomes: Outcome[]
      try {
        outcomes = await this.sink.deliver(pending, signal)
        if (outcomes.length !== pending.length)
          throw new Error(`the ${this.config.kind} sink answered ${outcomes.length} outcomes for ${pending.length} records`)
      } catch (err) {
        // a throw is a connection problem: every record again, after connecting again
        this.#connected = null
        const error = err instanceof Error ? err.message : String(err)
        outcomes = pending.map(() => ({ status: 'retry', error }))
      }
      if (stopped(signal)) return
      let done = 0
      while (done < pending.length && outcomes[done]?.status !== 'retry') done++
      const head = outcomes[done]
      const retry = head?.status === 'retry' ? head : null
      // the head record failed as often as it may: it goes to the dead letters, the rest go on
      const exhausted = retry !== null && this.config.retry.maxAttempts > 0 && attempt + 1 >= this.config.retry.maxAttempts
      const buried: Array<{ record: LogRecord; outcome: Outcome }> = []
      for (let i = 0; i < done; i++) {
        const outcome = outcomes[i]
        const record = pending[i]
        if (outcome?.status === 'rejected' && record) buried.push({ record, outcome })
      }
      const headRecord = pending[done]
      if (exhausted && headRecord) buried.push({ record: headRecord, outcome: retry })
      const finished = done + (exhausted ? 1 : 0)
      await this.#bury(buried, attempt + 1, firstAttemptAt)
      if (finished > 0) {
        const last = pending[finished - 1]
        if (last) await this.#commit(p, last.offset + 1)
        this.counters.delivered(finished - buried.length, buried.length)
        pending = pending.slice(finished)
        attempt = 0
        firstAttemptAt = Date.now()
      }
      if (retry === null || exhausted) {
        if (pending.length === 0) this.counters.ok()
        continue
      }
      attempt++
      this.counters.retrying(retry.error)
      const wait = Math.max(this.#backoff(attempt), retry.retryAfterMs ?? 0)
      this.logger.warn(
        { stream: p.stream, partition: p.partition, offset: pending[0]?.offset, attempt, error: retry.error, waitMs: wait },
        'bridge delivery failed; retrying'
      )
      await abortableSleep(wait, signal)
    }
  }

  /** Appends refused records to the dead-letter stream (durably) before their offsets are committed. */
  async #bury(buried: Array<{ record: LogRecord; outcome: Outcome }>, attempts: number, firstAttemptAt: number): Promise<void> {
    const now = Date.now()
    for (const { record, outcome } of buried) {
      const dlq = this.config.deadLetter ?? `${record.stream}.dlq`
      const partitions = await ensureDeadLetterStream(this.log, record.stream, dlq)
      const error = outcome.status === 'delivered' ? '' : outcome.error
      const letter = deadLetter(
        this.#group,
        record,
        { deliveries: attempts, firstDeliveryAt: firstAttemptAt, lastDeliveryAt: now, lastError: error },
        outcome.status === 'rejected' ? 'rejected' : 'max-deliveries',
        now
      )
      if (outcome.status === 'rejected' && outcome.headers) letter.headers = { ...letter.headers, ...outcome.headers }
      await this.log.append(dlq, [letter], record.partition % partitions)
      this.logger.warn(
        { stream: record.stream, partition: record.partition, offset: record.offset, dlq, error },
        'bridge target refused a record: dead-lettered'
      )
    }
  }
}
