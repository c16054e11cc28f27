/**
 * Where commands write and how they learn they should stop; the binary wires it to the process,
 * tests to buffers.
 */

/** Output and cancellation for a command. */
export interface CommandIo {
  /** Writes one line to standard output. */
  out(line: string): void
  /** Writes one line to standard error. */
  err(line: string): void
  /** Standard output, for colour detection and live views. */
  readonly stdout: NodeJS.WriteStream | NodeJS.WritableStream
  /** Standard input, for `publish -`. */
  readonly stdin: NodeJS.ReadableStream
  /**
   * Aborted on SIGINT/SIGTERM, and when the reader of the output went away (the reason is then an
   * {@link OutputClosedError}): a command stops what it is doing and returns.
   */
  readonly signal: AbortSignal
  /** Called once a long-running command is subscribed and listening. */
  ready?(): void
}

/**
 * The reason `CommandIo.signal` is aborted with when the output's reader closed the pipe
 * (`omnibus tail | head -1`): the command ends quietly, as if it had been asked to stop.
 */
export class OutputClosedError extends Error {
  constructor() {
    super('the output was closed by its reader')
    this.name = 'OutputClosedError'
  }
}

/** Whether `signal` was aborted because the output's reader went away. */
export function outputClosed(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof OutputClosedError
}

/** Errors of a write to a pipe or socket whose reader is gone. */
const GONE = new Set(['EPIPE', 'ECONNRESET', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END'])

/**
 * Writes lines to `stream` until it fails; then calls `onGone` once (for a reader that went away)
 * and drops everything written after. Without this, the stream's `error` event would be
 * unhandled and end the process with a stack trace.
 */
function lineWriter(stream: NodeJS.WriteStream, onGone: () => void): (line: string) => void {
  let open = true
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (!open) return
    open = false
    if (GONE.has(error.code ?? '')) onGone()
    // Any other failure (a full disk behind a redirect) cannot be reported on this stream;
    // standard error says it, unless standard error is the stream that failed.
    else if (stream !== process.stderr)
      process.stderr.write(`omnibus: cannot write output: ${error.message}\n`)
  })
  return (line) => {
    if (open) stream.write(`${line}\n`)
  }
}

/** The process's own streams and signals. */
export function processIo(): CommandIo {
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  const gone = (): void => controller.abort(new OutputClosedError())
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return {
    out: lineWriter(process.stdout, gone),
    err: lineWriter(process.stderr, gone),
    stdout: process.stdout,
    stdin: process.stdin,
    signal: controller.signal,
  }
}
