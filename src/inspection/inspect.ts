/**
 * Request body inspection: one decode and parse of the body, the provider
 * parse of its value, and (when redaction is on) the scan of its leaves.
 * The same function runs in this thread for small bodies and in a pool worker
 * for large ones (inspector.ts), so its input and output are plain,
 * structured-clone friendly data: the parsed request summary and only the
 * texts that matter to redaction (with detections or placeholder-shaped text).
 */
import type { ErrorCode } from '../errors.ts'
import { GateError } from '../errors.ts'
import { parseJsonDocument, type JsonDocument, type JsonLimits } from '../json/document.ts'
import { modelApiFor } from '../providers/apis/index.ts'
import { parseProviderRequest } from '../providers/parse.ts'
import { measureInput } from '../quotas/measure.ts'
import type { ApiRoute } from '../providers/routes.ts'
import type { ParsedRequest } from '../providers/types.ts'
import { scanLeaves, type DocumentScan } from '../redaction/document.ts'
import type { RedactionEngine } from '../redaction/engine.ts'
import { applyEdits } from '../redaction/placeholders.ts'
import type { ScanSubject } from '../redaction/types.ts'

export interface InspectionJob {
  /** The (decoded) request body as received. */
  readonly body: Uint8Array
  readonly route: ApiRoute
  readonly providerName: string
  /** Scan the leaves for redaction (redaction is on). */
  readonly scan: boolean
  readonly subject: ScanSubject | undefined
  readonly limits: JsonLimits
  /** Date.now() after which the work stops with MG_TIMEOUT. */
  readonly deadline: number
  /**
   * Measure the input for quotas (quotas/measure.ts): `chars` counts
   * characters, `tokens` also counts OpenAI-family bodies with gpt-tokenizer.
   * Absent: no measure (no quota rule limits tokens).
   */
  readonly measure?: 'chars' | 'tokens'
}

/** A refusal as plain data (a GateError does not survive the trip from a worker). */
export interface InspectionRefusal {
  readonly code: ErrorCode
  readonly details: Readonly<Record<string, unknown>>
  readonly internal: string | undefined
}

export type InspectionOutcome =
  | { readonly ok: true; readonly request: ParsedRequest; readonly scan: DocumentScan | undefined }
  | { readonly ok: false; readonly refusal: InspectionRefusal }

/**
 * Inspects a request body. Refusals (malformed, too deep, too complex,
 * duplicate keys, invalid for the API, out of time) come back as data; any
 * other failure throws.
 */
export function inspectRequestBody(job: InspectionJob, engine: RedactionEngine | undefined): InspectionOutcome {
  try {
    if (Date.now() > job.deadline) throw new GateError('MG_TIMEOUT', { internal: 'body inspection started after its deadline' })
    const doc = parseJsonDocument(job.body, { ...job.limits, duplicateKeys: 'refuse' })
    const parsed = parseProviderRequest(job.route, doc.value, job.providerName)
    const modelSpan = topLevelModelSpan(doc)
    const measured = job.measure === undefined ? undefined : measureInput(doc, job.measure === 'tokens' && job.route.kind !== 'anthropic')
    const usage = modelApiFor(job.route)?.streamUsage?.of(doc, parsed.stream)
    const request = modelSpan || measured || usage ? Object.freeze({ ...parsed, ...(modelSpan ? { modelSpan } : {}), ...(measured ? { input: measured } : {}), ...(usage ? { streamUsage: usage } : {}) }) : parsed
    if (!job.scan) return { ok: true, request, scan: undefined }
    if (!engine) throw new Error('body inspection asked to scan without a redaction engine')
    return { ok: true, request, scan: scanLeaves(engine, doc, job.subject, job.deadline) }
  } catch (err) {
    if (!(err instanceof GateError)) throw err
    return { ok: false, refusal: { code: err.code, details: { ...masked(err.details, engine, job.subject) }, internal: err.internal === undefined ? undefined : maskText(err.internal, engine, job.subject) } }
  }
}

/** The span of the body's top-level `"model": "…"` string value (the alias rewrite replaces it). */
function topLevelModelSpan(doc: JsonDocument): { start: number; end: number } | undefined {
  for (const leaf of doc.leaves) {
    if (leaf.kind === 'string' && leaf.key === 'model' && leaf.parent !== undefined && leaf.parent.parent === undefined && leaf.parent.kind === 'object') {
      return { start: leaf.start, end: leaf.end }
    }
  }
  return undefined
}

/** The GateError for a refusal that came back as data. */
export function refusalError(r: InspectionRefusal): GateError {
  return new GateError(r.code, { details: { ...r.details }, ...(r.internal !== undefined ? { internal: r.internal } : {}) })
}

/**
 * A refusal names a field (a duplicate key's path): keys are the caller's
 * text and may hold a secret, which must not reach the error body, the log
 * or the audit trail. Detected data in it is replaced by its label.
 */
function masked(details: Readonly<Record<string, unknown>>, engine: RedactionEngine | undefined, subject: ScanSubject | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = { ...details }
  if (typeof out.field === 'string') out.field = maskText(out.field, engine, subject)
  return out
}

function maskText(text: string, engine: RedactionEngine | undefined, subject: ScanSubject | undefined): string {
  if (!engine || text.length === 0) return text
  const found = engine.scanner.scan(text, { subject })
  return found.length === 0 ? text : applyEdits(text, found.map((d) => ({ start: d.start, end: d.end, text: `[${d.label}]` })))
}
