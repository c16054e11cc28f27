/** Loggers every backend shares, and a logging call that never throws. */
import type { Logger } from '../protocol.ts'

/** A logger that discards everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
}

/** A logger that writes warnings and errors to the console, and nothing below. */
export const consoleLogger: Logger = {
  debug() {},
  info() {},
  warn(message, fields) {
    console.warn(`[omnibus] ${message}`, fields ?? '')
  },
  error(message, fields) {
    console.error(`[omnibus] ${message}`, fields ?? '')
  },
}

/** Logs without ever throwing: a broken logger must not stop delivery. */
export function safeLog(
  logger: Logger,
  level: 'debug' | 'info' | 'warn' | 'error',
  message: string,
  fields: Record<string, unknown>,
): void {
  try {
    logger[level](message, fields)
  } catch {
    // Nothing sensible is left to report to.
  }
}
