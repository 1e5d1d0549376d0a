/**
 * Scanning and rewriting a whole body (a request, or a buffered response).
 *
 * A JSON body is scanned leaf by leaf, in decoded form: every string value,
 * every object key and every number literal's raw text goes through the
 * scanner. Nothing is left out by its key name or position; the only
 * exemptions are values positively identified as not free text (exempt.ts):
 * an enumerated field holding one of its own values, and a base64 payload
 * whose bytes are an image or audio format. A body that is not JSON is
 * scanned as one text.
 *
 * A rewrite replaces only the spans of changed leaves, re-encoded with
 * JSON.stringify, so the rest of the body stays byte for byte what the caller
 * sent and the result is valid JSON whatever the new text holds. A redacted
 * key is written as the redacted key; a redacted number literal becomes a
 * JSON string holding the redacted text (`4111111111111111` →
 * `"[CREDIT_CARD_1]"`).
 */
import { GateError } from '../errors.ts'
import { containerPath, DEFAULT_JSON_LIMITS, formatPath, JsonDocumentError, parseJsonDocument, type JsonDocument, type JsonLeaf, type JsonLimits, type LeafKind } from '../json/document.ts'
import type { RedactionEngine } from './engine.ts'
import { binaryPayloadKind, isEnumeratedValue } from './exempt.ts'
import { applyEdits, findPlaceholders, type Edit, type PlaceholderBook } from './placeholders.ts'
import type { Detection, RedactionAction, ScanSubject } from './types.ts'

/** A scanned text that matters to the rewrite: it has detections, or placeholder-shaped text. */
export interface TextSite {
  /** What the text is in the body: a string value, an object key, a number literal, or a whole non-JSON body. */
  readonly kind: LeafKind | 'text'
  /**
   * Printable location for findings: a JSON path, or `$body` for a non-JSON
   * body. An object key is written `<key>` after its object's path
   * (`metadata.<key>`); a key that itself holds detected data is never
   * printed: in the paths below it, it reads `[*]` (`metadata[*].note`).
   */
  readonly location: string
  /** Span of the token in the raw text (JSON bodies only). */
  readonly span: { readonly start: number; readonly end: number } | undefined
  /** The decoded text that was scanned (a number's raw text). */
  readonly value: string
  readonly detections: readonly Detection[]
}

export interface DocumentScan {
  readonly mode: 'json' | 'text' | 'empty'
  /** The texts with detections or placeholder-shaped text, in document order. Structured-clone friendly. */
  readonly sites: readonly TextSite[]
  /** How many texts were scanned. */
  readonly scanned: number
}

export interface ScanDocumentOptions {
  /** Scan the body as one text even when it is JSON (`modelgate redact --format text`). */
  readonly text?: boolean
  /**
   * `request`: duplicate keys and the limits are refused (JsonDocumentError).
   * `response` (default): duplicate keys are scanned (every occurrence), no limits apply.
   * In both, a body that is not JSON is scanned as one text.
   */
  readonly direction?: 'request' | 'response'
  /** Limits for requests (default DEFAULT_JSON_LIMITS). */
  readonly limits?: JsonLimits
  /** Date.now() after which the scan stops with MG_TIMEOUT. */
  readonly deadline?: number
}

/** Texts up to this length are scanned once per document; repeats reuse the result. */
const MEMO_MAX_LENGTH = 256
/**
 * Short texts the scanner found nothing in are remembered across documents:
 * object keys and the fixed values of the APIs ("role", "assistant",
 * "chat.completion", model names) recur in every body, and each scan has a
 * fixed cost of its own. Only texts without detections are kept, so no value
 * the scanner found stays in memory; the memory is bounded (emptied when full)
 * and belongs to one scanner (with scoped custom detectors, to one caller).
 */
const CLEAN_MAX_LENGTH = 64
const CLEAN_MAX_ENTRIES = 4096
const NO_DETECTIONS: readonly Detection[] = Object.freeze([])

interface CleanTexts {
  /** True when some detector applies to some callers only: results depend on the caller. */
  readonly scoped: boolean
  readonly texts: Map<string, true>
}
const cleanTexts = new WeakMap<RedactionEngine['scanner'], CleanTexts>()

function cleanTextsOf(scanner: RedactionEngine['scanner']): CleanTexts {
  let c = cleanTexts.get(scanner)
  if (!c) {
    const scoped = scanner.detectors.some((d) => d.scope !== undefined && (d.scope.namespaces.length > 0 || d.scope.spiffeIdPrefixes.length > 0))
    cleanTexts.set(scanner, (c = { scoped, texts: new Map() }))
  }
  return c
}

/** Scans one text, answering short texts already known to be clean from memory. */
function scanRemembered(engine: RedactionEngine, clean: CleanTexts, value: string, subject: ScanSubject | undefined): Detection[] {
  if (value.length > CLEAN_MAX_LENGTH) return scanText(engine, value, subject)
  const key = clean.scoped ? `${subject?.namespace ?? ''}\u0000${subject?.spiffeId ?? ''}\u0000${value}` : value
  if (clean.texts.has(key)) return NO_DETECTIONS as Detection[]
  const found = scanText(engine, value, subject)
  if (found.length === 0) {
    if (clean.texts.size >= CLEAN_MAX_ENTRIES) clean.texts.clear()
    clean.texts.set(key, true)
  }
  return found
}
/** Leaves scanned between two deadline checks. */
const DEADLINE_EVERY = 512

/** Scans a body: JSON leaf by leaf, anything else as one text. */
export function scanDocument(engine: RedactionEngine, body: Buffer, subject: ScanSubject | undefined, opts: ScanDocumentOptions = {}): DocumentScan {
  if (body.length === 0) return { mode: 'empty', sites: [], scanned: 0 }
  if (!opts.text) {
    const request = opts.direction === 'request'
    let doc: JsonDocument | undefined
    try {
      doc = parseJsonDocument(
        body,
        request ? { ...(opts.limits ?? DEFAULT_JSON_LIMITS), duplicateKeys: 'refuse' } : { maxDepth: Infinity, maxValues: Infinity, duplicateKeys: 'last' },
      )
    } catch (err) {
      // Not JSON: scanned as one text below. Any other refusal stands.
      if (!(err instanceof JsonDocumentError) || err.code !== 'MG_BODY_MALFORMED') throw err
    }
    if (doc) return scanLeaves(engine, doc, subject, opts.deadline)
  }
  const raw = body.toString('utf8')
  return { mode: 'text', sites: textSites(engine, raw, '$body', subject), scanned: 1 }
}

/** Scans every leaf of a parsed document (except the exempt ones). */
export function scanLeaves(engine: RedactionEngine, doc: JsonDocument, subject: ScanSubject | undefined, deadline?: number): DocumentScan {
  const scanner = engine.scanner
  const clean = cleanTextsOf(scanner)
  const memo = new Map<string, Detection[]>()
  const found: { leaf: JsonLeaf; detections: Detection[] }[] = []
  /** Keys holding detected data: never printed in locations. */
  const maskedKeys = new Set<string>()
  let scanned = 0
  const leaves = doc.leaves
  for (let k = 0; k < leaves.length; k++) {
    if (deadline !== undefined && k % DEADLINE_EVERY === 0 && Date.now() > deadline) {
      throw new GateError('MG_TIMEOUT', { internal: `body scan stopped at its deadline after ${k} of ${leaves.length} texts` })
    }
    const leaf = leaves[k]!
    const value = leaf.value
    if (value.length === 0) continue
    if (leaf.kind === 'string' && (isEnumeratedValue(leaf.key, value) || binaryPayloadKind(value) !== undefined)) continue
    scanned++
    let detections: Detection[]
    if (value.length <= MEMO_MAX_LENGTH) {
      const known = memo.get(value)
      if (known === undefined) {
        detections = scanRemembered(engine, clean, value, subject)
        memo.set(value, detections)
      } else detections = known.length === 0 ? known : known.map((d) => ({ ...d })) // one object per occurrence
    } else detections = scanText(engine, value, subject)
    if (detections.length > 0) {
      if (leaf.kind === 'key') maskedKeys.add(value)
      found.push({ leaf, detections })
    } else if (value.indexOf('[') >= 0 && findPlaceholders(value).length > 0) found.push({ leaf, detections })
  }
  const sites: TextSite[] = found.map(({ leaf, detections }) => ({
    kind: leaf.kind,
    location: leafLocation(leaf, maskedKeys),
    span: { start: leaf.start, end: leaf.end },
    value: leaf.value,
    detections,
  }))
  return { mode: 'json', sites, scanned }
}

/** How deep JSON held in strings is read: arguments holding JSON that holds JSON. */
const MAX_ESCAPE_LEVELS = 2
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }

/**
 * A text's JSON escapes decoded (`\"`, `\\`, `\n`, `\u0067`…), as the reader of
 * JSON held in a string (tool arguments, structured output) decodes it, with
 * the span in `text` of each decoded unit. Undefined when nothing is escaped.
 */
export function unescapedView(text: string): { readonly view: string; readonly starts: readonly number[]; readonly ends: readonly number[] } | undefined {
  if (text.indexOf('\\') < 0) return undefined
  let view = ''
  const starts: number[] = []
  const ends: number[] = []
  let changed = false
  for (let i = 0; i < text.length; ) {
    if (text.charCodeAt(i) === 0x5c && i + 1 < text.length) {
      const simple = SIMPLE_ESCAPES[text[i + 1]!]
      if (simple !== undefined) {
        view += simple
        starts.push(i)
        ends.push(i + 2)
        i += 2
        changed = true
        continue
      }
      if (text[i + 1] === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
        view += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16))
        starts.push(i)
        ends.push(i + 6)
        i += 6
        changed = true
        continue
      }
    }
    view += text[i]
    starts.push(i)
    ends.push(i + 1)
    i++
  }
  return changed ? { view, starts, ends } : undefined
}

/**
 * Scans a leaf's text, and, when it carries JSON escapes, the text as a JSON
 * reader decodes it (two levels deep): a value written `api_key = \"…\"` inside
 * tool arguments is found, and redacted in place of its escaped span.
 */
function scanText(engine: RedactionEngine, text: string, subject: ScanSubject | undefined): Detection[] {
  const found = engine.scanner.scan(text, { subject })
  let current = text
  let starts: readonly number[] | undefined
  let ends: readonly number[] | undefined
  for (let level = 0; level < MAX_ESCAPE_LEVELS; level++) {
    const u = unescapedView(current)
    if (!u) break
    // Offsets of this level's units in the original text.
    const s0 = starts
    const e0 = ends
    starts = u.starts.map((x) => (s0 ? s0[x]! : x))
    ends = u.ends.map((x) => (e0 ? e0[x - 1]! : x))
    current = u.view
    for (const d of engine.scanner.scan(current, { subject })) {
      const start = starts[d.start]!
      const end = ends[d.end - 1]!
      if (found.some((f) => f.start < end && start < f.end)) continue
      found.push({ ...d, start, end, value: text.slice(start, end) })
    }
  }
  return found.sort((a, b) => a.start - b.start)
}

function textSites(engine: RedactionEngine, raw: string, location: string, subject: ScanSubject | undefined): TextSite[] {
  const detections = engine.scanner.scan(raw, { subject })
  if (detections.length === 0 && findPlaceholders(raw).length === 0) return []
  return [{ kind: 'text', location, span: undefined, value: raw, detections }]
}

/** A leaf's printable location; keys that hold detected data are masked. */
export function leafLocation(leaf: JsonLeaf, maskedKeys: ReadonlySet<string>): string {
  const hide = (key: string) => maskedKeys.has(key)
  const path = containerPath(leaf.parent)
  if (leaf.kind === 'key') return path.length === 0 ? '<key>' : `${formatPath(path, hide)}.<key>`
  if (leaf.key !== undefined) path.push(leaf.key)
  return formatPath(path, hide)
}

/** The rewritten text, when anything changed. */
export type RewriteResult = { readonly changed: false } | { readonly changed: true; readonly raw: string }

/**
 * Rewrites a scanned body (`body`: its bytes, or its decoded text): detections
 * whose action is `redact` become placeholders, and (when `restore`)
 * placeholders the book handed out become the original values again.
 * `extra` are edits other stages asked for (spans of a JSON body, e.g. the
 * model alias); a leaf they replace is not rewritten again.
 */
export function rewriteDocument(
  scan: DocumentScan,
  body: Buffer | string,
  actionOf: (site: TextSite, d: Detection) => RedactionAction,
  book: PlaceholderBook,
  restore: boolean,
  extra: readonly Edit[] = [],
): RewriteResult {
  const edits: Edit[] = [...(scan.mode === 'json' ? extra : [])]
  for (const site of scan.sites) {
    if (site.span && extra.some((e) => e.start < site.span!.end && site.span!.start < e.end)) continue
    const siteEditList = siteEdits(site.value, site.detections, (d) => actionOf(site, d), book, restore)
    if (siteEditList.length === 0) continue
    const value = applyEdits(site.value, siteEditList)
    if (scan.mode === 'text') return { raw: value, changed: true }
    // Strings and keys are re-encoded; a number literal becomes a string holding the redacted text.
    edits.push({ start: site.span!.start, end: site.span!.end, text: JSON.stringify(value) })
  }
  if (edits.length === 0) return { changed: false }
  return { changed: true, raw: applyEdits(typeof body === 'string' ? body : body.toString('utf8'), edits) }
}

/**
 * The edits for one text: placeholders for redacted detections and, when
 * restoring, original values for known placeholders. Restoration wins over an
 * overlapping detection (the provider only ever saw the placeholder).
 */
export function siteEdits(
  text: string,
  detections: readonly Detection[],
  actionOf: (d: Detection) => RedactionAction,
  book: PlaceholderBook,
  restore: boolean,
): Edit[] {
  const edits: Edit[] = []
  const restored = restore && book.size > 0 ? findPlaceholders(text).filter((p) => book.original(p.text) !== undefined) : []
  for (const p of restored) edits.push({ start: p.start, end: p.end, text: book.original(p.text)! })
  for (const d of detections) {
    if (actionOf(d) !== 'redact') continue
    if (restored.some((p) => d.start < p.end && p.start < d.end)) continue
    edits.push({ start: d.start, end: d.end, text: book.placeholder(d.label, d.value) })
  }
  return edits
}

/** Placeholder-shaped strings the caller wrote: a book for this body never hands them out. */
export function reservedPlaceholders(scan: DocumentScan): string[] {
  const out: string[] = []
  for (const s of scan.sites) for (const p of findPlaceholders(s.value)) out.push(p.text)
  return out
}
