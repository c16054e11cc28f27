/**
 * Helpers of the RabbitMQ integration tests: a raw amqplib connection (the test project does not
 * depend on amqplib itself, so it is loaded from the backend package), and a TCP proxy a test can
 * cut to drop connections.
 */
import { createRequire } from 'node:module'
import { connect, createServer, type Socket } from 'node:net'

/** The few amqplib calls the tests use. */
export interface RawChannel {
  publish(exchange: string, routingKey: string, content: Buffer, options?: Record<string, unknown>): boolean
  waitForConfirms(): Promise<void>
  checkQueue(queue: string): Promise<{ messageCount: number; consumerCount: number }>
  consume(queue: string, onMessage: (msg: unknown) => void): Promise<{ consumerTag: string }>
  deleteQueue(queue: string): Promise<unknown>
  deleteExchange(exchange: string): Promise<unknown>
  assertQueue(queue: string, options?: Record<string, unknown>): Promise<unknown>
  close(): Promise<void>
}

/** A raw connection. */
export interface RawConnection {
  createConfirmChannel(): Promise<RawChannel>
  listenerCount(event: string): number
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

/** Runs `fn` on a confirm channel of a raw connection of its own, closed afterwards. */
export async function withChannel<T>(url: string, fn: (ch: RawChannel) => Promise<T>): Promise<T> {
  const conn = await rawConnect(url)
  try {
    const ch = await conn.createConfirmChannel()
    const result = await fn(ch)
    await ch.close()
    return result
  } finally {
    await conn.close().catch(() => {})
  }
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
  await withChannel(url, async (ch) => {
    ch.publish(exchange, topic, Buffer.from(payload), { persistent: true, contentType: 'text/plain' })
    await ch.waitForConfirms()
  })
}

/** A TCP proxy in front of the broker that a test can cut, to drop connections without a restart. */
export interface CuttableProxy {
  /** `amqp://` URL through the proxy, with the broker URL's credentials and vhost. */
  readonly url: string
  /** Destroys every proxied connection; with `refuse`, new ones are refused until `heal()`. */
  cut(refuse: boolean): void
  heal(): void
  close(): Promise<void>
}

/** Starts a {@link CuttableProxy} on a free loopback port for the broker at `brokerUrl`. */
export async function cuttableProxy(brokerUrl: string): Promise<CuttableProxy> {
  const target = new URL(brokerUrl)
  const sockets = new Set<Socket>()
  let refusing = false
  const server = createServer((client) => {
    if (refusing) {
      client.destroy()
      return
    }
    const upstream = connect(Number(target.port || 5672), target.hostname)
    sockets.add(client)
    sockets.add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop)
    upstream.on('error', drop)
    client.on('close', drop)
    upstream.on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy has no port')
  const url = new URL(brokerUrl)
  url.hostname = '127.0.0.1'
  url.port = String(address.port)
  return {
    url: url.toString(),
    cut(refuse) {
      refusing = refuse
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    heal() {
      refusing = false
    },
    async close() {
      refusing = true
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Backend options every test uses: group queues of finished tests expire after 10 minutes
 * without a consumer, so a long-lived development broker does not collect hundreds of them.
 * Parents and child processes of one group must agree on it (queue arguments must match).
 */
export const TEST_QUEUES = { groupQueueExpiresMs: 600_000 } as const
