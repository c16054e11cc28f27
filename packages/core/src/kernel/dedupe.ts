/**
 * Exactly-once records: the claim protocol every backend's store implements, and the in-process
 * store.
 *
 * The protocol, run by the consumer kernel for each delivery of an exactly-once subscription:
 * 1. `claim(group, id, owner, ttlMs)` before the handler runs:
 *    - `'claimed'`: nobody processed `id` in `group` and nobody else holds it now; the caller holds it
 *      for `ttlMs` (a claim by the same owner again refreshes it: that is how a long handler keeps it);
 *    - `'done'`: `id` was processed already: the message is acknowledged without running;
 *    - `'busy'`: another owner holds a live claim: the message is redelivered later, not run.
 * 2. `commit(group, id, owner)` after the handler succeeded, before the message is acknowledged:
 *    `id` is then `'done'` for `group` for the store's retention window. A crash between commit and
 *    ack redelivers a message whose claim answers `'done'`.
 * 3. `release(group, id, owner)` after the handler failed (or its run was abandoned): the claim is
 *    dropped if `owner` still holds it, so the retry, here or on another member, can claim again.
 *
 * `owner` names one delivery: the group member and the broker's native message id (a stream entry,
 * an offset, an SQS message id). A retry of the same message by the same member reclaims its own
 * claim; the same event id published twice (two native messages) is `'busy'` even on one member,
 * so two copies never run at once. A claim that is neither committed nor released (its holder died)
 * expires after `ttlMs`, and the message's redelivery may claim it.
 *
 * Every method may return a promise: a store backed by a database or a broker is asynchronous.
 */

/** Answer of {@link DedupeStore.claim}. */
export type ClaimResult = 'claimed' | 'done' | 'busy'

/** Exactly-once records of one backend: an atomic claim, a commit and a release per event id and group. */
export interface DedupeStore {
  /** Takes `id` for `owner` for `ttlMs` unless it is done or held by another owner; see the module comment. */
  claim(group: string, id: string, owner: string, ttlMs: number): ClaimResult | Promise<ClaimResult>
  /** Records `id` as processed by `group` (the handler succeeded). */
  commit(group: string, id: string, owner: string): void | Promise<void>
  /** Drops `owner`'s claim on `id` (the handler failed); a claim held by another owner is kept. */
  release(group: string, id: string, owner: string): void | Promise<void>
}

/**
 * The check-then-record store of backends that do not run the consumer kernel yet.
 * @deprecated Implement {@link DedupeStore} (`claim`/`commit`/`release`): `has` then `add` is not
 * atomic, so two copies of one id delivered at once can both run.
 */
export interface ProcessedIdStore {
  /** Whether `id` was processed by `group` within the retention window. */
  has(group: string, id: string): boolean | Promise<boolean>
  /** Records `id` as processed by `group`. */
  add(group: string, id: string): void | Promise<void>
}

/** Settings of {@link MemoryDedupeStore}. */
export interface MemoryDedupeStoreOptions {
  /** How long a processed id is remembered. @default 86400000 (24 h) */
  readonly ttlMs?: number
  /** Most processed ids remembered; the oldest are forgotten first. @default 1000000 */
  readonly maxEntries?: number
}

/** A live claim: who holds it and until when. */
interface Claim {
  owner: string
  until: number
}

/**
 * In-process {@link DedupeStore}: bounded, with a time-to-live per processed id. Atomic within one
 * process (claims are synchronous), so it serves one process's members; members in several
 * processes need a store they share.
 */
export class MemoryDedupeStore implements DedupeStore, ProcessedIdStore {
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #done = new Map<string, number>()
  readonly #claims = new Map<string, Claim>()

  constructor(options: MemoryDedupeStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 24 * 3600_000
    this.#maxEntries = options.maxEntries ?? 1_000_000
  }

  claim(group: string, id: string, owner: string, ttlMs: number): ClaimResult {
    const key = `${group}\u0000${id}`
    if (this.#isDone(key)) return 'done'
    const now = Date.now()
    const held = this.#claims.get(key)
    if (held !== undefined && held.owner !== owner && held.until > now) return 'busy'
    if (held !== undefined && held.owner === owner) held.until = now + ttlMs
    else this.#claims.set(key, { owner, until: now + ttlMs })
    return 'claimed'
  }

  commit(group: string, id: string, _owner: string): void {
    const key = `${group}\u0000${id}`
    // The effect happened whoever holds the claim now: the id is done either way.
    this.#claims.delete(key)
    this.#record(key)
  }

  release(group: string, id: string, owner: string): void {
    const key = `${group}\u0000${id}`
    if (this.#claims.get(key)?.owner === owner) this.#claims.delete(key)
  }

  /**
   * Whether `id` was processed by `group` within the retention window.
   * @deprecated Use {@link claim}; kept for backends that do not run the consumer kernel yet.
   */
  has(group: string, id: string): boolean {
    return this.#isDone(`${group}\u0000${id}`)
  }

  /**
   * Records `id` as processed by `group`.
   * @deprecated Use {@link commit}; kept for backends that do not run the consumer kernel yet.
   */
  add(group: string, id: string): void {
    this.#record(`${group}\u0000${id}`)
  }

  /** Number of processed ids held. */
  get size(): number {
    return this.#done.size
  }

  /** Number of live or expired claims held (claims are dropped on commit, release or expiry). */
  get claims(): number {
    return this.#claims.size
  }

  #isDone(key: string): boolean {
    const at = this.#done.get(key)
    if (at === undefined) return false
    if (Date.now() - at > this.#ttlMs) {
      this.#done.delete(key)
      return false
    }
    return true
  }

  #record(key: string): void {
    this.#done.delete(key)
    this.#done.set(key, Date.now())
    // Map iteration is insertion order: the first keys are the oldest.
    while (this.#done.size > this.#maxEntries) {
      const oldest = this.#done.keys().next().value as string
      this.#done.delete(oldest)
    }
    // Expired claims of holders that died are dropped on the way, so the map stays bounded.
    if (this.#claims.size > this.#maxEntries) {
      const now = Date.now()
      for (const [k, c] of this.#claims) if (c.until <= now) this.#claims.delete(k)
    }
  }
}
