// Binary codec for the packets the aedes persistence stores (retained, outgoing, incoming, wills).
//
// Layout: [version u8][header length u32 BE][header JSON, utf8][payload bytes]
//
// The header is the packet's own enumerable properties in their original order, so a decoded
// packet has exactly the keys of the stored one (the aedes-persistence abstract tests compare
// with deepEqual, where a key holding `undefined` and a missing key differ). The payload goes
// raw after the header and remembers whether it was a Buffer or a string. Functions (aedes puts
// `writeCallback` on packets in flight) are not data and are dropped.
//
// Markers use keys that start with U+0000: MQTT forbids U+0000 in UTF-8 strings [MQTT-1.5.3-2],
// so no user property or other packet field can collide with them.

const VERSION = 1
const HEADER_OFFSET = 5
const PAYLOAD_MARK = '\u0000p' // { "\u0000p": "b" | "s" } stands where the payload key was
const BUFFER_MARK = '\u0000b' // { "\u0000b": base64 } for Buffers nested in the header (correlationData)
const UNDEFINED_MARK = '\u0000u' // { "\u0000u": 1 } for a top-level key that holds undefined

export type StoredPacket = Record<string, unknown>

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array
}

function isMark(value: unknown, mark: string): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.hasOwn(value, mark)
}

function replacer(this: unknown, key: string, value: unknown): unknown {
  // `value` has already been through Buffer#toJSON; the holder still has the original
  const raw = key === '' ? value : (this as Record<string, unknown>)[key]
  if (isBytes(raw)) return { [BUFFER_MARK]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') }
  if (typeof raw === 'function') return undefined
  return value
}

function reviver(_key: string, value: unknown): unknown {
  if (isMark(value, BUFFER_MARK) && typeof value[BUFFER_MARK] === 'string') {
    return Buffer.from(value[BUFFER_MARK], 'base64')
  }
  return value
}

/** Encodes a packet (any plain object); `payload` may be a Buffer/Uint8Array or a string. */
export function encodePacket(packet: object): Buffer {
  const fields: Record<string, unknown> = {}
  let payload: Buffer | null = null
  for (const [k, v] of Object.entries(packet)) {
    if (typeof v === 'function') continue
    if (k === 'payload' && (isBytes(v) || typeof v === 'string')) {
      const isString = typeof v === 'string'
      payload = isString ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
      fields[k] = { [PAYLOAD_MARK]: isString ? 's' : 'b' }
    } else if (v === undefined) {
      fields[k] = { [UNDEFINED_MARK]: 1 }
    } else {
      fields[k] = v
    }
  }
  const header = Buffer.from(JSON.stringify(fields, replacer), 'utf8')
  const out = Buffer.allocUnsafe(HEADER_OFFSET + header.length + (payload?.length ?? 0))
  out[0] = VERSION
  out.writeUInt32BE(header.length, 1)
  header.copy(out, HEADER_OFFSET)
  if (payload) payload.copy(out, HEADER_OFFSET + header.length)
  return out
}

/**
 * Decodes what `encodePacket` wrote. The payload is copied out of `buf`; with
 * `withPayload` false it is left out (index rebuilds only need the header fields).
 */
export function decodePacket(buf: Buffer, withPayload = true): StoredPacket {
  if (buf.length < HEADER_OFFSET || buf[0] !== VERSION) {
    throw new Error(`unknown packet encoding (version byte ${buf[0]})`)
  }
  const headerEnd = HEADER_OFFSET + buf.readUInt32BE(1)
  const parsed: unknown = JSON.parse(buf.toString('utf8', HEADER_OFFSET, headerEnd), reviver)
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('corrupt packet header')
  }
  const packet = parsed as StoredPacket
  for (const [k, v] of Object.entries(packet)) {
    if (isMark(v, PAYLOAD_MARK)) {
      if (!withPayload) {
        Reflect.deleteProperty(packet, k)
        continue
      }
      // a copy, so a long-lived packet does not pin the (possibly shared) buffer RocksDB returned
      const bytes = Buffer.from(buf.subarray(headerEnd))
      packet[k] = v[PAYLOAD_MARK] === 's' ? bytes.toString('utf8') : bytes
    } else if (isMark(v, UNDEFINED_MARK)) {
      packet[k] = undefined
    }
  }
  return packet
}
