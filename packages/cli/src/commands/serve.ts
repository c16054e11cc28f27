/**
 * `omnibus serve`: runs @omnibus/serve's HTTP server (probes, /metrics, the live tail, the JSON
 * API and the dashboard) on a backend the command has connected, until SIGINT or SIGTERM. Also
 * what `omnibus serve` and `omnibus top` share: reading the alert rules before anything connects,
 * and starting the watch from the earliest retained event.
 */
import { CapabilityError, ConfigurationError, type EventBackend, redactUrl } from '@omnibus/core'
import { AlertEngine, loadAlertConfig, type PricingTable, parseDuration, startServer } from '@omnibus/serve'
import { CliError, describe, EXIT } from '../backend.ts'
import type { CommandIo } from '../io.ts'

/** Where the watch starts: new events only, or every event the backend still keeps. */
export type WatchFrom = 'latest' | 'earliest'

/** Options of `omnibus serve`. */
export interface ServeCommandOptions {
  readonly port: number | undefined
  readonly host: string | undefined
  readonly pricing: PricingTable
  readonly alerts: AlertEngine | undefined
  readonly from: WatchFrom
}

/** Reads and checks the `--alerts` rules file into an engine; a bad file is a usage error. */
export async function alertsOption(
  file: string | undefined,
  pricing: PricingTable,
): Promise<AlertEngine | undefined> {
  if (file === undefined) return undefined
  try {
    const config = await loadAlertConfig(file)
    return new AlertEngine({
      rules: config.rules,
      ...(config.channels === undefined ? {} : { channels: config.channels }),
      pricing,
    })
  } catch (error) {
    throw new CliError(describe(error), EXIT.usage, { cause: error })
  }
}

/** Parses `--port`: 0 to 65535 (0 picks a free port). */
export function portOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65_535) {
    throw new CliError(`--port must be an integer from 0 to 65535, got "${value}"`, EXIT.usage)
  }
  return n
}

/** Parses `--from`. */
export function fromOption(value: string | undefined): WatchFrom {
  const from = value ?? 'latest'
  if (from !== 'latest' && from !== 'earliest') {
    throw new CliError(`--from must be earliest or latest, got "${from}"`, EXIT.usage)
  }
  return from
}

/**
 * Parses a duration option: `500ms`, `2s`, `1m`, or a bare number of seconds (as `top -d`).
 * At least `minMs`.
 */
export function durationOption(
  name: string,
  value: string | undefined,
  fallbackMs: number,
  minMs: number,
): number {
  if (value === undefined) return fallbackMs
  const text = value.trim()
  const parsed = /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : parseDuration(text)
  if (parsed === undefined || parsed < minMs) {
    throw new CliError(
      `--${name} must be a duration of at least ${minMs} ms (500ms, 2s, 1m, or seconds), got "${value}"`,
      EXIT.usage,
    )
  }
  return parsed
}

/**
 * Refuses `--from earliest` (exit 2) on a backend that cannot replay, before connecting: the
 * watch would otherwise fail at subscribe time.
 */
export function requireReplayFor(from: WatchFrom, backend: EventBackend, url: string): void {
  if (from === 'earliest' && !backend.capabilities.replay) {
    throw new CliError(
      `--from earliest needs a backend that keeps and replays events (sqlite, redis, kafka), and ` +
        `${backend.name} (${redactUrl(url)}) does not: drop --from to watch new events only`,
      EXIT.usage,
    )
  }
}

/**
 * Serves on `backend` (connected) until `io.signal` aborts; then closes the server (open streams
 * included) and returns 0. The caller disconnects the backend.
 */
export async function serve(
  backend: EventBackend,
  url: string,
  opts: ServeCommandOptions,
  io: CommandIo,
): Promise<number> {
  let running: Awaited<ReturnType<typeof startServer>>
  try {
    running = await startServer({
      backend,
      from: opts.from,
      pricing: opts.pricing,
      ...(opts.alerts === undefined ? {} : { alerts: opts.alerts }),
      ...(opts.port === undefined ? {} : { port: opts.port }),
      ...(opts.host === undefined ? {} : { host: opts.host }),
    })
  } catch (error) {
    if (error instanceof CapabilityError) throw new CliError(describe(error), EXIT.usage, { cause: error })
    // A taken port or an address this host does not have: the command cannot run as asked.
    if (error instanceof ConfigurationError)
      throw new CliError(describe(error), EXIT.failure, { cause: error })
    throw error
  }
  try {
    io.out(`omnibus serve: ${running.url}/ (${backend.name} ${redactUrl(url)}; Ctrl-C to stop)`)
    io.ready?.()
    await new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve()
      else io.signal.addEventListener('abort', () => resolve(), { once: true })
    })
  } finally {
    await running.close()
  }
  return EXIT.ok
}
