import { type EventBackend, type OmnibusEvent, type Subscription, validatePattern } from '@omnibus/core'
import { CliError, EXIT } from '../backend.ts'
import { formatEvent, formatEventJson } from '../format.ts'
import type { CommandIo } from '../io.ts'

/** Options of `omnibus tail`. */
export interface TailOptions {
  readonly patterns: readonly string[]
  readonly json: boolean
  readonly from: 'latest' | 'earliest'
  readonly group: string | undefined
  /** Exit after this many events. */
  readonly count: number | undefined
}

/**
 * Prints live events until interrupted (or `count` events). Without `--group` the subscription is
 * a private at-most-once observer; with `--group` it joins that group (at-least-once), so several
 * `tail`s share the stream.
 */
export async function tail(backend: EventBackend, opts: TailOptions, io: CommandIo): Promise<number> {
  const patterns = opts.patterns.length === 0 ? ['**'] : opts.patterns
  for (const p of patterns) {
    try {
      validatePattern(p)
    } catch (error) {
      throw new CliError((error as Error).message, EXIT.usage)
    }
  }
  let seen = 0
  const done = new AbortController()
  const onEvent = (event: OmnibusEvent): void => {
    if (done.signal.aborted || io.signal.aborted) return
    io.out(opts.json ? formatEventJson(event) : formatEvent(event, io.stdout))
    seen++
    if (opts.count !== undefined && seen >= opts.count) done.abort()
  }
  const subs: Subscription[] = []
  for (const pattern of patterns) {
    subs.push(
      await backend.subscribe(pattern, onEvent, {
        guarantee: opts.group === undefined ? 'at-most-once' : 'at-least-once',
        from: opts.from,
        ...(opts.group === undefined ? {} : { group: opts.group }),
      }),
    )
  }
  if (!opts.json) io.err(`tailing ${patterns.join(', ')} on ${backend.name} (Ctrl-C to stop)`)
  io.ready?.()
  // Ends on --count, Ctrl-C, or a reader that closed the pipe (the next line written finds it).
  await new Promise<void>((resolve) => {
    if (done.signal.aborted || io.signal.aborted) resolve()
    done.signal.addEventListener('abort', () => resolve(), { once: true })
    io.signal.addEventListener('abort', () => resolve(), { once: true })
  })
  await Promise.allSettled(subs.map((s) => s.unsubscribe()))
  return EXIT.ok
}
