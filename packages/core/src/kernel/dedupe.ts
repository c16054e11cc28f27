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
  // Per group, then per id: no composite key is built (and hashed) per call, so a claim and its
  // commit allocate nothing but a claim record, and that one is reused.
  /** Processed ids per group, each map in the order they were recorded (oldest first). */
  readonly #done = new Map<string, Map<string, number>>()
  #doneCount = 0
  readonly #claims = new Map<string, Map<string, Claim>>()
  #claimCount = 0
  /** A claim record dropped by commit or release, for the next claim. */
  #spare: Claim | undefined

  constructor(options: MemoryDedupeStoreOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 24 * 3600_000
    this.#maxEntries = options.maxEntries ?? 1_000_000
  }

  claim(group: string, id: string, owner: string, ttlMs: number): ClaimResult {
    if (this.#isDone(group, id)) return 'done'
    const now = Date.now()
    let claims = this.#claims.get(group)
    if (claims === undefined) {
      claims = new Map()
      this.#claims.set(group, claims)
    }
    const held = claims.get(id)
    if (held !== undefined) {
      if (held.owner !== owner && held.until > now) return 'busy'
      // Refreshed by its owner, or taken over after it expired.
      held.owner = owner
      held.until = now + ttlMs
      return 'claimed'
    }
    let claim = this.#spare
    if (claim === undefined) claim = { owner, until: now + ttlMs }
    else {
      this.#spare = undefined
      claim.owner = owner
      claim.until = now + ttlMs
    }
    claims.set(id, claim)
    this.#claimCount++
    return 'claimed'
  }

  commit(group: string, id: string, _owner: string): void {
    // The effect happened whoever holds the claim now: the id is done either way.
    this.#drop(this.#claims.get(group), id)
    this.#record(group, id)
  }

  release(group: string, id: string, owner: string): void {
    const claims = this.#claims.get(group)
    if (claims?.get(id)?.owner === owner) this.#drop(claims, id)
  }

  /**
   * Whether `id` was processed by `group` within the retention window.
   * @deprecated Use {@link claim}; kept for backends that do not run the consumer kernel yet.
   */
  has(group: string, id: string): boolean {
    return this.#isDone(group, id)
  }

  /**
   * Records `id` as processed by `group`.
   * @deprecated Use {@link commit}; kept for backends that do not run the consumer kernel yet.
   */
  add(group: string, id: string): void {
    this.#record(group, id)
  }

  /** Number of processed ids held. */
  get size(): number {
    return this.#doneCount
  }

  /** Number of live or expired claims held (claims are dropped on commit, release or expiry). */
  get claims(): number {
    return this.#claimCount
  }

  #drop(claims: Map<string, Claim> | undefined, id: string): void {
    if (claims === undefined) return
    const claim = claims.get(id)
    if (claim === undefined) return
    claims.delete(id)
    this.#claimCount--
    this.#spare = claim
  }

  #isDone(group: string, id: string): boolean {
    const done = this.#done.get(group)
    if (done === undefined) return false
    const at = done.get(id)
    if (at === undefined) return false
    if (Date.now() - at > this.#ttlMs) {
      done.delete(id)
      this.#doneCount--
      return false
    }
    return true
  }

  #record(group: string, id: string): void {
    let done = this.#done.get(group)
    if (done === undefined) {
      done = new Map()
      this.#done.set(group, done)
    }
    // Deleted first so a re-recorded id moves to the end (the newest).
    if (done.delete(id)) this.#doneCount--
    done.set(id, Date.now())
    this.#doneCount++
    while (this.#doneCount > this.#maxEntries) this.#forgetOldest()
    // Expired claims of holders that died are dropped on the way, so the maps stay bounded.
    if (this.#claimCount > this.#maxEntries) {
      const now = Date.now()
      for (const claims of this.#claims.values()) {
        for (const [k, c] of claims) {
          if (c.until <= now) {
            claims.delete(k)
            this.#claimCount--
          }
        }
      }
    }
  }

  /** Forgets the oldest processed id of all groups (each group's map starts with its oldest). */
  #forgetOldest(): void {
    let oldestGroup: string | undefined
    let oldestAt = Number.POSITIVE_INFINITY
    for (const [group, done] of this.#done) {
      for (const at of done.values()) {
        if (at < oldestAt) {
          oldestAt = at
          oldestGroup = group
        }
        break
      }
    }
    if (oldestGroup === undefined) return
    const done = this.#done.get(oldestGroup) as Map<string, number>
    done.delete(done.keys().next().value as string)
    this.#doneCount--
    if (done.size === 0) this.#done.delete(oldestGroup)
  }
}
