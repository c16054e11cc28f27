/**
 * Loaded by the conformance suite's child-process runner: a RabbitMQ backend for the broker the
 * parent uses (passed in OMNIBUS_IT_AMQP_URL).
 */
import type { EventBackend } from '@omnibus/core'
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { TEST_QUEUES } from './amqp.ts'

/** A fresh, unconnected backend. */
export function makeBackend(): EventBackend {
  const url = process.env.OMNIBUS_IT_AMQP_URL
  if (url === undefined) throw new Error('OMNIBUS_IT_AMQP_URL is not set in the child process')
  return createRabbitMQBackend({ ...TEST_QUEUES, url })
}
