/**
 * Typed placeholders. Within one request the same value always gets the same
 * placeholder (`[EMAIL_1]`), so the model can still tell two addresses apart;
 * the book also lets a response have the caller's own values put back.
 */
import RE2 from 're2'

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

const finder = new RE2(PLACEHOLDER_PATTERN, 'gu')

/** Placeholder-shaped substrings of `text` with their offsets. */
export function findPlaceholders(text: string): { start: number; end: number; text: string }[] {
  const out: { start: number; end: number; text: string }[] = []
  if (text.indexOf('[') < 0) return out
  finder.lastIndex = 0
  let m: RegExpExecArray | null
  while ((m = finder.exec(text)) !== null) out.push({ start: m.index, end: m.index + m[0].length, text: m[0] })
  return out
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
