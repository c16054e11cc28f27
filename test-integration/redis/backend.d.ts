/**
 * Backend factory shared by the Redis integration tests and their child processes: the endpoint
 * comes from the harness (parent) or the environment (child); every instance shares one key prefix.
 */
import { type RedisBackend, type RedisBackendOptions } from '@omnibus/redis'
/** Key prefix of the integration tests, apart from anything else on the server. */
export declare const IT_PREFIX = 'omnibus-it:'
/** A fresh, unconnected backend on the test server. */
export declare function makeBackend(extra?: RedisBackendOptions): RedisBackend
//# sourceMappingURL=backend.d.ts.map
