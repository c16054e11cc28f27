/**
 * Terminal output: one line per event, coloured by category (the topic's first segment), or one
 * JSON document per line with `--json`. Colours follow `NO_COLOR`/`FORCE_COLOR` and TTY detection
 * through `node:util` `styleText`.
 */

import { styleText } from 'node:util'
import type { OmnibusEvent } from '@omnibus/core'
import { toCloudEvent } from '@omnibus/core/backend'

type Style = Parameters<typeof styleText>[0]

const CATEGORY_STYLES: Readonly<Record<string, Style>> = {
  tool: 'cyan',
  metric: 'blue',
  error: 'red',
  lifecycle: 'green',
  agent: 'magenta',
  state: 'yellow',
  model: 'yellow',
  audit: 'white',
  omnibus: 'red',
}

/** Applies a style when `stream` shows colours. */
export function paint(style: Style, text: string, stream: NodeJS.WritableStream = process.stdout): string {
  return styleText(style, text, { stream, validateStream: true })
}

/** Style of a topic: by first segment, and red for any `.error` topic. */
export function styleFor(topic: string): Style {
  if (topic.endsWith('.error') || topic.startsWith('error')) return 'red'
  const dot = topic.indexOf('.')
  const first = dot < 0 ? topic : topic.slice(0, dot)
  return CATEGORY_STYLES[first] ?? 'yellow'
}

function clock(ms: number): string {
  const d = new Date(ms)
  return `${d.toISOString().slice(11, 23)}`
}

function shortData(data: unknown, max = 160): string {
  const text = data instanceof Uint8Array ? `<${data.byteLength} bytes>` : JSON.stringify(data)
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}

/** One human line for an event. */
export function formatEvent(event: OmnibusEvent, stream: NodeJS.WritableStream = process.stdout): string {
  const topic = paint(styleFor(event.topic), event.topic.padEnd(24), stream)
  return `${paint('gray', clock(event.time), stream)} ${topic} ${paint('dim', event.source, stream)} ${shortData(event.data)}`
}

/** One JSON line (CloudEvents structured mode) for an event. */
export function formatEventJson(event: OmnibusEvent): string {
  return JSON.stringify(toCloudEvent(event))
}
