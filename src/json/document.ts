/**
 * The JSON document parser: a body is decoded and parsed once, and that one
 * pass yields everything later stages need.
 *
 * - `value`: the JSON value exactly as `JSON.parse` builds it (an own
 *   `"__proto__"` key becomes an own property, never the prototype; with
 *   duplicate keys allowed, the last one wins, at the first one's position).
 * - `leaves`: everything a receiving parser decodes as text — string values,
 *   object keys and number literals — in document order, each with its exact
 *   span in the raw text (quotes included), its decoded value (a number's raw
 *   text), and its parent container and key or index. Paths are built only
 *   when asked for (`leafPath`), by walking up the parents: parsing never
 *   copies a path.
 *
 * The parser is iterative (an explicit stack, no recursion) and linear in the
 * input. It stops at the first problem and reports it with a stable error
 * code, line and column:
 * - MG_BODY_MALFORMED: not JSON, or bytes that are not valid UTF-8 (upstream
 *   parsers repair invalid UTF-8 in different ways, so none is accepted);
 * - MG_BODY_TOO_DEEP: more nested containers than `maxDepth`;
 * - MG_BODY_TOO_COMPLEX: more values and keys than `maxValues` (every string,
 *   number, true/false/null, object, array and object key counts one);
 * - MG_BODY_DUPLICATE_KEY: an object names a key twice (unless
 *   `duplicateKeys: 'last'`): parsers disagree on which occurrence wins.
 * The limits are checked as the parser goes: it stops at the limit.
 */
import { GateError } from '../errors.ts'

/** A path into a JSON value, e.g. ['messages', 0, 'content', 1, 'text']. */
export type JsonPath = readonly (string | number)[]

/** An object or array of the document; leaves point at their container. */
export interface JsonContainer {
  readonly kind: 'object' | 'array'
  readonly parent: JsonContainer | undefined
  /** This container's key or index in its parent (undefined for the root). */
  readonly key: string | number | undefined
}

export type LeafKind = 'string' | 'key' | 'number'

/** A string value, an object key or a number literal. */
export interface JsonLeaf {
  readonly kind: LeafKind
  /** Span in the raw text: quotes included for strings and keys. */
  readonly start: number
  readonly end: number
  /** The decoded string or key; a number's raw text. */
  readonly value: string
  /** The containing object or array (undefined for a scalar root). */
  readonly parent: JsonContainer | undefined
  /** A value's key or index in `parent`; for a key, the key itself. */
  readonly key: string | number | undefined
}

export interface JsonDocument {
  /** The decoded text the spans point into (UTF-16 offsets). */
  readonly text: string
  readonly value: unknown
  readonly leaves: readonly JsonLeaf[]
}

export interface JsonLimits {
  /** Most containers open at once (the root counts one). */
  readonly maxDepth: number
  /** Most values and keys in the document. */
  readonly maxValues: number
}

export const DEFAULT_JSON_LIMITS: JsonLimits = Object.freeze({ maxDepth: 128, maxValues: 100_000 })

export interface ParseOptions extends Partial<JsonLimits> {
  /** `refuse` (default): a repeated key is an error. `last`: the last occurrence wins, as in JSON.parse. */
  readonly duplicateKeys?: 'refuse' | 'last'
}

type DocumentErrorCode = 'MG_BODY_MALFORMED' | 'MG_BODY_TOO_DEEP' | 'MG_BODY_TOO_COMPLEX' | 'MG_BODY_DUPLICATE_KEY'

/**
 * A refusal of the parser. `details` (shown to the caller) carry the line and
 * column (1-based; the column counts characters) and, by code, the problem,
 * the limit or the field.
 */
export class JsonDocumentError extends GateError {
  /** UTF-16 offset in the decoded text (for invalid UTF-8: the byte offset). */
  readonly offset: number
  readonly line: number
  readonly column: number
  constructor(code: DocumentErrorCode, offset: number, where: { line: number; column: number }, details: Record<string, unknown>, internal: string) {
    super(code, { details: { ...details, line: where.line, column: where.column }, internal: `${internal} at line ${where.line}, column ${where.column}` })
    this.name = 'JsonDocumentError'
    this.offset = offset
    this.line = where.line
    this.column = where.column
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Characters that end a run of plain string content: the closing quote, an escape, a control character. */
const STRING_STOP = /["\\\u0000-\u001f]/g

const ESCAPES: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

interface Frame {
  readonly container: JsonContainer
  readonly value: Record<string, unknown> | unknown[]
  count: number
}

/** Parses a JSON body (bytes are decoded as strict UTF-8). Throws JsonDocumentError. */
export function parseJsonDocument(input: Uint8Array | string, opts: ParseOptions = {}): JsonDocument {
  let text: string
  if (typeof input === 'string') text = input
  else {
    try {
      text = utf8.decode(input)
    } catch {
      const at = firstInvalidUtf8(input)
      throw new JsonDocumentError('MG_BODY_MALFORMED', at, bytePosition(input, at), { problem: 'the body is not valid UTF-8' }, `invalid UTF-8 at byte ${at}`)
    }
  }
  return new Parser(text, opts).run()
}

class Parser {
  readonly #text: string
  readonly #n: number
  readonly #maxDepth: number
  readonly #maxValues: number
  readonly #refuseDuplicates: boolean
  readonly #leaves: JsonLeaf[] = []
  readonly #stack: Frame[] = []
  #i = 0
  #values = 0

  constructor(text: string, opts: ParseOptions) {
    this.#text = text
    this.#n = text.length
    this.#maxDepth = opts.maxDepth ?? DEFAULT_JSON_LIMITS.maxDepth
    this.#maxValues = opts.maxValues ?? DEFAULT_JSON_LIMITS.maxValues
    this.#refuseDuplicates = (opts.duplicateKeys ?? 'refuse') === 'refuse'
  }

  run(): JsonDocument {
    const text = this.#text
    if (text.charCodeAt(0) === 0xfeff) this.#fail(0, 'a byte order mark is not allowed before JSON')
    this.#ws()
    let root = this.#value(undefined, undefined)
    if (root === OPENED) root = this.#stack[0]!.value
    const stack = this.#stack
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!
      this.#ws()
      const c = text.charCodeAt(this.#i)
      if (frame.container.kind === 'array') {
        if (c === 0x5d /* ] */) {
          this.#i++
          stack.pop()
          continue
        }
        if (frame.count > 0) {
          if (c !== 0x2c /* , */) this.#unexpected("',' or ']' after an array element")
          this.#i++
          this.#ws()
        }
        const index = frame.count++
        const v = this.#value(frame.container, index)
        ;(frame.value as unknown[]).push(v === OPENED ? stack[stack.length - 1]!.value : v)
        continue
      }
      // An object.
      if (c === 0x7d /* } */) {
        this.#i++
        stack.pop()
        continue
      }
      if (frame.count > 0) {
        if (c !== 0x2c) this.#unexpected("',' or '}' after an object member")
        this.#i++
        this.#ws()
      }
      if (text.charCodeAt(this.#i) !== 0x22) this.#unexpected('a string key')
      const keyStart = this.#i
      this.#count()
      const key = this.#string()
      const obj = frame.value as Record<string, unknown>
      if (Object.hasOwn(obj, key) && this.#refuseDuplicates) {
        const field = formatPath([...containerPath(frame.container), key])
        throw new JsonDocumentError('MG_BODY_DUPLICATE_KEY', keyStart, this.#position(keyStart), { field }, `duplicate key ${field || '$'}`)
      }
      this.#leaves.push({ kind: 'key', start: keyStart, end: this.#i, value: key, parent: frame.container, key })
      this.#ws()
      if (text.charCodeAt(this.#i) !== 0x3a /* : */) this.#unexpected("':' after a key")
      this.#i++
      this.#ws()
      frame.count++
      const v = this.#value(frame.container, key)
      setMember(obj, key, v === OPENED ? stack[stack.length - 1]!.value : v)
    }
    this.#ws()
    if (this.#i < this.#n) this.#fail(this.#i, 'unexpected data after the JSON value')
    return { text, value: root, leaves: this.#leaves }
  }

  /**
   * Reads one value at the current position. A scalar is returned; an object
   * or array is pushed on the stack (and attached by the caller) and OPENED
   * is returned.
   */
  #value(parent: JsonContainer | undefined, key: string | number | undefined): unknown {
    const text = this.#text
    const i = this.#i
    const c = text.charCodeAt(i)
    this.#count()
    switch (c) {
      case 0x22 /* " */: {
        const value = this.#string()
        this.#leaves.push({ kind: 'string', start: i, end: this.#i, value, parent, key })
        return value
      }
      case 0x7b /* { */:
      case 0x5b /* [ */: {
        if (this.#stack.length >= this.#maxDepth) {
          throw new JsonDocumentError('MG_BODY_TOO_DEEP', i, this.#position(i), { limit: this.#maxDepth }, `nesting deeper than ${this.#maxDepth}`)
        }
        this.#i++
        const container: JsonContainer = { kind: c === 0x7b ? 'object' : 'array', parent, key }
        this.#stack.push({ container, value: c === 0x7b ? {} : [], count: 0 })
        return OPENED
      }
      case 0x74 /* t */:
        return this.#literal('true', true)
      case 0x66 /* f */:
        return this.#literal('false', false)
      case 0x6e /* n */:
        return this.#literal('null', null)
      default:
        if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
          const raw = this.#number()
          this.#leaves.push({ kind: 'number', start: i, end: this.#i, value: raw, parent, key })
          return Number(raw)
        }
        return this.#unexpected('a value')
    }
  }

  /** Counts one value or key against the limit, at the current position. */
  #count(): void {
    if (++this.#values > this.#maxValues) {
      const i = this.#i
      throw new JsonDocumentError('MG_BODY_TOO_COMPLEX', i, this.#position(i), { limit: this.#maxValues }, `more than ${this.#maxValues} values and keys`)
    }
  }

  #literal(word: string, value: boolean | null): boolean | null {
    if (!this.#text.startsWith(word, this.#i)) this.#unexpected('a value')
    this.#i += word.length
    return value
  }

  /** Reads a number literal (JSON grammar) and returns its raw text. */
  #number(): string {
    const text = this.#text
    const start = this.#i
    let i = start
    if (text.charCodeAt(i) === 0x2d) i++
    const c0 = text.charCodeAt(i)
    if (c0 === 0x30) i++
    else if (c0 >= 0x31 && c0 <= 0x39) i = digits(text, i)
    else this.#fail(i, 'invalid number: a digit must follow the minus sign')
    if (text.charCodeAt(i) === 0x2e /* . */) {
      const d = digits(text, i + 1)
      if (d === i + 1) this.#fail(d, 'invalid number: a digit must follow the decimal point')
      i = d
    }
    const e = text.charCodeAt(i)
    if (e === 0x65 || e === 0x45) {
      i++
      const s = text.charCodeAt(i)
      if (s === 0x2b || s === 0x2d) i++
      const d = digits(text, i)
      if (d === i) this.#fail(d, 'invalid number: the exponent has no digits')
      i = d
    }
    this.#i = i
    return text.slice(start, i)
  }

  /** Reads a string token at the current position (a quote) and returns its decoded value. */
  #string(): string {
    const text = this.#text
    const start = this.#i
    let from = start + 1
    let decoded: string | undefined
    for (;;) {
      STRING_STOP.lastIndex = from
      const m = STRING_STOP.exec(text)
      if (m === null) return this.#fail(start, 'unterminated string')
      const j = m.index
      const c = text.charCodeAt(j)
      if (c === 0x22) {
        this.#i = j + 1
        return decoded === undefined ? text.slice(start + 1, j) : decoded + text.slice(from, j)
      }
      if (c !== 0x5c) return this.#fail(j, 'control character in a string (it must be escaped)')
      decoded = (decoded ?? '') + text.slice(from, j)
      const e = text[j + 1]
      if (e === 'u') {
        const hex = text.slice(j + 2, j + 6)
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) return this.#fail(j, 'invalid \\u escape (four hexadecimal digits must follow)')
        decoded += String.fromCharCode(parseInt(hex, 16))
        from = j + 6
      } else {
        const r = e === undefined ? undefined : ESCAPES[e]
        if (r === undefined) return this.#fail(j, 'invalid escape in a string')
        decoded += r
        from = j + 2
      }
    }
  }

  #ws(): void {
    const text = this.#text
    let i = this.#i
    for (;;) {
      const c = text.charCodeAt(i)
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++
      else break
    }
    this.#i = i
  }

  #unexpected(expected: string): never {
    const i = this.#i
    if (i >= this.#n) return this.#fail(i, `unexpected end of input (expected ${expected})`)
    const cp = this.#text.codePointAt(i)!
    const shown = cp >= 0x20 && cp < 0x7f ? `'${String.fromCodePoint(cp)}'` : `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`
    return this.#fail(i, `unexpected character ${shown} (expected ${expected})`)
  }

  #fail(at: number, problem: string): never {
    throw new JsonDocumentError('MG_BODY_MALFORMED', at, this.#position(at), { problem }, problem)
  }

  #position(at: number): { line: number; column: number } {
    return textPosition(this.#text, at)
  }
}

/** Marks a value that opened a container (pushed on the stack) rather than a scalar. */
const OPENED = Symbol('opened')

function digits(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c >= 0x30 && c <= 0x39) i++
    else return i
  }
}

/** Sets an own property, as JSON.parse does: `__proto__` is data, not the prototype. */
function setMember(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true })
  else obj[key] = value
}

/** 1-based line and column (in characters) of a UTF-16 offset. */
export function textPosition(text: string, at: number): { line: number; column: number } {
  let line = 1
  let lineStart = 0
  for (let k = text.indexOf('\n'); k !== -1 && k < at; k = text.indexOf('\n', k + 1)) {
    line++
    lineStart = k + 1
  }
  let column = 1
  for (let k = lineStart; k < at; k++) {
    const c = text.charCodeAt(k)
    // A surrogate pair is one character.
    if (c >= 0xd800 && c <= 0xdbff && k + 1 < at) {
      const d = text.charCodeAt(k + 1)
      if (d >= 0xdc00 && d <= 0xdfff) k++
    }
    column++
  }
  return { line, column }
}

/** 1-based line and column (in characters) of a byte offset in UTF-8 bytes. */
function bytePosition(bytes: Uint8Array, at: number): { line: number; column: number } {
  let line = 1
  let column = 1
  for (let k = 0; k < at; k++) {
    const b = bytes[k]!
    if (b === 0x0a) {
      line++
      column = 1
    } else if ((b & 0xc0) !== 0x80) column++
  }
  return { line, column }
}

/** Offset of the first byte that is not part of a well-formed UTF-8 sequence. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length
  let i = 0
  while (i < n) {
    const b = bytes[i]!
    if (b < 0x80) {
      i++
      continue
    }
    let len: number
    let lo = 0x80
    let hi = 0xbf
    if (b >= 0xc2 && b <= 0xdf) len = 2
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3
      if (b === 0xe0) lo = 0xa0
      else if (b === 0xed) hi = 0x9f // no surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4
      if (b === 0xf0) lo = 0x90
      else if (b === 0xf4) hi = 0x8f
    } else return i
    if (i + len > n) return i
    const b1 = bytes[i + 1]!
    if (b1 < lo || b1 > hi) return i
    for (let k = 2; k < len; k++) if ((bytes[i + k]! & 0xc0) !== 0x80) return i
    i += len
  }
  return n
}

/** The path of a container from the root. */
export function containerPath(c: JsonContainer | undefined): (string | number)[] {
  const out: (string | number)[] = []
  for (let x = c; x !== undefined && x.key !== undefined; x = x.parent) out.push(x.key)
  return out.reverse()
}

/** The path of a leaf: a value's own path; for a key, the path of its member. */
export function leafPath(leaf: JsonLeaf): (string | number)[] {
  const p = containerPath(leaf.parent)
  if (leaf.key !== undefined) p.push(leaf.key)
  return p
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/
/**
 * `messages[0].content[1].text`; keys that are not identifiers are quoted:
 * `metadata["x-y"]`; the root is `$`. Keys for which `hide` is true are
 * written `[*]`.
 */
export function formatPath(path: JsonPath, hide?: (key: string) => boolean): string {
  let s = ''
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`
    else if (hide?.(p)) s += '[*]'
    else if (IDENT.test(p)) s += s ? `.${p}` : p
    else s += `[${JSON.stringify(p)}]`
  }
  return s || '$'
}
