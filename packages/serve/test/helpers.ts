import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** One Server-Sent Event as a client sees it. */
export interface SseMessage {
  readonly event: string
  readonly id: string | undefined
  readonly data: string
}

/** A Server-Sent Events client over fetch: collects messages until closed. */
export interface SseReader {
  readonly messages: SseMessage[]
  readonly status: number
  readonly headers: Headers
  close(): void
}

/** Opens `url` as an SSE stream with real HTTP, parsing events as the EventSource spec does. */
export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const abort = new AbortController()
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal })
  const messages: SseMessage[] = []
  const body = res.body
  if (body === null) throw new Error('no body')
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return
        buffer += value
        let end = buffer.indexOf('\n\n')
        while (end >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let event = 'message'
          let id: string | undefined
          const data: string[] = []
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue
            const colon = line.indexOf(':')
            const field = colon < 0 ? line : line.slice(0, colon)
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
            if (field === 'event') event = value
            else if (field === 'id') id = value
            else if (field === 'data') data.push(value)
          }
          if (data.length > 0) messages.push({ event, id, data: data.join('\n') })
          end = buffer.indexOf('\n\n')
        }
      }
    } catch {
      // aborted
    }
  })()
  return { messages, status: res.status, headers: res.headers, close: () => abort.abort() }
}

/** A fresh temporary folder, removed at exit. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'omnibus-serve-'))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A TCP port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

let counter = 0
/** A name no other test uses. */
export function unique(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}-${Date.now().toString(36)}`
}

const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\n"])*",?)*\})? (-?[0-9.eE+-]+|[nN][aA][nN]|[+-]?[iI][nN][fF])( -?[0-9]+)?$/

// As Prometheus reads values (Go's ParseFloat): NaN and Inf in any letter case.
function parseValue(text: string): number {
  const t = text.toLowerCase()
  if (t === 'nan') return Number.NaN
  if (t === 'inf' || t === '+inf') return Number.POSITIVE_INFINITY
  if (t === '-inf') return Number.NEGATIVE_INFINITY
  return Number(text)
}

/** One sample of the exposition text, with its labels parsed. */
export interface ExpositionSample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/**
 * Checks `text` against the rules of the Prometheus text format (0.0.4) that a scrape enforces:
 * every line is a comment, a HELP/TYPE line or a well-formed sample; a family's TYPE comes before
 * its samples and once; a histogram's buckets are cumulative in `le` order and end with `+Inf`
 * equal to `_count`. Throws naming the first broken line; returns every sample.
 */
export function checkExposition(text: string): ExpositionSample[] {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline')
  const types = new Map<string, string>()
  const samples: ExpositionSample[] = []
  const lines = text.slice(0, -1).split('\n')
  for (const [i, line] of lines.entries()) {
    if (line.startsWith('# TYPE ')) {
      const [, name, type] = line.split(' ').slice(1)
      if (
        name === undefined ||
        type === undefined ||
        !/^(counter|gauge|histogram|summary|untyped)$/.test(type)
      ) {
        throw new Error(`line ${i + 1}: bad TYPE: ${line}`)
      }
      if (types.has(name)) throw new Error(`line ${i + 1}: second TYPE for ${name}`)
      types.set(name, type)
      continue
    }
    if (line.startsWith('#') || line === '') continue
    const m = SAMPLE_LINE.exec(line)
    if (m === null) throw new Error(`line ${i + 1}: not a sample: ${line}`)
    const name = m[1] as string
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1')
    }
    const family = name.replace(/_(bucket|count|sum)$/, '')
    if (!types.has(name) && !types.has(family))
      throw new Error(`line ${i + 1}: sample before its TYPE: ${line}`)
    samples.push({ name, labels, value: parseValue(m[3] as string) })
  }
  for (const [name, type] of types) {
    if (type !== 'histogram') continue
    const series = new Map<string, Array<{ le: number; value: number }>>()
    for (const s of samples.filter((x) => x.name === `${name}_bucket`)) {
      const { le, ...rest } = s.labels
      const key = JSON.stringify(rest)
      const list = series.get(key) ?? []
      list.push({ le: parseValue(le ?? ''), value: s.value })
      series.set(key, list)
    }
    for (const [key, buckets] of series) {
      for (let k = 1; k < buckets.length; k++) {
        const prev = buckets[k - 1] as { le: number; value: number }
        const cur = buckets[k] as { le: number; value: number }
        if (!(cur.le > prev.le) || cur.value < prev.value)
          throw new Error(`${name}${key}: buckets not cumulative`)
      }
      const last = buckets.at(-1)
      const count = samples.find((x) => x.name === `${name}_count` && JSON.stringify(x.labels) === key)
      if (last?.le !== Number.POSITIVE_INFINITY || count?.value !== last.value) {
        throw new Error(`${name}${key}: +Inf bucket missing or not equal to _count`)
      }
    }
  }
  return samples
}
