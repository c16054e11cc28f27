/**
 * @omnibus/memory — the in-process reference backend.
 *
 * Topics and patterns are routed by core's matcher index to queues held in the process: one queue
 * per broadcast subscription, one per consumer group (its subscriptions take events round-robin,
 * each event to one of them; every group gets every event). Queues are bounded and keep publish
 * order; a full queue makes `publish` wait. Acknowledging is returning from the handler: the
 * event leaves the queue. All three guarantees hold within the process (at-most-once,
 * at-least-once with retries and dead letters, exactly-once with a processed-id store per group),
 * nothing survives the process, and backends see each other only through a named bus
 * (`memory://name`).
 */
export { backendFromUrl, createMemoryBackend, type MemoryBackend } from './backend.ts'
export { MEMORY_OPTION_NAMES, type MemoryBackendOptions, resolveMemoryOptions } from './options.ts'
