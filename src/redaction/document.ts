/**
 * Scanning and rewriting a whole body (a request, or a buffered response):
 * JSON bodies string by string, anything else as one text.
 */
import type { JsonPath, ParsedRequest } from '../providers/types.ts'
import type { RedactionEngine } from './engine.ts'
import { formatPath, isBinaryPayload, JsonShapeError, pathKey, rewriteStrings, STRUCTURAL_KEYS, stringLeaves } from './json.ts'
import { applyEdits, findPlaceholders, type Edit, type PlaceholderBook } from './placeholders.ts'
import type { Detection, RedactionAction, ScanSubject } from './types.ts'

/** One scanned text with what was found in it. */
export interface TextSite {
  readonly path: JsonPath
  /** Printable location for findings: a JSON path, or `$body` for a non-JSON body. */
  readonly location: string
  /** Span of the JSON string token in the raw text (JSON mode only). */
  readonly span: { readonly start: number; readonly end: number } | undefined
  readonly value: string
  readonly detections: readonly Detection[]
}

export interface DocumentScan {
  readonly mode: 'json' | 'text' | 'empty'
  readonly raw: string
  /** Every scanned text, with or without detections. */
  readonly sites: readonly TextSite[]
}

/**
 * Scans a body. With a ParsedRequest, the texts it lists are scanned, plus
 * (scanAllStrings) every other non-structural string; without one, a JSON body
 * is scanned string by string and anything else as a single text.
 */
export function scanDocument(
  engine: RedactionEngine,
  body: Buffer,
  parsed: ParsedRequest | undefined,
  subject: ScanSubject | undefined,
  opts: { text?: boolean } = {},
): DocumentScan {
  if (body.length === 0) return { mode: 'empty', raw: '', sites: [] }
  const raw = body.toString('utf8')
  let leaves
  if (!opts.text) {
    try {
      leaves = stringLeaves(raw)
    } catch (err) {
      if (!(err instanceof JsonShapeError) && !(err instanceof SyntaxError)) throw err
      leaves = undefined
    }
  }
  const scanner = engine.scanner
  if (!leaves) {
    return { mode: 'text', raw, sites: [{ path: [], location: '$body', span: undefined, value: raw, detections: scanner.scan(raw, { subject }) }] }
  }
  const listed = parsed ? new Set(parsed.texts.map((t) => pathKey(t.path))) : undefined
  const all = !parsed || engine.config.scanAllStrings
  const sites: TextSite[] = []
  for (const leaf of leaves) {
    if (leaf.value.length === 0 || isBinaryPayload(leaf.value, leaf.path)) continue
    const inListed = listed !== undefined && coveredBy(leaf.path, listed)
    if (!inListed) {
      if (!all) continue
      const last = leaf.path[leaf.path.length - 1]
      if (typeof last === 'string' && STRUCTURAL_KEYS.has(last)) continue
    }
    sites.push({
      path: leaf.path,
      location: formatPath(leaf.path),
      span: { start: leaf.start, end: leaf.end },
      value: leaf.value,
      detections: scanner.scan(leaf.value, { subject }),
    })
  }
  return { mode: 'json', raw, sites }
}

/** True when the path or one of its ancestors is listed. */
function coveredBy(path: JsonPath, listed: ReadonlySet<string>): boolean {
  for (let k = path.length; k >= 1; k--) if (listed.has(pathKey(path.slice(0, k)))) return true
  return false
}

export interface RewriteResult {
  readonly raw: string
  readonly changed: boolean
  /** New value per rewritten JSON path (for keeping a parsed view in step). */
  readonly changes: readonly { readonly path: JsonPath; readonly value: string }[]
}

/**
 * Rewrites a scanned body: detections whose action is `redact` become
 * placeholders, and (when `restore`) placeholders the book handed out become
 * the original values again. Detections are decided by `actionOf`.
 */
export function rewriteDocument(
  scan: DocumentScan,
  actionOf: (site: TextSite, d: Detection) => RedactionAction,
  book: PlaceholderBook,
  restore: boolean,
): RewriteResult {
  const stringEdits: { start: number; end: number; value: string }[] = []
  const changes: { path: JsonPath; value: string }[] = []
  let textResult: string | undefined
  for (const site of scan.sites) {
    const edits = siteEdits(site.value, site.detections, (d) => actionOf(site, d), book, restore)
    if (edits.length === 0) continue
    const value = applyEdits(site.value, edits)
    if (scan.mode === 'text') textResult = value
    else {
      stringEdits.push({ start: site.span!.start, end: site.span!.end, value })
      changes.push({ path: site.path, value })
    }
  }
  if (scan.mode === 'text') return { raw: textResult ?? scan.raw, changed: textResult !== undefined, changes }
  if (stringEdits.length === 0) return { raw: scan.raw, changed: false, changes }
  return { raw: rewriteStrings(scan.raw, stringEdits), changed: true, changes }
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
