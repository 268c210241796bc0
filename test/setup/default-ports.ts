import { createServer, type Server } from 'node:net'

// The suite must pass beside a running gateway (`npm start` on the default ports). To keep that
// true, it runs as if one were running: every default port is held for the whole run, so a test
// that binds one fails at once with EADDRINUSE. A port that is already taken (a gateway is
// running) is the same condition and is simply left alone.

export const DEFAULT_PORTS = { mqtt: 1883, ws: 8083, admin: 18083, mqtts: 8883, wss: 8084 }

const held: Server[] = []

function hold(port: number): Promise<void> {
  return new Promise((resolve) => {
    const server = createServer((socket) => socket.destroy())
    server.once('error', () => resolve()) // taken already: fine
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => {
      held.push(server)
      resolve()
    })
  })
}

export async function setup(): Promise<void> {
  await Promise.all(Object.values(DEFAULT_PORTS).map(hold))
}

export async function teardown(): Promise<void> {
  await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))))
}
