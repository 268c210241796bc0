// The store's backlog: the bytes written and not yet committed, those waiting for the next batch
// and those of the batch on the commit thread. Past `high` bytes the store is over its
// high-water mark and stays so until the backlog drains to `low` (hysteresis, so that
// publishers are not held and released on every commit). The broker holds publishes while the
// store is over (src/broker/store-backpressure.ts); the HTTP API answers produce requests with 429.

export interface Watermarks {
  /** Bytes of backlog from which the store is over its high-water mark; 0: never (no backpressure). */
  high: number
  /** Once over, the store is back under when the backlog is at or below this (bytes, less than `high`). */
  low: number
}

export type BacklogListener = (over: boolean, bytes: number) => void

export class Backlog {
  private current = 0
  private peak = 0
  private isOver = false
  private readonly listeners: BacklogListener[] = []

  constructor(readonly watermarks: Watermarks = { high: 0, low: 0 }) {
    if (watermarks.high > 0 && !(watermarks.low >= 0 && watermarks.low < watermarks.high)) {
      throw new RangeError(`the low-water mark (${watermarks.low}) must be at least 0 and below the high-water mark (${watermarks.high})`)
    }
  }

  /** Bytes written and not committed yet. */
  get bytes(): number {
    return this.current
  }

  /** The largest backlog seen. */
  get peakBytes(): number {
    return this.peak
  }

  /** Whether the store is over its high-water mark (and has not drained below the low-water mark since). */
  get over(): boolean {
    return this.isOver
  }

  /** Called on every change of over; listeners run synchronously, in the order they were added. */
  onChange(listener: BacklogListener): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i >= 0) this.listeners.splice(i, 1)
    }
  }

  /** The writer reports the backlog after every change (GroupCommitWriter). */
  update(bytes: number): void {
    this.current = bytes
    if (bytes > this.peak) this.peak = bytes
    const { high, low } = this.watermarks
    if (high === 0) return
    if (!this.isOver && bytes >= high) this.change(true)
    else if (this.isOver && bytes <= low) this.change(false)
  }

  /** The store failed: nothing will drain, and nothing may wait for it (the gateway stops). */
  release(): void {
    this.current = 0
    if (this.isOver) this.change(false)
  }

  private change(over: boolean): void {
    this.isOver = over
    for (const listener of [...this.listeners]) listener(over, this.current)
  }
}
