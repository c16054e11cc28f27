import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { conformanceSuite } from '@omnibus/conformance'
import { createKafkaBackend } from '@omnibus/kafka'
import { describeWithService, serviceEndpoint, serviceRestart } from '../setup/services.ts'
import { injectRaw, makeBackend } from './backend.ts'

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const port = await closedPort()

describeWithService('kafka', 'kafka backend', () => {
  const brokers = serviceEndpoint('kafka') as string
  process.env.OMNIBUS_IT_KAFKA_BROKERS = brokers
  const restart = serviceRestart('kafka')
  conformanceSuite('kafka', {
    makeBackend: () => makeBackend(),
    // Group joins and rebalances take seconds; a killed member is replaced after sessionTimeoutMs (6 s).
    timeouts: { deliveryMs: 10_000, groupJoinMs: 20_000, visibilityMs: 6_000, restartMs: 90_000 },
    injectRaw,
    ...(restart === undefined ? {} : { restart }),
    unreachable: {
      makeBackend: () =>
        createKafkaBackend({ brokers: `127.0.0.1:${port}`, retries: 2, connectionTimeoutMs: 1000 }),
      endpoint: `127.0.0.1:${port}`,
    },
    childProcess: {
      module: fileURLToPath(new URL('./backend.ts', import.meta.url)),
      env: { OMNIBUS_IT_KAFKA_BROKERS: brokers },
    },
  })
})
