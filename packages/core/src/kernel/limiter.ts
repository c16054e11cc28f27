/** A concurrency limiter that keeps per-key order. */
import { positiveInt } from './subscribe-options.ts'

/**
 * Runs tasks with at most `concurrency` in flight; tasks with the same key run one after another
 * in submission order (per-key order), tasks without a key only share the overall limit.
 */
export class KeyedLimiter {
  readonly #concurrency: number
  #running = 0
  readonly #waiting: Array<{ key: string | undefined; run: () => void }> = []
  readonly #busyKeys = new Set<string>()
  #idleWaiters: Array<() => void> = []

  constructor(concurrency: number) {
    this.#concurrency = positiveInt('concurrency', concurrency)
  }

  /** Tasks running now. */
  get running(): number {
    return this.#running
  }

  /** Tasks queued and not yet started. */
  get pending(): number {
    return this.#waiting.length
  }

  /** Queues `task`; resolves or rejects with its result. */
  run<R>(key: string | undefined, task: () => Promise<R>): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({
        key,
        run: () => {
          // A task that throws synchronously or returns a plain value must still settle and
          // release its slot and key; otherwise the limiter would stall for good.
          let result: Promise<R>
          try {
            result = Promise.resolve(task())
          } catch (error) {
            result = Promise.reject(error)
          }
          result.then(resolve, reject).finally(() => this.#done(key))
        },
      })
      this.#pump()
    })
  }

  /** Resolves when nothing is running or queued. */
  onIdle(): Promise<void> {
    if (this.#running === 0 && this.#waiting.length === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  #done(key: string | undefined): void {
    this.#running--
    if (key !== undefined) this.#busyKeys.delete(key)
    this.#pump()
    if (this.#running === 0 && this.#waiting.length === 0) {
      const waiters = this.#idleWaiters
      this.#idleWaiters = []
      for (const w of waiters) w()
    }
  }

  #pump(): void {
    for (let i = 0; i < this.#waiting.length && this.#running < this.#concurrency; ) {
      const item = this.#waiting[i] as { key: string | undefined; run: () => void }
      if (item.key !== undefined && this.#busyKeys.has(item.key)) {
        i++
        continue
      }
      this.#waiting.splice(i, 1)
      this.#running++
      if (item.key !== undefined) this.#busyKeys.add(item.key)
      item.run()
    }
  }
}
