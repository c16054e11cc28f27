/**
 * Process lifetime, the same rule on every backend: a connected backend keeps the process alive
 * from `connect()` until `disconnect()`, through exactly one referenced handle ({@link holdProcess}).
 * Everything else a backend or bus runs (flush timers, heartbeats, lease renewals, polling, worker
 * threads) is unreferenced, so it never decides on its own whether the process lives, and a
 * script that closes what it opened exits by itself. A dropped broker connection does not change
 * the answer: the backend still holds the process while it reconnects, as a socket would.
 */

/** One reference on the Node event loop; see {@link holdProcess}. */
export interface ProcessHold {
  /** Whether this hold still keeps the process alive. */
  readonly held: boolean
  /** Lets the process exit as far as this hold is concerned. Idempotent. */
  release(): void
}

// The longest delay Node timers accept: the timer only exists to be a referenced handle, so it
// should fire as rarely as possible (once every ~24.8 days, doing nothing).
const LONGEST_DELAY_MS = 2 ** 31 - 1
const noop = (): void => {}

/**
 * Takes one referenced handle on the event loop: the process stays alive until `release()`.
 * Backends take one in `connect()` and release it at the end of `disconnect()`; third-party
 * backends should do the same so the lifetime rule holds for them too.
 */
export function holdProcess(): ProcessHold {
  let timer: NodeJS.Timeout | undefined = setInterval(noop, LONGEST_DELAY_MS)
  return {
    get held() {
      return timer !== undefined
    },
    release() {
      if (timer === undefined) return
      clearInterval(timer)
      timer = undefined
    },
  }
}
