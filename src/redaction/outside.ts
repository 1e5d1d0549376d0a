/**
 * What leaves outside the body: the request path, its query and the request
 * headers, scanned with the same scanner as the body when the request headers
 * arrive.
 *
 * Each part is scanned as sent and as a receiver may decode it: the bytes
 * read as UTF-8, percent-decoding (with `+` as a space and as itself, and a
 * second round for doubly encoded text). Query parameters are scanned one by
 * one as `name=value` (so a key name such as `api_key` gives its value
 * context) and the raw query once whole; headers as `name: value`. A
 * detection in a name is a detection too.
 *
 * Locations never print a name that holds a finding: `url.path`,
 * `url.query.api_key`, `url.query.<name>` (the finding is in the name),
 * `url.query[*]` (a value under a name that is not printed), `url.query`
 * (a value across parameters), `header:x-debug-note`, `header:<name>`,
 * `header:[*]`. The URL the audit trail may keep (`UrlRecord`) has every
 * path segment that holds a finding replaced by its placeholder label and
 * the query reduced to its parameter names, likewise cleaned.
 */
import RE2 from 're2'
import { CALLER_CREDENTIAL_HEADERS } from '../credentials/headers.ts'
import type { RedactionConfig } from '../config/sections/redaction.ts'
import type { UrlRecord } from '../pipeline/context.ts'
import type { RedactionEngine } from './engine.ts'
import type { Detection, ScanSubject } from './types.ts'

export type OutsidePart = 'path' | 'query' | 'header'

/** The detections of one location outside the body. */
export interface OutsideSite {
  readonly part: OutsidePart
  readonly location: string
  /** The header's name (part `header`). */
  readonly header?: string
  /** Indices of the `&`-separated query parameters the detections lie in (part `query`). */
  readonly params?: readonly number[]
  readonly detections: readonly Detection[]
}

export interface OutsideScan {
  readonly sites: readonly OutsideSite[]
  /** What the audit trail may record of the URL. */
  readonly url: UrlRecord
}

export interface OutsideScanInput {
  /** The `:path` as sent (path and query), header bytes read as Latin-1. */
  readonly path: string
  /** Request headers, lower-case names, values read as Latin-1. */
  readonly headers: ReadonlyMap<string, string>
  /** Headers that do not go upstream as the caller sent them (removed or replaced by an earlier stage). */
  readonly replaced: ReadonlySet<string>
  readonly subject: ScanSubject | undefined
}

export interface OutsideScanner {
  scan(input: OutsideScanInput): OutsideScan
  /** True when this request header is scanned (by configuration and the built-in exclusions). */
  scans(header: string): boolean
}

/**
 * Headers never scanned: the caller's credentials (the credentials stage
 * removes every one of them; none goes upstream), pseudo-headers (the path is
 * scanned as such), and headers whose values Envoy or modelgate set, replace
 * or check: the caller's value of these never reaches the provider as free text.
 */
export const NEVER_SCANNED: readonly string[] = Object.freeze([
  ...CALLER_CREDENTIAL_HEADERS,
  'host',
  'content-length',
  'content-encoding',
  'accept-encoding',
  'x-request-id',
  'x-forwarded-client-cert',
  'x-forwarded-for',
  'x-forwarded-proto',
])
/** Envoy's own headers (Envoy sets them; its mutation rules keep ext_proc from changing them). */
const ENVOY_PREFIX = 'x-envoy-'

/** Names that print as they are in a location or the audit record. */
const SAFE_NAME = /^[A-Za-z0-9_.[\]-]{1,64}$/

/** `x-trace-*` → an anchored RE2 matching any of the patterns. */
function globSet(patterns: readonly string[]): RE2 | undefined {
  if (patterns.length === 0) return undefined
  const alts = patterns.map((p) => p.split('*').map((s) => s.replace(/[\\^$.*+?()[\]{}|-]/g, '\\$&')).join('.*'))
  return new RE2(`^(?:${alts.join('|')})$`, 'u')
}

const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)

/** Percent-decoding of bytes; `%` not followed by two hex digits stays as it is. */
function percentDecode(bytes: Buffer, plusAsSpace: boolean): Buffer {
  const out = Buffer.allocUnsafe(bytes.length)
  let n = 0
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!
    if (c === 0x25 && i + 2 < bytes.length && isHex(bytes[i + 1]!) && isHex(bytes[i + 2]!)) {
      out[n++] = parseInt(String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!), 16)
      i += 2
    } else out[n++] = plusAsSpace && c === 0x2b ? 0x20 : c
  }
  return out.subarray(0, n)
}

const HAS_ENCODING = /%[0-9A-Fa-f]{2}|\+/
/** How many header names the outside scanner remembers its scan-or-skip decision for. */
const SCANS_MEMO = 1024
const HIGH_BYTE = /[\u0080-\u00ff]/

/**
 * The readings of a Latin-1 string of raw bytes a receiver may see: as sent,
 * the bytes as UTF-8, percent-decoded (`+` as a space, and as itself) and
 * percent-decoded twice. Duplicates are dropped; the first is the raw text.
 */
export function readings(raw: string, percent: boolean): string[] {
  const high = HIGH_BYTE.test(raw)
  // Plain ASCII without percent-encoding reads one way only.
  if (!high && !(percent && HAS_ENCODING.test(raw))) return [raw]
  const out = new Set<string>([raw])
  const bytes = Buffer.from(raw, 'latin1')
  if (high) out.add(bytes.toString('utf8'))
  if (percent && HAS_ENCODING.test(raw)) {
    for (const plus of [true, false]) {
      const once = percentDecode(bytes, plus)
      out.add(once.toString('utf8'))
      if (/%[0-9A-Fa-f]{2}/.test(once.toString('latin1'))) out.add(percentDecode(once, plus).toString('utf8'))
    }
  }
  return [...out]
}

interface RawParam {
  /** Offsets of the parameter in the raw query. */
  readonly start: number
  readonly end: number
  readonly name: string
  /** Whether the raw text has an `=`. */
  readonly eq: boolean
  readonly value: string
}

function splitQuery(query: string): RawParam[] {
  const out: RawParam[] = []
  let start = 0
  for (const seg of query.split('&')) {
    const eq = seg.indexOf('=')
    out.push({ start, end: start + seg.length, name: eq < 0 ? seg : seg.slice(0, eq), eq: eq >= 0, value: eq < 0 ? '' : seg.slice(eq + 1) })
    start += seg.length + 1
  }
  return out
}

/** A placeholder label for the audit record: the first detection's. */
const labelOf = (ds: readonly Detection[]) => `[${ds[0]!.label}]`

/** Sites by location, and by header (`header:<name>` can stand for several headers, each stripped on its own). */
class SiteSet {
  readonly #sites = new Map<string, { part: OutsidePart; location: string; header?: string; params: Set<number>; detections: Detection[]; seen: Set<string> }>()

  add(part: OutsidePart, location: string, d: Detection, extra: { header?: string; params?: readonly number[] } = {}): void {
    const id = `${location}\u0000${extra.header ?? ''}`
    let s = this.#sites.get(id)
    if (!s) this.#sites.set(id, (s = { part, location, ...(extra.header !== undefined ? { header: extra.header } : {}), params: new Set(), detections: [], seen: new Set() }))
    for (const p of extra.params ?? []) s.params.add(p)
    // The same value found in two readings is one finding.
    const key = `${d.detector}\u0000${d.value}`
    if (s.seen.has(key)) return
    s.seen.add(key)
    s.detections.push(d)
  }

  sites(): OutsideSite[] {
    return [...this.#sites.values()].map((s) => ({
      part: s.part,
      location: s.location,
      ...(s.header !== undefined ? { header: s.header } : {}),
      ...(s.part === 'query' ? { params: [...s.params].sort((a, b) => a - b) } : {}),
      detections: s.detections,
    }))
  }
}

/**
 * Between texts checked in one pass: a line break stops every token, URL and
 * assignment pattern, and `|` is no digit separator, so no match runs from
 * one text into the next.
 */
const SEPARATOR = '\n|\n'

export interface OutsideScannerOptions {
  /** Check every text in one scan first, and scan part by part only after a hit (default true; tests compare both). */
  readonly onePass?: boolean
}

export function compileOutsideScanner(engine: RedactionEngine, config: Pick<RedactionConfig, 'headers'>, options: OutsideScannerOptions = {}): OutsideScanner {
  const scanner = engine.scanner
  const include = globSet(config.headers.scan)
  const exclude = globSet(config.headers.skip)
  const never = new Set(NEVER_SCANNED)
  const decide = (name: string) => {
    if (name.startsWith(':') || name.startsWith(ENVOY_PREFIX) || never.has(name)) return false
    return include !== undefined && include.test(name) && !(exclude !== undefined && exclude.test(name))
  }
  // The same few header names come with every request: each is matched against the globs once
  // (up to SCANS_MEMO names; any other is matched every time).
  const memo = new Map<string, boolean>()
  const scans = (name: string) => {
    let r = memo.get(name)
    if (r === undefined) {
      r = decide(name)
      if (memo.size < SCANS_MEMO) memo.set(name, r)
    }
    return r
  }

  /** Every text the detailed scan would scan, for the one-pass check. */
  const texts = (input: OutsideScanInput): string[] => {
    const out: string[] = []
    const q = input.path.indexOf('?')
    const rawPath = q < 0 ? input.path : input.path.slice(0, q)
    out.push(rawPath)
    for (const seg of rawPath.split('/')) out.push(...readings(seg, true).slice(1))
    if (q >= 0) {
      const query = input.path.slice(q + 1)
      out.push(query)
      for (const p of splitQuery(query)) {
        const names = readings(p.name, true)
        const values = readings(p.value, true)
        out.push(...values)
        for (let k = 0; k < Math.max(names.length, values.length); k++) out.push(`${names[Math.min(k, names.length - 1)]!}=${values[Math.min(k, values.length - 1)]!}`)
      }
    }
    for (const [name, value] of input.headers) {
      if (input.replaced.has(name) || !scans(name)) continue
      for (const v of readings(value, true)) out.push(`${name}: ${v}`, v)
    }
    return out
  }

  /** The URL record of a request in which nothing was found. */
  const cleanUrl = (rawPath: string): UrlRecord => {
    const q = rawPath.indexOf('?')
    const names: string[] = []
    if (q >= 0) {
      for (const p of splitQuery(rawPath.slice(q + 1))) {
        if (p.name === '' && !p.eq) continue
        const decoded = readings(p.name, true).at(-1)!
        names.push(SAFE_NAME.test(decoded) ? decoded : '[*]')
      }
    }
    return Object.freeze({ path: q < 0 ? rawPath : rawPath.slice(0, q), queryNames: Object.freeze(names) })
  }

  return {
    scans,
    scan(input) {
      const opts = { subject: input.subject }
      // One pass over every text at once: nearly every request holds nothing, and a
      // scan's fixed cost dominates texts this short. Only a hit scans part by part.
      if (options.onePass !== false && scanner.scan(texts(input).join(SEPARATOR), opts).length === 0) return { sites: [], url: cleanUrl(input.path) }
      const found = new SiteSet()
      const q = input.path.indexOf('?')
      const rawPath = q < 0 ? input.path : input.path.slice(0, q)

      // The path: whole as sent, and each segment in its other readings.
      const segments = rawPath.split('/')
      const segmentHits: Detection[][] = segments.map(() => [])
      for (const d of scanner.scan(rawPath, opts)) {
        found.add('path', 'url.path', d)
        let at = 0
        segments.forEach((seg, i) => {
          if (d.start < at + seg.length && d.end > at) segmentHits[i]!.push(d)
          at += seg.length + 1
        })
      }
      segments.forEach((seg, i) => {
        for (const text of readings(seg, true).slice(1)) {
          for (const d of scanner.scan(text, opts)) {
            found.add('path', 'url.path', d)
            segmentHits[i]!.push(d)
          }
        }
      })
      const path = segments.map((seg, i) => (segmentHits[i]!.length > 0 ? labelOf(segmentHits[i]!) : seg)).join('/')

      // The query: each parameter as name=value in every reading, and the raw query whole.
      const queryNames: string[] = []
      if (q >= 0) {
        const query = input.path.slice(q + 1)
        const params = splitQuery(query)
        const nameHits: Detection[][] = params.map(() => [])
        const valueHits: Detection[][] = params.map(() => [])
        params.forEach((p, i) => {
          const names = readings(p.name, true)
          const values = readings(p.value, true)
          // name=value (the name gives the value context), and the value alone (a match that the name's
          // own match would swallow, as in `api_key=config.auth_token: …`); -1: no name in the text.
          const pairs = new Map<string, number>()
          for (let k = 0; k < Math.max(names.length, values.length); k++) {
            const n = names[Math.min(k, names.length - 1)]!
            const v = values[Math.min(k, values.length - 1)]!
            pairs.set(p.eq ? `${n}=${v}` : n, n.length)
            if (p.eq && v !== '' && !pairs.has(v)) pairs.set(v, -1)
          }
          for (const [text, nameLength] of pairs) {
            for (const d of scanner.scan(text, opts)) (d.start < nameLength ? nameHits : valueHits)[i]!.push(d)
          }
        })
        for (const d of scanner.scan(query, opts)) {
          const touched = params.map((p, i) => (d.start < p.end && d.end > p.start ? i : -1)).filter((i) => i >= 0)
          if (touched.length > 1) {
            found.add('query', 'url.query', d, { params: touched })
            continue
          }
          const i = touched[0]
          if (i === undefined) continue
          const p = params[i]!
          ;(d.start < p.start + p.name.length ? nameHits : valueHits)[i]!.push(d)
        }
        params.forEach((p, i) => {
          const decoded = readings(p.name, true).at(-1)!
          const printable = nameHits[i]!.length === 0 && SAFE_NAME.test(decoded)
          for (const d of nameHits[i]!) found.add('query', 'url.query.<name>', d, { params: [i] })
          for (const d of valueHits[i]!) found.add('query', printable ? `url.query.${decoded}` : 'url.query[*]', d, { params: [i] })
          if (p.name === '' && !p.eq) return
          queryNames.push(nameHits[i]!.length > 0 ? labelOf(nameHits[i]!) : printable ? decoded : '[*]')
        })
      }

      // Headers: `name: value` in every reading of the value.
      for (const [name, value] of input.headers) {
        if (input.replaced.has(name) || !scans(name)) continue
        const hits: { d: Detection; inName: boolean }[] = []
        for (const v of readings(value, true)) {
          for (const d of scanner.scan(`${name}: ${v}`, opts)) hits.push({ d, inName: d.start < name.length })
          // The value alone too: a match the name's own match would swallow.
          for (const d of scanner.scan(v, opts)) hits.push({ d, inName: false })
        }
        const printable = !hits.some((h) => h.inName) && SAFE_NAME.test(name)
        for (const { d, inName } of hits) found.add('header', inName ? 'header:<name>' : printable ? `header:${name}` : 'header:[*]', d, { header: name })
      }
      return { sites: found.sites(), url: Object.freeze({ path, queryNames: Object.freeze(queryNames) }) }
    },
  }
}

/** Whether Envoy lets ext_proc remove this request header (its mutation rules: not pseudo-headers, `host` or `x-envoy-*`). */
export function canStrip(header: string): boolean {
  return !header.startsWith(':') && header !== 'host' && !header.startsWith(ENVOY_PREFIX)
}

/** The `:path` with the given `&`-separated query parameters removed; the rest stays byte for byte as sent. */
export function pathWithout(rawPath: string, params: ReadonlySet<number>): string {
  const q = rawPath.indexOf('?')
  if (q < 0 || params.size === 0) return rawPath
  const kept = rawPath
    .slice(q + 1)
    .split('&')
    .filter((_, i) => !params.has(i))
  return kept.length === 0 ? rawPath.slice(0, q) : `${rawPath.slice(0, q)}?${kept.join('&')}`
}
