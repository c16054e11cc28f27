import { createServer } from 'node:net'

/**
 * A TCP port on 127.0.0.1 where nothing listens: bound once by the OS, then released. For the
 * `unreachable` option (case 35).
 */
export async function findClosedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('could not obtain a free port')
  return address.port
}
