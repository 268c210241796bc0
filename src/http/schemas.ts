import { ENCODINGS } from './wire.js'

// JSON-schema fragments shared by the routes, and the API's limits.

export const LIMITS = {
  /** Largest request body (bytes); more gets 413. */
  bodyBytes: 1024 * 1024,
  /** Records in one produce request. */
  produceRecords: 1000,
  /** Records in one read or fetch. */
  readRecords: 1000,
  defaultReadRecords: 100,
  /** Value bytes in one read or fetch answer (at least one record is returned). */
  readBytes: 8 * 1024 * 1024,
  defaultReadBytes: 1024 * 1024,
  /** Longest long-poll (ms). */
  waitMs: 30_000,
  headers: 64,
  keyLength: 1024
} as const

const NAME = { type: 'string', minLength: 1, maxLength: 128 } as const

export const encodingSchema = { type: 'string', enum: [...ENCODINGS] } as const

export const encodingQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { encoding: encodingSchema }
} as const

export const streamParams = {
  type: 'object',
  required: ['stream'],
  properties: { stream: NAME }
} as const

export const partitionParams = {
  type: 'object',
  required: ['stream', 'p'],
  properties: { stream: NAME, p: { type: 'integer', minimum: 0 } }
} as const

export const groupParams = {
  type: 'object',
  required: ['group'],
  properties: { group: NAME }
} as const

export const memberParams = {
  type: 'object',
  required: ['group', 'member'],
  properties: { group: NAME, member: { type: 'string', minLength: 1, maxLength: 128 } }
} as const

export const offsetsSchema = {
  type: 'array',
  minItems: 1,
  maxItems: 10_000,
  items: {
    type: 'object',
    required: ['stream', 'partition', 'offset'],
    additionalProperties: false,
    properties: {
      stream: NAME,
      partition: { type: 'integer', minimum: 0 },
      offset: { type: 'integer', minimum: 0 }
    }
  }
} as const

export interface StreamParams {
  stream: string
}
export interface PartitionParams {
  stream: string
  p: number
}
export interface GroupParams {
  group: string
}
export interface MemberParams {
  group: string
  member: string
}
