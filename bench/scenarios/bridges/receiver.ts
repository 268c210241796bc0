// A child process of the `bridges` scenario that stands in for the far end of two bridge kinds and
// writes the id (stream/partition/offset) of every record it gets to a file, one per line, so the
// bench can count what arrived, and what arrived twice, after a kill -9:
//
//   node receiver.js webhook <port> <file>
//     The webhook target: an HTTP server on 127.0.0.1:<port> that parses each POSTed
//     { "records": [...] } body and appends "<path> <id>" lines to <file> (write(2), before it answers 200:
//     what it acknowledged survives a kill -9 of this process, as a receiver that stores before it
//     answers would). Killed with -9 and started again, it appends to the same file.
//   node receiver.js mqtt <url> <filter> <file> <client id>
//     A subscriber of the MQTT bridge's target broker (mosquitto): MQTT 5, persistent session,
//     QoS 1, reconnecting by itself, so it gets what mosquitto kept across mosquitto's own kill -9.
//     It sends { type: 'ready' } over IPC once subscribed, and answers { type: 'flush' } with
//     { type: 'flushed' } once the ids received so far are in the file.
import { appendFileSync } from 'node:fs'
import { createServer } from 'node:http'
import mqtt from 'mqtt'

function fail(message: string): never {
  process.stderr.write(`bench receiver: ${message}\n`)
  process.exit(2)
}

// the bench ends: no orphan
process.on('disconnect', () => process.exit(0))

function webhook(port: number, file: string): void {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let ids: string[]
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { records?: Array<{ id?: unknown }> }
        ids = (body.records ?? []).map((r) => String(r.id))
      } catch {
        res.writeHead(400).end('not JSON')
        return
      }
      // one line per record: "<url path without the slash> <id>" (the bench's namespace and the record)
      const ns = (req.url ?? '/').slice(1)
      if (ids.length > 0) appendFileSync(file, ids.map((i) => `${ns} ${i}`).join('\n') + '\n')
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(port, '127.0.0.1')
}

function subscriber(url: string, filter: string, file: string, clientId: string): void {
  let buffered: string[] = []
  const flush = (): void => {
    if (buffered.length === 0) return
    appendFileSync(file, buffered.join('\n') + '\n')
    buffered = []
  }
  setInterval(flush, 20)
  const client = mqtt.connect(url, {
    clientId,
    protocolVersion: 5,
    clean: false,
    // MQTT 5 3.1.2.11.2: the session (and what mosquitto queues for it) outlives a disconnect
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 100,
    connectTimeout: 5000,
    keepalive: 30,
    // subscribed below, only when the broker lost the session
    resubscribe: false
  })
  let subscribed = false
  client.on('connect', (connack) => {
    if (subscribed && connack.sessionPresent) return
    client.subscribe(filter, { qos: 1 }, (err) => {
      if (err) fail(`SUBSCRIBE ${filter}: ${err.message}`)
      if (!subscribed) process.send?.({ type: 'ready' })
      subscribed = true
    })
  })
  client.on('error', () => undefined)
  client.on('message', (_topic, _payload, packet) => {
    const p = packet.properties?.userProperties ?? {}
    buffered.push(`${String(p['culex-stream'])}/${String(p['culex-partition'])}/${String(p['culex-offset'])}`)
  })
  process.on('message', (msg: { type?: string }) => {
    if (msg.type !== 'flush') return
    flush()
    process.send?.({ type: 'flushed' })
  })
}

const [role, ...args] = process.argv.slice(2)
if (role === 'webhook' && args.length === 2) webhook(Number(args[0]), args[1] ?? '')
else if (role === 'mqtt' && args.length === 4) subscriber(args[0] ?? '', args[1] ?? '', args[2] ?? '', args[3] ?? '')
else fail('usage: receiver.js webhook <port> <file> | receiver.js mqtt <url> <filter> <file> <client id>')
