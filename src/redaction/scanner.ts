/**
 * The compiled scanner: detector specs become RE2 programs once, at start-up.
 *
 * A scan is three steps, each linear in the text:
 * 1. the keyword prefilter, one pass of a literal alternation over the text,
 *    decides which keyword-gated detectors can match at all, and where;
 * 2. each detector that can match runs its RE2 pattern, over windows around
 *    the keyword hits when they are few, else over the whole text (detectors
 *    without keywords, such as card numbers, always run over the whole text);
 * 3. candidates are validated (checksums, entropy, placeholders, context
 *    words) and overlaps are resolved in favour of the more confident and the
 *    longer detection.
 *
 * The prefilter is a V8 RegExp built only from escaped literals: an
 * alternation of fixed strings without quantifiers costs at most the longest
 * keyword per position, so it is linear too, and several times faster than RE2
 * at reporting many hits. Every pattern (built-in or configured) runs on RE2.
 */
import RE2 from 're2'
import { CONFIDENCE_RANK, type Detection, type DetectorSpec, type MatchSite, type ScanSubject } from './types.ts'
import { looksLikePlaceholder, shannonEntropy } from './validators.ts'

/** A pattern shared by one or more detectors (e.g. public and internal IPv4 addresses): run once, validated per detector. */
interface PatternUnit {
  readonly re: RE2
  readonly groups: readonly number[]
  readonly detectors: readonly CompiledDetector[]
  readonly alwaysOn: boolean
  /** Longest match any of its detectors allows: sizes the windows around keyword hits. */
  readonly maxLength: number
}

interface CompiledDetector {
  readonly spec: DetectorSpec
  readonly contextRe: RE2 | undefined
}

export interface ScanOptions {
  /** Selects scoped custom detectors. */
  readonly subject?: ScanSubject
  /** Look for secrets inside base64 runs (default: the scanner's setting). */
  readonly base64?: boolean
}

export interface ScannerOptions {
  /** Decode base64 runs of at least this many characters and scan them for secrets. 0 disables. */
  readonly base64MinLength?: number
  /** Findings below this confidence are dropped. */
  readonly minConfidence?: 'low' | 'medium' | 'high'
}

/** More keyword hits than this for one pattern: scan the whole text instead of windows. */
const MAX_WINDOWS = 1024
/** Retries after a rejected candidate (shifting its start past a separator) per pattern and scan. */
const RETRY_BUDGET = 256

export class Scanner {
  readonly detectors: readonly DetectorSpec[]
  /** The longest match of any detector without an open marker: what a stream must hold back. */
  readonly holdback: number
  /** Detectors whose matches may be long: a stream holds text back from their open marker. */
  readonly openMarkers: readonly { readonly marker: string; readonly close: string | undefined; readonly maxLength: number }[]
  readonly #units: readonly PatternUnit[]
  readonly #prefilter: RegExp | undefined
  /** Keyword (as matched, lower-cased unless case-sensitive) → pattern units it triggers. */
  readonly #triggers: ReadonlyMap<string, readonly number[]>
  readonly #ciTriggers: ReadonlyMap<string, readonly number[]>
  readonly #base64Re: RE2 | undefined
  readonly #base64Min: number
  readonly #secretScanner: Scanner | undefined
  readonly #minRank: number

  constructor(specs: readonly DetectorSpec[], opts: ScannerOptions = {}) {
    const ids = new Set<string>()
    for (const s of specs) {
      if (ids.has(s.id)) throw new Error(`two detectors have the id "${s.id}"`)
      ids.add(s.id)
    }
    this.#minRank = CONFIDENCE_RANK[opts.minConfidence ?? 'low']
    this.detectors = Object.freeze(specs.filter((s) => CONFIDENCE_RANK[s.confidence] >= this.#minRank))

    // 1. Pattern units: detectors with the same pattern and groups share one RE2 program.
    const byPattern = new Map<string, { specs: DetectorSpec[]; groups: readonly number[] }>()
    for (const s of this.detectors) {
      const groups = s.groups ?? [0]
      const key = `${s.pattern}\u0000${groups.join(',')}`
      const e = byPattern.get(key)
      if (e) e.specs.push(s)
      else byPattern.set(key, { specs: [s], groups })
    }
    const units: PatternUnit[] = []
    for (const { specs: group, groups } of byPattern.values()) {
      units.push({
        re: new RE2(group[0]!.pattern, 'gdu'),
        groups,
        detectors: group.map((spec) => ({ spec, contextRe: spec.context?.words.length ? wordsRe(spec.context.words) : undefined })),
        alwaysOn: group.some((s) => s.keywords.length === 0),
        maxLength: Math.max(...group.map((s) => s.maxLength)),
      })
    }
    this.#units = units

    // 2. The prefilter: every keyword once; a keyword also triggers every detector
    //    whose keyword is a prefix of it (the alternation reports the longest at a position).
    const cs = new Map<string, Set<number>>()
    const ci = new Map<string, Set<number>>()
    units.forEach((u, i) => {
      if (u.alwaysOn) return
      for (const d of u.detectors) {
        for (const kw of d.spec.keywords) {
          const map = d.spec.caseSensitiveKeywords ? cs : ci
          const key = d.spec.caseSensitiveKeywords ? kw : kw.toLowerCase()
          if (!map.has(key)) map.set(key, new Set())
          map.get(key)!.add(i)
        }
      }
    })
    const all = [...[...cs.keys()].map((k) => ({ k, ci: false })), ...[...ci.keys()].map((k) => ({ k, ci: true }))]
    // The keyword reported at a position is the longest there; shorter keywords that are its prefix match too.
    const closure = (kw: string): number[] => {
      const out = new Set<number>()
      const low = kw.toLowerCase()
      for (const other of all) {
        if (low.startsWith(other.k.toLowerCase())) for (const u of (other.ci ? ci : cs).get(other.k)!) out.add(u)
      }
      return [...out].sort((a, b) => a - b)
    }
    this.#triggers = new Map([...cs.keys()].map((k) => [k, closure(k)]))
    this.#ciTriggers = new Map([...ci.keys()].map((k) => [k, closure(k)]))
    if (all.length > 0) {
      const alts = all
        .sort((a, b) => b.k.length - a.k.length)
        .map(({ k, ci: isCi }) => (isCi ? `(?i:${escapeLiteral(k)})` : escapeLiteral(k)))
      this.#prefilter = new RegExp(alts.join('|'), 'g')
    }

    this.holdback = Math.max(0, ...this.detectors.filter((s) => !s.openMarker).map((s) => s.maxLength))
    this.openMarkers = Object.freeze(this.detectors.filter((s) => s.openMarker).map((s) => ({ marker: s.openMarker!.toLowerCase(), close: s.closeMarker?.toLowerCase(), maxLength: s.maxLength })),
    )

    this.#base64Min = opts.base64MinLength ?? 0
    if (this.#base64Min > 0) {
      this.#base64Re = new RE2(`(?:^|[^A-Za-z0-9+/=_-])([A-Za-z0-9+/]{${this.#base64Min},}={0,2})(?:[^A-Za-z0-9+/=_-]|$)`, 'gdu')
      const secrets = this.detectors.filter((s) => s.dataClass === 'secret')
      this.#secretScanner = secrets.length ? new Scanner(secrets, { minConfidence: opts.minConfidence ?? 'low' }) : undefined
    }
  }

  /** All validated, non-overlapping detections in `text`, by position. */
  scan(text: string, opts: ScanOptions = {}): Detection[] {
    if (text.length === 0) return []
    const found: Detection[] = []
    const hits = this.#prefilterHits(text)
    for (let i = 0; i < this.#units.length; i++) {
      const u = this.#units[i]!
      const active = u.detectors.filter((d) => inScope(d.spec, opts.subject))
      if (active.length === 0) continue
      if (u.alwaysOn) this.#runUnit(u, active, text, undefined, found)
      else {
        const h = hits.get(i)
        if (h) this.#runUnit(u, active, text, h, found)
      }
    }
    if (this.#base64Re && this.#secretScanner && opts.base64 !== false) this.#scanBase64(text, found, opts.subject)
    return resolveOverlaps(found)
  }

  /** Keyword hits per pattern unit: positions and keyword lengths, or 'full' when there are many. */
  #prefilterHits(text: string): Map<number, { pos: number; len: number }[] | 'full'> {
    const out = new Map<number, { pos: number; len: number }[] | 'full'>()
    const re = this.#prefilter
    if (!re) return out
    re.lastIndex = 0
    let m: RegExpExecArray | null
    while ((m = re.exec(text)) !== null) {
      const kw = m[0]
      const units = this.#triggers.get(kw) ?? this.#ciTriggers.get(kw.toLowerCase())
      if (units) {
        for (const u of units) {
          const cur = out.get(u)
          if (cur === 'full') continue
          if (!cur) out.set(u, [{ pos: m.index, len: kw.length }])
          else if (cur.length >= MAX_WINDOWS) out.set(u, 'full')
          else cur.push({ pos: m.index, len: kw.length })
        }
      }
      // Step one position only: overlapping keywords ("sk-proj-" inside "xsk-proj-") are all seen.
      re.lastIndex = m.index + 1
    }
    return out
  }

  #runUnit(u: PatternUnit, active: readonly CompiledDetector[], text: string, hits: { pos: number; len: number }[] | 'full' | undefined, found: Detection[]): void {
    if (hits === undefined || hits === 'full') {
      this.#execRange(u, active, text, 0, text.length, found)
      return
    }
    // Merge windows [hit - maxLength - 1, hit + len + maxLength + 1].
    const pad = u.maxLength + 1
    const windows: [number, number][] = []
    for (const h of hits) {
      const a = Math.max(0, h.pos - pad)
      const b = Math.min(text.length, h.pos + h.len + pad)
      const last = windows[windows.length - 1]
      if (last && a <= last[1]) last[1] = Math.max(last[1], b)
      else windows.push([a, b])
    }
    let covered = 0
    for (const [a, b] of windows) covered += b - a
    if (covered * 2 > text.length) {
      this.#execRange(u, active, text, 0, text.length, found)
      return
    }
    const local: Detection[] = []
    for (const [a, b] of windows) {
      if (!this.#execRange(u, active, text, a, b, local)) {
        // A match reached an artificial window edge: longer than maxLength. Scan it all.
        this.#execRange(u, active, text, 0, text.length, found)
        return
      }
    }
    found.push(...local)
  }

  /**
   * Runs one pattern over text[a, b). Returns false when a value touches an
   * edge of the range that is not an edge of the text (the window was too small).
   */
  #execRange(u: PatternUnit, active: readonly CompiledDetector[], text: string, a: number, b: number, found: Detection[]): boolean {
    const whole = a === 0 && b === text.length
    const input = whole ? text : text.slice(a, b)
    const re = u.re
    re.lastIndex = 0
    let retries = RETRY_BUDGET
    let m: RegExpExecArray | null
    while ((m = re.exec(input)) !== null) {
      const idx = m.indices!
      let span: [number, number] | undefined
      for (const g of u.groups) {
        const s = idx[g]
        if (s) {
          span = s
          break
        }
      }
      const matchEnd = idx[0]![1]
      if (!span) {
        re.lastIndex = Math.max(matchEnd, m.index + 1)
        continue
      }
      const [vs, ve] = span
      if (!whole && ((vs === 0 && a > 0) || (ve === input.length && b < text.length))) return false
      let accepted = false
      for (const d of active) {
        const det = this.#validate(d, text, a + vs, a + ve)
        if (det) {
          found.push(det)
          accepted = true
        }
      }
      let next = Math.max(ve, m.index + 1)
      if (!accepted && retries > 0) {
        // "12 4111 1111 1111 1111": the candidate began too early; try again after its first separator.
        const value = input.slice(vs, ve)
        const sep = value.search(/[ \-.]/)
        if (sep > 0) {
          next = vs + sep
          retries--
        }
      }
      re.lastIndex = next
    }
    return true
  }

  #validate(d: CompiledDetector, text: string, start: number, end: number): Detection | undefined {
    const spec = d.spec
    let value = text.slice(start, end)
    if (spec.placeholderCheck && looksLikePlaceholder(value)) return undefined
    if (spec.minEntropy !== undefined && shannonEntropy(value) < spec.minEntropy) return undefined
    if (spec.validate) {
      const site: MatchSite = {
        text,
        start,
        end,
        hasContext: () => hasContext(d, text, start, end),
      }
      const r = spec.validate(value, site)
      if (r === false) return undefined
      if (typeof r === 'number') {
        if (r <= 0 || r > value.length) return undefined
        end = start + r
        value = text.slice(start, end)
      }
    }
    return { detector: spec.id, dataClass: spec.dataClass, confidence: spec.confidence, label: spec.label, start, end, value }
  }

  #scanBase64(text: string, found: Detection[], subject: ScanSubject | undefined): void {
    const re = this.#base64Re!
    re.lastIndex = 0
    let m: RegExpExecArray | null
    while ((m = re.exec(text)) !== null) {
      const [vs, ve] = m.indices![1]!
      re.lastIndex = Math.max(ve, m.index + 1)
      const run = text.slice(vs, ve)
      if (run.length % 4 !== 0) continue
      const decoded = Buffer.from(run, 'base64').toString('utf8')
      if (!mostlyPrintable(decoded)) continue
      const inner = this.#secretScanner!.scan(decoded, { subject, base64: false })
      const best = inner.sort((x, y) => CONFIDENCE_RANK[y.confidence] - CONFIDENCE_RANK[x.confidence])[0]
      if (best) found.push({ ...best, start: vs, end: ve, value: run, encoded: 'base64' })
    }
  }
}

function hasContext(d: CompiledDetector, text: string, start: number, end: number): boolean {
  const ctx = d.spec.context
  if (!ctx || !d.contextRe) return false
  const before = text.slice(Math.max(0, start - ctx.before), start)
  d.contextRe.lastIndex = 0
  if (d.contextRe.test(before)) return true
  if (ctx.after) {
    d.contextRe.lastIndex = 0
    return d.contextRe.test(text.slice(end, end + ctx.after))
  }
  return false
}

function inScope(spec: DetectorSpec, subject: ScanSubject | undefined): boolean {
  const sc = spec.scope
  if (!sc || (sc.namespaces.length === 0 && sc.spiffeIdPrefixes.length === 0)) return true
  if (!subject) return false
  if (subject.namespace && sc.namespaces.includes(subject.namespace)) return true
  const id = subject.spiffeId
  return !!id && sc.spiffeIdPrefixes.some((p) => id.startsWith(p))
}

/**
 * Non-overlapping detections by position. Within each cluster of overlapping
 * detections the more confident wins, then the longer, then the earlier.
 */
export function resolveOverlaps(found: Detection[]): Detection[] {
  if (found.length <= 1) return found
  const byStart = [...found].sort((x, y) => x.start - y.start || y.end - x.end)
  const out: Detection[] = []
  let i = 0
  while (i < byStart.length) {
    let j = i + 1
    let clusterEnd = byStart[i]!.end
    while (j < byStart.length && byStart[j]!.start < clusterEnd) clusterEnd = Math.max(clusterEnd, byStart[j++]!.end)
    if (j === i + 1) out.push(byStart[i]!)
    else {
      const order = byStart
        .slice(i, j)
        .sort((x, y) => CONFIDENCE_RANK[y.confidence] - CONFIDENCE_RANK[x.confidence] || y.end - y.start - (x.end - x.start) || x.start - y.start)
      const kept: Detection[] = []
      for (const d of order) if (!kept.some((k) => d.start < k.end && k.start < d.end)) kept.push(d)
      out.push(...kept.sort((x, y) => x.start - y.start))
    }
    i = j
  }
  return out
}

function mostlyPrintable(s: string): boolean {
  if (s.length === 0) return false
  let bad = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13) || c === 0xfffd) bad++
  }
  return bad / s.length < 0.05
}

function escapeLiteral(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')
}

/** Whole words, case-insensitive, as one RE2 program. */
export function wordsRe(words: readonly string[]): RE2 {
  return new RE2(`(?i)\\b(?:${words.map((w) => RE2escape(w)).join('|')})\\b`, 'u')
}

function RE2escape(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|-]/g, '\\$&')
}
