import { existsSync, readFileSync } from 'node:fs'
import { ConfigurationError, type OmnibusEvent } from '@omnibus/core'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { describe, expect, it } from 'vitest'
import { serviceEndpoint, skipBlock, unavailableReason } from '../setup/services.ts'

/**
 * amqps:// needs a TLS listener and its CA: OMNIBUS_IT_AMQPS_URL + OMNIBUS_IT_AMQPS_CA (a PEM file),
 * or the local broker of scripts/services/rabbitmq.sh, which listens on 127.0.0.1:5671 with a CA in
 * .services/rabbitmq/tls/.
 */
function tlsEndpoint(): { url: string; ca: Buffer } | undefined {
  const url = process.env.OMNIBUS_IT_AMQPS_URL
  const caPath = process.env.OMNIBUS_IT_AMQPS_CA
  if (url !== undefined && caPath !== undefined) return { url, ca: readFileSync(caPath) }
  const plain = serviceEndpoint('rabbitmq')
  const localCa = new URL('../../.services/rabbitmq/tls/ca.pem', import.meta.url)
  if (plain === undefined || !existsSync(localCa)) return undefined
  const u = new URL(plain)
  // Only the script's own broker (loopback, port 5672) is known to have the TLS listener.
  if ((u.hostname !== '127.0.0.1' && u.hostname !== 'localhost') || (u.port || '5672') !== '5672')
    return undefined
  u.protocol = 'amqps:'
  u.port = '5671'
  return { url: u.toString(), ca: readFileSync(localCa) }
}

const endpoint = tlsEndpoint()
const title = 'RabbitMQ over TLS (amqps://)'
if (endpoint === undefined) {
  if (serviceEndpoint('rabbitmq') === undefined) skipBlock(title, unavailableReason('rabbitmq'), 'rabbitmq')
  else
    skipBlock(
      title,
      'set OMNIBUS_IT_AMQPS_URL and OMNIBUS_IT_AMQPS_CA, or run scripts/services/rabbitmq.sh start',
    )
} else {
  describe(title, () => {
    const { url, ca } = endpoint

    it('publishes and consumes through amqps:// with the CA in the tls option', async () => {
      const b = createRabbitMQBackend({ url, tls: { ca: [ca], servername: 'localhost' } })
      await b.connect()
      try {
        const topic = `tls.t${Date.now().toString(36)}.x`
        const got: OmnibusEvent[] = []
        await b.subscribe(topic, (e) => void got.push(e))
        const { id } = await b.publish({ topic, data: { secure: true } })
        const deadline = Date.now() + 5000
        while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
        expect(got.map((e) => e.id)).toEqual([id])
        expect((await b.healthCheck()).healthy).toBe(true)
      } finally {
        await b.disconnect()
      }
    })

    it('a server certificate the client cannot verify is a ConfigurationError', async () => {
      const b = createRabbitMQBackend({ url })
      const error = await b.connect().then(
        () => undefined,
        (e: unknown) => e as Error,
      )
      expect(error).toBeInstanceOf(ConfigurationError)
      expect((error as ConfigurationError).code).toBe('TLS_FAILED')
    })
  })
}
