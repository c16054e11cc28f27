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
  /** Aborted on SIGINT/SIGTERM. */
  readonly signal: AbortSignal
  /** Called once a long-running command is subscribed and listening. */
  ready?(): void
}

/** The process's own streams and signals. */
export function processIo(): CommandIo {
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    stdout: process.stdout,
    stdin: process.stdin,
    signal: controller.signal,
  }
}
