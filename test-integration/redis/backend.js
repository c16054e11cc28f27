/**
 * Backend factory shared by the Redis integration tests and their child processes: the endpoint
 * comes from the harness (parent) or the environment (child); every instance shares one key prefix.
 */
import { createRedisBackend } from '@omnibus/redis'
/** Key prefix of the integration tests, apart from anything else on the server. */
export const IT_PREFIX = 'omnibus-it:'
/** A fresh, unconnected backend on the test server. */
export function makeBackend(extra = {}) {
  const url = process.env.OMNIBUS_IT_REDIS_URL
  if (url === undefined) throw new Error('OMNIBUS_IT_REDIS_URL is not set')
  return createRedisBackend({ url, keyPrefix: IT_PREFIX, ...extra })
}
//# sourceMappingURL=backend.js.map
