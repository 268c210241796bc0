import { connect as netConnect, type Socket } from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

// A raw MQTT 3.1.1 connection: packets are written as given (mqtt-packet's generator, or any
// bytes), and every packet the broker sends is parsed and kept. For tests that must send what
// a well-behaved client library never would (duplicates, bad packets).

export class RawClient {
  readonly received: Packet[] = []
  closed = false
  private readonly waiters: Array<() => void> = []

  private constructor(readonly socket: Socket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    parser.on('packet', (p: Packet) => {
      this.received.push(p)
      for (const w of this.waiters.splice(0)) w()
    })
    socket.on('data', (d) => parser.parse(d))
    socket.on('close', () => {
      this.closed = true
      for (const w of this.waiters.splice(0)) w()
    })
    socket.on('error', () => {})
  }

  static async open(port: number): Promise<RawClient> {
    const socket = netConnect({ host: '127.0.0.1', port })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new RawClient(socket)
  }

  /** Opens a connection and completes CONNECT / CONNACK. */
  static async connected(port: number, clientId: string, more: Partial<mqttPacket.IConnectPacket> = {}): Promise<RawClient> {
    const c = await RawClient.open(port)
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0, ...more })
    const connack = await c.next((p) => p.cmd === 'connack')
    if (connack.cmd !== 'connack' || connack.returnCode !== 0) throw new Error(`CONNACK ${JSON.stringify(connack)}`)
    return c
  }

  send(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet))
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes)
  }

  /** The first packet received (now or later) that `match` accepts; fails after timeoutMs or on close. */
  async next(match: (p: Packet) => boolean, timeoutMs = 5000): Promise<Packet> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = this.received.findIndex(match)
      const found = i >= 0 ? this.received.splice(i, 1)[0] : undefined
      if (found) return found
      if (this.closed) throw new Error('connection closed')
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching packet in ${timeoutMs} ms; got ${JSON.stringify(this.received.map((p) => p.cmd))}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => (clearTimeout(t), resolve()))
      })
    }
  }

  async closedWithin(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    return this.closed
  }

  end(): void {
    this.socket.destroy()
  }
}

export interface ConnectFields {
  clientId?: string
  username?: string
  password?: string
  /** A will on this topic (payload "gone"), at this QoS (default 0). */
  will?: string
  willQos?: 0 | 1 | 2
}

/** The CONNACK return code a raw MQTT 3.1.1 CONNECT with these fields gets (keepalive 0, clean). */
export async function connackCode(port: number, fields: ConnectFields = {}): Promise<number> {
  const c = await RawClient.open(port)
  try {
    c.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: fields.clientId ?? 'raw',
      keepalive: 0,
      ...(fields.username !== undefined ? { username: fields.username } : {}),
      ...(fields.password !== undefined ? { password: Buffer.from(fields.password) } : {}),
      ...(fields.will !== undefined ? { will: { topic: fields.will, payload: Buffer.from('gone'), qos: fields.willQos ?? 0, retain: false } } : {})
    })
    const ack = await c.next((p) => p.cmd === 'connack')
    return ack.cmd === 'connack' ? (ack.returnCode ?? -1) : -1
  } finally {
    c.end()
  }
}
