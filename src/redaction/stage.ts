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
import { ERRORS, GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Finding, RequestContext } from '../pipeline/context.ts'
import type { BodyChunk, Stage } from '../pipeline/stage.ts'
import type { TextField } from '../providers/types.ts'
import { rewriteDocument, scanDocument, type DocumentScan, type TextSite } from './document.ts'
import { decodeBuffered, DecodeError, parseContentEncoding, StreamDecoder, type Coding } from './encoding.ts'
import { compileRedaction, type RedactionEngine } from './engine.ts'
import { findPlaceholders, PlaceholderBook } from './placeholders.ts'
import { errorEvent } from './sse.ts'
import { SseRedactor } from './stream.ts'
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
const RESPONSE = Symbol('redaction.response')

interface RequestState {
  scan: DocumentScan | undefined
  /** Index in ctx.findings of each recorded request detection. */
  readonly findingIndex: Map<Detection, number>
  book: PlaceholderBook | undefined
  restore: boolean
  dropped: number
}

interface ResponseState {
  mode: 'skip' | 'buffered' | 'sse'
  codings: Coding[]
  decoder: StreamDecoder | undefined
  sse: SseRedactor | undefined
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
            // Tentative: the configured action; redaction-apply records the final one.
            action: engine.action('request', d.dataClass, d.detector),
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

    responseHeaders(ctx) {
      const rs = ctx.local<ResponseState>(RESPONSE, () => ({ mode: 'skip', codings: [], decoder: undefined, sse: undefined }))
      if (!config.enabled || !config.responses.enabled) return
      const type = (ctx.responseHeaders.get('content-type') ?? '').toLowerCase()
      if (!ctx.responseStreaming && !isTextual(type)) return
      const codings = parseContentEncoding(ctx.responseHeaders.get('content-encoding'))
      if (!codings) {
        throw new GateError('MG_RESPONSE_UNREADABLE', {
          details: { content_encoding: (ctx.responseHeaders.get('content-encoding') ?? '').slice(0, 64) },
          internal: 'response content-encoding cannot be decoded for inspection',
        })
      }
      rs.codings = codings
      // The body leaves identity-encoded; its length changes.
      if (codings.length > 0) ctx.responseHeaderChanges.removeHeader('content-encoding')
      if (ctx.responseStreaming) {
        rs.mode = 'sse'
        ctx.responseHeaderChanges.removeHeader('content-length')
        if (codings.length > 0) rs.decoder = new StreamDecoder(codings, config.responses.maxDecodedBytes)
      } else rs.mode = 'buffered'
    },

    async responseBody(ctx, chunk) {
      const rs = ctx.local<ResponseState>(RESPONSE, () => ({ mode: 'skip', codings: [], decoder: undefined, sse: undefined }))
      if (rs.mode === 'skip') return
      const st = requestState(ctx)
      const book = (st.book ??= new PlaceholderBook())
      const restore = st.restore
      const subject = subjectOf(ctx)
      const onDetection = (d: Detection, location: string, start: number, action: RedactionAction) =>
        record(ctx, {
          detector: d.detector,
          dataClass: d.dataClass,
          confidence: d.confidence,
          direction: 'response',
          location,
          start,
          length: d.end - d.start,
          hash: engine.hash(d.value),
          action,
        })
      const action = (d: Detection) => engine.action('response', d.dataClass, d.detector)
      if (rs.mode === 'buffered') return redactBuffered(engine, chunk, rs, { book, restore, subject, onDetection, action })

      rs.sse ??= new SseRedactor({ scanner: engine.scanner, subject, book, restore, action, onDetection: (d, loc, start, a) => void onDetection(d, loc, start, a) })
      let data = chunk.data
      try {
        if (rs.decoder) data = await rs.decoder.push(data, chunk.end)
      } catch (err) {
        logger.warn('response stream cannot be decoded; ending it', { request_id: ctx.id, error: (err as Error).message })
        rs.decoder?.destroy()
        return terminate(ctx, chunk, 'MG_RESPONSE_UNREADABLE', {})
      }
      const res = rs.sse.push(data, chunk.end)
      if (res.blocked) {
        logger.info('response stream blocked', { request_id: ctx.id, data_classes: res.blocked })
        return terminate(ctx, chunk, 'MG_RESPONSE_BLOCKED', { data_classes: res.blocked })
      }
      chunk.data = res.out
    },

    close(ctx) {
      const rs = ctx.local<ResponseState | undefined>(RESPONSE, () => undefined)
      rs?.decoder?.destroy()
      const st = ctx.local<RequestState | undefined>(REQUEST, () => undefined)
      if (st && st.dropped > 0) logger.warn('findings over the per-request limit were counted but not recorded', { request_id: ctx.id, dropped: st.dropped })
    },
  }

  return { scan, apply, engine }
}

interface ResponseDeps {
  readonly book: PlaceholderBook
  readonly restore: boolean
  readonly subject: ScanSubject | undefined
  onDetection(d: Detection, location: string, start: number, action: RedactionAction): void
  action(d: Detection): RedactionAction
}

/** A buffered (JSON or text) response: decode, scan every string, rewrite, or refuse. */
function redactBuffered(engine: RedactionEngine, chunk: BodyChunk, rs: ResponseState, deps: ResponseDeps): void {
  let body = chunk.data
  if (rs.codings.length > 0) {
    try {
      body = decodeBuffered(body, rs.codings, engine.config.responses.maxDecodedBytes)
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err
      throw new GateError('MG_RESPONSE_UNREADABLE', { internal: err.message })
    }
  }
  const doc = scanDocument(engine, body, undefined, deps.subject)
  const blocked = new Set<string>()
  const actions = new Map<Detection, RedactionAction>()
  for (const site of doc.sites) {
    for (const d of site.detections) {
      const a = deps.action(d)
      actions.set(d, a)
      deps.onDetection(d, site.location, d.start, a)
      if (a === 'block') blocked.add(d.dataClass)
    }
  }
  if (blocked.size > 0) {
    const classes = [...blocked].sort()
    throw new GateError('MG_RESPONSE_BLOCKED', { details: { data_classes: classes }, internal: `response carried blocked data classes: ${classes.join(', ')}` })
  }
  const result = rewriteDocument(doc, (_s, d) => actions.get(d)!, deps.book, deps.restore)
  if (result.changed) chunk.data = Buffer.from(result.raw, 'utf8')
  else if (body !== chunk.data) chunk.data = body
}

/** Ends a stream with an SSE error event; the server clears every later chunk. */
function terminate(ctx: RequestContext, chunk: BodyChunk, code: 'MG_RESPONSE_BLOCKED' | 'MG_RESPONSE_UNREADABLE', details: Record<string, unknown>): void {
  chunk.data = errorEvent({ code, message: ERRORS[code].message, requestId: ctx.id, details })
  ctx.responseTerminated = true
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

function isTextual(contentType: string): boolean {
  if (contentType === '') return true
  const media = contentType.split(';')[0]!.trim()
  return media.startsWith('text/') || media.includes('json') || media === 'application/xml' || media === 'application/x-ndjson'
}
