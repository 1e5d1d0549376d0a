/**
 * Typed placeholders. Within one request the same value always gets the same
 * placeholder (`[EMAIL_1]`), so the model can still tell two addresses apart;
 * the book also lets a response have the caller's own values put back.
 */
/** A placeholder as modelgate writes it. */
export const PLACEHOLDER_PATTERN = '\\[[A-Z][A-Z0-9_]{0,31}_[1-9][0-9]{0,5}\\]'
/** Longest placeholder: `[` + 32-character label + `_` + 6 digits + `]`. */
export const MAX_PLACEHOLDER_LENGTH = 41

export class PlaceholderBook {
  readonly #byValue = new Map<string, string>()
  readonly #byPlaceholder = new Map<string, string>()
  readonly #counters = new Map<string, number>()
  /** Placeholder-shaped strings the caller wrote itself: never handed out, never restored. */
  readonly #reserved: Set<string>

  constructor(reserved: Iterable<string> = []) {
    this.#reserved = new Set(reserved)
  }

  /** The placeholder for `value` under `label`, allocating the next number on first use. */
  placeholder(label: string, value: string): string {
    const key = `${label}\u0000${value}`
    const known = this.#byValue.get(key)
    if (known) return known
    let n = this.#counters.get(label) ?? 0
    let p: string
    do p = `[${label}_${++n}]`
    while (this.#reserved.has(p))
    this.#counters.set(label, n)
    this.#byValue.set(key, p)
    this.#byPlaceholder.set(p, value)
    return p
  }

  /** The original value behind a placeholder this book handed out. */
  original(placeholder: string): string | undefined {
    return this.#byPlaceholder.get(placeholder)
  }

  get size(): number {
    return this.#byPlaceholder.size
  }
}

/**
 * Placeholder-shaped substrings of `text` with their offsets: the matches of
 * PLACEHOLDER_PATTERN from left to right, read without a regex (the text is
 * often a whole body, and a placeholder is short and ASCII): each `[` is
 * checked against the shape up to the next `]`.
 */
export function findPlaceholders(text: string): { start: number; end: number; text: string }[] {
  const out: { start: number; end: number; text: string }[] = []
  for (let i = text.indexOf('['); i >= 0; i = text.indexOf('[', i + 1)) {
    const end = placeholderEnd(text, i)
    if (end < 0) continue
    out.push({ start: i, end, text: text.slice(i, end) })
    i = end - 1
  }
  return out
}

const isUpper = (c: number) => c >= 0x41 && c <= 0x5a
const isDigit = (c: number) => c >= 0x30 && c <= 0x39

/**
 * The end (after `]`) of the placeholder that starts with the `[` at `at`, or
 * -1: a label of 1 to 32 characters (an upper-case letter, then upper-case
 * letters, digits and `_`), `_`, a number of 1 to 6 digits without a leading
 * zero, `]`. The number follows the label's last `_`.
 */
function placeholderEnd(text: string, at: number): number {
  const limit = Math.min(text.length, at + MAX_PLACEHOLDER_LENGTH)
  let lastUnderscore = -1
  let i = at + 1
  if (i >= limit || !isUpper(text.charCodeAt(i))) return -1
  for (i++; i < limit; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x5d) break
    if (c === 0x5f) lastUnderscore = i
    else if (!isUpper(c) && !isDigit(c)) return -1
  }
  if (i >= limit) return -1
  // text[i] is the closing `]`.
  const label = lastUnderscore - (at + 1)
  const digits = i - lastUnderscore - 1
  if (lastUnderscore < 0 || label < 1 || label > 32 || digits < 1 || digits > 6) return -1
  const first = text.charCodeAt(lastUnderscore + 1)
  if (first === 0x30) return -1
  for (let k = lastUnderscore + 1; k < i; k++) if (!isDigit(text.charCodeAt(k))) return -1
  return i + 1
}

/** A replacement of text[start, end) by `text`. */
export interface Edit {
  readonly start: number
  readonly end: number
  readonly text: string
}

/** Applies non-overlapping edits (any order) to a string. */
export function applyEdits(text: string, edits: readonly Edit[]): string {
  if (edits.length === 0) return text
  const sorted = [...edits].sort((a, b) => a.start - b.start)
  let out = ''
  let pos = 0
  for (const e of sorted) {
    if (e.start < pos) continue
    out += text.slice(pos, e.start) + e.text
    pos = e.end
  }
  return out + text.slice(pos)
}
