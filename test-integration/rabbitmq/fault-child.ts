/**
 * A consumer process for the fault tests: subscribes to FAULT_PATTERN in FAULT_GROUP, reports every
 * delivery to the parent over IPC, and never finishes a handler, so what it holds is unacknowledged
 * when the parent kills it.
 */
import { createRabbitMQBackend } from '@omnibus/rabbitmq'
import { TEST_QUEUES } from './amqp.ts'

const url = process.env.OMNIBUS_IT_AMQP_URL
const pattern = process.env.FAULT_PATTERN
const group = process.env.FAULT_GROUP
if (url === undefined || pattern === undefined || group === undefined || process.send === undefined) {
  throw new Error('fault-child needs OMNIBUS_IT_AMQP_URL, FAULT_PATTERN, FAULT_GROUP and an IPC channel')
}
const send = process.send.bind(process)
const backend = createRabbitMQBackend({ ...TEST_QUEUES, url })
await backend.connect()
await backend.subscribe(
  pattern,
  (event) => {
    send({ type: 'delivered', id: event.id })
    return new Promise(() => {})
  },
  { group, concurrency: 5 },
)
send({ type: 'ready' })
