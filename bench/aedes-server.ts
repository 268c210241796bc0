// Plain aedes, in memory, as the bench compares it: the same aedes from node_modules that Culex uses,
// without Culex's store, patch or hooks. Usage: node dist/bench/aedes-server.js --port <p>
import { createServer } from 'node:net'
import { Aedes } from 'aedes'

const i = process.argv.indexOf('--port')
const port = i > 0 ? Number(process.argv[i + 1]) : NaN
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: aedes-server --port <port>\n')
  process.exit(2)
}

const broker = await Aedes.createBroker()
const server = createServer(broker.handle)
server.listen(port, '127.0.0.1', () => process.stdout.write(`aedes listening on 127.0.0.1:${port}\n`))

const stop = (): void => {
  server.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
