import { fileURLToPath } from 'node:url'
import { conformanceSuite } from '@omnibus/conformance'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { describeWithService, requireEndpoint, serviceRestart } from '../setup/services.ts'
import { closedPort, injectRaw } from './amqp.ts'

const port = await closedPort()

describeWithService('rabbitmq', 'RabbitMQ backend', () => {
  const url = requireEndpoint('rabbitmq')
  const restart = serviceRestart('rabbitmq')
  conformanceSuite('rabbitmq', {
    makeBackend: () => createRabbitMQBackend({ url }),
    timeouts: { deliveryMs: 5000, groupJoinMs: 5000, restartMs: 90_000 },
    injectRaw: (topic, payload) => injectRaw(url, topic, payload),
    ...(restart === undefined ? {} : { restart }),
    unreachable: {
      makeBackend: () => createRabbitMQBackend({ url: `amqp://guest:guest@127.0.0.1:${port}` }),
      endpoint: `127.0.0.1:${port}`,
    },
    childProcess: {
      module: fileURLToPath(new URL('./child-backend.ts', import.meta.url)),
      env: { OMNIBUS_IT_AMQP_URL: url },
    },
  })
})
