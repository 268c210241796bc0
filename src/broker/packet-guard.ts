import type { Duplex } from 'node:stream'
import { PUBLISH, bytesNeeded, checkPacket, checkPublishAt, needsCheck } from './wire-checks.js'

// The framing guard: it reads every incoming MQTT packet's fixed header (§2.2: a type byte and a
// remaining length of 1 to 4 bytes) before the bytes reach aedes's parser, which would buffer
// whatever length a packet claims. It closes the connection:
// - when a packet claims more than max-packet-size, before its body is buffered;
// - when the remaining length is malformed (a fifth length byte, §2.2.3);
// - when a packet that has started is not complete within packet-timeout (a trickle);
// - when a CONNECT, PUBLISH, SUBSCRIBE or UNSUBSCRIBE breaks a rule only its raw bytes show
//   (wire-checks.ts: ill-formed UTF-8, U+0000, packet id 0, QoS 3, no filters, reserved flags).
// It wraps the stream's `push`, so it sees each chunk as the transport delivers it, in any mode
// the reader uses, and drops the chunk that breaks a rule: aedes never sees it.

export interface PacketGuardOptions {
  maxPacketSize: number
  packetTimeoutMs: number
  /** Longest PUBLISH topic name, bytes (filters are checked with the subscription). */
  maxTopicLength: number
  /** Called once, when a rule closes the connection. */
  onViolation: (reason: PacketViolation, detail: string) => void
  /** Counts the packets and bytes read (shared by every connection; src/broker/stats.ts). */
  traffic?: { packetsIn: number; bytesIn: number }
}

export type PacketViolation = 'packet-too-large' | 'malformed-length' | 'packet-timeout' | 'protocol-violation'

const enum State {
  /** Expecting a packet's first byte. */
  Type,
  /** Reading the remaining length (varint). */
  Length,
  /** Collecting the bytes a check needs. */
  Collect,
  /** Skipping the rest of the body. */
  Body
}

export function guardPackets<S extends Duplex>(stream: S, options: PacketGuardOptions): S {
  const push = stream.push.bind(stream)
  let state = State.Type
  let header = 0
  let length = 0
  let multiplier = 1
  let lengthBytes = 0
  let left = 0
  let collected: Buffer[] = []
  let collectedLength = 0
  let timer: NodeJS.Timeout | null = null
  let broken = false
  /** Whether a packet completed in the chunk being scanned (the deadline restarts with the next one). */
  const chunkState = { completed: false }
  const traffic = options.traffic ?? { packetsIn: 0, bytesIn: 0 }

  const violate = (reason: PacketViolation, detail: string): false => {
    broken = true
    if (timer) clearTimeout(timer)
    options.onViolation(reason, detail)
    stream.destroy()
    return false
  }

  const packetDone = (): void => {
    traffic.packetsIn++
    state = State.Type
    chunkState.completed = true
  }

  /** Runs the check once the collected bytes suffice: 'wait', 'ok', or the problem found. */
  const checkCollected = (): string => {
    const body = collected.length === 1 ? (collected[0] ?? Buffer.alloc(0)) : Buffer.concat(collected)
    collected = [body]
    const need = bytesNeeded(header >> 4, header & 0x0f, body, length)
    if (collectedLength < need) return 'wait'
    collected = []
    collectedLength = 0
    return checkPacket(header >> 4, header & 0x0f, body.subarray(0, need), options.maxTopicLength) ?? 'ok'
  }

  /** Walks the chunk's packet boundaries; false when it breaks a rule. */
  const scan = (chunk: Buffer): boolean => {
    chunkState.completed = false
    let at = 0
    while (at < chunk.length) {
      switch (state) {
        case State.Type:
          header = chunk[at++] ?? 0
          state = State.Length
          length = 0
          multiplier = 1
          lengthBytes = 0
          break
        case State.Length: {
          const byte = chunk[at++] ?? 0
          length += (byte & 0x7f) * multiplier
          multiplier *= 128
          lengthBytes++
          if (byte & 0x80) {
            // at most four length bytes [MQTT 2.2.3]
            if (lengthBytes === 4) return violate('malformed-length', 'the remaining length has more than four bytes')
            break
          }
          const size = 1 + lengthBytes + length
          if (size > options.maxPacketSize) return violate('packet-too-large', `a packet of ${size} bytes; max-packet-size is ${options.maxPacketSize}`)
          left = length
          if (left === 0) {
            // an empty body: the checks that need one find it missing
            if (needsCheck(header >> 4)) {
              const problem = checkPacket(header >> 4, header & 0x0f, Buffer.alloc(0), options.maxTopicLength)
              if (problem) return violate('protocol-violation', problem)
            }
            packetDone()
          } else {
            state = needsCheck(header >> 4) ? State.Collect : State.Body
          }
          break
        }
        case State.Collect: {
          // the common case: a PUBLISH whose topic and packet id are in this chunk, checked in place
          if (collectedLength === 0 && header >> 4 === PUBLISH && chunk.length - at >= 2) {
            const need = 2 + chunk.readUInt16BE(at) + (((header >> 1) & 3) > 0 ? 2 : 0)
            if (need <= left && chunk.length - at >= need) {
              const problem = checkPublishAt(chunk, at, header & 0x0f, options.maxTopicLength)
              if (problem) return violate('protocol-violation', problem)
              state = State.Body
              break
            }
          }
          const take = Math.min(left, chunk.length - at)
          collected.push(chunk.subarray(at, at + take))
          collectedLength += take
          at += take
          left -= take
          const outcome = checkCollected()
          if (outcome === 'wait') {
            if (left === 0) return violate('protocol-violation', 'a packet is cut short')
            break
          }
          if (outcome !== 'ok') return violate('protocol-violation', outcome)
          if (left === 0) packetDone()
          else state = State.Body
          break
        }
        case State.Body: {
          const take = Math.min(left, chunk.length - at)
          at += take
          left -= take
          if (left === 0) packetDone()
          break
        }
      }
    }
    return true
  }

  stream.push = function guardedPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (broken) return false
    if (chunk === null || !Buffer.isBuffer(chunk)) return push(chunk, encoding)
    traffic.bytesIn += chunk.length
    if (!scan(chunk)) return false
    // a packet is incomplete at the end of this chunk: it has packet-timeout from its start
    // (or from the last packet completed before it) to complete
    if (state !== State.Type) {
      if (!timer || chunkState.completed) {
        if (timer) clearTimeout(timer)
        timer = setTimeout(() => violate('packet-timeout', `a packet was not complete within ${options.packetTimeoutMs} ms`), options.packetTimeoutMs)
        timer.unref()
      }
    } else if (timer) {
      clearTimeout(timer)
      timer = null
    }
    return push(chunk, encoding)
  }
  stream.once('close', () => {
    if (timer) clearTimeout(timer)
  })
  return stream
}
