import { CulexError } from '../../errors.js'
import type { LogRecord } from '../types.js'
import type { ShareGroupConfig } from './config.js'

// What shared groups (shared-groups.ts) take and give: fetch and ack requests, records with their
// delivery, descriptions, and the one error class.

export type ShareErrorCode = 'UNKNOWN_GROUP' | 'INVALID_ARGUMENT' | 'UNKNOWN_STREAM'

export class ShareError extends CulexError<ShareErrorCode> {}

export interface SharedRecord extends LogRecord {
  /** This delivery's number (1 = first); an ack names it, so a late ack cannot finish a later delivery. */
  deliveryCount: number
  /** When the lock ends (ms since the epoch) unless extended. */
  lockedUntil: number
}

export interface ShareFetchOptions {
  consumer: string
  maxRecords: number
  maxBytes?: number
  waitMs: number
  signal?: AbortSignal
}

export type AckAction = 'ack' | 'nack' | 'extend' | 'reject'

export interface AckRequest {
  stream: string
  partition: number
  offset: number
  /** The deliveryCount the record was fetched with. */
  deliveryCount?: number
  action: AckAction
  /** nack: redeliver after this long instead of the backoff. */
  delayMs?: number
  /** nack / reject: why, kept for the dead letter. */
  error?: string
}

export interface AckResult {
  stream: string
  partition: number
  offset: number
  ok: boolean
  /** Why not: the lock expired, the record was handed out again, or it is not in the group. */
  error?: 'LOCK_LOST'
  /** The record went to the dead-letter stream (reject, or a nack after maxDeliveries). */
  deadLettered?: boolean
}

export interface SharePartitionStatus {
  stream: string
  partition: number
  floor: number
  next: number
  endOffset: number
  acquired: number
  /** Unfinished records between floor and next (acquired, waiting, held by key order). */
  pending: number
  /** Records not yet finished: endOffset - floor. */
  lag: number
}

export interface ShareGroupDescription {
  group: string
  config: ShareGroupConfig
  partitions: SharePartitionStatus[]
  lag: number
  deadLettered: number
  /** True while lag is at or above config.lagAlert. */
  lagAlert: boolean
}
