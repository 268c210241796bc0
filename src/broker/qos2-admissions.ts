// Which QoS 2 PUBLISH packets aedes will publish and which it must only answer with PUBREC.
// A packet id that awaits PUBREL in the persistence is a duplicate [MQTT-4.3.3-2]; so is a resend
// that arrives while the first one is still on its way to the persistence. aedes handles the
// packets of one socket read concurrently, so it would look such a resend up before the first was
// stored and publish it a second time, delivering it twice (measured: a PUBLISH and its DUP in
// one read reach subscribers twice with plain aedes 1.2). The broker therefore holds a resend at
// admission until the first has been stored and published: aedes then finds it and sends PUBREC
// only, as the spec requires ("MUST NOT cause duplicate messages to be delivered").

interface InFlight {
  /** Resolves when the first packet with this id was published (or refused, or its client left). */
  settled: Promise<void>
  settle: () => void
}

export interface Qos2Admission {
  duplicate: boolean
  /** For a resend of a packet still in flight: let aedes continue only after this resolves. */
  holdUntil?: Promise<void>
}

const NEW: Qos2Admission = { duplicate: false }
const STORED_DUPLICATE: Qos2Admission = { duplicate: true }

export class Qos2Admissions {
  /** clientId -> packet id -> the first packet admitted and not yet published. */
  private readonly inFlight = new Map<string, Map<number, InFlight>>()

  constructor(private readonly awaitingRelease: (clientId: string, messageId: number) => boolean) {}

  /** Called at admission of a client's QoS 2 PUBLISH. */
  admit(clientId: string, messageId: number): Qos2Admission {
    if (this.awaitingRelease(clientId, messageId)) return STORED_DUPLICATE
    let ids = this.inFlight.get(clientId)
    const first = ids?.get(messageId)
    if (first) return { duplicate: true, holdUntil: first.settled }
    if (!ids) this.inFlight.set(clientId, (ids = new Map<number, InFlight>()))
    let settle = (): void => {}
    const settled = new Promise<void>((resolve) => (settle = resolve))
    ids.set(messageId, { settled, settle })
    return NEW
  }

  /** The first packet was published (so stored awaiting PUBREL), or refused: resends may go on. */
  settled(clientId: string, messageId: number): void {
    const ids = this.inFlight.get(clientId)
    const first = ids?.get(messageId)
    if (!ids || !first) return
    ids.delete(messageId)
    if (ids.size === 0) this.inFlight.delete(clientId)
    first.settle()
  }

  clientClosed(clientId: string): void {
    const ids = this.inFlight.get(clientId)
    if (!ids) return
    this.inFlight.delete(clientId)
    for (const first of ids.values()) first.settle()
  }
}
