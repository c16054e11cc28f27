/**
 * Helpers of the RabbitMQ integration tests: a raw amqplib connection (the test project does not
 * depend on amqplib itself, so it is loaded from the backend package), and a port where nothing
 * listens.
 */
import { createRequire } from 'node:module'
import { createServer } from 'node:net'

/** The few amqplib calls the tests use. */
export interface RawChannel {
  publish(exchange: string, routingKey: string, content: Buffer, options?: Record<string, unknown>): boolean
  waitForConfirms(): Promise<void>
  checkQueue(queue: string): Promise<{ messageCount: number; consumerCount: number }>
  deleteQueue(queue: string): Promise<unknown>
  close(): Promise<void>
}

/** A raw connection. */
export interface RawConnection {
  createConfirmChannel(): Promise<RawChannel>
  close(): Promise<void>
}

const amqplib = createRequire(new URL('../../packages/rabbitmq/package.json', import.meta.url))(
  'amqplib',
) as {
  connect(url: string, socket?: Record<string, unknown>): Promise<RawConnection>
}

/** Opens a raw amqplib connection (Nagle off, as the backend does). */
export function rawConnect(url: string): Promise<RawConnection> {
  return amqplib.connect(url, { noDelay: true })
}

/**
 * Publishes `payload` as it is (no envelope) to the backend's topic exchange with `topic` as
 * routing key, where consumers of that topic read it; resolves once the broker confirmed.
 */
export async function injectRaw(
  url: string,
  topic: string,
  payload: Uint8Array,
  exchange = 'omnibus.events',
): Promise<void> {
  const conn = await rawConnect(url)
  try {
    const ch = await conn.createConfirmChannel()
    ch.publish(exchange, topic, Buffer.from(payload), { persistent: true, contentType: 'text/plain' })
    await ch.waitForConfirms()
    await ch.close()
  } finally {
    await conn.close().catch(() => {})
  }
}

/** A loopback port that was free a moment ago (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}
