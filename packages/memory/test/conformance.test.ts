import { randomUUID } from 'node:crypto'
import { conformanceSuite } from '@omnibus/conformance'
import { silentLogger } from '@omnibus/core'
import { createMemoryBackend } from '@omnibus/memory'

// One named in-process bus per test file: every instance the suite makes shares it, so separate
// instances act as separate consumers. The payload limit makes case 03 apply.
const bus = `conformance-${randomUUID()}`

conformanceSuite('memory', {
  makeBackend: () => createMemoryBackend({ name: bus, maxPayloadBytes: 256 * 1024, logger: silentLogger }),
  timeouts: { deliveryMs: 2000, groupJoinMs: 2000, visibilityMs: 200 },
})
