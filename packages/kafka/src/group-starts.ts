/**
 * Where groups declared with `ensureGroup` start. Kafka keeps committed offsets only for
 * partitions that exist, and a group gets them only by joining; a declared group must also hold
 * the topics its pattern meets later (an agent's mailbox `agent.x.**` meets `agent.x.task` on the
 * first send). So a declaration is a record in the records topic (`records.ts`): the group, its
 * pattern and the time it was declared. A member of that group that starts at 'latest' begins
 * every partition without a committed offset at the first message produced at or after that time
 * (`ListOffsets` by timestamp), instead of at the end. Each declaration has its own key, so
 * compaction never replaces an earlier declaration by a later one; the earliest wins. Records
 * expire with the records topic's retention (`dedupeTtlMs`).
 */
import { randomUUID } from 'node:crypto'
import type { RecordLog } from './records.ts'

/** Key prefix of declaration records. */
export const GROUP_START = 'group-start\u0000'

/** The declarations as one process sees them. */
export interface GroupStarts {
  /** Records that `groupId` holds `pattern` from `atMs` on (no group join needed to write it). */
  declare(groupId: string, pattern: string, atMs: number): Promise<void>
  /** The earliest declared start of `groupId` on `pattern`, once the records are read, or undefined. */
  startOf(groupId: string, pattern: string): Promise<number | undefined>
}

function groupKey(groupId: string, pattern: string): string {
  return `${groupId}\u0000${pattern}`
}

/** Builds the book and registers its record kind on `log` (before the log is read). */
export function createGroupStarts(log: RecordLog): GroupStarts {
  const starts = new Map<string, number>()
  log.on(GROUP_START, (_key, _value, json) => {
    if (json?.t !== 'group-start') return
    const { group, pattern, at } = json
    if (typeof group !== 'string' || typeof pattern !== 'string' || typeof at !== 'number') return
    const k = groupKey(group, pattern)
    const known = starts.get(k)
    if (known === undefined || at < known) starts.set(k, at)
  })
  return {
    declare(groupId, pattern, atMs) {
      const value = JSON.stringify({ t: 'group-start', group: groupId, pattern, at: atMs })
      return log.write(`${GROUP_START}${groupKey(groupId, pattern)}\u0000${randomUUID()}`, value)
    },
    async startOf(groupId, pattern) {
      await log.catchUp()
      return starts.get(groupKey(groupId, pattern))
    },
  }
}
