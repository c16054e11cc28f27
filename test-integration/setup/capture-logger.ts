/** A logger that keeps every line, for tests that check what a backend logged. */
import type { Logger } from '@omnibus/core'

/** One logged line. */
export interface LogLine {
  readonly level: 'debug' | 'info' | 'warn' | 'error'
  readonly message: string
  readonly fields: Record<string, unknown>
}

/** A logger writing into `lines`. */
export function captureLogger(lines: LogLine[]): Logger {
  const at =
    (level: LogLine['level']) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push({ level, message, fields: fields ?? {} })
    }
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}
