/**
 * `omnibus dlq list|redrive`. Dead letters are read by replaying the dead-letter topic from its
 * first retained event, so listing consumes nothing. Which letters were redriven is recorded in
 * the backend itself: after re-publishing a letter, redrive publishes a marker on
 * `<dead-letter topic>.redriven` naming that letter, and both commands read the markers first, so
 * the state survives the process and is the same for every process and host.
 */
import {
  DEFAULT_DEAD_LETTER_TOPIC,
  DLQ_HEADERS,
  type EventBackend,
  type EventInput,
  type OmnibusEvent,
  redactUrl,
  redriveInput,
  type Subscription,
} from '@omnibus/core'
import { toCloudEvent } from '@omnibus/core/backend'
import { CliError, describe, EXIT } from '../backend.ts'
import { paint } from '../format.ts'
import { type CommandIo, outputClosed } from '../io.ts'

/** Options of `omnibus dlq`. */
export interface DlqOptions {
  /** The dead-letter topic. */
  readonly topic: string
  readonly json: boolean
  /** `list`: also the letters already redriven, with a state column. */
  readonly all: boolean
  /** Stop after this many letters (listed, or redriven). */
  readonly limit: number | undefined
  /** Stop once no event arrived for this long. */
  readonly idleMs: number
}

/** The dead-letter topic used when `--topic` is not given. */
export const DEFAULT_DLQ_TOPIC = DEFAULT_DEAD_LETTER_TOPIC

/** Header of a redrive marker: the key ({@link letterKey}) of the dead letter it redrove. */
export const REDRIVEN_OF_HEADER = 'omnibus-dlq-redriven-of'

/** The topic redrive markers of dead-letter topic `topic` are published on. */
export function redrivenTopic(topic: string): string {
  return `${topic}.redriven`
}

/**
 * What identifies one dead letter: its id and the time it was dead-lettered. The id alone is
 * derived from the original event and its group, so an event redriven and dead-lettered again
 * comes back with the same id, as a new letter that is pending again.
 */
export function letterKey(letter: OmnibusEvent): string {
  return `${letter.id}@${letter.time}`
}

/**
 * Refuses (exit 2) a backend that cannot replay a topic: the dead letters are read from the first
 * retained one, and on a queue broker reading them would consume them.
 */
export function requireReplay(backend: EventBackend, url: string): void {
  if (backend.capabilities.replay) return
  throw new CliError(
    `dlq reads the dead-letter topic from its first retained letter without consuming it, and the ` +
      `${backend.name} backend (${redactUrl(url)}) cannot replay a topic (a message leaves its queue when ` +
      'it is read): keep dead letters with a group subscription to the dead-letter topic in your ' +
      'application and re-publish them with redriveInput() from @omnibus/core, or use sqlite://, ' +
      'redis:// or kafka:// (see "Dead letters" in the @omnibus/cli README)',
    EXIT.usage,
  )
}

/** A marker's publish input, recording that `letter` was redriven now. */
function markerInput(letter: OmnibusEvent, topic: string): EventInput {
  const key = letterKey(letter)
  return {
    topic: redrivenTopic(topic),
    // Deterministic: a marker published twice is one marker to an exactly-once reader.
    id: `${letter.id}.redriven.${letter.time}`,
    source: 'omnibus-cli',
    data: {
      letterId: letter.id,
      letterTime: new Date(letter.time).toISOString(),
      originalTopic: letter.headers[DLQ_HEADERS.originalTopic] ?? null,
      originalId: letter.headers[DLQ_HEADERS.originalId] ?? null,
    },
    headers: { [REDRIVEN_OF_HEADER]: key },
    causationId: letter.id,
  }
}

interface Letter {
  readonly event: OmnibusEvent
  /** When it was redriven (marker time), or undefined while pending. */
  readonly redrivenAt: number | undefined
}

/**
 * Replays the markers and the dead letters together; once no marker arrived for `idleMs`, hands
 * each letter (once per {@link letterKey}, in topic order) to `onLetter` with its state. Ends when
 * no letter arrived for `idleMs`, `onLetter` returns `'stop'`, or `io.signal` aborts.
 */
async function replayLetters(
  backend: EventBackend,
  opts: DlqOptions,
  io: CommandIo,
  onLetter: (letter: Letter) => Promise<'stop' | undefined> | 'stop' | undefined,
): Promise<void> {
  const redriven = new Map<string, number>()
  const buffer: OmnibusEvent[] = []
  const seen = new Set<string>()
  let lastMarker = Date.now()
  let lastLetter = Date.now()
  const subs: Subscription[] = []
  const replay = { guarantee: 'at-most-once', from: 'earliest' } as const
  try {
    subs.push(
      await backend.subscribe(
        redrivenTopic(opts.topic),
        (marker) => {
          const key = marker.headers[REDRIVEN_OF_HEADER]
          if (key !== undefined && !redriven.has(key)) redriven.set(key, marker.time)
          lastMarker = Date.now()
        },
        replay,
      ),
    )
    subs.push(
      await backend.subscribe(
        opts.topic,
        (letter) => {
          buffer.push(letter)
          lastLetter = Date.now()
        },
        replay,
      ),
    )
  } catch (error) {
    await Promise.allSettled(subs.map((s) => s.unsubscribe()))
    throw new CliError(`cannot read ${opts.topic} on ${backend.name}: ${describe(error)}`, EXIT.failure)
  }
  // Idle time counts from when both subscriptions are in place: on Kafka, joining takes seconds.
  const subscribed = Date.now()
  if (redriven.size === 0) lastMarker = subscribed
  if (buffer.length === 0) lastLetter = subscribed
  try {
    let markersRead = false
    while (!io.signal.aborted) {
      markersRead ||= Date.now() - lastMarker >= opts.idleMs
      const letter = markersRead ? buffer.shift() : undefined
      if (letter === undefined) {
        if (markersRead && Date.now() - lastLetter >= opts.idleMs) break
        await new Promise((resolve) => setTimeout(resolve, 25))
        continue
      }
      const key = letterKey(letter)
      if (seen.has(key)) continue
      seen.add(key)
      if ((await onLetter({ event: letter, redrivenAt: redriven.get(key) })) === 'stop') break
    }
  } finally {
    await Promise.allSettled(subs.map((s) => s.unsubscribe()))
  }
}

function letterLine(letter: Letter, all: boolean, io: CommandIo): string {
  const e = letter.event
  const h = e.headers
  const state = all ? `${(letter.redrivenAt === undefined ? 'pending' : 'redriven').padEnd(9)}` : ''
  return (
    `${state}${paint('red', h[DLQ_HEADERS.originalTopic] ?? e.topic, io.stdout)} id=${h[DLQ_HEADERS.originalId] ?? e.id} ` +
    `attempts=${h[DLQ_HEADERS.attempts] ?? '?'} group=${h[DLQ_HEADERS.group] ?? '-'} reason=${h[DLQ_HEADERS.reason] ?? '?'}` +
    (letter.redrivenAt === undefined ? '' : ` redriven=${new Date(letter.redrivenAt).toISOString()}`)
  )
}

function letterJson(letter: Letter): string {
  return JSON.stringify({
    ...toCloudEvent(letter.event),
    dlqstate: letter.redrivenAt === undefined ? 'pending' : 'redriven',
    ...(letter.redrivenAt === undefined
      ? {}
      : { dlqredriventime: new Date(letter.redrivenAt).toISOString() }),
  })
}

/**
 * Lists the pending dead letters (with `all`, the redriven ones too), from the earliest retained
 * one, consuming nothing.
 */
export async function dlqList(backend: EventBackend, opts: DlqOptions, io: CommandIo): Promise<number> {
  let pending = 0
  let redriven = 0
  let shown = 0
  await replayLetters(backend, opts, io, (letter) => {
    if (letter.redrivenAt === undefined) pending++
    else redriven++
    if (letter.redrivenAt !== undefined && !opts.all) return undefined
    io.out(opts.json ? letterJson(letter) : letterLine(letter, opts.all, io))
    shown++
    return opts.limit !== undefined && shown >= opts.limit ? 'stop' : undefined
  })
  if (!opts.json && !outputClosed(io.signal)) {
    io.err(
      `${pending} pending dead letter(s) on ${opts.topic} (${redriven} redriven${opts.all || redriven === 0 ? '' : ', shown with --all'})`,
    )
  }
  return EXIT.ok
}

/**
 * Re-publishes each pending dead letter to its original topic with its original id, then records
 * it as redriven. Letters dead-lettered after the command started (a redriven event failing
 * again) are left for the next run, so a redrive always ends.
 */
export async function dlqRedrive(backend: EventBackend, opts: DlqOptions, io: CommandIo): Promise<number> {
  const started = Date.now()
  let done = 0
  let failed = 0
  let earlier = 0
  await replayLetters(backend, opts, io, async (letter) => {
    const e = letter.event
    if (letter.redrivenAt !== undefined) {
      earlier++
      return undefined
    }
    if (e.time > started) return undefined
    let input: EventInput
    try {
      input = redriveInput(e)
      await backend.publish(input)
    } catch (error) {
      failed++
      io.err(`cannot redrive ${e.id}: ${describe(error)}`)
      return undefined
    }
    try {
      await backend.publish(markerInput(e, opts.topic))
    } catch (error) {
      failed++
      io.err(
        `redriven ${input.id} to ${input.topic}, but not recorded (${describe(error)}): dlq list still shows it as pending`,
      )
      return undefined
    }
    done++
    io.out(`redriven ${input.id} to ${input.topic}`)
    return opts.limit !== undefined && done >= opts.limit ? 'stop' : undefined
  })
  if (!outputClosed(io.signal)) {
    io.err(
      `${done} redriven, ${failed} failed${earlier === 0 ? '' : ` (${earlier} redriven by an earlier run)`}`,
    )
  }
  return failed === 0 ? EXIT.ok : EXIT.failure
}
