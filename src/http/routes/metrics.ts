import type { FastifyInstance } from 'fastify'

// GET /metrics: the Prometheus text exposition (src/metrics/ builds it; the gateway passes it).
// Rights: when the API requires credentials (bound beyond loopback, or MQTT clients must
// authenticate), any valid credential may scrape it (a bearer token or HTTP Basic, checked by
// src/http/auth.ts before the route runs); no stream right is needed, as the metrics are
// counts and offsets, no record. Otherwise anonymous callers may scrape it.

/** What GET /metrics serves (src/metrics/metrics.ts implements it). */
export interface MetricsExposition {
  /** The exposition's content type (Prometheus text format 0.0.4). */
  contentType: string
  /** The exposition, every value read now. */
  text(): Promise<string>
}

export function metricsRoutes(app: FastifyInstance, metrics: MetricsExposition): void {
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.text()
    void reply.header('content-type', metrics.contentType)
    void reply.header('cache-control', 'no-store')
    return text
  })
}
