/**
 * Scanning of self-contained values: JSON keys, strings and numbers, and
 * whole texts, as a client decodes them. Many small values are scanned in one
 * pass (joined by a space and a line feed; a match that runs across two of them sends the
 * values it touches to a scan of their own); a value that carries escapes is
 * also read decoded (a string holding JSON is parsed again by its reader);
 * lone surrogates are read as U+FFFD; results are cached by text.
 */
import { siteEdits } from './document.ts'
import { binaryPayloadKind, isEnumeratedValue } from './exempt.ts'
import { formatPath } from '../json/document.ts'
import type { JsonToken } from './json-tokens.ts'
import { applyEdits, type Edit, type PlaceholderBook } from './placeholders.ts'
import { resolveOverlaps, type Scanner } from './scanner.ts'
import type { Detection, RedactionAction, ScanSubject } from './types.ts'

/**
 * Between values scanned as one text: a line feed, after a space so that no
 * value ends a line that is base64 to its end (the scanner reads such lines
 * as one wrapped base64 block: two values would decode as one, into
 * something that is not text, and neither would be looked into).
 */
const SEPARATOR = ' \n'

/** Scan results kept per stream (by text), and the longest text cached. */
const CACHE_ENTRIES = 256
const CACHE_MAX_TEXT = 4096

export interface ValueDeps {
  readonly scanner: Scanner
  readonly subject: ScanSubject | undefined
  /** The action for a detection. */
  action(d: Detection): RedactionAction
  readonly book: PlaceholderBook
  readonly restore: boolean
  /** Called once per detection, with its location and offset. Locations never quote response text. */
  onDetection(d: Detection, location: string, start: number, action: RedactionAction): void
}

export class ValueScanner {
  readonly #deps: ValueDeps
  readonly #cache = new Map<string, Detection[]>()

  constructor(deps: ValueDeps) {
    this.#deps = deps
  }

  /** Scans keys, strings and numbers (of one event or document) together; records findings; returns the rewrites of their spans. */
  tokenEdits(tokens: readonly JsonToken[], blocked: Set<string>, prefix: string): Edit[] {
    const { book, restore } = this.#deps
    const found = this.scanTexts(tokens.map((t) => t.value))
    // Locations print a key only when nothing was found in it.
    const flagged = new Set<string>()
    tokens.forEach((t, k) => {
      if (t.kind === 'key' && found[k]!.length > 0) flagged.add(t.value)
    })
    const edits: Edit[] = []
    tokens.forEach((t, k) => {
      const dets = found[k]!
      if (dets.length === 0 && !(restore && book.size > 0 && t.kind !== 'number')) return
      const actions = new Map<Detection, RedactionAction>()
      if (dets.length > 0) {
        const location = `${prefix}${t.kind === 'key' ? 'key:' : ''}${formatPath(t.path.map((p) => (typeof p === 'string' && flagged.has(p) ? '*' : p)))}`
        for (const d of dets) {
          const a = this.#deps.action(d)
          actions.set(d, a)
          this.#deps.onDetection(d, location, d.start, a)
          if (a === 'block') blocked.add(d.dataClass)
        }
      }
      const value = applyEdits(t.value, siteEdits(t.value, dets, (d) => actions.get(d)!, book, restore))
      if (value !== t.value) edits.push({ start: t.start, end: t.end, text: JSON.stringify(value) })
    })
    return edits
  }

  /** Scans and rewrites one self-contained text; records findings. `restore: false` leaves placeholders as they are. */
  rewrite(value: string, location: string, blocked: Set<string>, restore = this.#deps.restore): string {
    const { book } = this.#deps
    const dets = this.scanValue(value, this.scan(value))
    const actions = new Map<Detection, RedactionAction>()
    for (const d of dets) {
      const a = this.#deps.action(d)
      actions.set(d, a)
      this.#deps.onDetection(d, location, d.start, a)
      if (a === 'block') blocked.add(d.dataClass)
    }
    return applyEdits(value, siteEdits(value, dets, (d) => actions.get(d)!, book, restore))
  }

  /**
   * The detections of each text, as if each were scanned alone: the texts
   * are scanned as one (joined by line feeds); a detection that runs across
   * two of them is discarded and the texts it touches are scanned alone.
   */
  scanTexts(texts: readonly string[]): Detection[][] {
    const res: Detection[][] = texts.map(() => [])
    if (texts.length === 0) return res
    if (texts.length === 1) {
      res[0] = this.scanValue(texts[0]!, this.scan(texts[0]!))
      return res
    }
    const joined = texts.join(SEPARATOR)
    const dets = this.scan(joined)
    if (dets.length === 0) return res.map((d, k) => this.scanValue(texts[k]!, d))
    const offsets: number[] = []
    let o = 0
    for (const t of texts) {
      offsets.push(o)
      o += t.length + SEPARATOR.length
    }
    const alone = new Set<number>()
    for (const d of dets) {
      const k = lastAtOrBelow(offsets, d.start)
      const endOf = offsets[k]! + texts[k]!.length
      if (d.end <= endOf && d.start < endOf) {
        res[k]!.push({ ...d, start: d.start - offsets[k]!, end: d.end - offsets[k]! })
        continue
      }
      for (let j = k; j < texts.length && offsets[j]! < d.end; j++) alone.add(j)
    }
    for (const k of alone) res[k] = this.scan(texts[k]!)
    return res.map((dets, k) => this.scanValue(texts[k]!, dets))
  }

  /**
   * The detections of a self-contained text, also read decoded when it
   * carries escapes (a string holding JSON, such as complete tool-call
   * arguments, is parsed again by the caller).
   */
  scanValue(text: string, dets: Detection[]): Detection[] {
    if (!text.includes('\\')) return dets
    const view = decodeFragment(text, false)
    if (view.text === text) return dets
    const more = this.scan(view.text).map((d) => ({ ...d, start: view.starts[d.start]!, end: view.ends[d.end - 1]! }))
    return more.length === 0 ? dets : resolveOverlaps([...dets, ...more])
  }

  /** One scan; lone surrogates are read as U+FFFD (same length, so offsets hold), as a client prints them. */
  scan(text: string): Detection[] {
    if (text.length === 0) return []
    const cacheable = text.length <= CACHE_MAX_TEXT
    if (cacheable) {
      const hit = this.#cache.get(text)
      if (hit) return hit
    }
    const dets = this.#deps.scanner.scan(text.isWellFormed() ? text : text.toWellFormed(), { subject: this.#deps.subject })
    if (cacheable) {
      if (this.#cache.size >= CACHE_ENTRIES) this.#cache.delete(this.#cache.keys().next().value!)
      this.#cache.set(text, dets)
    }
    return dets
  }
}

/** Exempt by positive identification only: an enumerated field's own value, or a base64 image or audio payload. */
export function isExempt(t: JsonToken): boolean {
  if (t.kind !== 'string') return false
  return isEnumeratedValue(t.path[t.path.length - 1], t.value) || binaryPayloadKind(t.value) !== undefined
}

/** Index of the last offset ≤ x (offsets ascending, offsets[0] = 0). */
function lastAtOrBelow(offsets: readonly number[], x: number): number {
  let lo = 0
  let hi = offsets.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (offsets[mid]! <= x) lo = mid
    else hi = mid - 1
  }
  return lo
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

/**
 * A piece of JSON text (a stream of tool-call argument fragments) as JSON.parse
 * will read its strings: escapes inside string literals decoded, everything
 * else as it is. `starts[j]`/`ends[j]` are the span in the piece of decoded
 * unit j; `escapes` the spans of escape sequences (an incomplete one at the
 * end included); `consumed` how much of the piece was decoded (all of it but
 * an incomplete escape at the end) and `inString` the state there.
 */
export function decodeFragment(
  raw: string,
  inString: boolean,
): { text: string; starts: number[]; ends: number[]; escapes: { start: number; end: number }[]; inString: boolean; consumed: number } {
  let text = ''
  const starts: number[] = []
  const ends: number[] = []
  const escapes: { start: number; end: number }[] = []
  const emit = (u: string, a: number, b: number) => {
    text += u
    starts.push(a)
    ends.push(b)
  }
  let i = 0
  while (i < raw.length) {
    const c = raw[i]!
    if (inString && c === '\\') {
      const e = raw[i + 1]
      if (e === undefined || (e === 'u' && i + 6 > raw.length)) {
        escapes.push({ start: i, end: raw.length })
        break
      }
      if (e === 'u') {
        const code = Number.parseInt(raw.slice(i + 2, i + 6), 16)
        emit(Number.isNaN(code) ? raw.slice(i, i + 6) : String.fromCharCode(code), i, i + 6)
        escapes.push({ start: i, end: i + 6 })
        i += 6
      } else {
        emit(SIMPLE_ESCAPES[e] ?? e, i, i + 2)
        escapes.push({ start: i, end: i + 2 })
        i += 2
      }
      continue
    }
    if (c === '"') inString = !inString
    emit(c, i, i + 1)
    i++
  }
  return { text, starts, ends, escapes, inString, consumed: i }
}

