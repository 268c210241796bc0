// How much CPU this machine really gives: a busy loop on one thread, then on two at once. On a shared
// VM two vCPUs can deliver much less than twice one (measured here: about 1.2x), which decides how
// much the load generator and the broker get in each other's way.
import { Worker } from 'node:worker_threads'

const SPIN = `
const { parentPort, workerData } = require('node:worker_threads')
const end = Date.now() + workerData
let n = 0
while (Date.now() < end) n++
parentPort.postMessage(n)
`

function spin(ms: number): Promise<number> {
  return new Promise((res, rej) => {
    const w = new Worker(SPIN, { eval: true, workerData: ms })
    w.once('message', (n: number) => res(n))
    w.once('error', rej)
  })
}

export interface CpuCapacity {
  /** loop iterations per ms, one thread */
  single: number
  /** loop iterations per ms, two threads together */
  parallel: number
  /** parallel / single: 2.0 on two free cores */
  speedup: number
}

export async function cpuCapacity(ms = 500): Promise<CpuCapacity> {
  await spin(50) // warm up
  const single = (await spin(ms)) / ms
  const both = await Promise.all([spin(ms), spin(ms)])
  const parallel = (both[0] + both[1]) / ms
  return { single: Math.round(single), parallel: Math.round(parallel), speedup: Math.round((100 * parallel) / single) / 100 }
}
