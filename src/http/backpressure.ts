import type { FastifyReply } from 'fastify'
import { ApiError } from './errors.js'

// Backpressure on HTTP producers: while the store is over its high-water mark (store-high-water,
// src/store/backlog.ts) a produce request is answered 429 with Retry-After, before anything is
// appended; the client tries again once the store has caught up. Nothing it sent was stored.

/** What the API needs to know of the store's backlog (the gateway passes the store's Backlog). */
export interface WriteBackpressure {
  /** Over the high-water mark, and not yet back at the low-water mark. */
  readonly over: boolean
  /** Bytes written and not committed yet. */
  readonly bytes: number
  readonly watermarks: { readonly high: number; readonly low: number }
}

/**
 * Seconds a refused producer waits: the backlog is at most a few batches, which the commit thread
 * writes in well under a second on any disk that keeps up at all; 1 is Retry-After's smallest.
 */
export const RETRY_AFTER_SECONDS = 1

/** Throws 429 (with Retry-After) while the store is over its high-water mark. */
export function refuseWhileBacklogged(backpressure: WriteBackpressure | undefined, reply: FastifyReply): void {
  if (backpressure?.over !== true) return
  void reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  throw new ApiError(
    429,
    'STORE_BACKPRESSURE',
    `the store is behind on writes (${backpressure.bytes} bytes not yet committed, over store-high-water ${backpressure.watermarks.high}); nothing was stored, retry in ${RETRY_AFTER_SECONDS} s`,
    { retriable: true, retryAfterSeconds: RETRY_AFTER_SECONDS, backlogBytes: backpressure.bytes, highWater: backpressure.watermarks.high }
  )
}
