/**
 * The redaction stages.
 *
 * - `redaction-scan` (before policy): scans every text of the request and
 *   records findings, so the data classes reach the Cedar context.
 * - `redaction-apply` (after policy): decides each class (allow, redact,
 *   block), rewrites the body JSON-aware, and redacts responses: buffered
 *   JSON/text bodies whole, SSE streams event by event with a bounded
 *   hold-back. Compressed responses are decoded first, or refused.
 *
 * Findings carry detector, class, location, offsets and a salted hash; values
 * stay in memory for the request's lifetime only and are never logged.
 */
import type { RedactionConfig } from '../config/sections/redaction.ts'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Finding, RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import type { TextField } from '../providers/types.ts'
import { rewriteDocument, scanDocument, type DocumentScan, type TextSite } from './document.ts'
import { compileRedaction, type RedactionEngine } from './engine.ts'
import { findPlaceholders, PlaceholderBook } from './placeholders.ts'
import { createResponseRedaction } from './response.ts'
import type { Detection, RedactionAction, ScanSubject } from './types.ts'

export interface RedactionStageDeps {
  readonly logger: Logger
  /** True when policy lets this request send data of `dataClass` unredacted. */
  readonly permitsUnredacted?: (ctx: RequestContext, dataClass: string) => boolean
}

export interface RedactionStages {
  readonly scan: Stage
  readonly apply: Stage
  /** The compiled engine (shared with `modelgate redact`). */
  readonly engine: RedactionEngine
}

/** Findings recorded per request; beyond this only the data classes are kept. */
export const MAX_FINDINGS = 1000

const REQUEST = Symbol('redaction.request')
const TEXT_BODY = Symbol('redaction.text-body')

/** Scan the request body as one text even when it parses as JSON (`modelgate redact --format text`). */
export function treatBodyAsText(ctx: RequestContext): void {
  ctx.local(TEXT_BODY, () => true)
}
interface RequestState {
  scan: DocumentScan | undefined
  /** Index in ctx.findings of each recorded request detection. */
  readonly findingIndex: Map<Detection, number>
  book: PlaceholderBook | undefined
  restore: boolean
  dropped: number
}

/**
 * Builds both stages from the redaction configuration. Everything is compiled
 * here, once; a configuration error throws a ConfigError listing every problem.
 */
export function createRedactionStages(config: RedactionConfig, deps: RedactionStageDeps, engine: RedactionEngine = compileRedaction(config)): RedactionStages {
  const { logger } = deps
  const requestState = (ctx: RequestContext) =>
    ctx.local<RequestState>(REQUEST, () => ({ scan: undefined, findingIndex: new Map(), book: undefined, restore: false, dropped: 0 }))

  const record = (ctx: RequestContext, f: Finding): number | undefined => {
    if (ctx.findings.length >= MAX_FINDINGS) {
      ctx.dataClasses.add(f.dataClass)
      requestState(ctx).dropped++
      return undefined
    }
    ctx.addFinding(f)
    return ctx.findings.length - 1
  }

  const response = createResponseRedaction({
    engine,
    logger,
    placeholders(ctx) {
      const st = requestState(ctx)
      st.book ??= new PlaceholderBook()
      return { book: st.book, restore: st.restore }
    },
    record: (ctx, f) => void record(ctx, f),
    subject: subjectOf,
  })

  const scan: Stage = {
    name: 'redaction-scan',
    requestBody(ctx) {
      if (!config.enabled) return
      const st = requestState(ctx)
      const doc = scanDocument(engine, ctx.requestBody, ctx.request, subjectOf(ctx), { text: ctx.local(TEXT_BODY, () => false) })
      st.scan = doc
      for (const site of doc.sites) {
        for (const d of site.detections) {
          const idx = record(ctx, {
            detector: d.detector,
            dataClass: d.dataClass,
            confidence: d.confidence,
            direction: 'request',
            location: site.location,
            start: d.start,
            length: d.end - d.start,
            hash: engine.hash(d.value),
            // Nothing is sent until redaction-apply decides; a request refused before then withheld the value.
            action: 'withheld',
          })
          if (idx !== undefined) st.findingIndex.set(d, idx)
        }
      }
    },
  }

  const apply: Stage = {
    name: 'redaction-apply',
    requestBody(ctx) {
      if (!config.enabled) return
      const st = requestState(ctx)
      st.restore = engine.restoreFor(ctx.request?.providerName)
      const doc = st.scan
      if (!doc || !doc.sites.some((s) => s.detections.length > 0)) return
      // One decision per class (and detector override), policy permission last.
      const permitted = new Map<string, boolean>()
      const decide = (d: Detection): RedactionAction => {
        let p = permitted.get(d.dataClass)
        if (p === undefined) {
          p = deps.permitsUnredacted?.(ctx, d.dataClass) === true
          permitted.set(d.dataClass, p)
        }
        return p ? 'allow' : engine.action('request', d.dataClass, d.detector)
      }
      const blocked = new Set<string>()
      for (const site of doc.sites) {
        for (const d of site.detections) {
          const a = decide(d)
          if (a === 'block') blocked.add(d.dataClass)
          const idx = st.findingIndex.get(d)
          if (idx !== undefined && ctx.findings[idx]!.action !== a) ctx.findings[idx] = { ...ctx.findings[idx]!, action: a }
        }
      }
      if (blocked.size > 0) {
        // The request is refused: values of the other classes were not sent either.
        for (const idx of st.findingIndex.values()) if (ctx.findings[idx]!.action !== 'block') ctx.findings[idx] = { ...ctx.findings[idx]!, action: 'withheld' }
        const classes = [...blocked].sort()
        throw new GateError('MG_DATA_BLOCKED', { details: { data_classes: classes }, internal: `blocked data classes: ${classes.join(', ')}` })
      }
      const book = new PlaceholderBook(reservedPlaceholders(doc))
      st.book = book
      const result = rewriteDocument(doc, (_site: TextSite, d: Detection) => decide(d), book, false)
      if (!result.changed) return
      ctx.replaceRequestBody(Buffer.from(result.raw, 'utf8'))
      if (ctx.request && doc.mode === 'json') {
        // Later stages see what goes upstream.
        const json = JSON.parse(result.raw) as Record<string, unknown>
        const changed = new Map(result.changes.map((c) => [JSON.stringify(c.path), c.value]))
        const texts: TextField[] = ctx.request.texts.map((t) => {
          const v = changed.get(JSON.stringify(t.path))
          return v === undefined ? t : { ...t, text: v }
        })
        ctx.request = { ...ctx.request, json, texts }
      }
    },

    ...response.phases,

    close(ctx) {
      response.close(ctx)
      const st = ctx.local<RequestState | undefined>(REQUEST, () => undefined)
      if (st && st.dropped > 0) logger.warn('findings over the per-request limit were counted but not recorded', { request_id: ctx.id, dropped: st.dropped })
    },
  }

  return { scan, apply, engine }
}

function subjectOf(ctx: RequestContext): ScanSubject | undefined {
  return ctx.identity ? { spiffeId: ctx.identity.spiffeId, namespace: ctx.identity.namespace } : undefined
}

/** Placeholder-shaped strings the caller wrote: the book never hands them out. */
function reservedPlaceholders(doc: DocumentScan): string[] {
  const out: string[] = []
  for (const s of doc.sites) for (const p of findPlaceholders(s.value)) out.push(p.text)
  return out
}

