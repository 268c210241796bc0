// Long-poll support: readers wait on partitions and are woken once records are committed there.

type Wake = () => void

export class AppendWaiters {
  private readonly waiting = new Map<string, Set<Wake>>()

  static id(stream: string, partition: number): string {
    return `${stream}\u0000${partition}`
  }

  /** Resolves true when any partition is notified, false after timeoutMs or on abort. */
  wait(partitions: string[], timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve(false)
      const finish = (woken: boolean): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        for (const p of partitions) {
          const set = this.waiting.get(p)
          set?.delete(wake)
          if (set?.size === 0) this.waiting.delete(p)
        }
        resolve(woken)
      }
      const wake: Wake = () => finish(true)
      const onAbort = (): void => finish(false)
      for (const p of partitions) {
        let set = this.waiting.get(p)
        if (!set) this.waiting.set(p, (set = new Set()))
        set.add(wake)
      }
      const timer = setTimeout(() => finish(false), Math.max(0, timeoutMs))
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  notify(partition: string): void {
    const set = this.waiting.get(partition)
    if (!set) return
    for (const wake of [...set]) wake()
  }

  /** Wakes everyone (shutdown). */
  wakeAll(): void {
    for (const set of [...this.waiting.values()]) for (const wake of [...set]) wake()
  }
}
