import type { BackendCapabilities, EventBackend } from '@omnibus/core'

/** Per-backend deadlines. Every wait in the suite is bounded by one of these. */
export interface ConformanceTimeouts {
  /** Publish → handler for an event on a subscription that is already live. @default 5000 */
  readonly deliveryMs?: number
  /** How long a new subscription or group may take to start receiving (Kafka joins are slow). @default 10000 */
  readonly groupJoinMs?: number
  /**
   * Lease / visibility window the suite asks for (`visibilityTimeoutMs`) in the cases where a
   * consumer dies without acknowledging; the redelivery deadline adds it to `deliveryMs`. @default 2000
   */
  readonly visibilityMs?: number
  /** Extra time granted on top of a retry delay before an attempt counts as late. @default 1000 */
  readonly retrySlackMs?: number
  /** How long a connect to a closed port may take to fail (case 35). @default 5000 */
  readonly connectFailMs?: number
  /** Broker restart under load, from the restart call to full recovery (case 34). @default 60000 */
  readonly restartMs?: number
}

/** Hooks that let the suite run a consumer in a real child process (cases 19, 20, 23, 41). */
export interface ChildProcessHooks {
  /**
   * Absolute path (or `file:` URL) of a module exporting `makeBackend()` (or `exportName`), which
   * the suite's runner imports in a child `node` process. It must return an unconnected backend
   * that reaches the same broker/file as the parent's `makeBackend`.
   */
  readonly module: string
  /** Name of the factory export. @default 'makeBackend' */
  readonly exportName?: string
  /** Extra environment for the child (e.g. the path of a shared database file). */
  readonly env?: Readonly<Record<string, string>>
  /** Extra `node` flags. `--conditions=@omnibus/source` is added when the suite runs from sources. */
  readonly execArgv?: readonly string[]
}

/** A backend pointed at an endpoint where nothing listens (case 35). */
export interface UnreachableBackend {
  /** Makes an unconnected backend aimed at a closed port (see `findClosedPort`). */
  readonly makeBackend: () => EventBackend | Promise<EventBackend>
  /** Text the `ConnectionError` message must contain, e.g. `127.0.0.1:43125`. */
  readonly endpoint: string
}

/** Options of `conformanceSuite`. */
export interface ConformanceOptions {
  /**
   * Returns a fresh, unconnected backend. Called several times per test: separate instances act as
   * separate consumers or processes, so they must reach the same broker (in-process backends: the
   * same hub).
   */
  readonly makeBackend: () => EventBackend | Promise<EventBackend>
  /**
   * The capabilities the backend declares, when known up front: capability skips then appear at
   * collection time with the reason in the test title. Without it the suite reads them from the
   * first backend of each test and skips at run time with the reason as the skip note.
   */
  readonly capabilities?: BackendCapabilities
  /** Per-backend deadlines. */
  readonly timeouts?: ConformanceTimeouts
  /** Case id → one-line reason. Excluded cases appear as skipped with the reason in their title. */
  readonly exclude?: Readonly<Record<string, string>>
  /**
   * Writes a raw, non-envelope message onto the broker where a consumer of `topic` will read it
   * (case 32). Without it, case 32 is skipped with that reason.
   */
  readonly injectRaw?: (topic: string, payload: Uint8Array) => Promise<void>
  /** Restarts the broker and resolves when it is back (case 34; integration only). */
  readonly restart?: () => Promise<void>
  /** A backend aimed at a closed port (case 35). Without it, case 35 is skipped with that reason. */
  readonly unreachable?: UnreachableBackend
  /** Consumer child processes (the `-killed` variants of cases 19, 20, 23, 41). */
  readonly childProcess?: ChildProcessHooks
  /**
   * Copies of each delivery case run in parallel, each with its own run id.
   * @default Number(process.env.OMNIBUS_STRESS) || 1
   */
  readonly stress?: number
}

/** Timeouts with every field filled. */
export interface ResolvedTimeouts {
  readonly deliveryMs: number
  readonly groupJoinMs: number
  readonly visibilityMs: number
  readonly retrySlackMs: number
  readonly connectFailMs: number
  readonly restartMs: number
}

/** Defaults of {@link ConformanceTimeouts}. */
export const DEFAULT_TIMEOUTS: ResolvedTimeouts = {
  deliveryMs: 5000,
  groupJoinMs: 10_000,
  visibilityMs: 2000,
  retrySlackMs: 1000,
  connectFailMs: 5000,
  restartMs: 60_000,
}

/** Fills defaults and rejects nonsense with a message naming the field. */
export function resolveTimeouts(t: ConformanceTimeouts | undefined): ResolvedTimeouts {
  const out = { ...DEFAULT_TIMEOUTS, ...t }
  for (const [key, value] of Object.entries(out)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new TypeError(
        `conformanceSuite: timeouts.${key} must be a positive number of ms, got ${String(value)}`,
      )
    }
  }
  return out
}

/** The stress factor: option, then `OMNIBUS_STRESS`, then 1. */
export function resolveStress(option: number | undefined, env: string | undefined): number {
  const raw = option ?? (env === undefined || env === '' ? 1 : Number(env))
  if (!Number.isInteger(raw) || raw < 1) {
    throw new TypeError(
      `conformanceSuite: stress (or OMNIBUS_STRESS) must be an integer >= 1, got ${String(raw)}`,
    )
  }
  return raw
}
