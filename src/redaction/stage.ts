/**
 * The redaction stages.
 *
 * - `redaction-scan` (before policy): when the request headers arrive, scans
 *   what leaves outside the body — the path, the query and the request
 *   headers (outside.ts) — and records the findings and the URL the audit
 *   trail may keep; then records the findings of the request body's scan, so
 *   the data classes of both reach the Cedar context. The body scan itself is
 *   made where the body is parsed, once (inspection/, in the provider stage);
 *   without one (`modelgate redact`, a text body), it scans here.
 * - `redaction-apply` (after policy): decides each class (allow, redact,
 *   block) for the body and outside it alike. Outside the body nothing can
 *   be replaced by a placeholder: a value to be redacted there refuses the
 *   request (MG_DATA_OUTSIDE_BODY), or, where configured, its header is
 *   stripped or its query parameter removed. Then it rewrites the body
 *   JSON-aware, and redacts responses: buffered JSON/text bodies whole, SSE
 *   streams event by event with a bounded hold-back. Compressed responses
 *   are decoded first, or refused.
 *
 * Findings carry detector, class, location, offsets and a salted hash; values
 * stay in memory for the request's lifetime only and are never logged.
 */
import type { RedactionConfig } from '../config/sections/redaction.ts'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Finding, RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import { requestScanOf, scanSubjectOf } from '../inspection/inspector.ts'
import { DEFAULT_JSON_LIMITS, type JsonLimits } from '../json/document.ts'
import { reservedPlaceholders, rewriteDocument, scanDocument, type DocumentScan, type TextSite } from './document.ts'
import { compileRedaction, type RedactionEngine } from './engine.ts'
import { applyEdits, PlaceholderBook } from './placeholders.ts'
import { requestBodyEdits } from '../inspection/edits.ts'
import { canStrip, compileOutsideScanner, pathWithout, type OutsideScan, type OutsideSite } from './outside.ts'
import { createResponseRedaction } from './response.ts'
import type { Detection, RedactionAction } from './types.ts'

export interface RedactionStageDeps {
  readonly logger: Logger
  /**
   * For a pipeline without the policy stage (tools, tests): whether data of
   * `dataClass` may be sent unredacted. With policy in the pipeline the
   * decision carries the answer (`ctx.out.decision.unredactedClasses`), decided
   * once with the request, and this is not asked.
   */
  readonly permitsUnredacted?: (ctx: RequestContext, dataClass: string) => boolean
  /** Limits for a request body this stage has to parse itself (default DEFAULT_JSON_LIMITS). */
  readonly jsonLimits?: JsonLimits
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
  /** The scan of the path, query and headers. */
  outside: OutsideScan | undefined
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
  const outside = compileOutsideScanner(engine, config)
  const requestState = (ctx: RequestContext) =>
    ctx.local<RequestState>(REQUEST, () => ({ outside: undefined, scan: undefined, findingIndex: new Map(), book: undefined, restore: false, dropped: 0 }))

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
    subject: scanSubjectOf,
  })

  const recordDetection = (ctx: RequestContext, st: RequestState, d: Detection, location: string) => {
    const idx = record(ctx, {
      detector: d.detector,
      dataClass: d.dataClass,
      confidence: d.confidence,
      direction: 'request',
      location,
      start: d.start,
      length: d.end - d.start,
      hash: engine.hash(d.value),
      // Nothing is sent until redaction-apply decides; a request refused before then withheld the value.
      action: 'withheld',
    })
    if (idx !== undefined) st.findingIndex.set(d, idx)
  }

  const scan: Stage = {
    name: 'redaction-scan',
    produces: ['url'],
    requestHeaders(ctx) {
      if (!config.enabled) return
      const st = requestState(ctx)
      // Headers an earlier stage removes or replaces (identity headers, accept-encoding) do not go upstream as sent.
      const replaced = new Set([...ctx.requestHeaderChanges.remove, ...ctx.requestHeaderChanges.set.keys()])
      const out = outside.scan({ path: ctx.path, headers: ctx.requestHeaders, replaced, subject: scanSubjectOf(ctx) })
      st.outside = out
      ctx.put('url', out.url)
      for (const site of out.sites) for (const d of site.detections) recordDetection(ctx, st, d, site.location)
    },
    requestBody(ctx) {
      if (!config.enabled) return
      const st = requestState(ctx)
      const text = ctx.local(TEXT_BODY, () => false)
      const doc =
        (text ? undefined : requestScanOf(ctx)) ??
        scanDocument(engine, ctx.requestBody, scanSubjectOf(ctx), { text, direction: 'request', limits: deps.jsonLimits ?? DEFAULT_JSON_LIMITS })
      st.scan = doc
      for (const site of doc.sites) for (const d of site.detections) recordDetection(ctx, st, d, site.location)
    },
  }

  const apply: Stage = {
    name: 'redaction-apply',
    consumes: ['request', 'decision'],
    requestBody(ctx) {
      // Edits other stages asked for (the model alias) go into the same rewrite, or alone when there is nothing to redact.
      const extra = requestBodyEdits(ctx)
      const applyExtra = () => {
        if (extra.length > 0) ctx.replaceRequestBody(Buffer.from(applyEdits(ctx.requestBody.toString('utf8'), extra), 'utf8'))
      }
      if (!config.enabled) return applyExtra()
      const st = requestState(ctx)
      st.restore = engine.restoreFor(ctx.out.request?.providerName)
      const doc = st.scan
      const outsideSites = st.outside?.sites ?? []
      const inBody = doc !== undefined && doc.sites.some((s) => s.detections.length > 0)
      if (!inBody && outsideSites.length === 0) return applyExtra()
      // One decision per class (and detector override), policy permission last: the policy decision
      // lists the classes it lets leave unredacted; nothing else is asked.
      const unredacted = ctx.out.decision?.unredactedClasses
      const permitted = new Map<string, boolean>()
      const decide = (d: Detection): RedactionAction => {
        let p = permitted.get(d.dataClass)
        if (p === undefined) {
          p = unredacted ? unredacted.includes(d.dataClass) : deps.permitsUnredacted?.(ctx, d.dataClass) === true
          permitted.set(d.dataClass, p)
        }
        return p ? 'allow' : engine.action('request', d.dataClass, d.detector)
      }
      const setAction = (d: Detection, a: RedactionAction) => {
        const idx = st.findingIndex.get(d)
        if (idx !== undefined && ctx.findings[idx]!.action !== a) ctx.findings[idx] = { ...ctx.findings[idx]!, action: a }
      }
      /** The request is refused: values other than those that refused it were not sent either. */
      const withholdOthers = () => {
        for (const idx of st.findingIndex.values()) if (ctx.findings[idx]!.action !== 'block') ctx.findings[idx] = { ...ctx.findings[idx]!, action: 'withheld' }
      }
      const blocked = new Set<string>()
      const sites = [...outsideSites, ...(doc?.sites ?? [])]
      for (const site of sites) {
        for (const d of site.detections) {
          const a = decide(d)
          if (a === 'block') blocked.add(d.dataClass)
          setAction(d, a)
        }
      }
      if (blocked.size > 0) {
        withholdOthers()
        const classes = [...blocked].sort()
        throw new GateError('MG_DATA_BLOCKED', { details: { data_classes: classes }, internal: `blocked data classes: ${classes.join(', ')}` })
      }
      if (outsideSites.length > 0) applyOutside(ctx, outsideSites, decide, setAction, withholdOthers)
      if (!doc || !inBody) return applyExtra()
      const book = new PlaceholderBook(reservedPlaceholders(doc))
      st.book = book
      // A JSON body takes the other stages' edits in the same rewrite (a provider body is always JSON).
      const result = rewriteDocument(doc, ctx.requestBody, (_site: TextSite, d: Detection) => decide(d), book, false, extra)
      if (result.changed) ctx.replaceRequestBody(Buffer.from(result.raw, 'utf8'))
    },

    ...response.phases,

    close(ctx) {
      response.close(ctx)
      const st = ctx.local<RequestState | undefined>(REQUEST, () => undefined)
      if (st && st.dropped > 0) logger.warn('findings over the per-request limit were counted but not recorded', { request_id: ctx.id, dropped: st.dropped })
    },
  }

  /**
   * Values to be redacted outside the body: a header is stripped and a query
   * parameter removed where configured (Envoy lets ext_proc change both),
   * otherwise the request is refused. A path segment cannot be taken out.
   */
  const applyOutside = (
    ctx: RequestContext,
    sites: readonly OutsideSite[],
    decide: (d: Detection) => RedactionAction,
    setAction: (d: Detection, a: RedactionAction) => void,
    withholdOthers: () => void,
  ) => {
    const strip = new Set<string>()
    const remove = new Set<number>()
    const refused: OutsideSite[] = []
    for (const site of sites) {
      const redact = site.detections.filter((d) => decide(d) === 'redact')
      if (redact.length === 0) continue
      if (site.part === 'header' && config.headers.action === 'strip' && canStrip(site.header!)) strip.add(site.header!)
      else if (site.part === 'query' && config.query.action === 'remove') for (const p of site.params ?? []) remove.add(p)
      else refused.push(site)
    }
    if (refused.length > 0) {
      for (const site of refused) for (const d of site.detections) if (decide(d) === 'redact') setAction(d, 'block')
      withholdOthers()
      const locations = [...new Set(refused.map((s) => s.location))].sort()
      const classes = [...new Set(refused.flatMap((s) => s.detections.filter((d) => decide(d) === 'redact').map((d) => d.dataClass)))].sort()
      throw new GateError('MG_DATA_OUTSIDE_BODY', { details: { locations, data_classes: classes }, internal: `data to redact outside the body: ${locations.join(', ')}` })
    }
    for (const h of strip) ctx.requestHeaderChanges.removeHeader(h)
    // Another stage may already send a different path (an Azure deployment alias): only the query changes here.
    if (remove.size > 0) ctx.requestHeaderChanges.setHeader(':path', pathWithout(ctx.requestHeaderChanges.set.get(':path') ?? ctx.path, remove))
  }

  return { scan, apply, engine }
}
