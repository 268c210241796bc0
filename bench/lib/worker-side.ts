// The worker's side of the runner protocol (protocol.ts), shared by the mqtt.js worker
// (bench/worker.ts) and the raw-socket worker (bench/raw/worker.ts): the counters every worker
// keeps, progress reports, and the init / go / credit / stop messages.
import type { AnyTask, FromWorker, Progress, ToWorker, WorkerResult } from './protocol.js'

export type WorkerState = Progress & Omit<WorkerResult, keyof Progress | 'cpuUserMs' | 'cpuSystemMs' | 'latencies' | 'raw'>

export function send(msg: FromWorker): void {
  process.send?.(msg)
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

/** Exits unless the runner started this process with an IPC channel. */
export function requireRunner(name: string): void {
  if (!process.send) {
    process.stderr.write(`${name}: must be started by the bench runner (IPC)\n`)
    process.exit(2)
  }
}

export function newWorkerState(): WorkerState {
  return {
    sent: 0,
    acked: 0,
    received: 0,
    connected: 0,
    failed: 0,
    pubDone: false,
    errors: 0,
    firstSendAt: null,
    lastAckAt: null,
    firstRecvAt: null,
    lastRecvAt: null,
    goAt: 0,
    connectStartAt: null,
    connectEndAt: null,
    errorSamples: []
  }
}

export function noteError(state: WorkerState, err: unknown): void {
  state.errors++
  if (state.errorSamples.length < 5) state.errorSamples.push(err instanceof Error ? err.message : String(err))
}

export function progressOf(state: WorkerState): Progress {
  const { sent, acked, received, connected, failed, pubDone } = state
  return { sent, acked, received, connected, failed, pubDone }
}

export interface WorkerBody<T extends AnyTask> {
  init(task: T, index: number): Promise<void>
  go(): void
  credit(upTo: number): void
  /** The result, without the CPU time (filled in here). */
  result(): Omit<WorkerResult, 'cpuUserMs' | 'cpuSystemMs'>
  /** After the result is sent: close the connections. */
  close(): void
}

/** Serves the runner's messages for `body` until stop; never outlives the runner. */
export function serveRunner<T extends AnyTask>(state: WorkerState, body: WorkerBody<T>): void {
  let cpuAtGo: NodeJS.CpuUsage | null = null
  process.on('message', (msg: ToWorker<T>) => {
    switch (msg.type) {
      case 'init':
        body.init(msg.task, msg.index).then(
          () => send({ type: 'ready', connected: state.connected }),
          (err: unknown) => send({ type: 'error', message: `init: ${err instanceof Error ? err.message : String(err)}` })
        )
        break
      case 'go':
        state.goAt = nowMs()
        cpuAtGo = process.cpuUsage()
        body.go()
        break
      case 'credit':
        body.credit(msg.upTo)
        break
      case 'stop': {
        const cpu = process.cpuUsage(cpuAtGo ?? undefined)
        const result: WorkerResult = { ...body.result(), cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000 }
        process.send?.({ type: 'result', ...result } satisfies FromWorker, () => {
          body.close()
          // sockets close with the process; do not wait for thousands of DISCONNECTs
          setTimeout(() => process.exit(0), 50)
        })
        break
      }
    }
  })
  // The runner going away (crash, SIGKILL) closes the IPC channel: never outlive it.
  process.on('disconnect', () => process.exit(0))
  process.on('uncaughtException', (err) => {
    send({ type: 'error', message: err.stack ?? String(err) })
    process.exit(1)
  })
}
