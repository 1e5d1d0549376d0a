/**
 * Every key, string and number of a JSON text, with its span: what a client
 * decodes with JSON.parse, occurrence by occurrence. Duplicate keys are all
 * listed (JSON.parse keeps the last; the last token at a path is the one it
 * keeps), and numbers keep their literal text.
 */
import type { JsonPath } from '../providers/types.ts'

export interface JsonToken {
  readonly kind: 'key' | 'string' | 'number'
  /** Span of the token in the text (a string's or key's quotes included). */
  readonly start: number
  readonly end: number
  /** For a value, its path; for a key, the path of the member it names. */
  readonly path: JsonPath
  /** The decoded string (key, string) or the literal (number). */
  readonly value: string
}

/**
 * The tokens of a JSON text that JSON.parse accepts (call it first: this
 * walk assumes valid JSON and does not check it). Whitespace around the
 * value is allowed, as JSON.parse allows it.
 */
export function jsonTokens(text: string): JsonToken[] {
  const out: JsonToken[] = []
  const n = text.length
  let i = 0
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++
      else break
    }
  }
  const str = (): [number, number, string] => {
    const s = i
    let escaped = false
    i++
    while (i < n) {
      const c = text.charCodeAt(i)
      if (c === 0x22) break
      if (c === 0x5c) {
        escaped = true
        i += 2
      } else i++
    }
    i++
    const raw = text.slice(s, i)
    return [s, i, escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1)]
  }
  type Frame = { readonly obj: boolean; readonly path: (string | number)[]; index: number }
  const stack: Frame[] = []
  const value = (path: (string | number)[]): void => {
    ws()
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      const [s, e, v] = str()
      out.push({ kind: 'string', start: s, end: e, path, value: v })
    } else if (c === 0x7b /* { */) {
      i++
      stack.push({ obj: true, path, index: 0 })
    } else if (c === 0x5b /* [ */) {
      i++
      stack.push({ obj: false, path, index: 0 })
    } else {
      const s = i
      while (i < n) {
        const d = text.charCodeAt(i)
        if (d === 0x2c || d === 0x5d || d === 0x7d || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break
        i++
      }
      // true, false and null carry no text.
      if (c === 0x2d || (c >= 0x30 && c <= 0x39)) out.push({ kind: 'number', start: s, end: i, path, value: text.slice(s, i) })
    }
  }
  value([])
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!
    ws()
    const c = text.charCodeAt(i)
    if (c === 0x7d || c === 0x5d) {
      i++
      stack.pop()
      continue
    }
    if (top.index > 0) {
      i++ // ,
      ws()
    }
    if (top.obj) {
      const [s, e, key] = str()
      const path = [...top.path, key]
      out.push({ kind: 'key', start: s, end: e, path, value: key })
      ws()
      i++ // :
      top.index++
      value(path)
    } else value([...top.path, top.index++])
  }
  return out
}
