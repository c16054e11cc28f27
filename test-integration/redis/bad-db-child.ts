/**
 * A process that creates a backend for a URL through the core registry, tries to connect, prints
 * the error it got as one JSON line and then does nothing more: it must exit on its own, which it
 * cannot while a client keeps reconnecting or an error is thrown later.
 *   node --conditions=@omnibus/source bad-db-child.ts <url>
 */
import { createBackend, OmnibusError } from '@omnibus/core'

const url = process.argv[2]
if (url === undefined) throw new Error('usage: bad-db-child.ts <url>')
try {
  const backend = await createBackend(url)
  await backend.connect()
  process.stdout.write(`${JSON.stringify({ connected: true })}\n`)
  await backend.disconnect()
} catch (error) {
  const e = error as OmnibusError
  process.stdout.write(
    `${JSON.stringify({
      name: e.name,
      code: e.code,
      retryable: e instanceof OmnibusError ? e.retryable : undefined,
      message: e.message,
    })}\n`,
  )
}
