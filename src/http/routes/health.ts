import type { FastifyInstance } from 'fastify'
import type { HealthResponse, ReadinessCheck, ReadinessResponse } from '../wire.js'

// Probes for load balancers and Kubernetes (their names): GET /healthz answers 200 while the
// process answers (liveness); GET /readyz answers 200 when every check passes and 503 with the
// failing ones otherwise (readiness: take the gateway out of rotation, do not restart it).
// Probes send no credentials: both answer without them (route config `anonymous`, src/http/auth.ts)
// and reveal nothing but the checks' names and states.

/** What the gateway is checked on (src/readiness.ts implements it): the store, the listeners, each bridge. */
export interface Readiness {
  /** Every check, in a stable order. */
  checks(): Promise<ReadinessCheck[]>
}

/** A server without a readiness source (tests, embedding) is ready while it answers. */
const ALWAYS_READY: Readiness = { checks: () => Promise.resolve([]) }

/** The answer of /readyz (also part of GET /api/v1/status). */
export async function readinessOf(readiness: Readiness): Promise<ReadinessResponse> {
  let checks: ReadinessCheck[]
  try {
    checks = await readiness.checks()
  } catch (err) {
    checks = [{ name: 'checks', ok: false, detail: `the checks failed: ${err instanceof Error ? err.message : String(err)}` }]
  }
  return { status: checks.every((c) => c.ok) ? 'ok' : 'unavailable', checks }
}

export function healthRoutes(app: FastifyInstance, readiness: Readiness = ALWAYS_READY): void {
  // probes are frequent: no cache, and the answer is small
  app.get('/healthz', { config: { anonymous: true } }, async (_request, reply): Promise<HealthResponse> => {
    void reply.header('cache-control', 'no-store')
    return { status: 'ok' }
  })
  app.get('/readyz', { config: { anonymous: true } }, async (_request, reply): Promise<ReadinessResponse> => {
    const answer = await readinessOf(readiness)
    void reply.header('cache-control', 'no-store')
    void reply.code(answer.status === 'ok' ? 200 : 503)
    return answer
  })
}
