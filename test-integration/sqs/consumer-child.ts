/**
 * A consumer process for the kill tests: joins a group (or, with group `-`, subscribes as a
 * broadcast subscriber), reports each event it starts handling on stdout and never finishes a
 * handler, so its messages stay unacknowledged until it is killed.
 *   node --conditions=@omnibus/source consumer-child.ts <topic> <group|-> <visibilityMs>
 * Endpoint and queue prefix come from OMNIBUS_IT_SQS_ENDPOINT / OMNIBUS_IT_SQS_PREFIX.
 */
import { makeBackend } from './backend.ts'

const [topic, group, visibility] = process.argv.slice(2)
if (topic === undefined || group === undefined || visibility === undefined) {
  throw new Error('usage: consumer-child.ts <topic> <group> <visibilityMs>')
}
const backend = makeBackend()
await backend.connect()
await backend.subscribe(
  topic,
  async (event, ctx) => {
    process.stdout.write(`handling ${event.id} ${ctx.attempt}\n`)
    await new Promise(() => {})
  },
  group === '-'
    ? { visibilityTimeoutMs: Number(visibility), concurrency: 4 }
    : { group, visibilityTimeoutMs: Number(visibility), concurrency: 4 },
)
process.stdout.write('ready\n')
