import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { PUT } from './batch-codec.js'

// The commit thread: a worker that writes batches into the RocksDB the main thread opened.
//
// @nxtedition/rocksdb runs a batch write, fsync included, synchronously on the calling thread,
// and has no asynchronous write. Its binding can hand a second thread the same native database
// (`db.handle`, a pointer, and `db_init(handle)`), and RocksDB's DB::Write is thread-safe. So the
// main thread only encodes the batch and sends it; this thread does `batch_write({ sync })` and
// answers. The event loop goes on parsing, routing and acknowledging while the disk works, and
// the next batch gathers everything that arrives meanwhile (group commit).
//
// The worker's code is plain JavaScript given as a data: URL, so it loads the same from dist/
// and from the TypeScript sources; the binding's path is passed to it.

const WORKER_SOURCE = `
import { createRequire } from 'node:module'
import { parentPort, workerData } from 'node:worker_threads'
const binding = createRequire(workerData.bindingPath)(workerData.bindingPath)
const db = binding.db_init(workerData.handle)
const EMPTY = {}
const HEADER = 9
parentPort.on('message', ({ id, buffer, sync }) => {
  const buf = Buffer.from(buffer)
  try {
    const batch = binding.batch_init()
    let at = 0
    while (at < buf.length) {
      const type = buf[at]
      const keyLength = buf.readUInt32LE(at + 1)
      const valueLength = buf.readUInt32LE(at + 5)
      at += HEADER
      const key = buf.subarray(at, at + keyLength)
      at += keyLength
      if (type === ${PUT}) {
        binding.batch_put(batch, key, buf.subarray(at, at + valueLength), EMPTY)
        at += valueLength
      } else {
        binding.batch_del(batch, key, EMPTY)
      }
    }
    binding.batch_write(db, batch, { sync })
    parentPort.postMessage({ id, error: null })
  } catch (err) {
    parentPort.postMessage({ id, error: { message: String(err && err.message || err), code: err && err.code } })
  }
})
`

export interface CommitResult {
  id: number
  error: { message: string; code?: string } | null
}

/** Starts the commit thread on the database behind `handle` (RocksLevel#handle). */
export function startCommitThread(handle: bigint): Worker {
  const require = createRequire(import.meta.url)
  const bindingPath = require.resolve('@nxtedition/rocksdb/binding.js')
  const worker = new Worker(new URL('data:text/javascript,' + encodeURIComponent(WORKER_SOURCE)), {
    workerData: { handle, bindingPath },
    // a name that shows in stack traces and /proc/<pid>/task/<tid>/comm
    name: 'culex-commit'
  })
  worker.unref()
  return worker
}
