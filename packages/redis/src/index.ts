/**
 * @omnibus/redis — the Omnibus backend on Redis Streams (ioredis).
 *
 * Each topic is one stream (`<prefix>stream:<topic>`, entry field `event` = the CloudEvents JSON).
 * A group is a Redis consumer group of that name on every stream its pattern matches: members
 * read with `XREADGROUP`, acknowledge with `XACK` after the handler resolved, and reclaim entries
 * of dead members with `XAUTOCLAIM` after the visibility window; what delivery means (retries,
 * the poison guard by delivery count, exactly-once claims, dead letters, drain) is decided by core's
 * consumer kernel, and `adapter.ts` maps its verdicts onto these commands. A subscription without a group
 * reads with `XREAD` from the moment it subscribed and gets every event. Wildcard subscriptions
 * learn of new topics from a registry set plus a pub/sub announcement, and of streams other
 * producers created from a bounded `SCAN` of the stream keys. Guarantees: at-most-once,
 * at-least-once, and exactly-once ("effectively once": processed-id records with a TTL per group).
 */
export { backendFromUrl, createRedisBackend, type RedisBackend } from './backend.ts'
export { classifyError, type RedisOperation } from './errors.ts'
export { EVENT_FIELD, type KeyMap, keyMap, startIdAt } from './keys.ts'
export { type RedisBackendOptions, type ResolvedRedisOptions, resolveRedisOptions } from './options.ts'
