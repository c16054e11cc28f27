import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { conformanceSuite } from '@omnibus/conformance'
import { createRedisBackend } from '@omnibus/redis'
import { describeWithService, serviceEndpoint, serviceRestart } from '../setup/services.ts'
import { IT_PREFIX, makeBackend } from './backend.ts'

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const port = await closedPort()

describeWithService('redis', 'redis backend', () => {
  const url = serviceEndpoint('redis') as string
  process.env.OMNIBUS_IT_REDIS_URL = url
  const restart = serviceRestart('redis')
  conformanceSuite('redis', {
    makeBackend: () => makeBackend(),
    timeouts: { deliveryMs: 5_000, groupJoinMs: 5_000, visibilityMs: 2_000 },
    injectRaw: async (topic, payload) => {
      const b = makeBackend()
      await b.connect()
      try {
        await b.commandClient().xadd(`${IT_PREFIX}stream:${topic}`, '*', 'event', Buffer.from(payload))
      } finally {
        await b.disconnect()
      }
    },
    ...(restart === undefined ? {} : { restart }),
    unreachable: {
      makeBackend: () => createRedisBackend({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: 2_000 }),
      endpoint: `127.0.0.1:${port}`,
    },
    childProcess: {
      module: fileURLToPath(new URL('./backend.ts', import.meta.url)),
      env: { OMNIBUS_IT_REDIS_URL: url },
    },
  })
})
