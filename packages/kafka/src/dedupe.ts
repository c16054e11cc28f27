/**
 * Exactly-once records in Kafka itself: core's `DedupeStore` claim protocol over the records topic
 * (`records.ts`), atomic across every process because the topic's single partition orders all
 * claims. A claim appends `{claim, owner, until}` and waits until this process's reader has
 * applied it: the first live claim in log order wins, and every reader, applying the same records
 * in the same order, agrees on the winner. Commit appends the processed-id record (key
 * `group NUL id`, value the time: the format earlier versions wrote and still read); release
 * appends `{release, owner}`. Expiry compares the times written in the records, never a reader's
 * clock, so readers cannot disagree about it.
 */
import { randomUUID } from 'node:crypto'
import type { ClaimResult, DedupeStore } from '@omnibus/core/backend'
import type { RecordLog, RecordValue } from './records.ts'

/** What the log says of one id in one group. */
interface IdState {
  /** When the id was processed, if it was. */
  done: number | undefined
  /** The live claim, if any. */
  owner: string | undefined
  until: number
}

/** A {@link DedupeStore} over the records topic. */
export interface KafkaDedupeStore extends DedupeStore {
  /** Ids known to this process (processed or claimed). */
  readonly size: number
}

/** Settings of {@link createKafkaDedupeStore}. */
export interface KafkaDedupeSettings {
  readonly log: RecordLog
  /** How long a processed id is remembered. */
  readonly ttlMs: number
  /** Most ids remembered; the oldest are forgotten first. */
  readonly maxEntries: number
}

const CLAIM = '\u0002'

/** Builds the store and registers its record kinds on `log`. */
export function createKafkaDedupeStore(s: KafkaDedupeSettings): KafkaDedupeStore {
  const ids = new Map<string, IdState>()

  const stateOf = (key: string): IdState => {
    let st = ids.get(key)
    if (st === undefined) {
      st = { done: undefined, owner: undefined, until: 0 }
      ids.set(key, st)
      // Map iteration is insertion order: the first keys are the oldest.
      while (ids.size > s.maxEntries) ids.delete(ids.keys().next().value as string)
    }
    return st
  }

  // Claims and releases: key CLAIM group NUL id NUL <random> (unique, so compaction never drops a
  // claim or release in favour of a later one and changes who won for a reader that starts later).
  s.log.on(CLAIM, (_key, _value, json): ClaimResult | undefined => {
    if (json === undefined) return undefined
    const g = json.g as string
    const id = json.i as string
    const owner = json.o as string
    const st = stateOf(`${g}\u0000${id}`)
    if (json.t === 'release') {
      if (st.owner === owner) st.owner = undefined
      return undefined
    }
    if (json.t !== 'claim') return undefined
    const at = json.at as number
    if (st.done !== undefined && at - st.done < s.ttlMs) return 'done'
    if (st.owner !== undefined && st.owner !== owner && st.until > at) return 'busy'
    st.owner = owner
    st.until = json.u as number
    return 'claimed'
  })
  // Processed ids: key group NUL id, value the time it was processed.
  s.log.on('', (key, value, json) => {
    if (json !== undefined) return undefined
    const at = Number(value)
    if (!Number.isFinite(at) || Date.now() - at >= s.ttlMs) return undefined
    const st = stateOf(key)
    st.done = at
    st.owner = undefined
    return undefined
  })

  const claimRecord = (t: string, group: string, id: string, owner: string, ttlMs: number): RecordValue => {
    const at = Date.now()
    return { t, g: group, i: id, o: owner, at, u: at + ttlMs }
  }

  return {
    get size() {
      return ids.size
    },
    async claim(group, id, owner, ttlMs) {
      const key = `${group}\u0000${id}`
      const st = ids.get(key)
      const now = Date.now()
      // Answers the log already gave: done is final, and a live claim of another owner stays busy
      // at least until it expires (asking again later is what 'busy' means).
      if (st?.done !== undefined && now - st.done < s.ttlMs) return 'done'
      if (st?.owner !== undefined && st.owner !== owner && st.until > now) return 'busy'
      const result = await s.log.appendSeen(
        `${CLAIM}${key}\u0000${randomUUID()}`,
        claimRecord('claim', group, id, owner, ttlMs),
      )
      return (result as ClaimResult | undefined) ?? 'busy'
    },
    async commit(group, id) {
      const key = `${group}\u0000${id}`
      const at = Date.now()
      await s.log.append(key, String(at))
      const st = stateOf(key)
      st.done = at
      st.owner = undefined
    },
    async release(group, id, owner) {
      const key = `${group}\u0000${id}`
      await s.log.append(
        `${CLAIM}${key}\u0000${randomUUID()}`,
        JSON.stringify(claimRecord('release', group, id, owner, 0)),
      )
      const st = ids.get(key)
      if (st?.owner === owner) st.owner = undefined
    },
  }
}
