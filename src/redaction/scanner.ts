/**
 * The compiled scanner: detector specs become RE2 programs, one keyword
 * automaton and a few candidate gates once, at start-up.
 *
 * A scan:
 * 1. normalises the text (normalize.ts): lone surrogates, zero-width and
 *    other format characters, full-width and other compatibility forms no
 *    longer hide anything, and ASCII text is used as it is;
 * 2. finds where detectors can match (prefilter.ts): keyword hits in one
 *    pass of an Aho–Corasick automaton, and, for detectors without keywords
 *    (card numbers, IBANs, phone numbers, SSNs, IP addresses…), the runs of
 *    digits or hex groups that pass their gates;
 * 3. runs each RE2 pattern that can match, on the UTF-8 bytes, over windows
 *    around those places (or over the whole text when they are many);
 * 4. validates candidates (checksums, entropy, placeholders, context words);
 * 5. decodes base64 runs that read as text and scans what they hold with the
 *    whole catalog; a finding inside one reports the whole run;
 * 6. resolves overlaps in favour of the more confident, then the longer
 *    detection, and maps every span back to UTF-16 offsets of the original
 *    text, removed characters inside a value included.
 *
 * Every step is linear in the input. Every pattern, built-in or configured,
 * runs on RE2; the prefilter passes are plain loops over bytes.
 */
import RE2 from 're2'
import { base64Runs, decodeRun, trailingBase64Run } from './base64.ts'
import { lastCodePointsStart, normalizedSlice, normalizeString, originalOffset, originalSpan, prepareText, type DetectionText } from './normalize.ts'
import { CompiledGate, countryCheckHits, digitRunHits, hexGroupHits, KeywordAutomaton, type Hits, type KeywordEntry } from './prefilter.ts'
import { CONFIDENCE_RANK, type Detection, type DetectorSpec, type DigitRunGate, type MatchSite, type ScanSubject } from './types.ts'
import { looksLikePlaceholder, shannonEntropy } from './validators.ts'

/** A pattern shared by one or more detectors (e.g. public and internal IPv4 addresses): run once, validated per detector. */
interface PatternUnit {
  readonly re: RE2
  /** The same program, sticky, for units whose matches start at a keyword hit. */
  readonly anchoredRe: RE2 | undefined
  readonly groups: readonly number[]
  readonly detectors: readonly CompiledDetector[]
  /** Some detector is limited to some callers: filter per scan. */
  readonly scoped: boolean
  /** Runs over every text: a detector has neither keywords nor a gate (or a keyword the automaton cannot fold). */
  readonly alwaysOn: boolean
  /** Longest match any of its detectors allows: how far after a hit windows reach. */
  readonly maxLength: number
  /** How far before a hit a match can start: how far before it windows reach. */
  readonly before: number
  /** Number-shaped (gated or ungated) detectors: a rejected candidate is tried again past its first separator. */
  readonly retry: boolean
}

interface CompiledDetector {
  readonly spec: DetectorSpec
  readonly contextRe: RE2 | undefined
}

/** A detection in normalised byte offsets, before overlaps are resolved. */
interface Candidate {
  readonly spec: DetectorSpec
  readonly start: number
  readonly end: number
  readonly encoded?: 'base64'
}

export interface ScanOptions {
  /** Selects scoped custom detectors. */
  readonly subject?: ScanSubject
  /** Look inside base64 runs (default: the scanner's setting). */
  readonly base64?: boolean
}

export interface ScannerOptions {
  /** Decode base64 runs of at least this many characters and scan what they hold. 0 disables. */
  readonly base64MinLength?: number
  /** Findings below this confidence are dropped. */
  readonly minConfidence?: 'low' | 'medium' | 'high'
  /**
   * Run every pattern over the whole text, without keyword hits or gates
   * (default true: use them). The result is the same, only slower; tests
   * compare the two.
   */
  readonly prefilter?: boolean
}

/** One long-match marker, as a stream holds text back from it. */
export interface OpenMarker {
  readonly marker: string
  readonly close: string | undefined
  readonly maxLength: number
}

/** More keyword hits than this for one pattern: scan the whole text instead of windows. */
const MAX_WINDOWS = 1024
/** Retries after a rejected candidate (shifting its start past a separator) per pattern and scan. */
const RETRY_BUDGET = 256
/** Base64 inside base64 is decoded too, this many levels deep. */
const MAX_BASE64_DEPTH = 2
/** How far past a hit windows reach at first (a match that runs into the edge gets the full maxLength). */
const SHORT_AFTER = 256
const NO_EDGE = 0
const EDGE_START = 1
const EDGE_END = 2
/** How far before a gated run a match can start by default (a "+", "(", a boundary character). */
const GATE_REACH = 8
/** Bytes per UTF-16 unit at most (a BMP character outside ASCII is 3 bytes). */
const MAX_BYTES_PER_UNIT = 3

export class Scanner {
  readonly detectors: readonly DetectorSpec[]
  /**
   * The longest match of any detector without an open marker, in normalised
   * characters. In text where normalisation removes nothing it is also the
   * longest match in original characters; `holdbackStart` gives the exact
   * offset for any text.
   */
  readonly holdback: number
  /** Detectors whose matches may be long: a stream holds text back from their open marker. */
  readonly openMarkers: readonly OpenMarker[]
  readonly #units: readonly PatternUnit[]
  readonly #automaton: KeywordAutomaton | undefined
  readonly #digitGates: readonly CompiledGate[]
  readonly #hexTargets: readonly number[]
  readonly #countryTargets: readonly number[]
  readonly #prefilter: boolean
  readonly #base64Min: number
  readonly #minRank: number

  constructor(specs: readonly DetectorSpec[], opts: ScannerOptions = {}) {
    const ids = new Set<string>()
    for (const s of specs) {
      if (ids.has(s.id)) throw new Error(`two detectors have the id "${s.id}"`)
      ids.add(s.id)
    }
    this.#minRank = CONFIDENCE_RANK[opts.minConfidence ?? 'low']
    this.#prefilter = opts.prefilter ?? true
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

    // 2. Triggers: keywords into one automaton, gates by shape.
    const keywords = new Map<string, { text: string; caseSensitive: boolean; boundary: KeywordEntry['boundary']; targets: Set<number> }>()
    const digitGates = new Map<string, { gate: DigitRunGate; targets: Set<number> }>()
    const hexTargets = new Set<number>()
    const countryTargets = new Set<number>()
    const units: PatternUnit[] = []
    for (const { specs: group, groups } of byPattern.values()) {
      const index = units.length
      let alwaysOn = false
      let before = 0
      for (const s of group) {
        before = Math.max(before, s.keywords.length > 0 ? (s.keywordOffset ?? s.maxLength) : s.gate?.kind === 'digits' ? (s.gate.reach ?? GATE_REACH) : s.gate?.kind === 'country-check' ? 0 : GATE_REACH)
        if (s.keywords.length > 0) {
          for (const raw of s.keywords) {
            const cs = s.caseSensitiveKeywords ?? false
            const kw = normalizeString(raw)
            // The automaton folds ASCII case only: a case-insensitive keyword with other letters cannot gate.
            if (!cs && /[^\x00-\x7f]/.test(kw) && kw.toLowerCase() !== kw.toUpperCase()) alwaysOn = true
            const boundary = s.keywordBoundary ?? 'none'
            const key = `${cs ? kw : kw.toLowerCase()}\u0000${cs}\u0000${boundary}`
            let e = keywords.get(key)
            if (!e) keywords.set(key, (e = { text: cs ? kw : kw.toLowerCase(), caseSensitive: cs, boundary, targets: new Set() }))
            e.targets.add(index)
          }
        } else if (s.gate?.kind === 'digits') {
          const key = JSON.stringify(s.gate)
          let e = digitGates.get(key)
          if (!e) digitGates.set(key, (e = { gate: s.gate, targets: new Set() }))
          e.targets.add(index)
        } else if (s.gate?.kind === 'hex-groups') hexTargets.add(index)
        else if (s.gate?.kind === 'country-check') countryTargets.add(index)
        else alwaysOn = true
      }
      const anchored = !alwaysOn && group.every((s) => s.anchored === true && s.keywords.length > 0)
      units.push({
        re: new RE2(group[0]!.pattern, 'gdu'),
        anchoredRe: anchored ? new RE2(group[0]!.pattern, 'ydu') : undefined,
        groups,
        detectors: group.map((spec) => ({ spec, contextRe: spec.context?.words.length ? wordsRe(spec.context.words) : undefined })),
        scoped: group.some((s) => s.scope && (s.scope.namespaces.length > 0 || s.scope.spiffeIdPrefixes.length > 0)),
        alwaysOn,
        maxLength: Math.max(...group.map((s) => s.maxLength)),
        before,
        retry: group.some((s) => s.keywords.length === 0),
      })
    }
    this.#units = units
    const entries = [...keywords.values()].map((e) => ({ text: e.text, caseSensitive: e.caseSensitive, boundary: e.boundary, targets: [...e.targets] }))
    this.#automaton = entries.length > 0 ? new KeywordAutomaton(entries) : undefined
    this.#digitGates = [...digitGates.values()].map((e) => new CompiledGate(e.gate, [...e.targets]))
    this.#hexTargets = [...hexTargets]
    this.#countryTargets = [...countryTargets]

    this.holdback = Math.max(0, ...this.detectors.filter((s) => !s.openMarker).map((s) => s.maxLength))
    this.openMarkers = Object.freeze(this.detectors.filter((s) => s.openMarker).map((s) => ({ marker: s.openMarker!.toLowerCase(), close: s.closeMarker?.toLowerCase(), maxLength: s.maxLength })))
    this.#base64Min = opts.base64MinLength ?? 0
  }

  /**
   * All validated, non-overlapping detections in `text`, by position, with
   * UTF-16 offsets into `text` itself.
   */
  scan(text: string, opts: ScanOptions = {}): Detection[] {
    if (text.length === 0) return []
    const first = this.#scanText(text, text, opts)
    // Removing invisible characters joins what they separated ("see\u200bghp_…" reads "seeghp_…"), so text that
    // holds any is also scanned with each of them read as a space: a token they only set apart is found too.
    // The variant keeps every UTF-16 offset, so both scans report spans of the same original text.
    if (first.invisible) {
      const spaced = text.replace(INVISIBLE_ALL, (m) => ' '.repeat(m.length))
      const second = this.#scanText(spaced, text, opts)
      if (second.found.length > 0) return resolveOverlaps([...first.found, ...second.found])
    }
    return first.found
  }

  /** Scans `scanned` (the original text, or a same-length variant of it); values are taken from `original`. */
  #scanText(scanned: string, original: string, opts: ScanOptions): { found: Detection[]; invisible: boolean } {
    const text = original
    const dt = prepareText(scanned)
    const found: Candidate[] = []
    this.#scanPrepared(dt, opts.subject, opts.base64 !== false, 0, found)
    const out: Detection[] = []
    let lastEnd = 0
    for (const c of resolveCandidates(found)) {
      const [start, end] = originalSpan(dt, c.start, c.end)
      // Two values made of one original character (a ligature split in two): keep the first.
      if (start < lastEnd) continue
      lastEnd = end
      const s = c.spec
      out.push({ detector: s.id, dataClass: s.dataClass, confidence: s.confidence, label: s.label, start, end, value: text.slice(start, end), ...(c.encoded ? { encoded: c.encoded } : {}) })
    }
    return { found: out, invisible: dt.origin !== undefined && scanned === original && INVISIBLE.test(original) }
  }

  /**
   * Where a stream must start holding `text` back: no match that could still
   * grow when more text arrives starts before this offset. It covers the
   * fixed hold-back counted in normalised characters (so removed characters
   * never shorten it), open long-match markers searched in the normalised
   * text (so a marker written with zero-width characters still holds), and a
   * base64 run that reaches the end. Matches that already reach the end are
   * the caller's to hold.
   */
  holdbackStart(text: string): number {
    if (text.length === 0) return 0
    const dt = prepareText(text)
    let r = lastCodePointsStart(dt, this.holdback)
    if (this.openMarkers.length > 0) {
      let from = dt.bytes.length
      for (const m of this.openMarkers) from = Math.min(from, lastCodePointsStart(dt, m.maxLength))
      const low = dt.view.slice(from).toLowerCase()
      for (const m of this.openMarkers) {
        const first = lastCodePointsStart(dt, m.maxLength) - from
        for (let p = low.indexOf(m.marker, first); p >= 0 && p + from < r; p = low.indexOf(m.marker, p + 1)) {
          if (markerOpen(low, p, m.marker, m.close)) {
            r = p + from
            break
          }
        }
      }
    }
    if (this.#base64Min > 0) {
      const run = trailingBase64Run(dt.bytes)
      if (run >= 0 && run < r) r = run
    }
    return originalOffset(dt, r)
  }

  #scanPrepared(dt: DetectionText, subject: ScanSubject | undefined, base64: boolean, depth: number, found: Candidate[]): void {
    const hits: Hits[] = new Array<Hits>(this.#units.length)
    if (this.#prefilter) {
      this.#automaton?.scan(dt.bytes, hits, MAX_WINDOWS)
      // Gate hits are precise (runs that pass the gate): windows around them stay cheaper than the whole text however many there are.
      if (this.#digitGates.length > 0) digitRunHits(dt.view, dt.bytes, this.#digitGates, hits, Number.MAX_SAFE_INTEGER)
      if (this.#hexTargets.length > 0) hexGroupHits(dt.bytes, this.#hexTargets, hits, Number.MAX_SAFE_INTEGER)
      if (this.#countryTargets.length > 0) countryCheckHits(dt.view, this.#countryTargets, hits, Number.MAX_SAFE_INTEGER)
    }
    for (let i = 0; i < this.#units.length; i++) {
      const u = this.#units[i]!
      const active = u.scoped ? u.detectors.filter((d) => inScope(d.spec, subject)) : u.detectors
      if (active.length === 0) continue
      if (!this.#prefilter || u.alwaysOn) this.#execRange(u, active, dt, 0, dt.bytes.length, found)
      else {
        const h = hits[i]
        if (h !== undefined) this.#runUnit(u, active, dt, h, found)
      }
    }
    if (base64 && this.#base64Min > 0 && depth < MAX_BASE64_DEPTH) this.#scanBase64(dt, subject, depth, found)
  }

  #runUnit(u: PatternUnit, active: readonly CompiledDetector[], dt: DetectionText, hits: Hits, found: Candidate[]): void {
    const n = dt.bytes.length
    if (hits === 'full') {
      this.#execRange(u, active, dt, 0, n, found)
      return
    }
    if (u.anchoredRe) {
      this.#execAnchored(u, u.anchoredRe, active, dt, hits, found)
      return
    }
    // Windows [hit - before, hit + len + after], merged, edges on code point boundaries.
    // Most matches are short: windows first reach SHORT_AFTER past a hit, and
    // one whose match runs into that edge is run again to the full maxLength.
    const scale = dt.ascii ? 1 : MAX_BYTES_PER_UNIT
    const before = u.before * scale + 1
    const after = Math.min(u.maxLength, SHORT_AFTER) * scale + 1
    const extra = Math.max(0, u.maxLength - SHORT_AFTER) * scale
    const spans: [number, number][] = []
    for (let k = 0; k < hits.length; k += 2) spans.push([Math.max(0, hits[k]! - before), Math.min(n, hits[k]! + hits[k + 1]! + after)])
    spans.sort((x, y) => x[0] - y[0])
    const windows: [number, number][] = []
    for (const [a, b] of spans) {
      const last = windows[windows.length - 1]
      if (last && a <= last[1]) last[1] = Math.max(last[1], b)
      else windows.push([a, b])
    }
    let covered = 0
    for (const [a, b] of windows) covered += b - a
    if (covered * 2 > n) {
      this.#execRange(u, active, dt, 0, n, found)
      return
    }
    const collected: Candidate[] = []
    const local: Candidate[] = []
    for (let [a, b] of windows) {
      a = codePointStart(dt, a)
      b = codePointStart(dt, b)
      let edge = this.#execRange(u, active, dt, a, b, local)
      if (edge === EDGE_END && extra > 0) {
        local.length = 0
        edge = this.#execRange(u, active, dt, a, codePointStart(dt, Math.min(n, b + extra)), local)
      }
      if (edge !== NO_EDGE) {
        // A match reached a window edge: it is longer than the window allows. Scan it all.
        this.#execRange(u, active, dt, 0, n, found)
        return
      }
      for (const c of local) collected.push(c)
      local.length = 0
    }
    for (const c of collected) found.push(c)
  }

  /** Tries a pattern at each hit (and one character before it), never searching. */
  #execAnchored(u: PatternUnit, re: RE2, active: readonly CompiledDetector[], dt: DetectionText, hits: readonly number[], found: Candidate[]): void {
    const input = dt.bytes as unknown as string
    for (let k = 0; k < hits.length; k += 2) {
      const p = hits[k]!
      // From the start of the character before the hit, then from the hit.
      for (let at = p > 0 ? codePointStart(dt, p - 1) : 0; at <= p; at = at < p ? p : p + 1) {
        re.lastIndex = at
        const m = re.exec(input)
        if (m === null) continue
        const idx = m.indices!
        for (const g of u.groups) {
          const span = idx[g]
          if (!span) continue
          for (const d of active) {
            const c = this.#validate(d, dt, span[0], span[1])
            if (c) found.push(c)
          }
          break
        }
        break
      }
    }
  }

  /**
   * Runs one pattern over bytes [a, b). Returns which edge of the range a
   * value touched when that edge is not an edge of the text (the window was
   * too small), else NO_EDGE.
   */
  #execRange(u: PatternUnit, active: readonly CompiledDetector[], dt: DetectionText, a: number, b: number, found: Candidate[]): number {
    const n = dt.bytes.length
    const whole = a === 0 && b === n
    const input = whole ? dt.bytes : dt.bytes.subarray(a, b)
    const re = u.re
    re.lastIndex = 0
    // Number-shaped candidates only (keyword detectors match their label, not a run of numbers).
    let retries = u.retry ? RETRY_BUDGET : 0
    let m: RegExpExecArray | null
    while ((m = re.exec(input as unknown as string)) !== null) {
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
      if (!whole && vs === 0 && a > 0) return EDGE_START
      if (!whole && ve === input.length && b < n) return EDGE_END
      let accepted = false
      let acceptedEnd = 0
      for (const d of active) {
        const c = this.#validate(d, dt, a + vs, a + ve)
        if (c) {
          found.push(c)
          accepted = true
          acceptedEnd = Math.max(acceptedEnd, c.end - a)
        }
      }
      // After a value accepted in part (a card at the start of a run of numbers), look again right after it.
      let next = accepted ? Math.max(acceptedEnd, m.index + 1) : Math.max(ve, m.index + 1)
      if (!accepted && retries > 0 && ve - vs <= u.maxLength) {
        // "12 415-555-0132": the candidate began too early; try again after its first separator.
        const sep = dt.view.slice(a + vs, a + ve).search(/[ \t\r\n.-]/)
        if (sep > 0) {
          next = vs + sep
          retries--
        }
      }
      re.lastIndex = next
    }
    return NO_EDGE
  }

  #validate(d: CompiledDetector, dt: DetectionText, start: number, end: number): Candidate | undefined {
    const spec = d.spec
    const value = normalizedSlice(dt, start, end)
    if (spec.placeholderCheck && looksLikePlaceholder(value)) return undefined
    if (spec.minEntropy !== undefined && shannonEntropy(value) < spec.minEntropy) return undefined
    if (spec.validate) {
      const site: MatchSite = { text: dt.view, start, end, hasContext: () => hasContext(d, dt.view, start, end) }
      const r = spec.validate(value, site)
      if (r === false) return undefined
      if (typeof r === 'number') {
        if (r <= 0 || r > value.length) return undefined
        return { spec, start, end: start + byteLength(dt, value, 0, r) }
      }
      if (typeof r === 'object') {
        if (!(r.start >= 0 && r.start < r.end && r.end <= value.length)) return undefined
        return { spec, start: start + byteLength(dt, value, 0, r.start), end: start + byteLength(dt, value, 0, r.end) }
      }
    }
    return { spec, start, end }
  }

  #scanBase64(dt: DetectionText, subject: ScanSubject | undefined, depth: number, found: Candidate[]): void {
    const runs = base64Runs(dt.bytes, this.#base64Min)
    for (let k = 0; k < runs.length; k += 2) {
      const end = runs[k + 1]!
      const decoded = decodeRun(dt.view, runs[k]!, end)
      if (!decoded) continue
      const inner: Candidate[] = []
      this.#scanPrepared(prepareText(decoded.text), subject, true, depth + 1, inner)
      let best: Candidate | undefined
      for (const c of inner) if (!best || CONFIDENCE_RANK[c.spec.confidence] > CONFIDENCE_RANK[best.spec.confidence]) best = c
      if (best) found.push({ spec: best.spec, start: decoded.at, end, encoded: 'base64' })
    }
  }
}

/** `b` moved back to the start of the code point it is in. */
/** Invisible characters normalisation removes (format and other default-ignorable code points). */
const INVISIBLE = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u
const INVISIBLE_ALL = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/gu

function codePointStart(dt: DetectionText, b: number): number {
  if (dt.ascii) return b
  const bytes = dt.bytes
  while (b > 0 && b < bytes.length && (bytes[b]! & 0xc0) === 0x80) b--
  return b
}

/** Bytes of value[from, to) in the detection text (equal to UTF-16 units for ASCII). */
function byteLength(dt: DetectionText, value: string, from: number, to: number): number {
  return dt.ascii ? to - from : Buffer.byteLength(value.slice(from, to), 'utf8')
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
 * Is a long-match marker at `p` still open? With a close marker: until it
 * follows. Otherwise: while the token after the marker (after one run of
 * spaces, tabs or colons) runs to the end of the text.
 */
function markerOpen(low: string, p: number, marker: string, close: string | undefined): boolean {
  const after = p + marker.length
  if (close) return low.indexOf(close, after) < 0
  let i = after
  while (i < low.length && (low[i] === ' ' || low[i] === '\t' || low[i] === ':')) i++
  for (; i < low.length; i++) {
    const c = low.charCodeAt(i)
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x22 || c === 0x27) return false
  }
  return true
}

type Ranked = { readonly start: number; readonly end: number; readonly confidence: Detection['confidence'] }

/** Non-overlapping items by position: within each cluster of overlapping ones the more confident wins, then the longer, then the earlier. */
function resolve<T extends Ranked>(found: T[]): T[] {
  if (found.length <= 1) return found
  const byStart = [...found].sort((x, y) => x.start - y.start || y.end - x.end)
  const out: T[] = []
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
      const kept: T[] = []
      for (const d of order) if (!kept.some((k) => d.start < k.end && k.start < d.end)) kept.push(d)
      out.push(...kept.sort((x, y) => x.start - y.start))
    }
    i = j
  }
  return out
}

function resolveCandidates(found: Candidate[]): Candidate[] {
  return resolve(found.map((c) => ({ ...c, confidence: c.spec.confidence }))).map((r) => r as Candidate)
}

/**
 * Non-overlapping detections by position. Within each cluster of overlapping
 * detections the more confident wins, then the longer, then the earlier.
 */
export function resolveOverlaps(found: Detection[]): Detection[] {
  return resolve(found)
}

/** Whole words, case-insensitive, as one RE2 program. */
export function wordsRe(words: readonly string[]): RE2 {
  return new RE2(`(?i)\\b(?:${words.map((w) => RE2escape(w)).join('|')})\\b`, 'u')
}

function RE2escape(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|-]/g, '\\$&')
}
