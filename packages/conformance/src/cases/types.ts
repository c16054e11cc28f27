import type { BackendCapabilities } from '@omnibus/core'
import type { CaseContext } from '../harness.ts'
import type { ConformanceOptions } from '../options.ts'

/** One conformance case: a test with a stable id usable in `exclude`. */
export interface ConformanceCase {
  /** Stable id, e.g. `01-round-trip`. */
  readonly id: string
  /** What the case checks, as shown in the test title. */
  readonly title: string
  /**
   * Reason to skip given the suite options alone (a hook that was not provided), or undefined.
   * Decided at collection time.
   */
  readonly needs?: (options: ConformanceOptions) => string | undefined
  /** Reason to skip given the declared capabilities, or undefined when the case applies. */
  readonly gate?: (caps: BackendCapabilities) => string | undefined
  /** Delivery cases run `stress` copies in parallel under `OMNIBUS_STRESS`. */
  readonly stress?: boolean
  /** Extra test timeout on top of the suite's computed one, for long cases. */
  readonly timeoutMs?: (t: CaseContext['timeouts']) => number
  readonly run: (h: CaseContext) => Promise<void>
}

/** Skip reason unless the backend offers `guarantee`. */
export function needsGuarantee(caps: BackendCapabilities, guarantee: string): string | undefined {
  return caps.guarantees.includes(guarantee as never)
    ? undefined
    : `backend does not declare ${guarantee} (guarantees: ${caps.guarantees.join(', ')})`
}

/** Combines gates: the first reason wins. */
export function allOf(
  ...gates: Array<(caps: BackendCapabilities) => string | undefined>
): (caps: BackendCapabilities) => string | undefined {
  return (caps) => {
    for (const g of gates) {
      const reason = g(caps)
      if (reason !== undefined) return reason
    }
    return undefined
  }
}

/** Gate: at-least-once declared. */
export const atLeastOnce = (caps: BackendCapabilities) => needsGuarantee(caps, 'at-least-once')
/** Gate: consumer groups declared. */
export const groups = (caps: BackendCapabilities) =>
  caps.groups ? undefined : 'backend does not declare consumer groups (capabilities.groups = false)'
/** Gate: persistent declared. */
export const persistent = (caps: BackendCapabilities) =>
  caps.persistent ? undefined : 'backend is not persistent (capabilities.persistent = false)'
/** Gate: cross-process declared. */
export const crossProcess = (caps: BackendCapabilities) =>
  caps.crossProcess ? undefined : 'backend is in-process only (capabilities.crossProcess = false)'
