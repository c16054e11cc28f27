import { createInterface } from 'node:readline'
import { type EventBackend, type EventInput, validateTopic } from '@omnibus/core'
import { setHeader } from '@omnibus/core/backend'
import { CliError, describe, EXIT } from '../backend.ts'
import type { CommandIo } from '../io.ts'

/** Options of `omnibus publish`. */
export interface PublishOptions {
  readonly topic: string
  /** JSON text of the data, or `-`/undefined to read one JSON value per line from stdin. */
  readonly data: string | undefined
  readonly key: string | undefined
  readonly headers: readonly string[]
  readonly json: boolean
}

/** Parses `k=v` header flags; a missing `=` is a usage error. */
export function parseHeaders(values: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const h of values) {
    const at = h.indexOf('=')
    if (at <= 0) throw new CliError(`--header "${h}" must look like name=value`, EXIT.usage)
    setHeader(headers, h.slice(0, at), h.slice(at + 1))
  }
  return headers
}

/** Parses JSON data; anything else is a usage error naming where it came from. */
export function parseData(text: string, where: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new CliError(
      `${where} is not JSON: ${text.length > 60 ? `${text.slice(0, 60)}…` : text} (quote strings: '"hello"')`,
      EXIT.usage,
    )
  }
}

/** Validates a topic as a usage error. */
export function checkTopic(topic: string): void {
  try {
    validateTopic(topic)
  } catch (error) {
    throw new CliError(describe(error), EXIT.usage)
  }
}

/**
 * Publishes one event, or one per stdin line. Every line is parsed before anything is sent, so a bad
 * line sends nothing. Prints each receipt; exits 1 if the backend refused any event.
 */
export async function publish(backend: EventBackend, opts: PublishOptions, io: CommandIo): Promise<number> {
  checkTopic(opts.topic)
  const headers = parseHeaders(opts.headers)
  const values: unknown[] = []
  if (opts.data !== undefined && opts.data !== '-') {
    values.push(parseData(opts.data, 'the data argument'))
  } else {
    const lines = createInterface({ input: io.stdin, crlfDelay: Number.POSITIVE_INFINITY })
    let n = 0
    for await (const line of lines) {
      n++
      if (line.trim() === '') continue
      values.push(parseData(line, `stdin line ${n}`))
    }
    if (values.length === 0) throw new CliError('nothing to publish: stdin had no JSON lines', EXIT.usage)
  }
  const inputs: EventInput[] = values.map((data) => ({
    topic: opts.topic,
    data,
    headers,
    source: 'omnibus-cli',
    ...(opts.key === undefined ? {} : { partitionKey: opts.key }),
  }))
  let failed = 0
  if (inputs.length === 1) {
    try {
      const receipt = await backend.publish(inputs[0] as EventInput)
      io.out(
        opts.json ? JSON.stringify({ ok: true, ...receipt }) : `published ${receipt.id} to ${receipt.topic}`,
      )
    } catch (error) {
      failed++
      io.err(`publish failed: ${describe(error)}`)
    }
  } else {
    const batch = await backend.publishBatch(inputs)
    for (const r of batch.results) {
      if (r.ok) io.out(opts.json ? JSON.stringify({ ok: true, ...r.receipt }) : `published ${r.receipt.id}`)
      else {
        failed++
        io.err(`line ${r.index + 1}: publish failed: ${describe(r.error)}`)
      }
    }
    if (!opts.json) io.err(`${batch.succeeded} published, ${batch.failed} failed`)
  }
  return failed === 0 ? EXIT.ok : EXIT.failure
}
