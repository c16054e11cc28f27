import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { CASE_IDS, conformanceSuite } from '@omnibus/conformance'
import { MemoryDedupeStore } from '@omnibus/core/backend'
import { createSqsBackend } from '@omnibus/sqs'
import { describeWithService, serviceRestart } from '../setup/services.ts'
import { makeBackend } from './backend.ts'
import { runQueues } from './cleanup.ts'

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const port = await closedPort()

describeWithService('sqs', 'sqs backend', () => {
  const { endpoint, prefix } = runQueues('c')
  const restart = serviceRestart('sqs')

  const shared = {
    // ElasticMQ with H2 persistence answers slowly under a loaded CI machine.
    timeouts: { deliveryMs: 12_000, groupJoinMs: 8_000, visibilityMs: 2_000, retrySlackMs: 1_500 },
    injectRaw: async (topic: string, payload: Uint8Array) => {
      const b = makeBackend()
      await b.connect()
      try {
        const written = await b.publishRaw(topic, payload)
        if (written === 0) throw new Error(`injectRaw: no queue subscribed to "${topic}"`)
      } finally {
        await b.disconnect()
      }
    },
    ...(restart === undefined ? {} : { restart }),
    unreachable: {
      makeBackend: () =>
        createSqsBackend({
          endpoint: `http://127.0.0.1:${port}`,
          connectTimeoutMs: 2_000,
          queuePrefix: prefix,
        }),
      endpoint: `127.0.0.1:${port}`,
    },
    childProcess: {
      module: fileURLToPath(new URL('./backend.ts', import.meta.url)),
      // SQS counts every receive: messages a killed process had prefetched behind the poison
      // message of case 41 would each be counted once per death and dead-lettered with it. A
      // consumer whose handlers may kill it holds only what it runs (the README says so).
      env: { OMNIBUS_IT_SQS_ENDPOINT: endpoint, OMNIBUS_IT_SQS_PREFIX: prefix, OMNIBUS_SQS_PREFETCH: '0' },
    },
  }

  conformanceSuite('sqs (standard queues)', { makeBackend: () => makeBackend(), ...shared })
  conformanceSuite('sqs (FIFO queues)', {
    makeBackend: () => makeBackend({ fifo: true }),
    ...shared,
    // The child's backend reads OMNIBUS_SQS_FIFO, so it joins the same FIFO queues.
    childProcess: { ...shared.childProcess, env: { ...shared.childProcess.env, OMNIBUS_SQS_FIFO: 'true' } },
  })

  // Exactly-once is offered only with a dedupe store shared by every consumer of a group; backends
  // made in this process share one, which is what cases 26 and 40 need. The other cases ran above.
  const only = new Set(['26-exactly-once', '27-undeclared-guarantee', '40-exactly-once-concurrent'])
  const others = Object.fromEntries(
    CASE_IDS.filter((id) => !only.has(id)).map((id) => [id, 'covered by the suite without a dedupe store']),
  )
  for (const fifo of [false, true]) {
    const store = new MemoryDedupeStore()
    conformanceSuite(`sqs (${fifo ? 'FIFO' : 'standard'} queues) with a shared dedupe store`, {
      makeBackend: () => makeBackend({ fifo, dedupeStore: store }),
      timeouts: shared.timeouts,
      exclude: others,
    })
  }
})
