import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSqliteBackend, type SqliteBackend, type SqliteBackendOptions } from '../src/index.ts'

/** A fresh directory for database files, removed by the returned `cleanup`. */
export function tempDir(): { dir: string; file: (name?: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-test-'))
  let n = 0
  return {
    dir,
    file: (name?: string) => join(dir, name ?? `db-${n++}.db`),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/** Waits until `predicate` holds, polling every 5 ms, or fails after `timeoutMs` with `what`. */
export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Tracks backends so each test disconnects what it opened. */
export function backends(): {
  open: (options: SqliteBackendOptions) => Promise<SqliteBackend>
  closeAll: () => Promise<void>
} {
  const opened: SqliteBackend[] = []
  return {
    async open(options) {
      const b = createSqliteBackend(options)
      opened.push(b)
      await b.connect()
      return b
    },
    async closeAll() {
      await Promise.all(opened.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 200 })))
    },
  }
}
