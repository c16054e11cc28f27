import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { conformanceSuite } from '@omnibus/conformance'
import { createSqsBackend } from '@omnibus/sqs'
import { afterAll } from 'vitest'
import { describeWithService, serviceEndpoint, serviceRestart } from '../setup/services.ts'
import { makeBackend, runPrefix } from './backend.ts'
import { deleteQueues } from './cleanup.ts'

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
  const endpoint = serviceEndpoint('sqs') as string
  const prefix = runPrefix('c')
  process.env.OMNIBUS_IT_SQS_ENDPOINT = endpoint
  process.env.OMNIBUS_IT_SQS_PREFIX = prefix
  const restart = serviceRestart('sqs')
  afterAll(() => deleteQueues(endpoint, prefix))

  const shared = {
    // ElasticMQ with H2 persistence answers slowly under a loaded CI machine.
    timeouts: { deliveryMs: 12_000, groupJoinMs: 8_000, visibilityMs: 2_000, retrySlackMs: 1_500 },
    exclude: {
      '40-exactly-once-concurrent':
        'the dedupe store is per process and has no in-flight claim, so two members run copies of one id, until ported to the kernel',
      '41-poison-message':
        'no poison guard: an event whose consumers die while handling it is received and run past maxAttempts, never dead-lettered, until ported to the kernel',
      '41-poison-message-killed':
        'no poison guard: an event that kills its consumer is received and run past maxAttempts, never dead-lettered, until ported to the kernel',
      '43-dead-letter-no-loop':
        'a failing handler on the dead-letter topic dead-letters its letter into that topic again, a growing stream of letters, until ported to the kernel',
    },
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
      env: { OMNIBUS_IT_SQS_ENDPOINT: endpoint, OMNIBUS_IT_SQS_PREFIX: prefix },
    },
  }

  conformanceSuite('sqs (standard queues)', { makeBackend: () => makeBackend(), ...shared })
  conformanceSuite('sqs (FIFO queues)', {
    makeBackend: () => makeBackend({ fifo: true }),
    ...shared,
    // The child's backend reads OMNIBUS_SQS_FIFO, so it joins the same FIFO queues.
    childProcess: { ...shared.childProcess, env: { ...shared.childProcess.env, OMNIBUS_SQS_FIFO: 'true' } },
  })
})
