/**
 * A cheap upper bound of an event's encoded size, so the payload limit can be enforced without
 * encoding every event: only an event whose bound reaches the limit is encoded to measure it
 * exactly. The bound follows what core's CloudEvents codec writes (`toCloudEvent` +
 * `JSON.stringify`), counting every string at its worst case of 6 bytes per UTF-16 unit (a
 * `\u00XX` escape; a character never takes more in UTF-8). Anything JSON cannot carry (BigInt,
 * functions, symbols, NaN, class instances such as Map) has no bound, which sends the event to the
 * exact path, where the codec reports it with its path.
 */
import type { OmnibusEvent } from '@omnibus/core'
import { headerExtensionName } from '@omnibus/core/backend'

// Member names, quotes, colons and commas of the envelope, `time` and `guarantee` values at
// their longest: comfortably above what toCloudEvent writes around the variable parts.
const ENVELOPE_OVERHEAD = 512
const MAX_DEPTH = 256

function stringBound(s: string): number {
  return 6 * s.length + 2
}
// Bound of one scalar; -1 for anything else (objects, and what JSON cannot carry).
function scalarBound(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return 6 * value.length + 2
    case 'number':
      // The longest shortest-round-trip form is 25 characters (-0.0000012345678901234567).
      // NaN and Infinity are not JSON: the exact path reports them.
      return Number.isFinite(value) ? 32 : Number.POSITIVE_INFINITY
    case 'boolean':
    case 'undefined':
      return 5
    case 'object':
      return value === null ? 4 : -1
    default:
      return Number.POSITIVE_INFINITY
  }
}

// Bound of JSON.stringify(value), or Infinity once it passes `budget` (or the value is something
// the bound does not model: the caller then encodes exactly).
function valueBound(value: unknown, budget: number, depth: number): number {
  const scalar = scalarBound(value)
  if (scalar >= 0) return scalar
  if (depth > MAX_DEPTH) return Number.POSITIVE_INFINITY
  let total = 2
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      const b = scalarBound(item)
      total += (b >= 0 ? b : valueBound(item, budget - total, depth + 1)) + 1
      if (total > budget) return Number.POSITIVE_INFINITY
    }
    return total
  }
  const record = value as Record<string, unknown>
  // `constructor === Object` is an inline-cached property read (getPrototypeOf costs ~20 ns);
  // an own `constructor` member or a null prototype takes the slower exact check.
  if (record.constructor !== Object || Object.hasOwn(record, 'constructor')) {
    if (Object.getPrototypeOf(record) !== null) return Number.POSITIVE_INFINITY
  }
  for (const key in record) {
    const item = record[key]
    const b = scalarBound(item)
    total += 6 * key.length + 4 + (b >= 0 ? b : valueBound(item, budget - total, depth + 1))
    if (total > budget) return Number.POSITIVE_INFINITY
  }
  return total
}

/**
 * An upper bound, in bytes, of the UTF-8 size of `encodeEvent(event)`; `Infinity` when it would
 * pass `limit` or cannot be bounded cheaply (class instances, `toJSON`, deep nesting).
 */
export function encodedSizeBound(event: OmnibusEvent, limit: number): number {
  let total = ENVELOPE_OVERHEAD + stringBound(event.id) + stringBound(event.source) + stringBound(event.topic)
  if (event.partitionKey !== undefined) total += stringBound(event.partitionKey)
  if (event.correlationId !== undefined) total += stringBound(event.correlationId)
  if (event.causationId !== undefined) total += stringBound(event.causationId)
  if (event.subject !== undefined) total += stringBound(event.subject) + 12
  if (event.dataSchema !== undefined) total += stringBound(event.dataSchema) + 15
  if (event.dataContentType !== undefined) total += stringBound(event.dataContentType)
  for (const key in event.headers) {
    const value = event.headers[key] as string
    // A header that is no extension name sits in a JSON string inside the JSON document: escaped
    // twice, a character takes up to 7 bytes (`\u0000` written as `\\u0000`).
    if (headerExtensionName(key)) total += stringBound(key) + 10 + stringBound(value)
    else total += 7 * (key.length + value.length) + 24
  }
  if (total > limit) return Number.POSITIVE_INFINITY
  const data: unknown = event.data
  if (data instanceof Uint8Array) total += Math.ceil(data.byteLength / 3) * 4 + 2
  else total += valueBound(data, limit - total, 0)
  return total > limit ? Number.POSITIVE_INFINITY : total
}
