/**
 * SPIFFE ID parsing and validation, following the SPIFFE-ID specification:
 * `spiffe://<trust-domain>/<path>`; trust domain of lower-case letters, digits,
 * dots, dashes and underscores (at most 255 bytes); path segments of letters,
 * digits, dots, dashes and underscores, none empty, `.` or `..`; no trailing
 * slash, query, fragment, user info, port or percent-encoding; the whole ID at
 * most 2048 bytes. The path is case-sensitive.
 *
 * The scheme and the trust domain must be written in lower case. URIs in
 * general compare them case-insensitively, but the specification allows only
 * lower-case characters in a trust domain name (section 2.1) and its reference
 * parsers (go-spiffe's `spiffeid.FromString`, java-spiffe, py-spiffe) reject
 * `SPIFFE://` and upper-case trust domains. Accepting and lower-casing them
 * would make modelgate see an identity the rest of the mesh refuses, and two
 * spellings of one ID.
 */

export interface SpiffeId {
  /** The ID as presented (only valid IDs are returned, and they have one spelling). */
  readonly id: string
  readonly trustDomain: string
  /** '' or '/seg/seg…' */
  readonly path: string
  readonly segments: readonly string[]
}

export type SpiffeParseResult = { readonly ok: true; readonly value: SpiffeId } | { readonly ok: false; readonly reason: string }

export const MAX_SPIFFE_ID_BYTES = 2048
export const MAX_TRUST_DOMAIN_BYTES = 255
const SCHEME = 'spiffe://'
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/
const SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/

const fail = (reason: string): SpiffeParseResult => ({ ok: false, reason })

export function parseSpiffeId(input: string): SpiffeParseResult {
  if (typeof input !== 'string' || input.length === 0) return fail('empty')
  if (Buffer.byteLength(input, 'utf8') > MAX_SPIFFE_ID_BYTES) return fail(`longer than ${MAX_SPIFFE_ID_BYTES} bytes`)
  if (!input.startsWith(SCHEME)) return fail(input.slice(0, SCHEME.length).toLowerCase() === SCHEME ? 'scheme is not in lower case (spiffe://)' : 'scheme is not spiffe://')
  const rest = input.slice(SCHEME.length)
  for (const [ch, what] of [
    ['?', 'query'],
    ['#', 'fragment'],
    ['%', 'percent-encoding'],
  ] as const) {
    if (rest.includes(ch)) return fail(`contains a ${what}`)
  }
  const slash = rest.indexOf('/')
  const authority = slash === -1 ? rest : rest.slice(0, slash)
  const path = slash === -1 ? '' : rest.slice(slash)
  if (authority.length === 0) return fail('trust domain is empty')
  if (authority.includes('@')) return fail('contains user info')
  if (authority.includes(':')) return fail('contains a port')
  const trustDomain = authority
  if (trustDomain.length > MAX_TRUST_DOMAIN_BYTES) return fail(`trust domain longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`)
  if (!TRUST_DOMAIN_CHARS.test(trustDomain)) {
    return fail(TRUST_DOMAIN_CHARS.test(trustDomain.toLowerCase()) ? 'trust domain is not in lower case' : 'trust domain has characters outside [a-z0-9._-]')
  }
  const segments: string[] = []
  if (path !== '') {
    if (path.endsWith('/')) return fail('path has a trailing slash')
    for (const seg of path.slice(1).split('/')) {
      if (seg === '') return fail('path has an empty segment')
      if (seg === '.' || seg === '..') return fail('path has a dot segment')
      if (!SEGMENT_CHARS.test(seg)) return fail('path segment has characters outside [A-Za-z0-9._-]')
      segments.push(seg)
    }
  }
  return { ok: true, value: { id: SCHEME + trustDomain + path, trustDomain, path, segments } }
}

/** The Kubernetes convention `/ns/<namespace>/sa/<service-account>`, if the path follows it. */
export function kubernetesParts(segments: readonly string[]): { namespace: string; serviceAccount: string } | undefined {
  if (segments.length === 4 && segments[0] === 'ns' && segments[2] === 'sa') {
    return { namespace: segments[1]!, serviceAccount: segments[3]! }
  }
  return undefined
}
