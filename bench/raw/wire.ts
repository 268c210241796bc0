// MQTT 3.1.1 on the wire for the raw load generator: packets encoded once with mqtt-packet, and a
// minimal scanner of the fixed header (type nibble, flags, remaining-length varint) for what comes
// back. No MQTT.js, no full parser: the load side must cost far less CPU than the broker.
import mqttPacket from 'mqtt-packet'

export const CONNACK = 2
export const PUBLISH = 3
export const PUBACK = 4
export const SUBACK = 9
export const PINGRESP = 13

/** Payload layout: publisher index (uint32 LE) at 0, sequence number (uint32 LE) at 4, then filler. */
export const PAYLOAD_PUBLISHER = 0
export const PAYLOAD_SEQ = 4
export const MIN_PAYLOAD = 8

/** Packet ids cycle through 1..65535; a window must stay below half of that to keep them unambiguous. */
export const MAX_WINDOW = 32_767

export function encodeConnect(clientId: string): Buffer {
  // keepalive 0: a QoS 0 subscriber sends nothing after SUBSCRIBE, and must not be timed out
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 })
}

export function encodeSubscribe(filters: string[], qos: 0 | 1): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: filters.map((topic) => ({ topic, qos })) })
}

export function encodeDisconnect(): Buffer {
  return mqttPacket.generate({ cmd: 'disconnect' })
}

/** The packet id of sequence number `seq` (QoS 1). */
export function packetIdOf(seq: number): number {
  return (seq % 65_535) + 1
}

export interface PublishTemplate {
  /** one complete PUBLISH packet */
  packet: Buffer
  /** where the 2-byte packet id is (QoS 1), or -1 */
  idOffset: number
  /** where the payload starts */
  payloadOffset: number
}

/** A PUBLISH packet of `publisher` to `topic`, to be copied and patched (packet id, sequence number). */
export function publishTemplate(topic: string, qos: 0 | 1, payloadBytes: number, publisher: number): PublishTemplate {
  if (payloadBytes < MIN_PAYLOAD) throw new Error(`payloads need at least ${MIN_PAYLOAD} bytes`)
  const payload = Buffer.alloc(payloadBytes, 'x')
  payload.writeUInt32LE(publisher, PAYLOAD_PUBLISHER)
  payload.writeUInt32LE(0, PAYLOAD_SEQ)
  const packet = mqttPacket.generate({
    cmd: 'publish',
    topic,
    payload,
    qos,
    dup: false,
    retain: false,
    ...(qos === 1 ? { messageId: packetIdOf(0) } : {})
  })
  const payloadOffset = packet.length - payloadBytes
  const idOffset = qos === 1 ? payloadOffset - 2 : -1
  // the offsets, checked against what the scanner reads from the packet
  let seen = 0
  new Scanner().push(packet, (type, flags, buf, body, length) => {
    seen++
    const topicLength = buf.readUInt16BE(body)
    const after = body + 2 + topicLength + (qos === 1 ? 2 : 0)
    if (type !== PUBLISH || ((flags >> 1) & 3) !== qos || after !== payloadOffset || body + length !== packet.length) {
      throw new Error(`PUBLISH template for ${topic}: offsets do not match the packet`)
    }
    if (qos === 1 && buf.readUInt16BE(idOffset) !== packetIdOf(0)) throw new Error('PUBLISH template: packet id not where expected')
  })
  if (seen !== 1) throw new Error('PUBLISH template: not exactly one packet')
  return { packet, idOffset, payloadOffset }
}

/** Called for every complete packet: type nibble, flags nibble, the buffer, where the body starts, its length. */
export type PacketHandler = (type: number, flags: number, buf: Buffer, body: number, length: number) => void

/**
 * Splits a byte stream into MQTT packets by their fixed header only. A packet split over chunks is
 * copied and kept until its last byte arrives (the only copy the scanner makes), so a chunk may be a
 * view of a read buffer that the next read overwrites.
 */
export class Scanner {
  private rest: Buffer | null = null

  /** Throws on a malformed remaining length (more than 4 bytes). */
  push(chunk: Buffer, onPacket: PacketHandler): void {
    const buf = this.rest === null ? chunk : Buffer.concat([this.rest, chunk])
    this.rest = null
    const end = buf.length
    let off = 0
    while (end - off >= 2) {
      const b0 = buf[off]!
      let length = 0
      let multiplier = 1
      let i = off + 1
      let complete = false
      for (let n = 0; n < 4 && i < end; n++) {
        const b = buf[i++]!
        length += (b & 0x7f) * multiplier
        if ((b & 0x80) === 0) {
          complete = true
          break
        }
        multiplier *= 128
      }
      if (!complete) {
        if (i - off - 1 >= 4) throw new Error('malformed remaining length')
        break // the varint continues in the next chunk
      }
      if (i + length > end) break // the body continues in the next chunk
      onPacket(b0 >> 4, b0 & 0x0f, buf, i, length)
      off = i + length
    }
    if (off < end) this.rest = Buffer.from(buf.subarray(off))
  }

  /** bytes held back, waiting for the rest of a packet */
  get pending(): number {
    return this.rest === null ? 0 : this.rest.length
  }
}
