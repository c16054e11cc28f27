import { describe, it } from 'vitest'
import { ALL_CASES } from './cases/index.ts'
import type { ConformanceCase } from './cases/types.ts'
import { createCaseContext } from './harness.ts'
import { type ConformanceOptions, resolveStress, resolveTimeouts } from './options.ts'

/** Ids of every case, in suite order (usable as keys of `exclude`). */
export const CASE_IDS: readonly string[] = ALL_CASES.map((c) => c.id)

function checkOptions(options: ConformanceOptions): void {
  if (options === null || typeof options !== 'object' || typeof options.makeBackend !== 'function') {
    throw new TypeError('conformanceSuite(name, options): options.makeBackend must be a function')
  }
  for (const [id, reason] of Object.entries(options.exclude ?? {})) {
    if (!CASE_IDS.includes(id)) {
      throw new TypeError(
        `conformanceSuite: exclude names unknown case "${id}"; known ids: ${CASE_IDS.join(', ')}`,
      )
    }
    if (typeof reason !== 'string' || reason.trim() === '' || reason.includes('\n')) {
      throw new TypeError(`conformanceSuite: exclude["${id}"] needs a one-line reason`)
    }
  }
}

/**
 * Registers the conformance suite as a vitest `describe` block named `name`: one test per case,
 * titled `<id>: <what it checks>`. Cases the backend's capabilities rule out, cases whose hook
 * was not provided and excluded cases are skipped with the reason in the title (or, when
 * capabilities are only known at run time, as the skip note).
 */
export function conformanceSuite(name: string, options: ConformanceOptions): void {
  checkOptions(options)
  const timeouts = resolveTimeouts(options.timeouts)
  const stress = resolveStress(options.stress, process.env.OMNIBUS_STRESS)
  const base = timeouts.groupJoinMs * 2 + timeouts.deliveryMs * 4 + timeouts.visibilityMs * 2

  describe(`conformance: ${name}`, () => {
    for (const c of ALL_CASES) {
      const title = `${c.id}: ${c.title}`
      const excluded = options.exclude?.[c.id]
      const staticReason =
        (excluded === undefined ? undefined : `excluded: ${excluded}`) ??
        (options.capabilities === undefined ? undefined : c.gate?.(options.capabilities)) ??
        c.needs?.(options)
      if (staticReason !== undefined) {
        it.skip(`${title} — skipped: ${staticReason}`, () => {})
        continue
      }
      const timeout = base + (c.timeoutMs?.(timeouts) ?? 0)
      it(title, async (tctx) => runCase(c, options, timeouts, stress, tctx.skip), timeout)
    }
  })
}

async function runCase(
  c: ConformanceCase,
  options: ConformanceOptions,
  timeouts: ReturnType<typeof resolveTimeouts>,
  stress: number,
  skip: (note?: string) => never,
): Promise<void> {
  const first = await options.makeBackend()
  const caps = options.capabilities ?? first.capabilities
  const reason = c.gate?.(caps)
  if (reason !== undefined) {
    await first.disconnect().catch(() => {})
    skip(reason)
  }
  const copies = c.stress === true ? stress : 1
  const contexts = Array.from({ length: copies }, (_, k) =>
    createCaseContext(options, timeouts, caps, k === 0 ? first : undefined),
  )
  let failure: unknown
  try {
    await Promise.all(contexts.map((h) => c.run(h)))
  } catch (error) {
    failure = error
  }
  const closed = await Promise.allSettled(contexts.map((h) => h.close()))
  if (failure !== undefined) throw failure
  const bad = closed.find((r) => r.status === 'rejected')
  if (bad !== undefined) throw (bad as PromiseRejectedResult).reason
}
