import mqttPacket from 'mqtt-packet'
import { RawClient } from './raw-mqtt.js'

// A pipelined QoS 1 publisher on a raw socket: keeps `window` publishes unacknowledged, as a
// benchmark load does, and records which were acknowledged. Bounded by `until` and `max`.

export interface PublisherRun {
  /** Payloads whose PUBACK arrived. */
  acked: string[]
  sent: number
}

export async function pipelinedPublisher(
  port: number,
  clientId: string,
  topic: (seq: number) => string,
  options: { window: number; max: number; until: () => boolean }
): Promise<PublisherRun> {
  const c = await RawClient.connected(port, clientId)
  const inFlight = new Map<number, string>()
  const run: PublisherRun = { acked: [], sent: 0 }
  let nextId = 1
  let seq = 0
  const fill = (): void => {
    const batch: Buffer[] = []
    while (inFlight.size < options.window && run.sent < options.max && !options.until()) {
      const payload = `${clientId}:${seq}`
      const messageId = nextId
      nextId = nextId === 65535 ? 1 : nextId + 1
      inFlight.set(messageId, payload)
      batch.push(mqttPacket.generate({ cmd: 'publish', topic: topic(seq), payload: Buffer.from(payload), qos: 1, messageId, retain: false, dup: false }))
      seq++
      run.sent++
    }
    if (batch.length > 0) c.write(Buffer.concat(batch))
  }
  fill()
  while (!c.closed && (inFlight.size > 0 || (run.sent < options.max && !options.until()))) {
    try {
      const ack = await c.next((p) => p.cmd === 'puback', 2000)
      const messageId = ack.cmd === 'puback' ? ack.messageId : undefined
      const payload = messageId === undefined ? undefined : inFlight.get(messageId)
      if (messageId !== undefined && payload !== undefined) {
        inFlight.delete(messageId)
        run.acked.push(payload)
      }
      fill()
    } catch {
      break // connection closed (the broker was killed) or no ack in time
    }
  }
  c.end()
  return run
}
