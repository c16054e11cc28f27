import { randomBytes } from 'node:crypto'

let counter = 0

/**
 * A fresh run id: short, unique across processes and runs, and valid both as a topic segment and
 * as a group name (`[a-z0-9]` only), so leftovers of earlier runs on a shared broker never match.
 */
export function newRunId(): string {
  counter = (counter + 1) % 1296
  const time = Date.now().toString(36)
  const seq = counter.toString(36).padStart(2, '0')
  const rand = randomBytes(4).readUInt32BE(0).toString(36).padStart(7, '0')
  return `r${time}${seq}${rand}`
}
