import { createHash } from 'node:crypto'
import type { PublishContext } from '../broker/hooks.js'
import type { AppendOnce } from '../log/types.js'

// MQTT 3.1.1 QoS 1 retransmissions, appended to the log once. A client that did not get its PUBACK
// (the connection dropped before or after the broker sent it) sends the PUBLISH again after it
// reconnects, with the DUP flag and the same packet id [MQTT-4.4.0-1]. QoS 1 is "at least once":
// the broker publishes it to MQTT subscribers again; the log appends it once.
//
// Every routed QoS 1 publish of a client is remembered in the log's dedup window under
// (client id, packet id), with a fingerprint of its topic and payload. Only a publish with the DUP
// flag is looked up: packet ids are reused once acknowledged, so a publish without it is always
// new, and takes the (client id, packet id) over. A DUP publish whose topic or payload differs
// from the remembered one is not a retransmission of it: it is appended, and takes it over.
//
// The trade-off: MQTT 3.1.1 says that after sending PUBACK the receiver treats a PUBLISH with the
// same packet id as new whatever its DUP flag [MQTT-4.3.2-2], because the PUBACK may have arrived.
// Culex cannot tell a PUBACK that was lost from one that arrived, so within the window it takes a
// DUP publish with the same client id, packet id, topic and payload for a retransmission. Only a
// client that reuses a packet id for an identical message and then has to retransmit that one
// could lose a record this way (the first copy is in the log). QoS 2 has its own handshake and
// its own duplicate handling (src/broker/qos2-admissions.ts): it is not looked up here.
// QoS 0 has no packet id.

/** The appendOnce of a publish, or undefined when it is not deduplicated. */
export function publishOnce(publish: PublishContext): AppendOnce | undefined {
  if (publish.qos !== 1 || publish.origin !== 'client' || publish.clientId === null || publish.messageId === undefined) return undefined
  // MQTT forbids U+0000 in client ids and topics [MQTT-1.5.3-2]: it separates the parts unambiguously
  const fingerprint = createHash('sha256').update(publish.topic).update('\u0000').update(publish.payload).digest('base64url').slice(0, 22)
  return {
    id: `mqtt\u0000${publish.clientId}\u0000${publish.messageId}`,
    fingerprint,
    onConflict: 'append',
    lookup: publish.dupFlag === true
  }
}
