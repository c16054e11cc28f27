/**
 * Delivery counts that outlive the consumer that kept them. Kafka keeps no count per message, and
 * a count kept in memory dies with a process killed by the message it was handling, which would
 * then be delivered forever. So a group member writes two kinds of records to the records topic
 * (`records.ts`), and a member that is assigned a partition reads them before its first batch:
 *
 * - a **position** per partition, `{offset, member}`: written when a member starts on a partition
 *   ("I own it from here"), again with a commit once the last one is older than a minute (so the
 *   topic's retention never deletes it under a live member), and marked clean when it stops. A new owner whose first batch starts at
 *   or after that offset, while the member that wrote it is no longer in the group and did not
 *   stop cleanly, knows that member died owning the partition, after its last commit: in the batch
 *   that starts at the committed offset, the new owner's first. It handles that batch one message
 *   at a time, writing each message's count and committing each offset before the next, so the
 *   next death is pinned to one message;
 * - a **count** per message, `{offset, deliveries}`: written before every delivery that is not a
 *   first one (a retry, a redelivery after a release, a message of a suspect batch), and when a
 *   run is abandoned at close. The next owner delivers it with one more.
 *
 * A first delivery in a batch of a healthy partition writes nothing, and a commit writes a record
 * at most once a minute per partition: the hot path pays no record of its own.
 */
import type { RecordLog } from './records.ts'

const POSITION = '\u0001c\u0000'
const COUNT = '\u0001e\u0000'

/**
 * How old a member's last position record of a partition may get before a commit writes it again.
 * A position only says who owns the partition since when; what it must not do is expire while its
 * member lives (the records topic's retention deletes it then), so it is renewed well before.
 */
export const POSITION_RENEW_MS = 60_000

/** What a member learns when it starts on a partition. */
export interface PartitionHistory {
  /** The previous owner died in the batch starting here: handle it one message at a time. */
  readonly suspect: boolean
  /** Deliveries so far of messages at or after the start, by offset. */
  readonly counts: ReadonlyMap<string, number> | undefined
}

/** The records of delivery counts of every group member of this backend. */
export interface AttemptBook {
  /**
   * Reads what the log says of a partition whose first batch (for this member) starts at `offset`,
   * then records that `member` goes on from there. `alive` tells whether a member id is still in
   * the group.
   */
  begin(
    groupId: string,
    topic: string,
    partition: number,
    offset: string,
    member: string,
    alive: (member: string) => Promise<boolean>,
  ): Promise<PartitionHistory>
  /**
   * Records that `member` stopped cleanly at `offset`, unless another member has written the
   * partition's position since (the partition was taken from this member meanwhile).
   */
  stopped(groupId: string, topic: string, partition: number, offset: string, member: string): Promise<void>
  /**
   * A commit of `offset` by `member`: writes its position again when this book last wrote it
   * longer than {@link POSITION_RENEW_MS} (or the records' retention, whichever is shorter, over 4)
   * ago, else nothing.
   */
  committed(groupId: string, topic: string, partition: number, offset: string, member: string): Promise<void>
  /** Records that `member` owns the partition from `offset` on, or stopped there cleanly. */
  position(
    groupId: string,
    topic: string,
    partition: number,
    offset: string,
    member: string,
    clean: boolean,
  ): Promise<void>
  /** Records that the message at `offset` has been delivered `deliveries` times. */
  delivered(
    groupId: string,
    topic: string,
    partition: number,
    offset: string,
    deliveries: number,
  ): Promise<void>
}

interface Position {
  readonly offset: string
  readonly member: string
  readonly clean: boolean
}

/** Whether Kafka offset `a` is at or before `b` (false when either is not an offset). */
function atOrBefore(a: string, b: string): boolean {
  try {
    return BigInt(a) <= BigInt(b)
  } catch {
    return false
  }
}

/**
 * Builds the book and registers its record kinds on `log`; `ttlMs` is the records' retention
 * (positions are renewed well within it).
 */
export function createAttemptBook(log: RecordLog, ttlMs = Number.POSITIVE_INFINITY): AttemptBook {
  const renewMs = Math.min(POSITION_RENEW_MS, ttlMs / 4)
  const positions = new Map<string, Position>()
  /** When this book last wrote each partition's position (`partitionKey`), by `Date.now()`. */
  const written = new Map<string, number>()
  const counts = new Map<string, Map<string, number>>()
  const partitionKey = (groupId: string, topic: string, partition: number) =>
    `${groupId}\u0000${topic}\u0000${partition}`

  log.on(POSITION, (key, _value, json) => {
    if (json?.t !== 'c') return undefined
    const pk = key.slice(POSITION.length)
    const offset = json.o as string
    positions.set(pk, { offset, member: json.m as string, clean: json.c === 1 })
    // Counts of messages before the position are settled history.
    const known = counts.get(pk)
    if (known !== undefined) {
      for (const o of known.keys()) if (Number(o) < Number(offset)) known.delete(o)
      if (known.size === 0) counts.delete(pk)
    }
    return undefined
  })
  log.on(COUNT, (_key, _value, json) => {
    if (json?.t !== 'e') return undefined
    const pk = partitionKey(json.g as string, json.tp as string, json.p as number)
    let known = counts.get(pk)
    if (known === undefined) {
      known = new Map()
      counts.set(pk, known)
    }
    // Counts only grow: a member that was cut off late may still write an older one.
    const o = json.o as string
    known.set(o, Math.max(known.get(o) ?? 0, json.n as number))
    return undefined
  })

  const book: AttemptBook = {
    async begin(groupId, topic, partition, offset, member, alive) {
      await log.catchUp()
      const pk = partitionKey(groupId, topic, partition)
      const pos = positions.get(pk)
      const suspect =
        pos !== undefined &&
        atOrBefore(pos.offset, offset) &&
        !pos.clean &&
        pos.member !== member &&
        !(await alive(pos.member))
      const known = counts.get(pk)
      const mine = new Map<string, number>()
      if (known !== undefined) {
        for (const [o, n] of known) if (Number(o) >= Number(offset)) mine.set(o, n)
      }
      await book.position(groupId, topic, partition, offset, member, false)
      return { suspect, counts: mine.size === 0 ? undefined : mine }
    },
    async stopped(groupId, topic, partition, offset, member) {
      await log.catchUp()
      const pos = positions.get(partitionKey(groupId, topic, partition))
      if (pos !== undefined && pos.member !== member) return
      await book.position(groupId, topic, partition, offset, member, true)
    },
    committed(groupId, topic, partition, offset, member) {
      const last = written.get(partitionKey(groupId, topic, partition))
      if (last !== undefined && Date.now() - last < renewMs) return Promise.resolve()
      return book.position(groupId, topic, partition, offset, member, false)
    },
    position(groupId, topic, partition, offset, member, clean) {
      const pk = partitionKey(groupId, topic, partition)
      written.set(pk, Date.now())
      const value: Record<string, unknown> = { t: 'c', o: offset, m: member }
      if (clean) value.c = 1
      return log.append(`${POSITION}${pk}`, JSON.stringify(value))
    },
    delivered(groupId, topic, partition, offset, deliveries) {
      const pk = partitionKey(groupId, topic, partition)
      return log.append(
        `${COUNT}${pk}\u0000${offset}`,
        JSON.stringify({ t: 'e', g: groupId, tp: topic, p: partition, o: offset, n: deliveries }),
      )
    },
  }
  return book
}
