/**
 * Base64 inside text: the runs worth decoding, and decoding that keeps only
 * what is plausibly text.
 *
 * A run is a maximal sequence of base64 or base64url characters
 * (`A–Z a–z 0–9 + / - _`), with up to two `=` of padding; padding is
 * optional. Lines of a wrapped block (MIME, PEM: each full line a multiple of
 * four characters) continue one run. A run may start with a name glued to
 * the encoded part (`data_SGVsbG8…`, `x-SGVsbG8…`): decoding is tried from
 * the start of the run and after each `_` or `-` among its first characters,
 * and the first start that decodes to text wins.
 */

const B64 = new Uint8Array(256)
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_') B64[ch.charCodeAt(0)] = 1
/** 6-bit value of each base64/base64url character (255: not one). */
const VALUE = new Uint8Array(256).fill(255)
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((ch, i) => (VALUE[ch.charCodeAt(0)] = i))
VALUE[0x2d] = 62 // -
VALUE[0x5f] = 63 // _

/** Characters after which a glued name may end and the encoded part begin. */
const GLUE_SEARCH = 32
/** Encoded characters sampled before a whole run is decoded. */
const SAMPLE = 16

/**
 * Runs of at least `min` base64 characters (padding and line breaks not
 * counted): flat [start, end, …] byte offsets. Looks at every `min`-th byte
 * first: a run that long must cover it.
 */
export function base64Runs(bytes: Uint8Array, min: number): number[] {
  const out: number[] = []
  const n = bytes.length
  let i = 0
  while (i + min <= n) {
    let probe = i + min - 1
    const c = bytes[probe]!
    if (!B64[c]) {
      // Padding or a line break may still sit inside a long enough (wrapped) run: look next to it.
      let q = -1
      if (c === 0x3d) {
        q = bytes[probe - 1] === 0x3d ? probe - 2 : probe - 1
        if (q < i || !B64[bytes[q]!]) q = -1
      } else if (c === 0x0a || c === 0x0d) {
        q = c === 0x0d && bytes[probe + 1] === 0x0a ? probe + 2 : probe + 1
        if (q >= n || !B64[bytes[q]!]) q = -1
      }
      if (q < 0) {
        i = probe + 1
        continue
      }
      probe = q
    }
    // bytes[i - 1] is not a base64 character (or i is 0): this line of the run starts in [i, probe].
    let start = probe
    while (start > i && B64[bytes[start - 1]!]) start--
    // Earlier lines of a wrapped block belong to the run (when this line is base64 to its end).
    for (;;) {
      let j = start - 1
      if (j < 0 || bytes[j] !== 0x0a || !base64Line(bytes, start)) break
      if (j > 0 && bytes[j - 1] === 0x0d) j--
      let ls = j
      while (ls > 0 && B64[bytes[ls - 1]!]) ls--
      if (j - ls < 16 || (j - ls) % 4 !== 0) break
      start = ls
    }
    let line = start
    let end = start
    let chars = 0
    for (;;) {
      while (end < n && B64[bytes[end]!]) end++
      chars += end - line
      let pad = 0
      while (end < n && bytes[end] === 0x3d && pad < 2) {
        end++
        pad++
      }
      // A wrapped block: a full line (a multiple of four, at least 16), a line break, and a next line of base64 only.
      if (pad === 0 && end - line >= 16 && (end - line) % 4 === 0) {
        let j = end
        if (bytes[j] === 0x0d) j++
        if (bytes[j] === 0x0a && j + 1 < n && base64Line(bytes, j + 1)) {
          end = line = j + 1
          continue
        }
      }
      break
    }
    if (chars >= min) out.push(start, end)
    // bytes[end] is not a base64 character, or the run ended with padding (bytes[end - 1] is "=").
    i = bytes[end - 1] === 0x3d ? end : end + 1
  }
  return out
}

/** The line from `i` is base64 characters, then at most two "=", then its end. */
function base64Line(bytes: Uint8Array, i: number): boolean {
  const n = bytes.length
  const from = i
  while (i < n && B64[bytes[i]!]) i++
  if (i === from) return false
  for (let pad = 0; pad < 2 && i < n && bytes[i] === 0x3d; pad++) i++
  return i === n || bytes[i] === 0x0a || bytes[i] === 0x0d
}

/** Start of the run (wrapped lines included) that reaches the end of the bytes, or -1. */
export function trailingBase64Run(bytes: Uint8Array): number {
  let i = bytes.length
  while (i > 0) {
    const b = bytes[i - 1]!
    if (B64[b] || b === 0x3d || b === 0x0a || b === 0x0d) i--
    else break
  }
  while (i < bytes.length && !B64[bytes[i]!]) i++
  return i < bytes.length ? i : -1
}

/**
 * Decodes a run found by `base64Runs` in `view` (one character per byte) when
 * it is plausibly text: returns where the encoded part starts and the
 * decoded text, or undefined.
 */
export function decodeRun(view: string, start: number, end: number): { at: number; text: string } | undefined {
  const limit = Math.min(end, start + GLUE_SEARCH)
  for (let at = start; at < limit; at++) {
    if (at > start) {
      const prev = view.charCodeAt(at - 1)
      if (prev !== 0x5f && prev !== 0x2d) continue
    }
    if (end - at < SAMPLE) return undefined
    if (!sampleIsText(view, at)) continue
    let encoded = view.slice(at, end)
    if (encoded.includes('\n')) encoded = encoded.replace(/\r?\n/g, '')
    const bytes = Buffer.from(encoded, 'base64')
    const text = bytes.toString('utf8')
    if (mostlyText(text, literalReplacements(bytes))) return { at, text }
  }
  return undefined
}

/** The first SAMPLE characters decode to bytes that read as UTF-8 text (no control characters). */
const sample = new Uint8Array((SAMPLE / 4) * 3)
function sampleIsText(view: string, at: number): boolean {
  const bytes = sample
  let k = 0
  for (let g = 0; g < SAMPLE; g += 4) {
    const a = VALUE[view.charCodeAt(at + g)]!
    const b = VALUE[view.charCodeAt(at + g + 1)]!
    const c = VALUE[view.charCodeAt(at + g + 2)]!
    const d = VALUE[view.charCodeAt(at + g + 3)]!
    if ((a | b | c | d) === 255) return false
    bytes[k++] = (a << 2) | (b >> 4)
    bytes[k++] = ((b & 15) << 4) | (c >> 2)
    bytes[k++] = ((c & 3) << 6) | d
  }
  let i = 0
  while (i < k) {
    const x = bytes[i]!
    if (x < 0x80) {
      if ((x < 0x20 && x !== 9 && x !== 10 && x !== 13) || x === 0x7f) return false
      i++
      continue
    }
    const need = x >= 0xc2 && x <= 0xdf ? 1 : x >= 0xe0 && x <= 0xef ? 2 : x >= 0xf0 && x <= 0xf4 ? 3 : -1
    if (need < 0) return false
    for (let j = 1; j <= need && i + j < k; j++) if ((bytes[i + j]! & 0xc0) !== 0x80) return false
    i += need + 1
  }
  return true
}

/**
 * Fewer than 5% control characters or replacement characters for bytes that
 * were not UTF-8. `literal` replacement characters were encoded as such
 * (EF BF BD): they are text, and do not count.
 */
function mostlyText(s: string, literal = 0): boolean {
  if (s.length === 0) return false
  let bad = -literal
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if ((c < 32 && c !== 9 && c !== 10 && c !== 13) || c === 0x7f || c === 0xfffd) bad++
  }
  return bad / s.length < 0.05
}

/** How many U+FFFD the bytes hold, encoded as UTF-8 (a text writer's replacement of a lone surrogate). */
function literalReplacements(bytes: Buffer): number {
  let n = 0
  for (let i = bytes.indexOf(0xef); i >= 0 && i + 2 < bytes.length; i = bytes.indexOf(0xef, i + 1)) if (bytes[i + 1] === 0xbf && bytes[i + 2] === 0xbd) n++
  return n
}
