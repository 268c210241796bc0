import type { Redis } from 'ioredis'
import type { LogRecord } from '../../log/types.js'
import { MappingError, render } from '../mapping.js'
import type { DriverDeps, Outcome, Sink } from '../types.js'
import type { RedisTarget } from './config.js'
import { abortable, createClient, describeError, isReplyError, isTransient, replyCode, whenReady } from './connection.js'

// Outbound: each record is one XADD to the stream its key template names; a deliver call is one
// pipeline (one write, replies in order) holding one MULTI/EXEC transaction, so a batch is applied
// all together or not at all. A plain pipeline could not keep a key's order: a command refused for
// a moment (OOM, BUSY, LOADING) followed by one that succeeds would land the later record first.
// Redis sends the EXEC reply after the transaction reached the AOF (fsynced first with appendfsync
// always), so 'delivered' is exactly as durable as the server's persistence config makes it.

/** Field that carries header <name>: `h:<name>`. */
export const HEADER_FIELD_PREFIX = 'h:'

/** XADD arguments after the key: [MAXLEN [~] n] * field value ... */
export function xaddArgs(record: LogRecord, target: Pick<RedisTarget, 'maxlen' | 'approximate'>): (string | Buffer)[] {
  const args: (string | Buffer)[] = []
  // https://redis.io/commands/xadd/: MAXLEN ~ n lets Redis trim whole macro nodes only (cheaper)
  if (target.maxlen !== null) args.push('MAXLEN', target.approximate ? '~' : '=', String(target.maxlen))
  args.push('*', 'value', record.value)
  if (record.key !== null) args.push('key', record.key)
  if (record.topic !== null) args.push('topic', record.topic)
  args.push('stream', record.stream, 'partition', String(record.partition), 'offset', String(record.offset), 'timestamp', String(record.timestamp))
  for (const [name, value] of Object.entries(record.headers)) args.push(`${HEADER_FIELD_PREFIX}${name}`, value)
  return args
}

interface Xadd {
  /** The record's index in the deliver call. */
  index: number
  /** XADD key ... */
  args: (string | Buffer)[]
}

type PipelineResult = [error: Error | null, result: unknown][]

/** MULTI, the XADDs, EXEC in one pipeline; resolves with one [error, reply] per command. */
async function transaction(client: Redis, xadds: readonly Xadd[]): Promise<PipelineResult> {
  const pipeline = client.pipeline()
  // https://redis.io/docs/interact/transactions/: queued commands run in order with nothing between
  pipeline.call('MULTI')
  for (const x of xadds) pipeline.call('XADD', ...x.args)
  pipeline.call('EXEC')
  return (await pipeline.exec()) ?? []
}

type Describe = (err: unknown) => string

function refusal(err: Error, describe: Describe): Outcome {
  if (isTransient(err)) return { status: 'retry', error: describe(err) }
  const headers = isReplyError(err) ? { 'redis-error': replyCode(err) } : undefined
  return { status: 'rejected', error: `Redis refused XADD: ${err.message}`, headers }
}

/**
 * Fills the outcomes from a transaction's replies; returns the XADDs to send again: those
 * discarded with a transaction that Redis aborted (EXECABORT) only because other XADDs were
 * refused for good when queued (NOPERM, a syntax error).
 */
function settle(xadds: readonly Xadd[], results: PipelineResult, outcomes: (Outcome | undefined)[], describe: Describe): Xadd[] {
  const [execError, execReply] = results[xadds.length + 1] ?? [new Error('no EXEC reply'), null]
  if (!execError && Array.isArray(execReply)) {
    // EXEC ran: one reply per XADD, an error reply for one refused while running (WRONGTYPE)
    xadds.forEach((x, i) => {
      const reply: unknown = execReply[i]
      outcomes[x.index] = reply instanceof Error ? refusal(reply, describe) : { status: 'delivered' }
    })
    return []
  }
  // EXEC did not run (EXECABORT), or its reply was lost with the connection (it may have run: retry)
  const aborted = isReplyError(execError) && replyCode(execError) === 'EXECABORT'
  const discarded: Xadd[] = []
  let transient = !aborted
  xadds.forEach((x, i) => {
    const [err, reply] = results[i + 1] ?? [new Error('no reply'), null]
    if (err) {
      const outcome = refusal(err, describe)
      if (outcome.status === 'retry') transient = true
      outcomes[x.index] = outcome
    } else if (reply === 'QUEUED') discarded.push(x)
    // MULTI itself was refused (LOADING, BUSY): the XADD ran on its own and replied its id
    else outcomes[x.index] = { status: 'delivered' }
  })
  if (!transient && discarded.length < xadds.length) return discarded
  const why = execError ? describe(execError) : 'EXEC gave no reply'
  for (const x of discarded) outcomes[x.index] = { status: 'retry', error: why }
  return []
}

export class RedisSink implements Sink {
  readonly #target: RedisTarget
  readonly #deps: DriverDeps
  #client: Redis | null = null
  /** The server refused the handshake (SELECT, AUTH): the client must not be used. */
  #refused = false

  constructor(target: RedisTarget, deps: DriverDeps) {
    this.#target = target
    this.#deps = deps
  }

  async connect(signal: AbortSignal): Promise<void> {
    // a client whose handshake was refused (ended by createClient) is replaced, not reused
    if (this.#client && this.#refused) {
      this.#client.disconnect()
      this.#client = null
    }
    if (!this.#client) {
      const client = createClient(this.#target, { name: `culex:${this.#deps.bridge}:sink`, reconnect: true, commandTimeoutMs: this.#target.commandTimeoutMs })
      this.#refused = false
      client.on('error', (err: Error) => {
        if (isReplyError(err)) this.#refused = true
        // the client reconnects by itself; connection errors are reported through deliver's outcomes
        this.#deps.logger.debug({ err: err.message }, 'redis connection error')
      })
      this.#client = client
    }
    await whenReady(this.#client, this.#target.commandTimeoutMs, signal)
  }

  async deliver(records: readonly LogRecord[], signal: AbortSignal): Promise<Outcome[]> {
    const client = this.#client
    if (!client) throw new Error('redis sink is not connected')
    // nothing to wait for while the connection is down: the runner backs off and calls connect
    if (client.status !== 'ready' || this.#refused) throw new Error(`not connected to Redis at ${this.#target.host}:${this.#target.port} (${client.status})`)
    const outcomes: (Outcome | undefined)[] = new Array<Outcome | undefined>(records.length)
    let pending: Xadd[] = []
    records.forEach((record, index) => {
      try {
        pending.push({ index, args: [render(this.#target.key, record), ...xaddArgs(record, this.#target)] })
      } catch (err) {
        if (!(err instanceof MappingError)) throw err
        outcomes[index] = { status: 'rejected', error: err.message, headers: { 'redis-key-template': this.#target.key } }
      }
    })
    // each round either settles every XADD or takes out at least one refused at queue time
    for (let round = 0; pending.length > 0 && round <= records.length; round++) {
      // commandTimeout bounds each reply; abort only lets a stopping runner go sooner
      const results = await abortable(transaction(client, pending), signal).catch((err: unknown) => {
        throw new Error(describeError(err, this.#target))
      })
      pending = settle(pending, results, outcomes, (err) => describeError(err, this.#target))
    }
    return outcomes.map((o) => o ?? { status: 'retry', error: 'not sent' })
  }

  async close(): Promise<void> {
    const client = this.#client
    this.#client = null
    if (!client) return
    // QUIT waits for the replies of commands already sent; a dead server gets a disconnect
    await Promise.race([client.quit().catch(() => undefined), new Promise((res) => setTimeout(res, this.#target.commandTimeoutMs).unref())])
    client.disconnect()
  }
}
