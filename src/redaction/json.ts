/**
 * JSON-aware rewriting. The body is walked once to find every string value,
 * its JSON path and its exact span in the raw text; a rewrite replaces only
 * the spans of changed strings (re-encoded with JSON.stringify), so the rest
 * of the body stays byte-for-byte what the caller sent: numbers keep their
 * precision, key order and whitespace are untouched, and the result is valid
 * JSON whatever the new text contains (quotes, newlines, `\u` escapes).
 */
import type { JsonPath } from '../providers/types.ts'

/** One string value in a JSON document. Object keys are not included. */
export interface StringLeaf {
  readonly path: JsonPath
  /** Span of the string token in the raw text, quotes included. */
  readonly start: number
  readonly end: number
  /** The decoded value. */
  readonly value: string
}

export class JsonShapeError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'JsonShapeError'
  }
}

/** Every string value of a (valid) JSON text, in document order. Throws JsonShapeError on malformed input. */
export function stringLeaves(raw: string): StringLeaf[] {
  const out: StringLeaf[] = []
  let i = 0
  const n = raw.length
  const ws = () => {
    while (i < n) {
      const c = raw.charCodeAt(i)
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0xfeff) i++
      else break
    }
  }
  const str = (): [number, number] => {
    const s = i
    i++ // opening quote
    while (i < n) {
      const c = raw.charCodeAt(i)
      if (c === 0x22) return [s, ++i]
      if (c === 0x5c) i += 2
      else i++
    }
    throw new JsonShapeError('unterminated string')
  }
  const decode = (s: number, e: number): string => {
    const slice = raw.slice(s, e)
    return slice.indexOf('\\') < 0 ? slice.slice(1, -1) : (JSON.parse(slice) as string)
  }
  // Iterative walk: an explicit stack keeps deep nesting from overflowing the call stack.
  type Frame = { kind: 'obj' | 'arr'; path: (string | number)[]; index: number }
  const stack: Frame[] = []
  const value = (path: (string | number)[]): void => {
    ws()
    const c = raw[i]
    if (c === '"') {
      const [s, e] = str()
      out.push({ path, start: s, end: e, value: decode(s, e) })
    } else if (c === '{') {
      i++
      stack.push({ kind: 'obj', path, index: 0 })
    } else if (c === '[') {
      i++
      stack.push({ kind: 'arr', path, index: 0 })
    } else {
      const s = i
      while (i < n && !',]} \n\r\t'.includes(raw[i]!)) i++
      if (i === s) throw new JsonShapeError(`unexpected ${c === undefined ? 'end of input' : JSON.stringify(c)} at ${i}`)
    }
  }
  value([])
  let guard = 0
  while (stack.length > 0) {
    if (++guard > n * 4 + 16) throw new JsonShapeError('walk did not terminate')
    const top = stack[stack.length - 1]!
    ws()
    const c = raw[i]
    if (top.kind === 'obj') {
      if (c === '}') {
        i++
        stack.pop()
        continue
      }
      if (top.index > 0) {
        if (c !== ',') throw new JsonShapeError(`expected , at ${i}`)
        i++
        ws()
      }
      if (raw[i] !== '"') throw new JsonShapeError(`expected key at ${i}`)
      const [ks, ke] = str()
      const key = decode(ks, ke)
      ws()
      if (raw[i] !== ':') throw new JsonShapeError(`expected : at ${i}`)
      i++
      top.index++
      value([...top.path, key])
    } else {
      if (c === ']') {
        i++
        stack.pop()
        continue
      }
      if (top.index > 0) {
        if (c !== ',') throw new JsonShapeError(`expected , at ${i}`)
        i++
      }
      value([...top.path, top.index++])
    }
  }
  ws()
  if (i !== n) throw new JsonShapeError(`trailing data at ${i}`)
  return out
}

/** Replaces string tokens: each edit names a leaf span and the new decoded value. */
export function rewriteStrings(raw: string, edits: readonly { start: number; end: number; value: string }[]): string {
  if (edits.length === 0) return raw
  const sorted = [...edits].sort((a, b) => a.start - b.start)
  let out = ''
  let pos = 0
  for (const e of sorted) {
    out += raw.slice(pos, e.start) + JSON.stringify(e.value)
    pos = e.end
  }
  return out + raw.slice(pos)
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/
/** `messages[0].content[1].text`; keys that are not identifiers are quoted: `metadata["x-y"]`. */
export function formatPath(path: JsonPath): string {
  let s = ''
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`
    else if (IDENT.test(p)) s += s ? `.${p}` : p
    else s += `[${JSON.stringify(p)}]`
  }
  return s || '$'
}

export function pathKey(path: JsonPath): string {
  return JSON.stringify(path)
}

/** Sets a value at a path in a plain JSON structure (mutates). */
export function setAtPath(root: unknown, path: JsonPath, value: unknown): void {
  let cur = root as Record<string | number, unknown>
  for (let k = 0; k < path.length - 1; k++) cur = cur[path[k]!] as Record<string | number, unknown>
  cur[path[path.length - 1]!] = value
}

export function getAtPath(root: unknown, path: JsonPath): unknown {
  let cur = root
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string | number, unknown>)[p]
  }
  return cur
}

/**
 * Keys whose string values are protocol structure (enums, ids, model names),
 * never content: they are not scanned when a whole document is.
 */
export const STRUCTURAL_KEYS: ReadonlySet<string> = new Set([
  'model',
  'role',
  'type',
  'object',
  'id',
  'tool_call_id',
  'tool_use_id',
  'call_id',
  'item_id',
  'finish_reason',
  'stop_reason',
  'system_fingerprint',
  'service_tier',
  'reasoning_effort',
  'encoding_format',
  'media_type',
  'detail',
  'format',
  'status',
  'event',
  'signature',
])

/** Inline binary payloads (data URLs, base64 image sources) are not text. */
export function isBinaryPayload(value: string, path: JsonPath): boolean {
  if (value.startsWith('data:') && value.slice(0, 100).includes(';base64,')) return true
  const last = path[path.length - 1]
  return last === 'data' && path[path.length - 2] === 'source' && value.length > 256
}
