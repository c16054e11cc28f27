/**
 * Header maps are plain objects keyed by names that come from callers and foreign producers.
 * Assigning `obj['__proto__'] = v` would change the object's prototype instead of adding a
 * header, silently losing it; this helper always creates an own property.
 */

/** Sets `name` to `value` on `target` as an own property, `__proto__` included. */
export function setHeader(target: Record<string, string>, name: string, value: string): void {
  if (name === '__proto__') {
    Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true })
  } else {
    target[name] = value
  }
}

/**
 * The headers of every event that has none: one frozen object instead of an empty one per event
 * (decoding and creating events is the hot path, and each object there is garbage to collect).
 */
export const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})
