import { topicFilterProblem, utf8Problem } from '../mqtt/topics.js'

// Checks on the raw bytes of incoming packets, for what aedes's parser (mqtt-packet) cannot see
// or lets through: it decodes strings with replacement characters, so ill-formed UTF-8 and an
// encoded U+0000 look like valid text afterwards. The packet guard (packet-guard.ts) hands each
// CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE to `checkPacket` with its fixed-header byte and its
// body (for PUBLISH only the variable header, the payload is not needed); a problem closes the
// connection, as MQTT 3.1.1 requires for each of them. Clause numbers are MQTT 3.1.1's.

export const CONNECT = 1
export const PUBLISH = 3
export const SUBSCRIBE = 8
export const UNSUBSCRIBE = 10

/** How many body bytes a check needs: all of them, or for PUBLISH the topic and packet id. */
export function bytesNeeded(type: number, flags: number, body: Buffer, bodyLength: number): number {
  if (type !== PUBLISH) return bodyLength
  if (body.length < 2) return Math.min(2, bodyLength)
  const qos = (flags >> 1) & 3
  return Math.min(bodyLength, 2 + body.readUInt16BE(0) + (qos > 0 ? 2 : 0))
}

export function needsCheck(type: number): boolean {
  return type === CONNECT || type === PUBLISH || type === SUBSCRIBE || type === UNSUBSCRIBE
}

class Reader {
  at = 0
  constructor(private readonly buf: Buffer) {}
  get left(): number {
    return this.buf.length - this.at
  }
  u8(): number | null {
    if (this.left < 1) return null
    return this.buf[this.at++] ?? null
  }
  u16(): number | null {
    if (this.left < 2) return null
    const v = this.buf.readUInt16BE(this.at)
    this.at += 2
    return v
  }
  bytes(n: number): Buffer | null {
    if (this.left < n) return null
    const b = this.buf.subarray(this.at, this.at + n)
    this.at += n
    return b
  }
  /** A length-prefixed UTF-8 string's bytes [MQTT-1.5.3]. */
  string(): Buffer | null {
    const n = this.u16()
    return n === null ? null : this.bytes(n)
  }
}

function stringProblem(what: string, bytes: Buffer | null): string | null {
  if (bytes === null) return `${what} is cut short`
  const problem = utf8Problem(bytes)
  return problem ? `${what}: ${problem}` : null
}

/** Why the packet must close the connection, or null. */
export function checkPacket(type: number, flags: number, body: Buffer, maxTopicLength: number): string | null {
  const r = new Reader(body)
  switch (type) {
    case CONNECT:
      return checkConnect(r)
    case PUBLISH:
      return checkPublishAt(body, 0, flags, maxTopicLength)
    case SUBSCRIBE:
    case UNSUBSCRIBE: {
      const name = type === SUBSCRIBE ? 'SUBSCRIBE' : 'UNSUBSCRIBE'
      // fixed header flags 0010 [MQTT-3.8.1-1, MQTT-3.10.1-1]
      if (flags !== 2)
        return `${name} with fixed-header flags ${flags.toString(2).padStart(4, '0')}, not 0010 [${type === SUBSCRIBE ? 'MQTT-3.8.1-1' : 'MQTT-3.10.1-1'}]`
      if (r.u16() === 0) return `${name} with packet identifier 0 [MQTT-2.3.1-1]`
      let filters = 0
      while (r.left > 0) {
        const filter = r.string()
        const problem = stringProblem('a topic filter', filter) ?? (filter ? filterShape(filter) : null)
        if (problem) return problem
        if (type === SUBSCRIBE) {
          const options = r.u8()
          // requested QoS 0-2, the other bits reserved [MQTT-3-8.3-4]
          if (options === null || options > 2) return `SUBSCRIBE with requested QoS byte ${options ?? 'missing'} [MQTT-3-8.3-4]`
        }
        filters++
      }
      // at least one filter [MQTT-3.8.3-3, MQTT-3.10.3-2]
      if (filters === 0) return `${name} with no topic filter [${type === SUBSCRIBE ? 'MQTT-3.8.3-3' : 'MQTT-3.10.3-2'}]`
      return null
    }
    default:
      return null
  }
}

/**
 * The PUBLISH checks on the variable header at `at` of `buf` (the topic and packet id must be
 * there: bytesNeeded), without copying: the packet guard runs this on every PUBLISH, in place in
 * the socket's chunk. A topic of ASCII without U+0000 needs no UTF-8 decoder.
 */
export function checkPublishAt(buf: Buffer, at: number, flags: number, maxTopicLength: number): string | null {
  if (buf.length - at < 2) return 'the topic name is cut short'
  const length = buf.readUInt16BE(at)
  const start = at + 2
  const end = start + length
  if (end > buf.length) return 'the topic name is cut short'
  let ascii = true
  for (let i = start; i < end; i++) {
    const byte = buf[i] ?? 0
    if (byte === 0) return 'the topic name: it contains U+0000 [MQTT-1.5.3-2]'
    if (byte >= 0x80) ascii = false
  }
  if (!ascii) {
    const problem = stringProblem('the topic name', buf.subarray(start, end))
    if (problem) return problem
  }
  if (length > maxTopicLength) return `the topic name is ${length} bytes long; max-topic-length is ${maxTopicLength}`
  const qos = (flags >> 1) & 3
  if (qos === 3) return 'PUBLISH with QoS 3 [MQTT-3.3.1-4]'
  if (qos > 0) {
    if (end + 2 > buf.length) return 'the packet identifier is cut short'
    // a QoS 1/2 PUBLISH carries a non-zero packet identifier [MQTT-2.3.1-1]
    if (buf.readUInt16BE(end) === 0) return `QoS ${qos} PUBLISH with packet identifier 0 [MQTT-2.3.1-1]`
  }
  return null
}

/** Wildcards in their places, not empty [MQTT-4.7.1-2, MQTT-4.7.1-3, MQTT-4.7.3-1]. */
function filterShape(filter: Buffer): string | null {
  const problem = topicFilterProblem(filter.toString('utf8'))
  return problem ? `topic filter ${JSON.stringify(filter.toString('utf8').slice(0, 100))}: ${problem}` : null
}

function checkConnect(r: Reader): string | null {
  const protocol = r.string()
  if (protocol === null) return 'CONNECT is cut short'
  const level = r.u8()
  const flags = r.u8()
  if (level === null || flags === null || r.u16() === null) return 'CONNECT is cut short'
  // the reserved flag is 0 [MQTT-3.1.2-3]
  if (flags & 1) return 'CONNECT with the reserved flag set [MQTT-3.1.2-3]'
  const clientId = stringProblem('the client identifier', r.string())
  if (clientId) return clientId
  if (flags & 0x04) {
    const willTopic = stringProblem('the will topic', r.string())
    if (willTopic) return willTopic
    if (r.string() === null) return 'the will message is cut short'
  }
  if (flags & 0x80) {
    const username = stringProblem('the user name', r.string())
    if (username) return username
  }
  return null
}
