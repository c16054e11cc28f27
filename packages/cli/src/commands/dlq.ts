import {
  DEFAULT_DEAD_LETTER_TOPIC,
  DLQ_HEADERS,
  type EventBackend,
  type OmnibusEvent,
  redriveInput,
} from '@omnibus/core'
import { CliError, describe, EXIT } from '../backend.ts'
import { formatEventJson, paint } from '../format.ts'
import type { CommandIo } from '../io.ts'

/** Options of `omnibus dlq`. */
export interface DlqOptions {
  readonly topic: string
  readonly json: boolean
  readonly limit: number | undefined
  /** Stop once no dead letter arrived for this long. */
  readonly idleMs: number
  /** Group that redrive consumes with (its progress is remembered on persistent backends). */
  readonly group: string
}

async function drain(
  backend: EventBackend,
  opts: DlqOptions,
  io: CommandIo,
  onEvent: (event: OmnibusEvent) => Promise<void> | void,
  consume: boolean,
): Promise<number> {
  let n = 0
  let last = Date.now()
  const done = new AbortController()
  let sub: Awaited<ReturnType<EventBackend['subscribe']>>
  try {
    sub = await backend.subscribe(
      opts.topic,
      async (event) => {
        if (done.signal.aborted) throw new Error('stopping')
        await onEvent(event)
        n++
        last = Date.now()
        if (opts.limit !== undefined && n >= opts.limit) done.abort()
      },
      consume
        ? { group: opts.group, guarantee: 'at-least-once', from: 'earliest', deadLetter: false }
        : { guarantee: 'at-most-once', from: 'earliest' },
    )
  } catch (error) {
    throw new CliError(`cannot read ${opts.topic} on ${backend.name}: ${describe(error)}`, EXIT.failure)
  }
  while (!done.signal.aborted && !io.signal.aborted && Date.now() - last < opts.idleMs) {
    await new Promise((r) => setTimeout(r, 25))
  }
  done.abort()
  await sub.unsubscribe()
  return n
}

/** Lists dead letters from the earliest retained one, without consuming them. */
export async function dlqList(backend: EventBackend, opts: DlqOptions, io: CommandIo): Promise<number> {
  const n = await drain(
    backend,
    opts,
    io,
    (e) => {
      if (opts.json) {
        io.out(formatEventJson(e))
        return
      }
      const h = e.headers
      io.out(
        `${paint('red', h[DLQ_HEADERS.originalTopic] ?? e.topic, io.stdout)} id=${h[DLQ_HEADERS.originalId] ?? e.id} ` +
          `attempts=${h[DLQ_HEADERS.attempts] ?? '?'} group=${h[DLQ_HEADERS.group] ?? '-'} reason=${h[DLQ_HEADERS.reason] ?? '?'}`,
      )
    },
    false,
  )
  if (!opts.json) io.err(`${n} dead letter(s) on ${opts.topic}`)
  return EXIT.ok
}

/** Re-publishes dead letters to their original topics (consuming them through a group). */
export async function dlqRedrive(backend: EventBackend, opts: DlqOptions, io: CommandIo): Promise<number> {
  let failed = 0
  const n = await drain(
    backend,
    opts,
    io,
    async (e) => {
      try {
        const input = redriveInput(e)
        await backend.publish(input)
        io.out(`redriven ${input.id} to ${input.topic}`)
      } catch (error) {
        failed++
        io.err(`cannot redrive ${e.id}: ${describe(error)}`)
      }
    },
    true,
  )
  io.err(`${n - failed} redriven, ${failed} failed`)
  return failed === 0 ? EXIT.ok : EXIT.failure
}

/** The dead-letter topic used when `--topic` is not given. */
export const DEFAULT_DLQ_TOPIC = DEFAULT_DEAD_LETTER_TOPIC
