/**
 * The setup of a test file that runs backends under `instrumentOmnibus()`: the test SDK, the
 * instrumentation installed for the whole file, a memory and a SQLite backend to run on, spans
 * reset and cleanups run after every test.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type EventBackend, silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'
import { createSqliteBackend } from '@omnibus/sqlite'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { instrumentOmnibus, type OmnibusInstrumentation } from '../src/index.ts'
import { type TestSdk, testSdk } from './tracing.ts'

/** Call at the top of a test file; SQLite files go in a temporary folder named from `tmpPrefix`. */
export function instrumentedFile(tmpPrefix: string): {
  readonly sdk: TestSdk
  /** Unconnected backends by name: `memory` and `sqlite`. */
  readonly backends: Readonly<Record<string, () => EventBackend>>
  /** Runs `cleanup` after the test, the last registered first. */
  afterTest(cleanup: () => Promise<unknown>): void
} {
  const sdk = testSdk()
  let handle: OmnibusInstrumentation | undefined
  const dirs: string[] = []
  const cleanups: Array<() => Promise<unknown>> = []
  beforeAll(() => {
    handle = instrumentOmnibus({ tracerProvider: sdk.tracerProvider, meterProvider: sdk.meterProvider })
  })
  afterAll(async () => {
    handle?.unregister()
    await sdk.shutdown()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
    sdk.exporter.reset()
  })
  return {
    sdk,
    backends: {
      memory: () => createMemoryBackend({ logger: silentLogger }),
      sqlite: () => {
        const dir = mkdtempSync(join(tmpdir(), tmpPrefix))
        dirs.push(dir)
        return createSqliteBackend({ path: join(dir, 'events.db'), logger: silentLogger, pollIntervalMs: 5 })
      },
    },
    afterTest(cleanup) {
      cleanups.push(cleanup)
    },
  }
}
