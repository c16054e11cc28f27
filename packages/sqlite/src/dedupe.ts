/**
 * The exactly-once store of one subscription: the core claim protocol on rows of the database
 * file, so it is atomic across every process on the host. A claim is a row of `omnibus_claims`
 * taken in a write transaction (`BEGIN IMMEDIATE` serialises it against every other connection);
 * a commit is recorded by the acknowledgement: the consumer's ack transaction inserts the id into
 * `omnibus_processed`, drops the claim and deletes the lease together, so an id counts as
 * processed exactly when its event is acknowledged.
 */
import type { ClaimResult, DedupeStore } from '@omnibus/core/backend'
import type { Connection } from './connection.ts'

/** {@link DedupeStore} of one SQLite subscription (the `group` argument is its group row). */
export class SqliteDedupeStore implements DedupeStore {
  readonly #conn: Connection
  readonly #gid: () => number
  /** Claim owners whose handler succeeded: their ack records the id (see the module comment). */
  readonly #committed = new Set<string>()

  constructor(conn: Connection, gid: () => number) {
    this.#conn = conn
    this.#gid = gid
  }

  claim(_group: string, id: string, owner: string, ttlMs: number): Promise<ClaimResult> {
    const conn = this.#conn
    const gid = this.#gid()
    return conn.tx((): ClaimResult => {
      const st = conn.st
      if (st.processedHas.get(gid, id) !== undefined) return 'done'
      const now = Date.now()
      const held = st.claimHolder.get(gid, id) as { owner: string; until: number } | undefined
      if (held !== undefined && held.owner !== owner && held.until > now) return 'busy'
      st.takeClaim.run(gid, id, owner, now + ttlMs)
      return 'claimed'
    })
  }

  /** Held until the ack of `owner`'s message writes it, in the same transaction as the lease's delete. */
  commit(_group: string, _id: string, owner: string): void {
    this.#committed.add(owner)
  }

  release(_group: string, id: string, owner: string): Promise<void> {
    this.#committed.delete(owner)
    const gid = this.#gid()
    return this.#conn.tx(() => {
      this.#conn.st.dropClaim.run(gid, id, owner)
    })
  }

  /** Whether `owner` committed (the ack then records its id); forgets it. */
  takeCommit(owner: string): boolean {
    return this.#committed.delete(owner)
  }
}
