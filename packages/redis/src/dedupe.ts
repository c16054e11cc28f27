/**
 * Exactly-once records of a group in Redis, the consumer kernel's claim protocol on one key per
 * event id (`<prefix>eo:<group>:<id>`): the key holds the claim's owner while a handler runs
 * (`SET … PX <lease>`), then `d` once it succeeded (`PX <dedupeTtlMs>`). Claim and release are Lua
 * scripts, so each is one atomic step on the server for every member of every process.
 */
import type { ClaimResult, DedupeStore } from '@omnibus/core/backend'
import type { Redis } from 'ioredis'
import type { KeyMap } from './keys.ts'

/** Free → take it; done → `done`; held by the same owner → refresh it; else `busy`. */
const CLAIM_SCRIPT = `local v = redis.call('GET', KEYS[1])
if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 'claimed' end
if v == 'd' then return 'done' end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 'claimed' end
return 'busy'`

/** Drops the claim only when `ARGV[1]` still holds it (a claim that expired may be someone else's now). */
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/** The Redis {@link DedupeStore}: atomic across every member that shares the server and key prefix. */
export class RedisDedupeStore implements DedupeStore {
  readonly #command: () => Redis
  readonly #keys: KeyMap
  readonly #ttlMs: number

  /**
   * @param command the backend's command connection (asked for on each call: it changes across
   *   reconnects and throws once the backend is disconnected)
   * @param ttlMs how long a processed id is remembered (`dedupeTtlMs`)
   */
  constructor(command: () => Redis, keys: KeyMap, ttlMs: number) {
    this.#command = command
    this.#keys = keys
    this.#ttlMs = ttlMs
  }

  async claim(group: string, id: string, owner: string, ttlMs: number): Promise<ClaimResult> {
    const key = this.#keys.processed(group, id)
    const r = String(await this.#command().call('EVAL', CLAIM_SCRIPT, 1, key, owner, Math.ceil(ttlMs)))
    if (r !== 'claimed' && r !== 'done' && r !== 'busy') throw new Error(`unexpected claim answer ${r}`)
    return r
  }

  async commit(group: string, id: string, _owner: string): Promise<void> {
    // The effect happened whoever holds the claim now: the id is done either way.
    await this.#command().call('SET', this.#keys.processed(group, id), 'd', 'PX', this.#ttlMs)
  }

  async release(group: string, id: string, owner: string): Promise<void> {
    await this.#command().call('EVAL', RELEASE_SCRIPT, 1, this.#keys.processed(group, id), owner)
  }
}
