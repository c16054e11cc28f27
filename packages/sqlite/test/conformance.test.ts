import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { conformanceSuite } from '@omnibus/conformance'
import { afterAll } from 'vitest'
import { createSqliteBackend } from '../src/index.ts'

// One file for the whole suite: every instance (and every child process) is a separate
// connection to it, as separate processes on one host would be. Run ids keep tests apart.
const dir = mkdtempSync(join(tmpdir(), 'omnibus-sqlite-conformance-'))
const path = join(dir, 'conformance.db')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

conformanceSuite('sqlite', {
  makeBackend: () => createSqliteBackend({ path }),
  capabilities: createSqliteBackend({ path }).capabilities,
  timeouts: { deliveryMs: 5000, groupJoinMs: 5000, visibilityMs: 2000 },
  injectRaw: async (topic, payload) => {
    const writer = createSqliteBackend({ path })
    await writer.connect()
    try {
      await writer.injectRaw(topic, payload)
    } finally {
      await writer.disconnect()
    }
  },
  childProcess: {
    module: fileURLToPath(new URL('./fixtures/child-backend.ts', import.meta.url)),
    env: { OMNIBUS_SQLITE_PATH: path },
  },
})
