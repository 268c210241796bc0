import mqttPacket, { type Packet } from 'mqtt-packet'

// Generated MQTT input for the fuzz test: valid packets of every kind, and the same packets broken
// in the ways a hostile or buggy client breaks them. Deterministic for a seed (mulberry32).

export type Random = () => number

export function mulberry32(seed: number): Random {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const int = (r: Random, n: number): number => Math.floor(r() * n)
const pick = <T>(r: Random, items: readonly T[]): T => items[int(r, items.length)] as T

const TOPIC_PARTS = ['fz', 'a', 'b', '', '+', '#', '$SYS', 'ü', '😀', 'x'.repeat(300), 'dev-1', 'tele\u0001m']

function topic(r: Random, allowWildcards: boolean): string {
  const levels = 1 + int(r, 5)
  const parts = Array.from({ length: levels }, () => pick(r, TOPIC_PARTS))
  const t = parts.join('/')
  return allowWildcards ? t : t.replace(/[+#]/g, 'w')
}

/** A valid packet of any kind (a CONNECT only when `connect`). */
export function validPacket(r: Random, connect: boolean): Packet {
  if (connect) {
    const clientId = r() < 0.1 ? '' : `fz-${int(r, 40)}`
    return {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      // mqtt-packet will not encode an empty id with clean 0; hostile-test covers that refusal
      clean: clientId === '' || r() < 0.7,
      clientId,
      keepalive: pick(r, [0, 5, 60]),
      ...(r() < 0.3 ? { will: { topic: `fz/will/${int(r, 5)}`, payload: Buffer.from('gone'), qos: int(r, 3) as 0 | 1 | 2, retain: r() < 0.2 } } : {})
    }
  }
  const id = 1 + int(r, 65_535)
  switch (int(r, 9)) {
    case 0:
    case 1:
    case 2: {
      const qos = int(r, 3) as 0 | 1 | 2
      const size = r() < 0.05 ? 200_000 : int(r, 300)
      return {
        cmd: 'publish',
        topic: topic(r, false),
        payload: Buffer.alloc(size, int(r, 256)),
        qos,
        messageId: qos > 0 ? id : undefined,
        retain: r() < 0.2,
        dup: r() < 0.1
      }
    }
    case 3: {
      const count = r() < 0.05 ? 2000 : 1 + int(r, 5)
      return {
        cmd: 'subscribe',
        messageId: id,
        subscriptions: Array.from({ length: count }, (_, i) => ({ topic: count > 5 ? `fz/many/${i}/#` : topic(r, true), qos: int(r, 3) as 0 | 1 | 2 }))
      }
    }
    case 4:
      return { cmd: 'unsubscribe', messageId: id, unsubscriptions: [topic(r, true)] }
    case 5:
      return { cmd: pick(r, ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const), messageId: id }
    case 6:
      return { cmd: 'pingreq' }
    case 7:
      // a second CONNECT on a connection (a protocol violation [MQTT-3.1.0-2])
      return validPacket(r, true)
    default:
      return { cmd: 'publish', topic: `fz/ok/${int(r, 10)}`, payload: Buffer.from('v'), qos: 0, retain: false, dup: false }
  }
}

export type Mutation = 'none' | 'flip' | 'truncate' | 'huge-length' | 'bad-varint' | 'qos3' | 'flags' | 'bad-utf8' | 'nul' | 'wildcard-topic' | 'garbage'

export const MUTATIONS: readonly Mutation[] = [
  'none',
  'none',
  'none',
  'flip',
  'truncate',
  'huge-length',
  'bad-varint',
  'qos3',
  'flags',
  'bad-utf8',
  'nul',
  'wildcard-topic',
  'garbage'
]

/** The header length of an encoded packet (type byte + remaining-length bytes). */
function headerLength(bytes: Buffer): number {
  let n = 1
  while (n < 5 && ((bytes[n] ?? 0) & 0x80) !== 0) n++
  return n + 1
}

/** Breaks an encoded packet; 'none' leaves it valid. */
export function mutate(r: Random, bytes: Buffer, m: Mutation): Buffer {
  const out = Buffer.from(bytes)
  const h = headerLength(out)
  switch (m) {
    case 'none':
      return out
    case 'flip':
      out[int(r, out.length)] = int(r, 256)
      return out
    case 'truncate':
      return out.subarray(0, int(r, out.length))
    case 'huge-length':
      // claims 256 MiB
      return Buffer.concat([out.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, 0x7f]), out.subarray(h)])
    case 'bad-varint':
      return Buffer.concat([out.subarray(0, 1), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01]), out.subarray(h)])
    case 'qos3':
      out[0] = 0x36 | ((out[0] ?? 0) & 1)
      return out
    case 'flags':
      out[0] = ((out[0] ?? 0) & 0xf0) | int(r, 16)
      return out
    case 'bad-utf8':
    case 'nul':
    case 'wildcard-topic': {
      // the first string field after the header (a topic, a protocol name): replace a byte of it
      if (out.length < h + 3) return out
      const length = out.readUInt16BE(h)
      if (length === 0 || h + 2 + length > out.length) return out
      const at = h + 2 + int(r, length)
      if (m === 'nul') out[at] = 0
      else if (m === 'wildcard-topic') out[at] = 0x23
      else {
        out[at] = pick(r, [0xc0, 0xed, 0xff, 0x80])
      }
      return out
    }
    case 'garbage':
      return Buffer.from(Array.from({ length: 1 + int(r, 64) }, () => int(r, 256)))
  }
}

export function encode(packet: Packet): Buffer {
  return mqttPacket.generate(packet)
}
