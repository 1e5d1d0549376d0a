/**
 * Normalisation for detection. Detectors never see the text as given: they
 * see a normalised copy, as UTF-8 bytes (what RE2 runs on), and every offset
 * they report maps back to the exact span of the original text.
 *
 * Per code point of the original:
 * - a lone UTF-16 surrogate (one half of a pair, e.g. an emoji cut in two)
 *   becomes U+FFFD, as `String.prototype.toWellFormed` does, so it can neither
 *   hide the characters after it nor shift offsets;
 * - format characters (general category Cf: zero-width space, zero-width
 *   joiner and non-joiner, word joiner, byte-order mark, soft hyphen, bidi
 *   controls, tag characters…) and the other default-ignorable code points
 *   (variation selectors, combining grapheme joiner, Hangul fillers) are
 *   removed: "ghp_\u200bAbc…" is seen as "ghp_Abc…";
 * - NFKC is applied to each code point on its own: compatibility forms fold
 *   (full-width digits and letters, mathematical alphanumerics, circled and
 *   super/subscript digits, ligatures, no-break and other spaces). There is
 *   no canonical composition across code points ("e" + U+0301 stays two
 *   code points); detectors are written for ASCII shapes, which this covers;
 * - what NFKC leaves is folded further: dash punctuation (Pd) and the minus
 *   sign become "-", space separators (Zs) " ", line and paragraph
 *   separators "\n".
 *
 * Look-alike letters from other scripts (Cyrillic "а" for Latin "a") are not
 * folded.
 *
 * Cost: text that is all ASCII is used as it is (one check, one copy into a
 * Buffer, no offset table). Other text is walked once; each distinct code
 * point is normalised once per process and cached.
 */

/** The text as the detectors see it. */
export interface DetectionText {
  /** The text that was given: offsets reported to callers are UTF-16 offsets into it. */
  readonly original: string
  /** UTF-8 bytes of the normalised text: patterns run on these. */
  readonly bytes: Buffer
  /**
   * The same bytes as a string of one character per byte (latin1), so that
   * string offsets equal byte offsets. For ASCII text it is the original.
   */
  readonly view: string
  /** Every byte is ASCII: `view` reads as the normalised text itself. */
  readonly ascii: boolean
  /**
   * For each byte, the UTF-16 offset in `original` of the code point it came
   * from (one entry more: the original length). Undefined when the
   * normalised text is the original, byte for byte (ASCII text).
   */
  readonly origin: Int32Array | undefined
}

const NON_ASCII = /[^\x00-\x7f]/
const IGNORABLE = /^[\p{Cf}\p{Default_Ignorable_Code_Point}]$/u
const DASH = /^[\p{Pd}\u2212]$/u
const SPACE = /^\p{Zs}$/u

/** BMP code points: 0 not seen yet, 1 unchanged, 2 replaced (see `bmpMapped`). */
const bmpState = new Uint8Array(0x10000)
const bmpMapped = new Map<number, string>()
/** Supplementary code points: the replacement, or null when unchanged. */
const astral = new Map<number, string | null>()

/** What one code point becomes: undefined when it stays as it is, '' when removed. */
export function foldCodePoint(cp: number): string | undefined {
  if (cp < 0x10000) {
    const s = bmpState[cp]!
    if (s === 1) return undefined
    if (s === 2) return bmpMapped.get(cp)
    const r = computeFold(cp)
    if (r === undefined) bmpState[cp] = 1
    else {
      bmpState[cp] = 2
      bmpMapped.set(cp, r)
    }
    return r
  }
  const known = astral.get(cp)
  if (known !== undefined) return known === null ? undefined : known
  const r = computeFold(cp)
  astral.set(cp, r ?? null)
  return r
}

function computeFold(cp: number): string | undefined {
  if (cp >= 0xd800 && cp <= 0xdfff) return '\ufffd'
  const ch = String.fromCodePoint(cp)
  if (IGNORABLE.test(ch)) return ''
  let out = ''
  for (const x of ch.normalize('NFKC')) {
    if (IGNORABLE.test(x)) continue
    if (DASH.test(x)) out += '-'
    else if (SPACE.test(x)) out += ' '
    else if (x === '\u2028' || x === '\u2029') out += '\n'
    else out += x
  }
  return out === ch ? undefined : out
}

/** Normalises a text for detection (see the module comment). */
export function prepareText(text: string): DetectionText {
  // Any character outside ASCII (a lone surrogate too) takes more than one UTF-8 byte.
  if (Buffer.byteLength(text, 'utf8') === text.length) return { original: text, bytes: Buffer.from(text, 'latin1'), view: text, ascii: true, origin: undefined }
  return new Builder(text, text.search(NON_ASCII)).build()
}

/** Normalises a string and returns the normalised string (for keywords, tests and tools). */
export function normalizeString(text: string): string {
  const d = prepareText(text)
  return d.origin ? d.bytes.toString('utf8') : text
}

class Builder {
  readonly #text: string
  #out: Buffer
  #origin: Int32Array
  #n = 0
  #ascii = true
  #first: number

  constructor(text: string, first: number) {
    this.#text = text
    this.#first = first
    const cap = text.length + (text.length >> 1) + 16
    this.#out = Buffer.allocUnsafe(cap)
    this.#origin = new Int32Array(cap + 1)
  }

  build(): DetectionText {
    const text = this.#text
    const len = text.length
    const first = this.#first
    this.#out.write(text.slice(0, first), 0, 'latin1')
    for (let i = 0; i < first; i++) this.#origin[i] = i
    this.#n = first
    for (let i = first; i < len; ) {
      const c = text.charCodeAt(i)
      if (c < 0x80) {
        this.#reserve(1)
        this.#out[this.#n] = c
        this.#origin[this.#n++] = i
        i++
        continue
      }
      let cp = c
      let units = 1
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
        const d = text.charCodeAt(i + 1)
        if (d >= 0xdc00 && d <= 0xdfff) {
          cp = ((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000
          units = 2
        }
      }
      const rep = foldCodePoint(cp)
      if (rep === undefined) this.#emit(cp, i)
      else for (let k = 0; k < rep.length; k++) {
        const r = rep.codePointAt(k)!
        if (r > 0xffff) k++
        this.#emit(r, i)
      }
      i += units
    }
    const n = this.#n
    this.#origin[n] = len
    const bytes = this.#out.subarray(0, n)
    return {
      original: text,
      bytes,
      view: bytes.toString('latin1'),
      ascii: this.#ascii,
      origin: this.#origin.subarray(0, n + 1),
    }
  }

  #reserve(k: number): void {
    if (this.#n + k < this.#out.length) return
    const cap = Math.max(this.#out.length * 2, this.#n + k + 16)
    const out = Buffer.allocUnsafe(cap)
    this.#out.copy(out, 0, 0, this.#n)
    const origin = new Int32Array(cap + 1)
    origin.set(this.#origin.subarray(0, this.#n))
    this.#out = out
    this.#origin = origin
  }

  /** Appends one code point as UTF-8; each of its bytes maps to original offset `at`. */
  #emit(cp: number, at: number): void {
    this.#reserve(4)
    const out = this.#out
    const origin = this.#origin
    let n = this.#n
    if (cp < 0x80) {
      out[n] = cp
      origin[n++] = at
    } else {
      this.#ascii = false
      if (cp < 0x800) {
        out[n] = 0xc0 | (cp >> 6)
        out[n + 1] = 0x80 | (cp & 0x3f)
        origin[n] = origin[n + 1] = at
        n += 2
      } else if (cp < 0x10000) {
        out[n] = 0xe0 | (cp >> 12)
        out[n + 1] = 0x80 | ((cp >> 6) & 0x3f)
        out[n + 2] = 0x80 | (cp & 0x3f)
        origin[n] = origin[n + 1] = origin[n + 2] = at
        n += 3
      } else {
        out[n] = 0xf0 | (cp >> 18)
        out[n + 1] = 0x80 | ((cp >> 12) & 0x3f)
        out[n + 2] = 0x80 | ((cp >> 6) & 0x3f)
        out[n + 3] = 0x80 | (cp & 0x3f)
        origin[n] = origin[n + 1] = origin[n + 2] = origin[n + 3] = at
        n += 4
      }
    }
    this.#n = n
  }
}

/**
 * The original span [start, end) of the normalised bytes [bs, be): from the
 * first code point that produced byte `bs` to the end of the one that
 * produced byte `be - 1`. Removed characters inside the span are included.
 */
export function originalSpan(d: DetectionText, bs: number, be: number): [number, number] {
  const o = d.origin
  if (!o) return [bs, be]
  const start = o[bs]!
  const last = o[be - 1]!
  const c = d.original.charCodeAt(last)
  const pair = c >= 0xd800 && c <= 0xdbff && last + 1 < d.original.length && (d.original.charCodeAt(last + 1) & 0xfc00) === 0xdc00
  return [start, last + (pair ? 2 : 1)]
}

/** The normalised text of bytes [bs, be) as a string (decoded when not ASCII). */
export function normalizedSlice(d: DetectionText, bs: number, be: number): string {
  return d.ascii ? d.view.slice(bs, be) : d.bytes.toString('utf8', bs, be)
}

/**
 * The byte offset where the last `count` code points of the normalised text
 * begin (0 when it has fewer).
 */
export function lastCodePointsStart(d: DetectionText, count: number): number {
  const b = d.bytes
  if (d.ascii) return Math.max(0, b.length - count)
  let seen = 0
  let i = b.length
  while (i > 0 && seen < count) {
    i--
    if ((b[i]! & 0xc0) !== 0x80) seen++
  }
  return i
}

/** The original offset of normalised byte `b` (the original length at the end). */
export function originalOffset(d: DetectionText, b: number): number {
  return d.origin ? d.origin[b]! : b
}
