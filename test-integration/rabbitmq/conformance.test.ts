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
    exclude: {
      '41-poison-message':
        'the poison guard counts maxRedeliveries (default 10), not maxAttempts, so a poison event runs a 4th time with maxAttempts 3, until ported to the kernel',
      '41-poison-message-killed':
        'the poison guard counts maxRedeliveries (default 10), not maxAttempts, so a poison event runs a 4th time with maxAttempts 3, until ported to the kernel',
      '42-unsubscribe-in-handler':
        'unsubscribe() from inside a handler waits for that handler (drain without timeout) until ported to the kernel',
      '43-dead-letter-no-loop':
        'a failing handler on the dead-letter topic dead-letters its letter into that topic again, a growing stream of letters, until ported to the kernel',
    },
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
  // made in this process share one, which is what cases 26 and 40 need. The other cases ran above.
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
      '40-exactly-once-concurrent':
        'the dedupe store has only has/add and no atomic claim, so two members run copies of one id at once, until ported to the kernel',
    },
  })
})
