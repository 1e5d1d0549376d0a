/**
 * Redaction of responses, the response half of the `redaction-apply` stage:
 * buffered (JSON or text) bodies are decoded, scanned and rewritten whole;
 * SSE streams are scanned event by event with a bounded hold-back (stream.ts).
 * A body that cannot be read is withheld (MG_RESPONSE_UNREADABLE); data of a
 * class whose response action is `block` ends the response
 * (MG_RESPONSE_BLOCKED).
 */
import { ERRORS, GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Finding, RequestContext } from '../pipeline/context.ts'
import type { BodyChunk } from '../pipeline/stage.ts'
import { rewriteDocument, scanDocument } from './document.ts'
import { decodeBuffered, DecodeError, parseContentEncoding, StreamDecoder, type Coding } from './encoding.ts'
import type { RedactionEngine } from './engine.ts'
import { PlaceholderBook } from './placeholders.ts'
import { errorEvent } from './sse.ts'
import { SseRedactor } from './stream.ts'
import type { Detection, RedactionAction, ScanSubject } from './types.ts'

const RESPONSE = Symbol('redaction.response')

interface ResponseState {
  mode: 'skip' | 'buffered' | 'sse'
  codings: Coding[]
  decoder: StreamDecoder | undefined
  sse: SseRedactor | undefined
}

/** What the response half needs from the request half of the stage. */
export interface ResponseRedactionDeps {
  readonly engine: RedactionEngine
  readonly logger: Logger
  /** The request's placeholder book (created on first use) and whether placeholders are restored. */
  placeholders(ctx: RequestContext): { readonly book: PlaceholderBook; readonly restore: boolean }
  /** Records a finding (subject to the per-request limit). */
  record(ctx: RequestContext, f: Finding): void
  subject(ctx: RequestContext): ScanSubject | undefined
}

export interface ResponseRedaction {
  readonly phases: {
    responseHeaders(ctx: RequestContext): void
    responseBody(ctx: RequestContext, chunk: BodyChunk): Promise<void>
  }
  close(ctx: RequestContext): void
}

export function createResponseRedaction(deps: ResponseRedactionDeps): ResponseRedaction {
  const { engine, logger } = deps
  const config = engine.config
  const phases = {
    responseHeaders(ctx: RequestContext): void {
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

    async responseBody(ctx: RequestContext, chunk: BodyChunk): Promise<void> {
      const rs = ctx.local<ResponseState>(RESPONSE, () => ({ mode: 'skip', codings: [], decoder: undefined, sse: undefined }))
      if (rs.mode === 'skip') return
      const { book, restore } = deps.placeholders(ctx)
      const subject = deps.subject(ctx)
      const onDetection = (d: Detection, location: string, start: number, action: RedactionAction) =>
        deps.record(ctx, {
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
  }
  return {
    phases,
    close(ctx) {
      ctx.local<ResponseState | undefined>(RESPONSE, () => undefined)?.decoder?.destroy()
    },
  }
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
  const doc = scanDocument(engine, body, deps.subject)
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
  const result = rewriteDocument(doc, body, (_s, d) => actions.get(d)!, deps.book, deps.restore)
  if (result.changed) chunk.data = Buffer.from(result.raw, 'utf8')
  else if (body !== chunk.data) chunk.data = body
}

/** Ends a stream with an SSE error event; the server clears every later chunk. */
function terminate(ctx: RequestContext, chunk: BodyChunk, code: 'MG_RESPONSE_BLOCKED' | 'MG_RESPONSE_UNREADABLE', details: Record<string, unknown>): void {
  chunk.data = errorEvent({ code, message: ERRORS[code].message, requestId: ctx.id, details })
  ctx.responseTerminated = true
}

function isTextual(contentType: string): boolean {
  if (contentType === '') return true
  const media = contentType.split(';')[0]!.trim()
  return media.startsWith('text/') || media.includes('json') || media === 'application/xml' || media === 'application/x-ndjson'
}

