import type { BridgeDriver } from '../types.js'
import { parseTarget, type WebhookTarget } from './config.js'

// Webhook: outbound only (HTTP POST of each batch to a URL). There is no inbound webhook source:
// HTTP clients produce into Culex through its own API (POST /api/v1/streams/.../records).

export const webhookDriver: BridgeDriver<WebhookTarget> = {
  kind: 'webhook',
  parseTarget,
  async createSink(target, deps) {
    const { WebhookSink } = await import('./sink.js')
    return new WebhookSink(target, deps)
  }
}
