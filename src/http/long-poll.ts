import type { FastifyReply } from 'fastify'
import type { ConsumerGroups } from '../log/groups/types.js'

// What a held request (long-poll) or a push socket needs: to notice that its client went away
// or the server is closing, and to keep the member's session alive while the client is connected.

/** How often a held request heartbeats its member; below the shortest session timeout (1 s) / 2. */
export const HOLD_HEARTBEAT_MS = 400

export interface HeldRequest {
  /** Aborted when the client disconnects before the answer, or when the server closes. */
  signal: AbortSignal
  /** Detaches the listeners; call when the request is answered. */
  done(): void
}

export function holdRequest(reply: FastifyReply, closing: AbortSignal): HeldRequest {
  const controller = new AbortController()
  const abort = (): void => controller.abort()
  // 'close' on the response: the connection ended; if the response was not written, the client left
  const onClose = (): void => {
    if (!reply.raw.writableEnded) abort()
  }
  reply.raw.once('close', onClose)
  if (closing.aborted) abort()
  else closing.addEventListener('abort', abort, { once: true })
  return {
    signal: controller.signal,
    done: () => {
      reply.raw.removeListener('close', onClose)
      closing.removeEventListener('abort', abort)
    }
  }
}

/**
 * Heartbeats a member while its client is demonstrably connected (a long-poll or a push socket is
 * open), so a wait longer than the session timeout does not expire the member. Calls `onGone` once
 * if the member has left or its session ended; returns a function that stops the heartbeats.
 */
export function keepMemberAlive(groups: ConsumerGroups, group: string, member: string, onGone: (err: unknown) => void): () => void {
  const timer = setInterval(() => {
    try {
      groups.heartbeat(group, member)
    } catch (err) {
      clearInterval(timer)
      onGone(err)
    }
  }, HOLD_HEARTBEAT_MS)
  timer.unref()
  return () => clearInterval(timer)
}
