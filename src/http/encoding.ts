import type { LogRecord } from '../log/types.js'
import { badField, type FieldLocation } from './errors.js'
import type { ApiRecord, Encoding } from './wire.js'

// Record values travel in JSON as base64 (the default: any bytes) or as UTF-8 text, as the client
// asks with `encoding`. Keys, headers and topics are text already.

export function toApiRecord(r: LogRecord, encoding: Encoding): ApiRecord {
  return {
    stream: r.stream,
    partition: r.partition,
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key,
    value: r.value.toString(encoding),
    headers: r.headers,
    topic: r.topic,
    qos: r.qos,
    clientId: r.clientId
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** Decodes a value; refuses base64 that is not canonical standard base64 (e.g. base64url or typos). */
export function decodeValue(value: string, encoding: Encoding, where: FieldLocation, field: string): Buffer {
  if (encoding === 'utf8') return Buffer.from(value, 'utf8')
  const bytes = Buffer.from(value, 'base64')
  if (!BASE64.test(value) || bytes.toString('base64').replace(/=+$/, '') !== value.replace(/=+$/, '')) {
    throw badField(where, field, 'is not valid base64 (standard alphabet); send encoding "utf8" for text')
  }
  return bytes
}
