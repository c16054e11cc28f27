/**
 * The URI checks CloudEvents asks of `source` (a URI reference) and `dataschema` (an absolute URI).
 * What is accepted is a subset of RFC 3986: the characters a URI may hold with well-formed percent
 * escapes, at most one fragment, an authority of `[userinfo@]host[:port]` with a registered name or
 * IPv4 host (no IP literals in brackets), and no colon in the first segment of a relative path.
 * Everything accepted here validates in CloudEvents SDKs' strict mode; a few exotic URIs that RFC
 * 3986 allows (`http://[::1]/`) are refused.
 */

const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/
// pchar, '/', '?' (path and query), with percent escapes; '#' is split off first.
const PATH_QUERY = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/
const USERINFO = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*$/
const HOST = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/
const PORT = /^[0-9]*$/

/** Why `value` is not a URI reference (`absolute`: not an absolute URI), or undefined when it is. */
export function uriProblem(value: string, absolute: boolean): string | undefined {
  const scheme = SCHEME.exec(value)?.[0]
  if (absolute && scheme === undefined) return 'it has no scheme (scheme:...)'
  let rest = scheme === undefined ? value : value.slice(scheme.length)
  const hash = rest.indexOf('#')
  if (hash >= 0) {
    const fragment = rest.slice(hash + 1)
    if (!PATH_QUERY.test(fragment)) return 'its fragment holds a character a URI cannot'
    rest = rest.slice(0, hash)
  }
  if (absolute && /^[?]|^$/.test(rest)) return 'it has no path after its scheme'
  if (!PATH_QUERY.test(rest)) {
    return "it holds a character a URI cannot (spaces, quotes, <>, {}, |, \\, ^, `, [], or a stray '%')"
  }
  if (rest.startsWith('//')) {
    const end = rest.slice(2).search(/[/?]/)
    const authority = end < 0 ? rest.slice(2) : rest.slice(2, 2 + end)
    const at = authority.lastIndexOf('@')
    if (at >= 0 && !USERINFO.test(authority.slice(0, at))) return 'its user info holds an "@"'
    const hostPort = authority.slice(at + 1)
    const colon = hostPort.indexOf(':')
    const host = colon < 0 ? hostPort : hostPort.slice(0, colon)
    if (!HOST.test(host)) return 'its host holds a character a host name cannot'
    if (colon >= 0 && !PORT.test(hostPort.slice(colon + 1))) return 'its port is not a number'
  } else if (scheme === undefined) {
    const firstSegment = rest.split(/[/?]/, 1)[0] ?? ''
    if (firstSegment.includes(':')) {
      return 'a relative reference cannot have a colon in its first segment (a scheme starts with a letter)'
    }
  }
  return undefined
}
