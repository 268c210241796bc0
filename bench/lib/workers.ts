// The runner's side of the load-generator workers: spawn, init, go, credit, stop, collect.
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { killChild, spawnTracked } from './procs.js'
import { ROOT } from './brokers.js'
import type { AnyTask, FromWorker, Progress, RawTask, Task, ToWorker, WorkerResult } from './protocol.js'

export const WORKER_JS = join(ROOT, 'dist/bench/worker.js')
/** the raw-socket load generator (bench/raw/worker.ts): pre-encoded packets, no MQTT.js */
export const RAW_WORKER_JS = join(ROOT, 'dist/bench/raw/worker.js')

export class WorkerHandle<T extends AnyTask = Task> {
  progress: Progress = { sent: 0, acked: 0, received: 0, connected: 0, failed: 0, pubDone: false }
  result: WorkerResult | null = null
  error: string | null = null
  private waiters: (() => void)[] = []
  private readyFlag = false
  private exited = false
  onProgress: () => void = () => {}

  private constructor(
    readonly index: number,
    readonly task: T,
    readonly child: ChildProcess
  ) {
    child.on('message', (msg: FromWorker) => this.handle(msg))
    child.once('exit', (code, signal) => {
      this.exited = true
      if (this.result === null && this.error === null) this.error = `worker ${index} exited (${code ?? signal}) without a result`
      this.wake()
    })
  }

  static spawn<T extends AnyTask>(index: number, task: T, script: string): WorkerHandle<T> {
    const child = spawnTracked(process.execPath, [script], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    return new WorkerHandle(index, task, child)
  }

  private handle(msg: FromWorker): void {
    switch (msg.type) {
      case 'ready':
        this.readyFlag = true
        break
      case 'progress': {
        const { type: _t, ...p } = msg
        this.progress = p
        this.onProgress()
        break
      }
      case 'result': {
        const { type: _t, ...r } = msg
        this.result = r
        this.progress = { sent: r.sent, acked: r.acked, received: r.received, connected: r.connected, failed: r.failed, pubDone: r.pubDone }
        break
      }
      case 'error':
        this.error = msg.message
        break
    }
    this.wake()
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private changed(): Promise<void> {
    return new Promise((res) => this.waiters.push(res))
  }

  send(msg: ToWorker<T>): void {
    if (!this.exited && this.child.connected) this.child.send(msg)
  }

  private async until(cond: () => boolean, what: string): Promise<void> {
    while (!cond()) {
      if (this.error !== null) throw new Error(`worker ${this.index} (${this.task.kind}): ${this.error}`)
      if (this.exited) throw new Error(`worker ${this.index} (${this.task.kind}) exited before ${what}`)
      await this.changed()
    }
  }

  async init(): Promise<void> {
    this.send({ type: 'init', index: this.index, task: this.task })
    await this.until(() => this.readyFlag, 'ready')
  }

  /** Asks for the result; the worker then closes its clients and exits. */
  async stop(): Promise<WorkerResult> {
    this.send({ type: 'stop' })
    await this.until(() => this.result !== null, 'its result')
    return this.result as WorkerResult
  }

  kill(): void {
    killChild(this.child)
  }
}

/** Every worker a scenario started, so the runner can kill them when a scenario fails or times out. */
export class WorkerSet {
  readonly all: WorkerHandle<AnyTask>[] = []
  private next = 0

  spawn(task: Task): WorkerHandle {
    const w = WorkerHandle.spawn(this.next++, task, WORKER_JS)
    this.all.push(w)
    return w
  }

  /** A raw-socket load worker (dist/bench/raw/worker.js), driven over the same IPC protocol. */
  spawnRaw<T extends RawTask>(task: T): WorkerHandle<T> {
    const w = WorkerHandle.spawn(this.next++, task, RAW_WORKER_JS)
    this.all.push(w)
    return w
  }

  killAll(): void {
    for (const w of this.all) w.kill()
  }
}
