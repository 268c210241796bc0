import type { Redis } from 'ioredis'
import { InboundRefused, type DriverDeps, type Source, type SourceContext } from '../types.js'
import type { RedisSourceOptions } from './config.js'
import { abortable, createClient, describeError, whenReady } from './connection.js'

// Inbound: a Redis consumer group (https://redis.io/docs/data-types/streams/#consumer-groups).
// An entry read with XREADGROUP sits in this consumer's pending entries list (PEL) until XACK;
// XACK follows ctx.publish, so an entry read but not published (Culex stopped, the process was
// killed) stays pending and is read again: on start the source first reads its own PEL (id 0),
// then new entries ('>'), and, with claim-idle, takes over entries other consumers left pending
// (XAUTOCLAIM). XREADGROUP BLOCK runs on a connection of its own so XACK never waits behind it.

export interface StreamEntry {
  id: string
  /** null: the entry was deleted (XDEL, MAXLEN) while pending. */
  fields: Map<string, Buffer> | null
}

function text(b: unknown): string {
  if (Buffer.isBuffer(b)) return b.toString('utf8')
  if (typeof b === 'string') return b
  throw new Error(`unexpected reply element ${typeof b}`)
}

/** [id, [field, value, ...] | null] -> StreamEntry */
function parseEntry(raw: unknown): StreamEntry {
  if (!Array.isArray(raw) || raw.length < 2) throw new Error('unexpected stream entry reply')
  const [id, flat] = raw as [unknown, unknown]
  if (flat === null) return { id: text(id), fields: null }
  if (!Array.isArray(flat)) throw new Error('unexpected stream entry fields')
  const fields = new Map<string, Buffer>()
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const v: unknown = flat[i + 1]
    // the first occurrence wins when a field name repeats (XADD allows it)
    const name = text(flat[i])
    if (!fields.has(name)) fields.set(name, Buffer.isBuffer(v) ? v : Buffer.from(text(v)))
  }
  return { id: text(id), fields }
}

/** XREAD / XREADGROUP reply (RESP2): null on timeout, else [[key, [entry, ...]], ...]. */
export function parseReadReply(reply: unknown): StreamEntry[] {
  if (reply === null) return []
  if (!Array.isArray(reply)) throw new Error('unexpected XREADGROUP reply')
  const out: StreamEntry[] = []
  for (const stream of reply as unknown[]) {
    if (!Array.isArray(stream) || !Array.isArray(stream[1])) throw new Error('unexpected XREADGROUP reply')
    for (const entry of stream[1] as unknown[]) out.push(parseEntry(entry))
  }
  return out
}

/** XAUTOCLAIM reply: [next-start-id, [entry, ...], [deleted-id, ...] (Redis 7)]. */
export function parseAutoclaimReply(reply: unknown): { next: string; entries: StreamEntry[] } {
  if (!Array.isArray(reply) || reply.length < 2 || !Array.isArray(reply[1])) throw new Error('unexpected XAUTOCLAIM reply')
  // entries deleted while pending are taken out of the PEL by XAUTOCLAIM itself (Redis >= 7)
  const entries = (reply[1] as unknown[]).filter((e) => e !== null).map(parseEntry)
  return { next: text(reply[0]), entries }
}

/** The MQTT topic of an entry from the template: {key}, {field:<name>}; a string saying why not. */
export function entryTopic(template: string, streamKey: string, fields: Map<string, Buffer>): { topic: string } | { problem: string } {
  const missing: string[] = []
  const topic = template.replace(/\{(key|field:[^{}]+)\}/g, (_, name: string) => {
    if (name === 'key') return streamKey
    const field = name.slice('field:'.length)
    const value = fields.get(field)
    if (value === undefined) {
      missing.push(field)
      return ''
    }
    return value.toString('utf8')
  })
  if (missing.length > 0) return { problem: `the entry has no field ${JSON.stringify(missing[0])} for the topic template` }
  // MQTT 3.1.1 4.7.3: a topic name is at least one character; 4.7.1: no wildcards in it
  if (topic.length === 0) return { problem: 'the topic is empty' }
  if (/[+#\0]/.test(topic)) return { problem: `the topic ${JSON.stringify(topic)} holds '+', '#' or NUL` }
  return { topic }
}

export class RedisSource implements Source {
  readonly #options: RedisSourceOptions
  readonly #consumer: string
  readonly #deps: DriverDeps

  constructor(options: RedisSourceOptions, deps: DriverDeps) {
    this.#options = options
    this.#deps = deps
    this.#consumer = options.consumer ?? deps.bridge
  }

  async run(ctx: SourceContext): Promise<void> {
    const o = this.#options
    const name = `culex:${this.#deps.bridge}:source`
    const cmd = createClient(o, { name, reconnect: false, commandTimeoutMs: o.commandTimeoutMs })
    // the BLOCK of XREADGROUP is part of its reply time
    const blocking = createClient(o, { name: `${name}:block`, reconnect: false, commandTimeoutMs: o.blockMs + o.commandTimeoutMs })
    for (const client of [cmd, blocking]) client.on('error', (err: Error) => ctx.logger.debug({ err: err.message }, 'redis connection error'))
    // closing the blocking connection ends an XREADGROUP BLOCK at once
    const onAbort = (): void => blocking.disconnect()
    ctx.signal.addEventListener('abort', onAbort)
    try {
      await Promise.all([whenReady(cmd, o.commandTimeoutMs, ctx.signal), whenReady(blocking, o.commandTimeoutMs, ctx.signal)])
      await this.#createGroup(cmd, ctx)
      await this.#ownPending(cmd, ctx)
      ctx.connected()
      ctx.logger.info({ key: o.key, group: o.group, consumer: this.#consumer }, 'redis source consuming')
      let claimedAt = 0
      while (!ctx.signal.aborted) {
        if (o.claimIdleMs !== null && Date.now() - claimedAt >= o.claimIdleMs) {
          await this.#claim(cmd, ctx)
          claimedAt = Date.now()
        }
        const reply = await blocking.callBuffer('XREADGROUP', 'GROUP', o.group, this.#consumer, 'COUNT', o.count, 'BLOCK', o.blockMs, 'STREAMS', o.key, '>')
        for (const entry of parseReadReply(reply)) await this.#handle(cmd, entry, ctx)
      }
    } catch (err) {
      if (ctx.signal.aborted) return
      const described = describeError(err, o)
      throw err instanceof Error && described === err.message ? err : new Error(described)
    } finally {
      ctx.signal.removeEventListener('abort', onAbort)
      cmd.disconnect()
      blocking.disconnect()
    }
  }

  async #createGroup(cmd: Redis, ctx: SourceContext): Promise<void> {
    const o = this.#options
    try {
      // https://redis.io/commands/xgroup-create/: MKSTREAM creates an empty stream when the key is missing
      await cmd.call('XGROUP', 'CREATE', o.key, o.group, o.startId, 'MKSTREAM')
      ctx.logger.info({ key: o.key, group: o.group, startId: o.startId }, 'redis consumer group created')
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('BUSYGROUP'))) throw err
    }
  }

  /** Entries this consumer read before and never acked (a crash, a stop before the publish resolved). */
  async #ownPending(cmd: Redis, ctx: SourceContext): Promise<void> {
    const o = this.#options
    let after = '0'
    // each round acks or throws, so the PEL shrinks; the bound only guards against a surprise
    for (let round = 0; round < 1_000_000 && !ctx.signal.aborted; round++) {
      const entries = parseReadReply(await cmd.callBuffer('XREADGROUP', 'GROUP', o.group, this.#consumer, 'COUNT', o.count, 'STREAMS', o.key, after))
      if (entries.length === 0) return
      if (round === 0) ctx.logger.info({ key: o.key, consumer: this.#consumer }, 'redis source re-reads its pending entries')
      for (const entry of entries) await this.#handle(cmd, entry, ctx)
      after = entries[entries.length - 1]?.id ?? after
    }
  }

  /** XAUTOCLAIM: entries other consumers (gone for good) left pending longer than claim-idle. */
  async #claim(cmd: Redis, ctx: SourceContext): Promise<void> {
    const o = this.#options
    let start = '0-0'
    for (let round = 0; round < 10_000 && !ctx.signal.aborted; round++) {
      const reply = parseAutoclaimReply(await cmd.callBuffer('XAUTOCLAIM', o.key, o.group, this.#consumer, o.claimIdleMs ?? 0, start, 'COUNT', o.count))
      if (reply.entries.length > 0) ctx.logger.info({ key: o.key, claimed: reply.entries.length }, 'redis source claimed idle pending entries')
      for (const entry of reply.entries) await this.#handle(cmd, entry, ctx)
      if (reply.next === '0-0') return
      start = reply.next
    }
  }

  async #handle(cmd: Redis, entry: StreamEntry, ctx: SourceContext): Promise<void> {
    const o = this.#options
    if (ctx.signal.aborted) throw new Error('aborted')
    if (entry.fields === null) {
      // deleted while pending: nothing left to publish
      ctx.logger.warn({ key: o.key, id: entry.id }, 'redis entry was deleted before it was published; acked')
      await cmd.call('XACK', o.key, o.group, entry.id)
      return
    }
    const mapped = entryTopic(o.topic, o.key, entry.fields)
    const payload = entry.fields.get(o.valueField)
    if ('problem' in mapped) return this.#refuse(cmd, entry, mapped.problem, ctx)
    if (payload === undefined) return this.#refuse(cmd, entry, `the entry has no field ${JSON.stringify(o.valueField)} (value-field)`, ctx)
    try {
      await abortable(ctx.publish({ topic: mapped.topic, payload, qos: o.qos, retain: o.retain }), ctx.signal)
    } catch (err) {
      if (err instanceof InboundRefused) return this.#refuse(cmd, entry, err.message, ctx)
      // not acked: the entry stays in the PEL and is read again on the next run
      throw err
    }
    await cmd.call('XACK', o.key, o.group, entry.id)
  }

  /** Culex will never take it: XADD to the dead-letter key and XACK in one MULTI, or XACK and drop. */
  async #refuse(cmd: Redis, entry: StreamEntry, reason: string, ctx: SourceContext): Promise<void> {
    const o = this.#options
    if (o.deadLetterKey === null) {
      ctx.logger.warn({ key: o.key, id: entry.id, reason }, 'redis entry refused by Culex; acked and dropped')
      await cmd.call('XACK', o.key, o.group, entry.id)
      return
    }
    const fields: (string | Buffer)[] = []
    for (const [k, v] of entry.fields ?? []) fields.push(k, v)
    fields.push('culex-dlq-error', reason, 'culex-dlq-key', o.key, 'culex-dlq-id', entry.id, 'culex-dlq-group', o.group)
    // MULTI/EXEC: the dead letter and the XACK happen together or not at all
    const results = await cmd
      .multi()
      .call('XADD', o.deadLetterKey, '*', ...fields)
      .call('XACK', o.key, o.group, entry.id)
      .exec()
    const failed = results?.find(([err]) => err !== null)?.[0]
    if (!results || failed) throw failed ?? new Error('MULTI/EXEC of the dead letter was aborted')
    ctx.logger.warn({ key: o.key, id: entry.id, reason, deadLetterKey: o.deadLetterKey }, 'redis entry refused by Culex; moved to the dead-letter key')
  }
}
