/**
 * Telemetry exporters: where an {@link ObservabilityBus} copies each flushed batch besides the
 * backend. The bus catches and counts every exporter failure; an exporter never throws into the
 * application. Built-ins: JSON-lines file rotating by size, logger (pino or console), composite,
 * and a pattern filter.
 */
import { appendFile, mkdir, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { encodeEvent } from './codec.ts'
import { ConfigurationError } from './errors.ts'
import { compilePattern } from './matcher.ts'
import type { OmnibusEvent } from './protocol.ts'

/** Receives every batch the bus flushes. May be synchronous or asynchronous. */
export interface TelemetryExporter {
  /** Name used in stats and Prometheus labels. */
  readonly name: string
  /** Exports one batch. Throwing or rejecting counts as one exporter failure. */
  export(events: readonly OmnibusEvent[]): void | Promise<void>
  /** Called by `bus.close()`: release files and handles. */
  close?(): void | Promise<void>
}

/** Options of {@link jsonLinesExporter}. */
export interface JsonLinesExporterOptions {
  /** File to append to; its directory is created when missing. */
  readonly path: string
  /** Rotate when the file would grow past this many bytes. @default 10485760 (10 MiB) */
  readonly maxBytes?: number
  /** Rotated files kept (`events.jsonl.1` is the newest). @default 5 */
  readonly maxFiles?: number
}

/**
 * Appends each event as one CloudEvents JSON line. When the next batch would take the file past
 * `maxBytes`, the file is renamed to `<path>.1` (older ones shift up to `maxFiles`, the oldest is
 * deleted) and a new file is started.
 */
export function jsonLinesExporter(options: JsonLinesExporterOptions): TelemetryExporter {
  const file = options.path
  if (typeof file !== 'string' || file.length === 0) {
    throw new ConfigurationError('jsonLinesExporter needs a file path: { path: "./events.jsonl" }')
  }
  const maxBytes = options.maxBytes ?? 10 * 1024 * 1024
  const maxFiles = options.maxFiles ?? 5
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new ConfigurationError(
      `jsonLinesExporter maxBytes must be a positive integer, got ${String(maxBytes)}`,
    )
  }
  if (!Number.isInteger(maxFiles) || maxFiles < 1) {
    throw new ConfigurationError(
      `jsonLinesExporter maxFiles must be an integer >= 1, got ${String(maxFiles)}`,
    )
  }
  let size: number | undefined
  let chain: Promise<void> = Promise.resolve()

  async function rotate(): Promise<void> {
    await rm(`${file}.${maxFiles}`, { force: true })
    for (let i = maxFiles - 1; i >= 1; i--) {
      await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => undefined)
    }
    await rename(file, `${file}.1`).catch(() => undefined)
    size = 0
  }

  async function write(events: readonly OmnibusEvent[]): Promise<void> {
    if (size === undefined) {
      await mkdir(path.dirname(path.resolve(file)), { recursive: true })
      size = await stat(file).then(
        (s) => s.size,
        () => 0,
      )
    }
    let text = ''
    let skipped = 0
    let firstError: unknown
    for (const e of events) {
      // One event JSON cannot carry must not cost the rest of the batch its lines.
      try {
        text += `${encodeEvent(e)}\n`
      } catch (error) {
        skipped++
        firstError ??= error
      }
    }
    const bytes = Buffer.byteLength(text)
    if (bytes > 0) {
      if (size > 0 && size + bytes > maxBytes) await rotate()
      await appendFile(file, text)
      size += bytes
    }
    if (skipped > 0) {
      throw new AggregateError([firstError], `${skipped} event(s) could not be written as JSON`)
    }
  }

  return {
    name: `jsonl:${path.basename(file)}`,
    export(events) {
      // Writes are serialised so lines of two batches never interleave and rotation sees real sizes.
      const next = chain.then(() => write(events))
      chain = next.catch(() => undefined)
      return next
    },
    close() {
      return chain
    },
  }
}

/** A logger in the shape of pino (`info(obj, msg)`) or console (`info(msg, ...args)`). */
export interface ExportLogger {
  debug?(...args: unknown[]): void
  info(...args: unknown[]): void
  warn?(...args: unknown[]): void
  error?(...args: unknown[]): void
}

/** Options of {@link loggerExporter}. */
export interface LoggerExporterOptions {
  /** Level for ordinary events; events on error topics always use `error`. @default 'info' */
  readonly level?: 'debug' | 'info' | 'warn' | 'error'
  /**
   * Argument order: `pino` passes `(fields, message)`, `console` passes `(message, fields)`.
   * @default detected: pino-like when the logger has `child()` and `levels`
   */
  readonly style?: 'pino' | 'console'
}

/** Logs each event through an application logger (pino, console, or anything with `info`). */
export function loggerExporter(logger: ExportLogger, options: LoggerExporterOptions = {}): TelemetryExporter {
  if (logger === null || typeof logger !== 'object' || typeof logger.info !== 'function') {
    throw new ConfigurationError('loggerExporter needs a logger with an info() method (pino, console, ...)')
  }
  const l = logger as ExportLogger & { child?: unknown; levels?: unknown }
  const style =
    options.style ?? (typeof l.child === 'function' && l.levels !== undefined ? 'pino' : 'console')
  const level = options.level ?? 'info'
  const pick = (name: 'debug' | 'info' | 'warn' | 'error'): ((...args: unknown[]) => void) => {
    const fn = logger[name] ?? logger.info
    return fn.bind(logger)
  }
  const normal = pick(level)
  const error = pick('error')
  return {
    name: `logger:${style}`,
    export(events) {
      for (const e of events) {
        const log =
          e.topic === 'error' || e.topic.startsWith('error.') || e.topic.endsWith('.error') ? error : normal
        const fields = {
          topic: e.topic,
          id: e.id,
          source: e.source,
          time: e.time,
          data: e.data,
          headers: e.headers,
        }
        if (style === 'pino') log(fields, `omnibus ${e.topic}`)
        else log(`[omnibus] ${e.topic}`, fields)
      }
    },
  }
}

/**
 * Sends each batch to several exporters. All of them run even when one fails; the failures are
 * then reported together as one `AggregateError` (counted once by the bus, per exporter here).
 */
export function compositeExporter(exporters: readonly TelemetryExporter[]): TelemetryExporter & {
  readonly failures: Readonly<Record<string, number>>
} {
  const failures: Record<string, number> = {}
  return {
    name: `composite(${exporters.map((e) => e.name).join(',')})`,
    failures,
    async export(events) {
      const errors: unknown[] = []
      await Promise.all(
        exporters.map(async (e) => {
          try {
            await e.export(events)
          } catch (error) {
            failures[e.name] = (failures[e.name] ?? 0) + 1
            errors.push(error)
          }
        }),
      )
      if (errors.length > 0) throw new AggregateError(errors, `${errors.length} exporter(s) failed`)
    },
    async close() {
      await Promise.allSettled(exporters.map(async (e) => e.close?.()))
    },
  }
}

/** Options of {@link filteringExporter}: topic patterns (the core grammar). */
export interface FilteringExporterOptions {
  /** Only events matching one of these patterns pass. @default every event */
  readonly include?: readonly string[]
  /** Events matching one of these patterns never pass (checked after `include`). */
  readonly exclude?: readonly string[]
}

/** Passes to `exporter` only the events whose topic passes the include/exclude patterns. */
export function filteringExporter(
  exporter: TelemetryExporter,
  options: FilteringExporterOptions,
): TelemetryExporter {
  const include = options.include?.map(compilePattern)
  const exclude = (options.exclude ?? []).map(compilePattern)
  const keep = (topic: string): boolean =>
    (include === undefined || include.some((t) => t(topic))) && !exclude.some((t) => t(topic))
  return {
    name: `filter(${exporter.name})`,
    export(events) {
      const kept = events.filter((e) => keep(e.topic))
      if (kept.length === 0) return
      return exporter.export(kept)
    },
    close() {
      return exporter.close?.()
    },
  }
}
