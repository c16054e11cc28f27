/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Deadline; the wait fails after this many milliseconds. */
  readonly timeoutMs: number
  /**
   * What was expected, for the failure message. A function is called at failure time, so it can
   * say what was still missing (e.g. which event ids never arrived).
   */
  readonly message: string | (() => string)
  /** Delay between two evaluations of the predicate. @default 5 */
  readonly intervalMs?: number
}

/** Thrown by {@link waitFor} when the deadline passes. */
export class WaitTimeoutError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WaitTimeoutError'
  }
}

/**
 * Waits until `predicate` returns true (or a promise of true), evaluating it immediately and then
 * every `intervalMs`, and fails with `message` once `timeoutMs` has passed. A predicate that
 * throws fails the wait at once with that error: it signals a broken expectation, not "not yet".
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  options: WaitForOptions,
): Promise<void> {
  const interval = options.intervalMs ?? 5
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    if (await predicate()) return
    const left = deadline - Date.now()
    if (left <= 0) {
      const what = typeof options.message === 'function' ? options.message() : options.message
      throw new WaitTimeoutError(`timed out after ${options.timeoutMs} ms waiting for: ${what}`)
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, left)))
  }
}

/**
 * Races `promise` against a deadline; rejects with a {@link WaitTimeoutError} naming `what` when
 * the promise does not settle in time. The timer never keeps the process alive.
 */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for: ${what}`)),
      timeoutMs,
    )
    timer.unref()
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
