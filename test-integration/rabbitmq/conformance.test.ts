import { fileURLToPath } from 'node:url'
import { CASE_IDS, conformanceSuite, findClosedPort } from '@omnibus/conformance'
import { MemoryDedupeStore } from '@omnibus/core/backend'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { describeWithService, requireEndpoint, serviceRestart } from '../setup/services.ts'
import { injectRaw, TEST_QUEUES } from './amqp.ts'

const port = await findClosedPort()

describeWithService('rabbitmq', 'RabbitMQ backend', () => {
  const url = requireEndpoint('rabbitmq')
  const restart = serviceRestart('rabbitmq')
  conformanceSuite('rabbitmq', {
    makeBackend: () => createRabbitMQBackend({ ...TEST_QUEUES, url }),
    timeouts: { deliveryMs: 5000, groupJoinMs: 5000, restartMs: 90_000 },
    injectRaw: (topic, payload) => injectRaw(url, topic, payload),
    ...(restart === undefined ? {} : { restart }),
    unreachable: {
      makeBackend: () =>
        createRabbitMQBackend({ ...TEST_QUEUES, url: `amqp://guest:guest@127.0.0.1:${port}` }),
      endpoint: `127.0.0.1:${port}`,
    },
    childProcess: {
      module: fileURLToPath(new URL('./child-backend.ts', import.meta.url)),
      env: { OMNIBUS_IT_AMQP_URL: url },
    },
  })

  // Exactly-once is offered only with a dedupe store shared by every consumer of a group; backends
  // made in this process share one MemoryDedupeStore (atomic within a process), which is what
  // cases 26 and 40 need. The other cases ran above.
  const shared = new MemoryDedupeStore()
  const only = new Set(['26-exactly-once', '27-undeclared-guarantee', '40-exactly-once-concurrent'])
  conformanceSuite('rabbitmq with a shared dedupe store', {
    makeBackend: () => createRabbitMQBackend({ ...TEST_QUEUES, url, dedupeStore: shared }),
    timeouts: { deliveryMs: 5000, groupJoinMs: 5000 },
    exclude: {
      ...Object.fromEntries(
        CASE_IDS.filter((id) => !only.has(id)).map((id) => [
          id,
          'covered by the suite without a dedupe store',
        ]),
      ),
    },
  })
})
