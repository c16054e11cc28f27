/**
 * How topics and groups map onto Redis keys. Every name starts with the backend's key prefix
 * (default `omnibus:`), so one server can host several applications side by side:
 * - `<prefix>stream:<topic>`: one stream per topic; the entry's `event` field is the
 *   CloudEvents JSON document;
 * - `<prefix>topics`: the set of every topic ever published (the registry wildcard
 *   subscriptions read), and the pub/sub channel of the same name announcing new ones;
 * - `<prefix>group-start:<group>`: a hash of pattern → server time (ms) at which `ensureGroup`
 *   declared the group on that pattern; a later member starts every stream that lacks the group
 *   there, so streams created after the declaration are read from it too;
 * - `<prefix>eo:<group>:<event id>`: exactly-once records of a group (the claim's owner
 *   `<consumer>:<topic>:<entry id>` while a handler runs, `d` once it succeeded), each with a time
 *   to live.
 */

/** Field of a stream entry that holds the envelope. */
export const EVENT_FIELD = 'event'

/** Key names under one prefix. */
export interface KeyMap {
  readonly prefix: string
  /** Stream of a topic. */
  stream(topic: string): string
  /** Topic of a stream key, or undefined when the key is not one of ours. */
  topicOf(streamKey: string): string | undefined
  /** Set of known topics. */
  readonly topics: string
  /** Pub/sub channel announcing new topics. */
  readonly topicsChannel: string
  /** Declared start times of `group`, per pattern (`ensureGroup`). */
  groupStart(group: string): string
  /** Exactly-once record of `eventId` in `group`. */
  processed(group: string, eventId: string): string
}

/** The key map of a prefix. */
export function keyMap(prefix: string): KeyMap {
  const streamPrefix = `${prefix}stream:`
  return {
    prefix,
    stream: (topic) => streamPrefix + topic,
    topicOf: (key) => (key.startsWith(streamPrefix) ? key.slice(streamPrefix.length) : undefined),
    topics: `${prefix}topics`,
    topicsChannel: `${prefix}topics`,
    groupStart: (group) => `${prefix}group-start:${group}`,
    processed: (group, eventId) => `${prefix}eo:${group}:${eventId}`,
  }
}

/** Largest sequence part of a stream id. */
const MAX_SEQ = '18446744073709551615'

/**
 * The stream id a `from: 'latest'` subscription starts after in a stream it finds only after
 * subscribing (a wildcard meeting a new topic), from the server time in ms at subscribe: that
 * stream's entries from then on are delivered, which `$` at discovery would miss. Streams that
 * exist at subscribe start after their last entry instead.
 */
export function startIdAt(serverTimeMs: number): string {
  return `${Math.max(0, serverTimeMs - 1)}-${MAX_SEQ}`
}
