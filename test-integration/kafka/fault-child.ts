/**
 * A consumer process for the Kafka fault tests: joins `OMNIBUS_IT_FAULT_GROUP` on
 * `OMNIBUS_IT_FAULT_TOPIC`, reports over IPC when it starts handling an event, and never finishes
 * the handler, so the parent can kill it mid-handler.
 */
import { makeBackend } from './backend.ts'

const topic = process.env.OMNIBUS_IT_FAULT_TOPIC
const group = process.env.OMNIBUS_IT_FAULT_GROUP
if (topic === undefined || group === undefined) throw new Error('OMNIBUS_IT_FAULT_TOPIC/GROUP not set')

const backend = makeBackend()
await backend.connect()
await backend.subscribe(
  topic,
  async (event) => {
    process.send?.({ type: 'handling', id: event.id })
    await new Promise<never>(() => {})
  },
  { group },
)
process.send?.({ type: 'ready' })
