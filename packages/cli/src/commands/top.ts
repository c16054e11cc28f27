/**
 * `omnibus top`: the aggregates `omnibus serve` keeps, drawn in the terminal and redrawn every
 * interval. On a terminal it takes the alternate screen (what was on screen comes back on exit),
 * redraws in place with one write per frame, and quits on `q` or Ctrl-C. Into a pipe or file it
 * prints one plain frame per interval, and `--json` prints one snapshot and exits.
 */
import type { Snapshot } from '@omnibus/serve'
import { EXIT } from '../backend.ts'
import type { CommandIo } from '../io.ts'
import { renderTop } from './top-render.ts'

/** Options of `omnibus top`. */
export interface TopOptions {
  /** Time between frames; with `json`, how long to watch before the one snapshot. */
  readonly intervalMs: number
  readonly json: boolean
  /** The backend URL as shown (redacted). */
  readonly url: string
}

/** Where the aggregates come from: a running aggregator over the backend. */
export interface SnapshotSource {
  snapshot(): Snapshot
}

const ESC = '\x1b['
const ALT_SCREEN_ON = `${ESC}?1049h`
const ALT_SCREEN_OFF = `${ESC}?1049l`
const CURSOR_HIDE = `${ESC}?25l`
const CURSOR_SHOW = `${ESC}?25h`

/** Keys that quit: q, Q, Ctrl-C (raw mode delivers it as a byte, not as SIGINT), Ctrl-D. */
const QUIT_KEYS = new Set(['q', 'Q', '\x03', '\x04'])

/** Resolves after `ms`, or at once when `signal` is aborted. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

/**
 * One frame as a single string: cursor home, each line followed by erase-to-end-of-line, then
 * erase below. Lines are placed by the cursor moving down, never by scrolling, so a frame as tall
 * as the terminal does not scroll it; nothing is cleared before drawing, so nothing flickers.
 */
export function frame(lines: readonly string[]): string {
  return `${ESC}H${lines.map((l) => `${l}${ESC}K`).join('\r\n')}${ESC}J`
}

/** Runs `omnibus top` on `source` until quit; returns the exit code. */
export async function top(source: SnapshotSource, opts: TopOptions, io: CommandIo): Promise<number> {
  if (opts.json) {
    // Watch for one interval, so rates and the agents present right now are in the snapshot.
    await pause(opts.intervalMs, io.signal)
    io.out(JSON.stringify(source.snapshot()))
    return EXIT.ok
  }
  const out = io.stdout as NodeJS.WriteStream
  if (out.isTTY !== true) return batch(source, opts, io)
  return screen(source, opts, io, out)
}

/** Plain frames, one per interval, separated by a blank line (`top -b`). */
async function batch(source: SnapshotSource, opts: TopOptions, io: CommandIo): Promise<number> {
  const columns = (io.stdout as NodeJS.WriteStream).columns ?? 120
  io.ready?.()
  while (!io.signal.aborted) {
    const lines = renderTop(source.snapshot(), {
      columns,
      rows: Number.POSITIVE_INFINITY,
      color: false,
      url: opts.url,
      intervalMs: opts.intervalMs,
      keys: false,
    })
    for (const line of lines) io.out(line)
    io.out('')
    await pause(opts.intervalMs, io.signal)
  }
  return EXIT.ok
}

async function screen(
  source: SnapshotSource,
  opts: TopOptions,
  io: CommandIo,
  out: NodeJS.WriteStream,
): Promise<number> {
  const quit = new AbortController()
  const stop = AbortSignal.any([quit.signal, io.signal])
  const stdin = io.stdin as NodeJS.ReadStream
  const keys = stdin.isTTY === true && typeof stdin.setRawMode === 'function'
  const onKey = (chunk: Buffer | string): void => {
    for (const ch of chunk.toString()) if (QUIT_KEYS.has(ch)) quit.abort()
  }
  const color = typeof out.hasColors === 'function' ? out.hasColors() : false
  const draw = (): void => {
    const lines = renderTop(source.snapshot(), {
      columns: out.columns ?? 80,
      rows: out.rows ?? 24,
      color,
      url: opts.url,
      intervalMs: opts.intervalMs,
      keys,
    })
    out.write(frame(lines))
  }
  out.write(`${ALT_SCREEN_ON}${CURSOR_HIDE}`)
  if (keys) {
    stdin.setRawMode(true)
    stdin.on('data', onKey)
    stdin.resume()
  }
  out.on('resize', draw)
  try {
    io.ready?.()
    while (!stop.aborted) {
      draw()
      await pause(opts.intervalMs, stop)
    }
  } finally {
    out.off('resize', draw)
    if (keys) {
      stdin.off('data', onKey)
      stdin.setRawMode(false)
      stdin.pause()
    }
    out.write(`${CURSOR_SHOW}${ALT_SCREEN_OFF}`)
  }
  return EXIT.ok
}
