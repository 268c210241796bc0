// RocksPersistence beyond the aedes-persistence abstract suite (test/node/persistence-abstract):
// what survives a restart, odd client ids and topics, the packet codec, and differential checks
// against the memory persistence (asyncPersistence.js) whose semantics it must match.
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { key } from '../../src/store/keys.js'
import { Store } from '../../src/store/store.js'
import type { GroupCommitStats } from '../../src/store/group-commit.js'
import { RocksPersistence, type PersistencePacket, type StoredPacket } from '../../src/persistence/persistence.js'
import { decodePacket, encodePacket } from '../../src/persistence/packet-codec.js'

// --- helpers --------------------------------------------------------------------------------

async function collect<T = StoredPacket>(stream: Readable): Promise<T[]> {
  const out: T[] = []
  for await (const item of stream) out.push(item as T)
  return out
}

const byTopic = (a: { topic?: unknown }, b: { topic?: unknown }): number => String(a.topic).localeCompare(String(b.topic))

class Node {
  private constructor(
    readonly dir: string,
    public store: Store,
    public persistence: RocksPersistence,
    readonly broker: { id: string }
  ) {}

  static async start(dir = mkdtempSync(join(tmpdir(), 'culex-persistence-')), brokerId = 'broker-1'): Promise<Node> {
    const store = await Store.open({ dataDir: dir, durability: 'fsync' })
    const persistence = await RocksPersistence.open(store)
    const broker = { id: brokerId }
    await persistence.setup(broker)
    const node = new Node(dir, store, persistence, broker)
    nodes.add(node)
    return node
  }

  /** Closes the Store and opens the same directory again, as a gateway restart does. */
  async restart(): Promise<void> {
    await this.persistence.destroy()
    await this.store.close()
    this.store = await Store.open({ dataDir: this.dir, durability: 'fsync' })
    this.persistence = await RocksPersistence.open(this.store)
    await this.persistence.setup(this.broker)
  }

  async stop(): Promise<void> {
    nodes.delete(this)
    await this.store.close()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

const nodes = new Set<Node>()
afterEach(async () => {
  for (const node of [...nodes]) await node.stop()
})

/** A deterministic PRNG, so a failing differential run can be replayed. */
function rng(seed: number): { int(n: number): number; pick<T>(items: readonly T[]): T } {
  let s = seed >>> 0
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
  return {
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)]!
  }
}

/** Comparable form of a packet: own keys (undefined ones included), Buffers as hex. */
function canon(packet: unknown): unknown {
  if (packet === undefined || packet === null) return packet
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(packet).sort()) {
    const v = (packet as Record<string, unknown>)[k]
    if (typeof v === 'function') continue
    out[k] = v instanceof Uint8Array ? `<bytes ${Buffer.from(v).toString('hex')}>` : v === undefined ? '<undefined>' : v
  }
  return out
}

interface MemoryPersistence {
  setup(broker: object): Promise<void>
  storeRetained(packet: object): Promise<void>
  createRetainedStream(pattern: string): Readable
  outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: object): Promise<void>
  outgoingUpdate(client: { id: string }, packet: object): Promise<void>
  outgoingClearMessageId(client: { id: string }, packet: object): Promise<unknown>
  outgoingStream(client: { id: string }): Readable
}
const require = createRequire(import.meta.url)
const MemoryPersistenceCtor = require('aedes-persistence/asyncPersistence.js') as new () => MemoryPersistence

async function memoryPersistence(): Promise<MemoryPersistence> {
  const memory = new MemoryPersistenceCtor()
  await memory.setup({ id: 'broker-1' })
  return memory
}

// --- restart recovery -----------------------------------------------------------------------

describe('RocksPersistence restart recovery', () => {
  it('restores retained messages, subscriptions, outgoing queues, incoming QoS 2 packets and wills', async () => {
    const node = await Node.start()
    let p = node.persistence

    // retained, one with MQTT 5 properties (a Buffer nested in them), one stored then cleared
    const retained: PersistencePacket[] = [
      { cmd: 'publish', topic: 'sensors/a/temp', payload: Buffer.from('21'), qos: 1, retain: true },
      {
        cmd: 'publish',
        topic: 'sensors/b/temp',
        payload: Buffer.from([0, 1, 2, 255]),
        qos: 0,
        retain: true,
        properties: { contentType: 'application/octet-stream', correlationData: Buffer.from('corr'), userProperties: { k: ['v1', 'v2'] } }
      },
      { cmd: 'publish', topic: 'other/x', payload: Buffer.from('x'), qos: 2, retain: true }
    ]
    for (const packet of retained) await p.storeRetained(packet)
    await p.storeRetained({ cmd: 'publish', topic: 'sensors/c/temp', payload: Buffer.from('gone'), qos: 0, retain: true })
    await p.storeRetained({ cmd: 'publish', topic: 'sensors/c/temp', payload: Buffer.alloc(0), qos: 0, retain: true })

    // subscriptions: QoS 1 with options and an identifier, QoS 0 (stored, not matched), bare QoS 2
    const c1 = { id: 'c1' }
    const c2 = { id: 'c2' }
    await p.addSubscriptions(c1, [
      { topic: 'sensors/#', qos: 1, rh: 0, rap: true, nl: false, subscriptionIdentifier: 7 },
      { topic: 'noqos', qos: 0, rh: 1, rap: false, nl: true }
    ])
    await p.addSubscriptions(c2, [
      { topic: 'sensors/a/temp', qos: 2 },
      { topic: 'gone', qos: 1 }
    ])
    await p.removeSubscriptions(c2, ['gone'])

    // outgoing queue of c1: five packets, messageIds given to some, one replaced by a PUBREL,
    // one cleared
    const publish = (n: number, payload: Buffer | string): PersistencePacket => ({
      cmd: 'publish',
      topic: `sensors/${n}`,
      payload,
      qos: 1,
      retain: false,
      dup: false,
      brokerId: 'broker-1',
      brokerCounter: n
    })
    for (let n = 1; n <= 5; n++) await p.outgoingEnqueueCombi([{ clientId: 'c1' }], publish(n, n === 4 ? 'a string payload' : Buffer.from(`m${n}`)))
    await p.outgoingEnqueue({ clientId: 'c2' }, publish(9, Buffer.from('for c2')))
    await p.outgoingUpdate(c1, { ...publish(1, Buffer.alloc(0)), messageId: 10 })
    await p.outgoingUpdate(c1, { ...publish(2, Buffer.alloc(0)), messageId: 11 })
    await p.outgoingUpdate(c1, { cmd: 'pubrel', messageId: 11 })
    await p.outgoingUpdate(c1, { ...publish(3, Buffer.alloc(0)), messageId: 12 })
    await p.outgoingClearMessageId(c1, { messageId: 12 })

    // incoming QoS 2
    await p.incomingStorePacket(c2, { cmd: 'publish', topic: 'in/1', payload: Buffer.from('one'), qos: 2, retain: false, dup: false, messageId: 42 })
    await p.incomingStorePacket(c2, { cmd: 'publish', topic: 'in/2', payload: Buffer.from('two'), qos: 2, retain: false, dup: false, messageId: 43 })
    await p.incomingDelPacket(c2, { messageId: 43 })

    // wills: one kept, one deleted
    await p.putWill(c1, { topic: 'wills/c1', payload: Buffer.from('bye'), qos: 1, retain: false })
    await p.putWill({ id: 'c3' }, { topic: 'wills/c3', payload: Buffer.from('bye3'), qos: 0, retain: false })
    await p.delWill({ id: 'c3' })

    const snapshot = async (): Promise<Record<string, unknown>> => ({
      retainedAll: (await collect(p.createRetainedStream('#'))).sort(byTopic),
      retainedSensors: (await collect(p.createRetainedStreamCombi(['sensors/+/temp', 'other/#']))).sort(byTopic),
      // the order of a client's subscriptions is not kept (key order after a restart)
      subsC1: (await p.subscriptionsByClient(c1)).sort(byTopic),
      subsC2: (await p.subscriptionsByClient(c2)).sort(byTopic),
      byTopic: (await p.subscriptionsByTopic('sensors/a/temp')).sort((a, b) => a.clientId.localeCompare(b.clientId)),
      noqos: await p.subscriptionsByTopic('noqos'),
      count: await p.countOffline(),
      clientList: (await collect<string>(p.getClientList('noqos'))).sort(),
      outC1: (await collect(p.outgoingStream(c1))).map(canon),
      outC2: (await collect(p.outgoingStream(c2))).map(canon),
      incoming42: canon(await p.incomingGetPacket(c2, { messageId: 42 })),
      will: canon(await p.getWill(c1)),
      wills: (await collect(p.streamWill())).map(canon)
    })

    const before = await snapshot()
    await node.restart()
    p = node.persistence
    const after = await snapshot()
    expect(after).toStrictEqual(before)

    // and the content is what was written, not only stable
    expect((before.retainedAll as StoredPacket[]).map((r) => r.topic)).toEqual(['other/x', 'sensors/a/temp', 'sensors/b/temp'])
    expect(after.retainedAll).toStrictEqual([...retained].sort(byTopic))
    expect((after.retainedSensors as StoredPacket[]).map((r) => r.topic)).toEqual(['other/x', 'sensors/a/temp', 'sensors/b/temp'])
    expect(after.subsC1).toStrictEqual([
      { topic: 'noqos', qos: 0, rh: 1, rap: false, nl: true },
      { topic: 'sensors/#', qos: 1, rh: 0, rap: true, nl: false, subscriptionIdentifier: 7 }
    ])
    expect(after.subsC2).toStrictEqual([{ topic: 'sensors/a/temp', qos: 2, rh: undefined, rap: undefined, nl: undefined }])
    expect(after.byTopic).toStrictEqual([
      { clientId: 'c1', topic: 'sensors/#', qos: 1, rh: 0, rap: true, nl: false },
      { clientId: 'c2', topic: 'sensors/a/temp', qos: 2, rh: undefined, rap: undefined, nl: undefined }
    ])
    expect(after.noqos).toStrictEqual([])
    expect(after.count).toStrictEqual({ subsCount: 2, clientsCount: 2 })
    expect(after.clientList).toStrictEqual(['c1'])

    const out = await collect(p.outgoingStream(c1))
    expect(out.map((o) => [o.cmd, o.brokerCounter, o.messageId])).toStrictEqual([
      ['publish', 1, 10],
      ['pubrel', undefined, 11],
      ['publish', 4, undefined],
      ['publish', 5, undefined]
    ])
    expect(out[0]!.payload).toStrictEqual(Buffer.from('m1'))
    expect(out[2]!.payload).toBe('a string payload')
    expect(out[1]).toStrictEqual({ cmd: 'pubrel', messageId: 11 })

    await expect(p.incomingGetPacket(c2, { messageId: 43 })).rejects.toThrow('no such packet')
    const incoming = await p.incomingGetPacket(c2, { messageId: 42 })
    expect(incoming.payload).toStrictEqual(Buffer.from('one'))
    expect(incoming.topic).toBe('in/1')

    expect(after.wills).toStrictEqual([canon({ topic: 'wills/c1', payload: Buffer.from('bye'), qos: 1, retain: false, brokerId: 'broker-1', clientId: 'c1' })])
    expect(await collect(p.streamWill({ 'broker-1': Date.now() }))).toStrictEqual([])
    expect(await p.getWill({ id: 'c3' })).toBeUndefined()

    // the queue keeps working after the restart: clear by restored messageId, update, append
    const cleared = await p.outgoingClearMessageId(c1, { messageId: 10 })
    expect(cleared?.brokerCounter).toBe(1)
    expect(cleared?.messageId).toBe(10)
    expect(cleared?.payload).toStrictEqual(Buffer.from('m1'))
    expect(await p.outgoingClearMessageId(c1, { messageId: 10 })).toBeUndefined()
    await p.outgoingUpdate(c1, { ...publish(5, Buffer.alloc(0)), messageId: 15 })
    await p.outgoingEnqueue({ clientId: 'c1' }, publish(6, Buffer.from('m6')))
    await expect(p.outgoingUpdate(c1, { ...publish(99, Buffer.alloc(0)), messageId: 99 })).rejects.toThrow('no such packet')

    await node.restart()
    p = node.persistence
    const again = await collect(p.outgoingStream(c1))
    expect(again.map((o) => [o.cmd, o.brokerCounter, o.messageId])).toStrictEqual([
      ['pubrel', undefined, 11],
      ['publish', 4, undefined],
      ['publish', 5, 15],
      ['publish', 6, undefined]
    ])
    // clearing everything leaves no queue behind
    for (const o of again) await p.outgoingClearMessageId(c1, o.messageId === undefined ? { messageId: 0 } : o)
    expect((await collect(p.outgoingStream(c1))).length).toBe(2) // the two without messageId
    await node.restart()
    expect((await collect(node.persistence.outgoingStream(c1))).map((o) => o.brokerCounter)).toStrictEqual([4, 6])
  })

  it('round-trips client ids and topics with unusual UTF-8 and "!"', async () => {
    const node = await Node.start()
    let p = node.persistence
    const ids = ['cl!ent/ü/😀', 'cl!ent', 'cl!ent/ü/😀!', '日本語\u2028!', '!']
    const topicOf = (id: string): string => `tøpic!/${id}/ä😀/!`
    for (const id of ids) {
      const client = { id }
      await p.storeRetained({ cmd: 'publish', topic: topicOf(id), payload: Buffer.from(id), qos: 1, retain: true })
      await p.addSubscriptions(client, [
        { topic: `${topicOf(id)}/#`, qos: 1, rh: 0, rap: false, nl: false },
        { topic: '!/+', qos: 0 }
      ])
      await p.outgoingEnqueue({ clientId: id }, { cmd: 'publish', topic: topicOf(id), payload: `payload ${id}`, qos: 1, brokerId: 'b', brokerCounter: 1 })
      await p.outgoingUpdate(client, { cmd: 'publish', topic: topicOf(id), qos: 1, brokerId: 'b', brokerCounter: 1, messageId: 7 })
      await p.incomingStorePacket(client, { cmd: 'publish', topic: topicOf(id), payload: Buffer.from('in'), qos: 2, messageId: 9 })
      await p.putWill(client, { topic: topicOf(id), payload: Buffer.from('will'), qos: 0, retain: false })
    }
    await node.restart()
    p = node.persistence
    for (const id of ids) {
      const client = { id }
      const retained = await collect(p.createRetainedStream(topicOf(id)))
      expect(retained.map((r) => [r.topic, String(r.payload)])).toStrictEqual([[topicOf(id), id]])
      expect(await p.subscriptionsByClient(client)).toStrictEqual([
        { topic: '!/+', qos: 0, rh: undefined, rap: undefined, nl: undefined },
        { topic: `${topicOf(id)}/#`, qos: 1, rh: 0, rap: false, nl: false }
      ]) // in key (byte) order after a restart
      const matched = await p.subscriptionsByTopic(`${topicOf(id)}/x`)
      expect(matched.map((s) => s.clientId)).toStrictEqual([id])
      const out = await collect(p.outgoingStream(client))
      expect(out.map((o) => [o.topic, o.payload, o.messageId])).toStrictEqual([[topicOf(id), `payload ${id}`, 7]])
      expect((await p.incomingGetPacket(client, { messageId: 9 })).topic).toBe(topicOf(id))
      expect((await p.getWill(client))?.clientId).toBe(id)
    }
    expect((await collect(p.createRetainedStream('tøpic!/#'))).length).toBe(ids.length)
    expect((await collect(p.streamWill())).map((w) => w.clientId).sort()).toStrictEqual([...ids].sort())
    expect(await p.countOffline()).toStrictEqual({ subsCount: ids.length, clientsCount: ids.length })
    // a client whose id extends another's is a different client
    await p.cleanIncoming({ id: 'cl!ent' })
    await p.cleanSubscriptions({ id: 'cl!ent' })
    await node.restart()
    p = node.persistence
    await expect(p.incomingGetPacket({ id: 'cl!ent' }, { messageId: 9 })).rejects.toThrow()
    expect((await p.incomingGetPacket({ id: 'cl!ent/ü/😀' }, { messageId: 9 })).messageId).toBe(9)
    expect(await p.subscriptionsByClient({ id: 'cl!ent' })).toStrictEqual([])
    expect((await p.subscriptionsByClient({ id: 'cl!ent/ü/😀!' })).length).toBe(2)
  })

  it('queues the writes of the publish path for the barrier, and resolves the others once committed', async () => {
    const node = await Node.start()
    const p = node.persistence
    const stats = (): GroupCommitStats => node.store.writer.getStats()
    const before = stats().commits
    // publish path: resolved at once, durable at the broker's barrier (one for the whole publish)
    await p.storeRetained({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 1, retain: true })
    await p.outgoingEnqueueCombi([{ clientId: 'off' }], { cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 1, brokerId: 'b', brokerCounter: 9 })
    await p.incomingStorePacket({ id: 'q2' }, { cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 2, messageId: 1 })
    expect(stats()).toMatchObject({ commits: before, pendingOps: 3 })
    await node.store.barrier()
    expect(stats()).toMatchObject({ commits: before + 1, pendingOps: 0 })
    // everything else: resolved once committed
    await p.addSubscriptions({ id: 'sub' }, [{ topic: 'x/#', qos: 1 }])
    expect(stats()).toMatchObject({ commits: before + 2, pendingOps: 0 })
    await p.incomingDelPacket({ id: 'q2' }, { messageId: 1 })
    expect(stats()).toMatchObject({ commits: before + 3, pendingOps: 0 })
    // reading a queue while its writes are still pending sees them
    const client = { id: 'c' }
    const base = { cmd: 'publish', topic: 't', qos: 1, brokerId: 'b' }
    const enqueued = p.outgoingEnqueue({ clientId: 'c' }, { ...base, payload: Buffer.from('p1'), brokerCounter: 1 })
    const updated = p.outgoingUpdate(client, { ...base, brokerCounter: 1, messageId: 3 })
    const streamed = collect(p.outgoingStream(client))
    expect(node.store.writer.getStats().pendingOps).toBe(2)
    expect((await streamed).map((o) => [o.messageId, String(o.payload)])).toStrictEqual([[3, 'p1']])
    await Promise.all([enqueued, updated])
    // and so does clearing an entry whose write is not committed yet
    const enqueued2 = p.outgoingEnqueue({ clientId: 'c' }, { ...base, payload: Buffer.from('p2'), brokerCounter: 2 })
    const cleared = p.outgoingClearMessageId(client, {})
    expect(node.store.writer.getStats().pendingOps).toBe(2) // its put, then its delete
    await enqueued2
    expect(String((await cleared)?.payload)).toBe('p2')
    // a stream yields the entries still queued when it reaches them (cleared ones are skipped)
    const late = collect(p.outgoingStream(client))
    await p.outgoingClearMessageId(client, { messageId: 3 })
    expect(await late).toStrictEqual([])
    expect(await collect(p.outgoingStream(client))).toStrictEqual([])
  })

  it('broadcastSubscriptions shares subscriptions over the broker (aedes-persistence option)', async () => {
    interface Emitter {
      emit(packet: object, cb?: (err?: Error) => void): void
      on(topic: string, fn: (packet: object, cb: () => void) => void, cb?: (err?: Error) => void): void
      removeListener(topic: string, fn: (packet: object, cb: () => void) => void, cb?: (err?: Error) => void): void
      close(cb: () => void): void
    }
    const mq = (require('mqemitter') as () => Emitter)()
    const broker = { id: 'b', publish: mq.emit.bind(mq), subscribe: mq.on.bind(mq), unsubscribe: mq.removeListener.bind(mq) }
    const dir = mkdtempSync(join(tmpdir(), 'culex-persistence-'))
    const store = await Store.open({ dataDir: dir, durability: 'fsync' })
    try {
      const p = await RocksPersistence.open(store, { broadcastSubscriptions: true })
      await p.setup(broker)
      await p.addSubscriptions({ id: 'x' }, [{ topic: 'a/+', qos: 1 }])
      expect((await p.subscriptionsByTopic('a/b')).map((s) => s.clientId)).toStrictEqual(['x'])
      await p.removeSubscriptions({ id: 'x' }, ['a/+'])
      expect(await p.subscriptionsByTopic('a/b')).toStrictEqual([])
      await p.destroy()
    } finally {
      await store.close()
      await new Promise<void>((resolve) => mq.close(resolve))
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('destroy() leaves the Store open and throws when called twice', async () => {
    const node = await Node.start()
    await node.persistence.destroy()
    await expect(node.persistence.destroy()).rejects.toThrow('destroyed called twice!')
    expect(node.store.isOpen).toBe(true)
  })
})

// --- codec ----------------------------------------------------------------------------------

describe('retained messages on disk', () => {
  it('keeps only the topics in memory and reads the packets from RocksDB, pending writes included', async () => {
    const node = await Node.start()
    const p = node.persistence
    await p.storeRetained({ cmd: 'publish', topic: 'r/a', payload: Buffer.from('one'), qos: 1, retain: true })
    // not committed yet: read from the overlay
    expect((await collect(p.createRetainedStream('r/+'))).map((x) => String(x.payload))).toEqual(['one'])
    await node.store.barrier()
    await p.storeRetained({ cmd: 'publish', topic: 'r/b', payload: Buffer.from('two'), qos: 0, retain: true })
    await node.store.barrier()
    expect((await collect(p.createRetainedStream('r/#'))).map((x) => String(x.payload)).sort()).toEqual(['one', 'two'])
    // an empty payload deletes
    await p.storeRetained({ cmd: 'publish', topic: 'r/a', payload: Buffer.alloc(0), qos: 0, retain: true })
    expect((await collect(p.createRetainedStream('r/#'))).map((x) => x.topic)).toEqual(['r/b'])
    expect(p.retainedCount).toBe(1)
    await node.store.barrier()
    await node.restart()
    expect((await collect(node.persistence.createRetainedStream('#'))).map((x) => String(x.payload))).toEqual(['two'])
  })

  it('skips stored retained topics no client could publish (U+0000, a wildcard), instead of failing the start', async () => {
    const node = await Node.start()
    // as an earlier Culex let them through: written straight into the store
    const packet = (topic: string): Buffer => encodePacket({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, retain: true })
    for (const topic of ['bad\u0000topic', 'wild/+', 'good']) await node.store.write([{ type: 'put', key: key('r', topic), value: packet(topic) }])
    await node.persistence.destroy()
    const skipped: string[] = []
    const persistence = await RocksPersistence.open(node.store, { onInvalidRetained: (topic) => skipped.push(topic) })
    expect(skipped.sort()).toEqual(['bad\u0000topic', 'wild/+'])
    expect((await collect(persistence.createRetainedStream('#'))).map((x) => x.topic)).toEqual(['good'])
  })
})

describe('packet codec', () => {
  it('keeps keys, undefined values, payload type and nested Buffers', () => {
    const packet = {
      cmd: 'publish',
      topic: 't',
      payload: 'a string',
      messageId: undefined,
      qos: 1,
      properties: { correlationData: Buffer.from([0, 1, 2]), userProperties: { $b: 'not a buffer' } },
      writeCallback: () => {}
    }
    const decoded = decodePacket(encodePacket(packet))
    expect(Object.keys(decoded)).toStrictEqual(['cmd', 'topic', 'payload', 'messageId', 'qos', 'properties'])
    expect(decoded).toStrictEqual({
      cmd: 'publish',
      topic: 't',
      payload: 'a string',
      messageId: undefined,
      qos: 1,
      properties: { correlationData: Buffer.from([0, 1, 2]), userProperties: { $b: 'not a buffer' } }
    })
    const bytes = decodePacket(encodePacket({ payload: new Uint8Array([9, 8, 7]), topic: 'x' }))
    expect(bytes.payload).toStrictEqual(Buffer.from([9, 8, 7]))
    expect(decodePacket(encodePacket({ cmd: 'pubrel', messageId: 4 }))).toStrictEqual({ cmd: 'pubrel', messageId: 4 })
    expect(() => decodePacket(Buffer.from('{}'))).toThrow()
  })
})

// --- differential checks against the memory persistence and the MQTT matching rules ---------

/** A filter is valid if '#' appears only as the whole last level (MQTT 4.7.1.2). */
function isValidFilter(filter: string): boolean {
  const levels = filter.split('/')
  return levels.every((l, i) => (l === '#' ? i === levels.length - 1 : !l.includes('#')))
}

/** MQTT 3.1.1 section 4.7 topic matching, written plainly as the oracle. */
function mqttMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

describe('same behaviour as the memory persistence', () => {
  it('retained wildcard lookups follow the MQTT matching rules', async () => {
    const node = await Node.start()
    const r = rng(1)
    const levels = ['a', 'b', '', '$SYS', 'ü!']
    const topics = new Set<string>()
    const retained = new Map<string, { topic: string; payload: Buffer }>()
    for (let i = 0; i < 300; i++) {
      const topic = Array.from({ length: 1 + r.int(4) }, () => r.pick(levels)).join('/')
      topics.add(topic)
      const empty = r.int(5) === 0
      const packet = { cmd: 'publish', topic, payload: empty ? Buffer.alloc(0) : Buffer.from(String(i)), qos: 0, retain: true }
      await node.persistence.storeRetained(packet)
      if (empty) retained.delete(topic)
      else retained.set(topic, packet)
    }
    const filterLevels = [...levels, '+', '+']
    const patterns = ['#', '+', '+/#', 'a/#/b']
    for (let i = 0; i < 300; i++) {
      const parts = Array.from({ length: 1 + r.int(4) }, () => r.pick(filterLevels))
      if (r.int(3) === 0) parts.push('#')
      patterns.push(parts.join('/'))
    }
    patterns.push(...topics)
    const key = (p: { topic?: unknown; payload?: unknown }): string => `${String(p.topic)}=${String(p.payload)}`
    for (const pattern of patterns.filter(isValidFilter)) {
      const ours = (await collect(node.persistence.createRetainedStream(pattern))).map(key).sort()
      const expected = [...retained.values()]
        .filter((p) => mqttMatches(pattern, p.topic))
        .map(key)
        .sort()
      expect(ours, pattern).toStrictEqual(expected)
    }
  })

  it('outgoing queues under random enqueue / update / clear, across restarts', async () => {
    const node = await Node.start()
    const memory = await memoryPersistence()
    // CULEX_FUZZ_SEED replays / explores other runs
    const r = rng(Number(process.env.CULEX_FUZZ_SEED ?? 7))
    const clients = ['c1', 'c2', 'c3']
    const brokers = ['broker-1', 'broker-2', undefined]
    let counter = 0
    const log: string[] = []
    const seen = { updated: 0, replaced: 0, missing: 0, cleared: 0, longest: 0 }

    const compareQueues = async (): Promise<void> => {
      for (const id of clients) {
        const ours = (await collect(node.persistence.outgoingStream({ id }))).map(canon)
        const theirs = (await collect(memory.outgoingStream({ id }))).map(canon)
        expect(ours, `${id} after ${log.slice(-5).join(' | ')}`).toStrictEqual(theirs)
        seen.longest = Math.max(seen.longest, ours.length)
      }
    }

    for (let step = 0; step < 1500; step++) {
      const op = r.int(10)
      const client = { id: r.pick(clients) }
      if (op < 4) {
        const subs = clients.filter(() => r.int(2) === 0).map((clientId) => ({ clientId }))
        const packet: PersistencePacket = {
          cmd: 'publish',
          topic: `t/${step}`,
          payload: r.int(4) === 0 ? `s${step}` : Buffer.from(`b${step}`),
          qos: r.pick([0, 1, 2]),
          retain: r.int(5) === 0,
          dup: false,
          brokerId: r.pick(brokers),
          brokerCounter: r.int(3) === 0 ? r.int(5) : ++counter
        }
        if (r.int(3) === 0) packet.messageId = r.int(6)
        log.push(`enqueue ${subs.map((s) => s.clientId).join(',')} ${JSON.stringify(packet)}`)
        await node.persistence.outgoingEnqueueCombi(subs, packet)
        await memory.outgoingEnqueueCombi(subs, { ...packet })
      } else if (op < 7) {
        const kind = r.int(4)
        const make = (): PersistencePacket =>
          kind === 0
            ? { cmd: 'pubrel', messageId: r.int(6) }
            : {
                cmd: 'publish',
                topic: 'u',
                payload: Buffer.from(`u${step}`),
                qos: 1,
                brokerId: r.pick(brokers),
                brokerCounter: r.int(3) === 0 ? r.int(5) : r.int(counter + 1),
                messageId: kind === 3 ? undefined : r.int(6)
              }
        const packet = make()
        log.push(`update ${client.id} ${JSON.stringify(packet)}`)
        const ours = await node.persistence.outgoingUpdate(client, { ...packet }).then(
          () => 'ok',
          (err: unknown) => (err as Error).message
        )
        const theirs = await memory.outgoingUpdate(client, { ...packet }).then(
          () => 'ok',
          (err: unknown) => (err as Error).message
        )
        expect(ours, log.slice(-3).join(' | ')).toBe(theirs)
        if (ours !== 'ok') seen.missing++
        else if (packet.cmd === 'pubrel' || packet.brokerId === undefined) seen.replaced++
        else seen.updated++
      } else if (op < 9) {
        const packet = r.int(6) === 0 ? {} : { messageId: r.int(6) }
        log.push(`clear ${client.id} ${JSON.stringify(packet)}`)
        const ours = await node.persistence.outgoingClearMessageId(client, packet)
        const theirs = await memory.outgoingClearMessageId(client, packet)
        expect(canon(ours), log.slice(-3).join(' | ')).toStrictEqual(canon(theirs))
        if (ours) seen.cleared++
      } else {
        await compareQueues()
      }
      if (step % 500 === 499) {
        await node.restart()
        await compareQueues()
      }
    }
    await compareQueues()
    // the run did exercise every path
    expect(seen.updated).toBeGreaterThan(50)
    expect(seen.replaced).toBeGreaterThan(20)
    expect(seen.missing).toBeGreaterThan(20)
    expect(seen.cleared).toBeGreaterThan(50)
    expect(seen.longest).toBeGreaterThan(20)
  })
})
