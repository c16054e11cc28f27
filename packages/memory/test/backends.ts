/** Backends of one memory test file: created connected, each disconnected after every test. */
import { silentLogger } from '@omnibus/core'
import { afterEach } from 'vitest'
import { createMemoryBackend, type MemoryBackend, type MemoryBackendOptions } from '../src/index.ts'

/** Call at the top of a test file; `backend()` then makes a connected backend (quiet logger). */
export function memoryBackends(): {
  backend(options?: MemoryBackendOptions): Promise<MemoryBackend>
  /** Disconnects `b`, connected by the test itself, after the test too. */
  track(b: MemoryBackend): void
} {
  const open: MemoryBackend[] = []
  afterEach(async () => {
    await Promise.all(open.splice(0).map((b) => b.disconnect({ drainTimeoutMs: 0 })))
  })
  return {
    async backend(options = {}) {
      const b = createMemoryBackend({ logger: silentLogger, ...options })
      await b.connect()
      open.push(b)
      return b
    },
    track(b) {
      open.push(b)
    },
  }
}
