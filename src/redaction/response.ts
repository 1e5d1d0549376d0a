/**
 * Redaction of responses, the response half of the `redaction-apply` stage.
 *
 * `text/event-stream` responses are STREAMED by Envoy (the server asks for
 * it) and scanned event by event with a bounded hold-back (stream.ts). Every
 * other response stays BUFFERED and is classified by its content, not by its
 * declared type:
 * - text that carries SSE field lines is redacted as a stream (the whole body
 *   at once), then the output is scanned once more as one text, for a client
 *   that reads it as the plain text it may be declared as;
 * - other text goes to the document scan (JSON string by string, anything
 *   else as one text); in JSON, whatever that scan passed over (keys,
 *   numbers, strings it does not scan) is scanned as in a stream event;
 * - binary content (not valid UTF-8, NUL bytes or mostly control characters,
 *   or a declared charset other than UTF-8) is withheld (MG_RESPONSE_BINARY)
 *   unless `redaction.responses.binaryProviders` names the provider; a body
 *   let through is recorded as a finding of class `binary` (action allow).
 * A body that cannot be read is withheld (MG_RESPONSE_UNREADABLE); data of a
 * class whose response action is `block` ends the response
 * (MG_RESPONSE_BLOCKED).
 */
import { isUtf8 } from 'node:buffer'
import { ERRORS, errorDocument, GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { Finding, RequestContext } from '../pipeline/context.ts'
import type { BodyChunk } from '../pipeline/stage.ts'
import { rewriteDocument, scanDocument, siteEdits } from './document.ts'
import { decodeBuffered, DecodeError, parseContentEncoding, StreamDecoder, type Coding } from './encoding.ts'
import type { RedactionEngine } from './engine.ts'
import { applyEdits, PlaceholderBook } from './placeholders.ts'
import { carriesSseFields, errorEvent } from './sse.ts'
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
    responseBody(ctx: RequestContext, chunk: BodyChunk): void | Promise<void>
  }
  close(ctx: RequestContext): void
}

export function createResponseRedaction(deps: ResponseRedactionDeps): ResponseRedaction {
  const { engine, logger } = deps
  const config = engine.config
  const binaryProviders = new Set(config.responses.binaryProviders)
  const phases = {
    responseHeaders(ctx: RequestContext): void {
      const rs = ctx.local<ResponseState>(RESPONSE, () => ({ mode: 'skip', codings: [], decoder: undefined, sse: undefined }))
      if (!config.enabled || !config.responses.enabled) return
      // Every body is inspected, whatever type it declares: the content decides how (see redactBuffered).
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

    responseBody(ctx: RequestContext, chunk: BodyChunk): void | Promise<void> {
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
      if (rs.mode === 'buffered') {
        const provider = ctx.out.request?.providerName
        return redactBuffered(engine, chunk, rs, {
          book,
          restore,
          subject,
          onDetection,
          action,
          contentType: (ctx.responseHeaders.get('content-type') ?? '').toLowerCase(),
          binaryAllowed: provider !== undefined && binaryProviders.has(provider),
          onBinaryPassed(body) {
            logger.info('binary response passed unscanned', { request_id: ctx.id, provider, bytes: body.length })
            deps.record(ctx, {
              detector: BINARY_DETECTOR,
              dataClass: BINARY_CLASS,
              confidence: 'high',
              direction: 'response',
              location: '$body',
              start: 0,
              length: body.length,
              hash: engine.hash(body.toString('latin1')),
              action: 'allow',
            })
          },
        })
      }

      const sse = (rs.sse ??= new SseRedactor({ scanner: engine.scanner, subject, book, restore, action, onDetection: (d, loc, start, a) => void onDetection(d, loc, start, a) }))
      // Only a compressed stream waits for its decoder; a plain one is redacted at once (no promise, no timer).
      if (!rs.decoder) return redactStreamed(ctx, chunk, sse, chunk.data)
      return rs.decoder.push(chunk.data, chunk.end).then(
        (data) => redactStreamed(ctx, chunk, sse, data),
        (err: unknown) => {
          logger.warn('response stream cannot be decoded; ending it', { request_id: ctx.id, error: (err as Error).message })
          rs.decoder?.destroy()
          terminate(ctx, chunk, 'MG_RESPONSE_UNREADABLE', {})
        },
      )
    },
  }

  /** One decoded piece of an SSE stream through the redactor. */
  const redactStreamed = (ctx: RequestContext, chunk: BodyChunk, sse: SseRedactor, data: Buffer): void => {
    const res = sse.push(data, chunk.end)
    if (res.blocked) {
      logger.info('response stream blocked', { request_id: ctx.id, data_classes: res.blocked })
      return terminate(ctx, chunk, 'MG_RESPONSE_BLOCKED', { data_classes: res.blocked })
    }
    if (sse.pendingBytes > config.responses.maxDecodedBytes) {
      // An event that never ends would be held without bound: it cannot be inspected whole.
      logger.warn('response stream event exceeds the decoded-size limit; ending it', { request_id: ctx.id, bytes: sse.pendingBytes })
      return terminate(ctx, chunk, 'MG_RESPONSE_UNREADABLE', {})
    }
    chunk.data = res.out
  }
  return {
    phases,
    close(ctx) {
      ctx.local<ResponseState | undefined>(RESPONSE, () => undefined)?.decoder?.destroy()
    },
  }
}

/** The finding that records a binary body let through unscanned. */
export const BINARY_DETECTOR = 'binary-body'
export const BINARY_CLASS = 'binary'

interface ResponseDeps {
  readonly book: PlaceholderBook
  readonly restore: boolean
  readonly subject: ScanSubject | undefined
  onDetection(d: Detection, location: string, start: number, action: RedactionAction): void
  action(d: Detection): RedactionAction
  /** The declared content-type, lower-cased. */
  readonly contentType: string
  /** The provider may return binary bodies unscanned. */
  readonly binaryAllowed: boolean
  onBinaryPassed(body: Buffer): void
}

/** A buffered response: decode, classify by content, scan and rewrite, or refuse. */
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
  const kind = classifyBody(body, deps.contentType)
  if (kind === 'binary') {
    if (!deps.binaryAllowed) {
      throw new GateError('MG_RESPONSE_BINARY', { details: { bytes: body.length }, internal: `binary response body (${deps.contentType.slice(0, 64) || 'no content-type'}) withheld` })
    }
    deps.onBinaryPassed(body)
    if (body !== chunk.data) chunk.data = body
    return
  }
  if (kind === 'sse') {
    chunk.data = redactSseBody(engine, body, deps)
    return
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
  if (blocked.size > 0) throw blockedError(blocked)
  const result = rewriteDocument(doc, body, (_s, d) => actions.get(d)!, deps.book, deps.restore)
  if (result.changed) chunk.data = Buffer.from(result.raw, 'utf8')
  else if (body !== chunk.data) chunk.data = body
}

/**
 * A buffered body that carries SSE frames: redacted as a stream (the SDKs
 * read it as one when they asked for a stream, whatever its declared type),
 * written out in canonical form, then scanned once more as one text for a
 * client that reads it as text. What that last scan finds (a value spread
 * over lines that no event holds whole) is redacted in place, without
 * restoring placeholders (the stream pass already did).
 */
function redactSseBody(engine: RedactionEngine, body: Buffer, deps: ResponseDeps): Buffer {
  const redactor = new SseRedactor({ scanner: engine.scanner, subject: deps.subject, book: deps.book, restore: deps.restore, action: deps.action, onDetection: deps.onDetection })
  const res = redactor.push(body, true)
  if (res.blocked) throw blockedError(new Set(res.blocked))
  const text = res.out.toString('utf8')
  const dets = engine.scanner.scan(text, { subject: deps.subject })
  if (dets.length === 0) return res.out
  const blocked = new Set<string>()
  const actions = new Map<Detection, RedactionAction>()
  for (const d of dets) {
    const a = deps.action(d)
    actions.set(d, a)
    if (a === 'allow') continue // the stream pass recorded what it let through
    deps.onDetection(d, '$body', d.start, a)
    if (a === 'block') blocked.add(d.dataClass)
  }
  if (blocked.size > 0) throw blockedError(blocked)
  const edits = siteEdits(text, dets, (d) => actions.get(d)!, deps.book, false)
  return edits.length === 0 ? res.out : Buffer.from(applyEdits(text, edits), 'utf8')
}

function blockedError(blocked: ReadonlySet<string>): GateError {
  const classes = [...blocked].sort()
  return new GateError('MG_RESPONSE_BLOCKED', { details: { data_classes: classes }, internal: `response carried blocked data classes: ${classes.join(', ')}` })
}

/** Charsets a UTF-8 reading of the body agrees with. */
const UTF8_CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii'])

/**
 * What a buffered body is, by its content: `binary` when it is not text a
 * client reads as modelgate does (not valid UTF-8, a NUL byte, more than a
 * tenth control characters, or a declared charset other than UTF-8), `sse`
 * when it carries SSE field lines, else `document` (JSON or plain text).
 */
export function classifyBody(body: Buffer, contentType: string): 'empty' | 'binary' | 'sse' | 'document' {
  if (body.length === 0) return 'empty'
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/.exec(contentType)?.[1]
  if (charset !== undefined && !UTF8_CHARSETS.has(charset)) return 'binary'
  if (!isUtf8(body)) return 'binary'
  let controls = 0
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!
    if (c >= 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x1b) continue
    if (c === 0) return 'binary'
    controls++
  }
  if (controls * 10 > body.length) return 'binary'
  return carriesSseFields(body.toString('utf8')) ? 'sse' : 'document'
}

/** Ends a stream with an SSE error event; the server clears every later chunk. */
function terminate(ctx: RequestContext, chunk: BodyChunk, code: 'MG_RESPONSE_BLOCKED' | 'MG_RESPONSE_UNREADABLE', details: Record<string, unknown>): void {
  const { status, message } = ERRORS[code]
  // An MCP client reads JSON-RPC messages from `message` events and matches the error to its request by the id.
  chunk.data = errorEvent(errorDocument(ctx.dialect, { code, status, message, details }, { requestId: ctx.id, decisionId: ctx.out.decision?.decisionId, rpcId: ctx.out.request?.mcp?.id }), ctx.dialect === 'mcp' ? 'message' : 'error')
  ctx.responseTerminated = true
}
