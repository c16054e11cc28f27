import { Socket } from 'node:net'
import { ConfigurationError } from '@omnibus/core'
import { createKafkaBackend } from '@omnibus/kafka'
import { afterEach, expect, it } from 'vitest'
import { describeWithService, requireEndpoint } from '../setup/services.ts'

/**
 * The broker started by scripts/services/kafka.sh also listens with SASL/PLAIN on port 9094
 * (test-only account omnibus / omnibus-test-secret); OMNIBUS_IT_KAFKA_SASL_BROKERS points elsewhere.
 */
const saslBrokers = process.env.OMNIBUS_IT_KAFKA_SASL_BROKERS ?? '127.0.0.1:9094'
const username = process.env.OMNIBUS_IT_KAFKA_SASL_USERNAME ?? 'omnibus'
const password = process.env.OMNIBUS_IT_KAFKA_SASL_PASSWORD ?? 'omnibus-test-secret'

async function listening(hostPort: string): Promise<boolean> {
  const [host, port] = hostPort.split(',')[0]?.split(':') ?? []
  return new Promise((resolve) => {
    const socket = new Socket()
    socket.setTimeout(1000)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.connect(Number(port), host ?? '127.0.0.1')
  })
}

const saslUp = await listening(saslBrokers)
const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

describeWithService('kafka', 'Kafka over SASL/PLAIN', () => {
  requireEndpoint('kafka')
  const open: Array<{ disconnect(): Promise<void> }> = []
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((b) => b.disconnect()))
  })
  const test = saslUp ? it : it.skip
  const why = saslUp
    ? ''
    : ` (skipped: nothing listens on ${saslBrokers}; scripts/services/kafka.sh starts it)`

  test(`publishes and consumes with SASL/PLAIN credentials${why}`, async () => {
    const b = createKafkaBackend({
      brokers: saslBrokers,
      sasl: { mechanism: 'plain', username, password },
      groupIdPrefix: 'omnibus-it.',
      replicationFactor: 1,
    })
    open.push(b)
    await b.connect()
    const topic = `sasl.${runId}.events`
    const got: string[] = []
    await b.subscribe(topic, (e) => {
      got.push(e.id)
    })
    const { id } = await b.publish({ topic, data: { over: 'sasl' } })
    const deadline = Date.now() + 20_000
    while (!got.includes(id)) {
      if (Date.now() > deadline) throw new Error('the event did not arrive over the SASL listener')
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    expect(JSON.stringify(b.describe())).not.toContain(password)
  })

  test(`wrong credentials fail connect with a ConfigurationError that does not echo the password${why}`, async () => {
    const wrong = `not-${password}-${runId}`
    const b = createKafkaBackend({
      brokers: saslBrokers,
      sasl: { mechanism: 'plain', username, password: wrong },
      retries: 1,
    })
    open.push(b)
    const error = await b.connect().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ConfigurationError)
    expect((error as Error).message).toMatch(/SASL/)
    expect((error as Error).message).not.toContain(wrong)
    expect(b.isConnected).toBe(false)
  })
})
