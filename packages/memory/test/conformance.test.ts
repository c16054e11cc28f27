import { randomUUID } from 'node:crypto'
import { conformanceSuite } from '@omnibus/conformance'
import { silentLogger } from '@omnibus/core'
import { createMemoryBackend, type MemoryBackendOptions } from '@omnibus/memory'

// One named in-process bus per test file: every instance the suite makes shares it, so separate
// instances act as separate consumers. The payload limit makes case 03 apply.
const options: MemoryBackendOptions = {
  name: `conformance-${randomUUID()}`,
  maxPayloadBytes: 256 * 1024,
  logger: silentLogger,
}

conformanceSuite('memory', {
  makeBackend: () => createMemoryBackend(options),
  // Declared up front so capability skips show their reason at collection time.
  capabilities: createMemoryBackend({ maxPayloadBytes: 256 * 1024, logger: silentLogger }).capabilities,
  timeouts: { deliveryMs: 2000, groupJoinMs: 2000, visibilityMs: 200 },
})
