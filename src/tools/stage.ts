/**
 * The tool-calls stage: every tool call a response makes is authorised with
 * the same policy as the request's tools, before the caller sees it.
 *
 * A call (tools/calls.ts) is allowed only when the request named the tool
 * (providers/tools.ts; for an MCP server that the request narrowed to some
 * tools, one of those) and Cedar allows `call_tool` on it for this request,
 * without evaluation errors. The first call that is not allowed ends the
 * response: a buffered one is refused whole (MG_RESPONSE_TOOL_DENIED, in the
 * caller's dialect), a stream ends with an SSE error event carrying the same
 * document, and nothing after it is sent.
 *
 * The stage runs before `redaction-apply`, on the bytes the provider sent.
 * SSE is read as the redactor reads it (redaction/sse.ts), whole events at a
 * time (EventCutter): an event that may name a tool call (calls.ts,
 * mayNameToolCall: a cheap search of the bytes) is held until it is whole and
 * checked, so it never leaves before its check; every other byte passes on
 * as it came, without being framed or parsed, and a chunk that holds no such
 * event passes untouched. Compressed responses are decoded for the check;
 * the bytes passed on stay as they came (the redactor decodes them).
 *
 * Answers are asked of the policy engine's cached evaluation, once per tool
 * and response, with the facts the request was decided with: they are taken
 * when the response begins, before the response's own findings (a data class
 * found in the answer) join the request context.
 */
import { ENTITY } from '../policy/names.ts'
import type { PolicyEngine } from '../policy/engine.ts'
import type { RequestFacts } from '../policy/request.ts'
import { ERRORS, errorDocument, GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { RequestContext, ToolDecision } from '../pipeline/context.ts'
import type { BodyChunk, Stage } from '../pipeline/stage.ts'
import { decodeBuffered, parseContentEncoding, StreamDecoder, type Coding } from '../redaction/encoding.ts'
import { carriesSseFields, errorEvent, SseFramer, type SseEvent } from '../redaction/sse.ts'
import { collectCalls, mayNameToolCall, TOOL_CALL_MARKERS, type ToolCall } from '../providers/apis/index.ts'
import { DeclaredTools } from './calls.ts'

export interface ToolCallStageOptions {
  /** The policy engine: `factsFor` and its cached `evaluate`. */
  readonly engine: Pick<PolicyEngine, 'factsFor' | 'evaluate'>
  /** Largest decoded response, and largest SSE event held while it completes, that is inspected (redaction.responses.maxDecodedBytes). */
  readonly maxBytes: number
  readonly logger: Logger
}

/** Most distinct tools one response may call; beyond, it ends (every new tool is a policy question). */
export const MAX_RESPONSE_TOOLS = 256
/** Answers recorded per response for the audit trail. */
const MAX_RECORDED = 64

const STATE = Symbol('tool-calls.response')
const EMPTY = Buffer.alloc(0)

interface ResponseState {
  codings: Coding[]
  /** Compressed streams: the decoder and framer the check reads through. */
  decoder: StreamDecoder | undefined
  framer: SseFramer | undefined
  /** Identity-encoded streams: the events, cut where they end. */
  cutter: EventCutter
  checker: CallChecker | undefined
  /** The request's facts, taken when the response begins (or why they could not be). */
  facts: RequestFacts | Error | undefined
}

type Verdict = { readonly id: string; readonly kind: string; readonly effect: 'allow' } | { readonly id: string; readonly kind: string; readonly effect: 'deny'; readonly reason: NonNullable<ToolDecision['reason']> }

/** One response's answers: each tool decided once, recorded for the audit trail. */
class CallChecker {
  readonly #ctx: RequestContext
  readonly #engine: ToolCallStageOptions['engine']
  readonly #declared: DeclaredTools
  readonly #answers = new Map<string, Verdict>()
  readonly #facts: RequestFacts | Error
  readonly #onError: (tool: string, errors: readonly string[]) => void

  constructor(ctx: RequestContext, engine: ToolCallStageOptions['engine'], facts: RequestFacts | Error, onError: (tool: string, errors: readonly string[]) => void) {
    this.#ctx = ctx
    this.#engine = engine
    this.#facts = facts
    this.#onError = onError
    this.#declared = new DeclaredTools(ctx.out.request?.tools ?? [])
  }

  /** The first call that may not reach the caller, or undefined when every one may. */
  check(calls: readonly ToolCall[]): Extract<Verdict, { effect: 'deny' }> | undefined {
    for (const call of calls) {
      const v = this.#decide(call)
      if (v.effect === 'deny') return v
    }
    return undefined
  }

  #decide(call: ToolCall): Verdict {
    const r = this.#declared.resolve(call)
    const key = `${r.declared ? 'declared' : 'undeclared'}\n${r.id}`
    const known = this.#answers.get(key)
    if (known) return known
    let v: Verdict
    if (this.#answers.size >= MAX_RESPONSE_TOOLS) v = { id: r.id, kind: r.kind, effect: 'deny', reason: 'limit' }
    else if (!r.declared) v = { id: r.id, kind: r.kind, effect: 'deny', reason: 'undeclared' }
    else {
      let errors: readonly string[]
      let allowed: boolean
      try {
        if (this.#facts instanceof Error) throw this.#facts
        const e = this.#engine.evaluate(this.#facts, { action: 'call_tool', resource: { type: ENTITY.Tool, id: r.id } })
        errors = e.errors
        allowed = e.decision === 'allow'
      } catch (err) {
        errors = [(err as Error).message]
        allowed = false
      }
      if (errors.length > 0) this.#onError(r.id, errors)
      v = errors.length > 0 ? { id: r.id, kind: r.kind, effect: 'deny', reason: 'error' } : allowed ? { id: r.id, kind: r.kind, effect: 'allow' } : { id: r.id, kind: r.kind, effect: 'deny', reason: 'policy' }
    }
    this.#answers.set(key, v)
    // The record is bounded; the answer that ends the response is always in it.
    if (this.#answers.size <= MAX_RECORDED || v.effect === 'deny') this.#ctx.toolDecisions.push({ tool: v.id, kind: v.kind, phase: 'response', effect: v.effect, ...(v.effect === 'deny' ? { reason: v.reason } : {}) })
    return v
  }
}

/** Identifier-like text: what a tool name read from a response may be to reach a log. */
const LOGGABLE = /^[A-Za-z0-9_.:/@+-]{1,128}$/
const loggable = (s: string) => (LOGGABLE.test(s) ? s : '[omitted]')

/**
 * The refusal for a call. The caller is told the tool only when the request
 * made it available and policy refused it (a name a model made up is not
 * repeated); the log, only when it is identifier-like (a model may write
 * anything where a name goes).
 */
function refusal(v: Extract<Verdict, { effect: 'deny' }>): GateError {
  return new GateError('MG_RESPONSE_TOOL_DENIED', {
    details: { reason: v.reason, ...(v.reason === 'policy' || v.reason === 'error' ? { tool: v.id } : {}) },
    internal: `the response calls ${v.reason === 'limit' ? `more than ${MAX_RESPONSE_TOOLS} tools` : `the tool ${loggable(v.id)} (${loggable(v.kind)})`}: ${v.reason}`,
  })
}

const LF = 0x0a
const CR = 0x0d
const LFLF = Buffer.from('\n\n')
const LFCR = Buffer.from('\n\r')
const CRCR = Buffer.from('\r\r')
const BLANK_LINE = Buffer.from('\n\n')

/**
 * The offset just past the last blank line in `buf` (the end of its last
 * complete SSE event), 0 when there is none. A line ends at LF, CR or CRLF,
 * so two line ends in a row always contain LF LF, LF CR or CR CR.
 */
export function lastEventEnd(buf: Buffer): number {
  let at = buf.lastIndexOf(LFLF)
  // Streams end their lines with LF: the CR patterns are looked for only when a CR is there.
  const cr = buf.lastIndexOf(CR)
  if (cr !== -1) at = Math.max(at, buf.lastIndexOf(LFCR, cr), buf.lastIndexOf(CRCR, cr))
  if (at < 0) return 0
  let end = at + 2
  if (buf[end - 1] === CR && buf[end] === LF) end++
  return end
}

/** Longest marker of mayNameToolCall, less one: the bytes a marker split between two chunks may leave in the first. */
const MARKER_SEAM = Math.max(...TOOL_CALL_MARKERS.map((m) => m.length)) - 1

/**
 * An SSE stream cut where its events end, in time linear in its length. An
 * event that may name a tool call is held until it is whole and handed to
 * the check; every other byte passes on at once, so a chunk whose events name
 * no call passes untouched. An unfinished event is kept (to be checked whole
 * should a later part of it name a call), up to the caller's limit (openBytes).
 */
export class EventCutter {
  /** The unfinished event's bytes, in the chunks they came in. */
  #parts: Buffer[] = []
  #bytes = 0
  /** How many of them were passed on. */
  #released = 0
  /** They may name a tool call: nothing more of the event is passed on until it is whole. */
  #mayCall = false

  /** Bytes of the unfinished event held for the check. */
  get openBytes(): number {
    return this.#bytes
  }

  /**
   * The next chunk: the complete events to check (undefined when none may
   * name a call), the bytes to pass on now, and whether part of an
   * unfinished event had been passed on before this chunk.
   */
  push(chunk: Buffer, end: boolean): { check: Buffer | undefined; out: Buffer; partial: boolean } {
    const partial = this.#released > 0
    const seam = this.#bytes > 0 ? this.#tail(MARKER_SEAM) : EMPTY
    // A marker or a blank line split between the unfinished event and this chunk.
    const seamCall = seam.length > 0 && mayNameToolCall(Buffer.concat([seam, chunk.subarray(0, MARKER_SEAM)]))
    const cut = end ? chunk.length : Math.max(lastEventEnd(chunk), seamEventEnd(seam, chunk))
    if (cut === 0) {
      // The unfinished event goes on; once it may name a call, nothing more of it leaves until it is whole.
      this.#mayCall ||= seamCall || mayNameToolCall(chunk)
      this.#parts.push(chunk)
      this.#bytes += chunk.length
      if (this.#mayCall) return { check: undefined, out: EMPTY, partial }
      this.#released = this.#bytes
      return { check: undefined, out: chunk, partial }
    }
    const unreleased = this.#unreleased()
    const done = cut === chunk.length ? chunk : chunk.subarray(0, cut)
    const check = this.#mayCall || seamCall || mayNameToolCall(done) ? join([...this.#parts, done]) : undefined
    const rest = cut === chunk.length ? EMPTY : chunk.subarray(cut)
    const restMayCall = rest.length > 0 && mayNameToolCall(rest)
    this.#parts = rest.length > 0 ? [rest] : []
    this.#bytes = rest.length
    this.#released = restMayCall ? 0 : rest.length
    this.#mayCall = restMayCall
    // Nothing held back, before or now: the chunk passes as it came.
    const out = unreleased.length === 0 && !restMayCall ? chunk : join([...unreleased, done, ...(restMayCall || rest.length === 0 ? [] : [rest])])
    return { check, out, partial }
  }

  /** The unfinished event's bytes not passed on yet. */
  #unreleased(): Buffer[] {
    if (this.#released === this.#bytes) return []
    const out: Buffer[] = []
    let skip = this.#released
    for (const p of this.#parts) {
      if (skip >= p.length) {
        skip -= p.length
        continue
      }
      out.push(skip > 0 ? p.subarray(skip) : p)
      skip = 0
    }
    return out
  }

  /** The last `n` bytes of the unfinished event. */
  #tail(n: number): Buffer {
    const out: Buffer[] = []
    let need = n
    for (let i = this.#parts.length - 1; i >= 0 && need > 0; i--) {
      const p = this.#parts[i]!
      out.unshift(p.length > need ? p.subarray(p.length - need) : p)
      need -= Math.min(need, p.length)
    }
    return join(out)
  }
}

/** Where a blank line split between the previous bytes (`seam`) and `chunk` ends, as an offset in `chunk`; 0 when there is none. */
function seamEventEnd(seam: Buffer, chunk: Buffer): number {
  if (seam.length === 0 || chunk.length === 0) return 0
  const last = seam[seam.length - 1]
  const first = chunk[0]
  if (!((last === LF && (first === LF || first === CR)) || (last === CR && first === CR))) return 0
  return first === CR && chunk[1] === LF ? 2 : 1
}

function join(parts: readonly Buffer[]): Buffer {
  return parts.length === 0 ? EMPTY : parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}

/** The tool calls in SSE events (only events whose data could name one are parsed). */
function callsInEvents(events: readonly SseEvent[], out: ToolCall[]): void {
  for (const ev of events) {
    const data = ev.data
    if (data === undefined || !mayNameToolCall(data)) continue
    try {
      collectCalls(JSON.parse(data), out)
    } catch {
      // Not JSON: no SDK reads a tool call from it.
    }
  }
}

/** The tool calls in a whole (buffered) body: a JSON document, or SSE frames under another type. */
function callsInBody(body: Buffer): ToolCall[] {
  const out: ToolCall[] = []
  let text = body.toString('utf8')
  // The SDKs decode bodies as fetch does, which drops a leading byte-order mark.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  try {
    collectCalls(JSON.parse(text), out)
    return out
  } catch {
    // not JSON
  }
  if (!carriesSseFields(text)) return out
  const framer = new SseFramer()
  const events = framer.push(body)
  const rest = framer.flush()
  if (rest) events.push(rest)
  callsInEvents(events, out)
  return out
}

export function createToolCallStage(opts: ToolCallStageOptions): Stage {
  const { engine, maxBytes, logger } = opts
  const state = (ctx: RequestContext) => ctx.local<ResponseState>(STATE, () => ({ codings: [], decoder: undefined, framer: undefined, cutter: new EventCutter(), checker: undefined, facts: undefined }))
  // The facts policy decided the request on; for a request policy did not decide (none in a test pipeline), built here.
  const factsOf = (ctx: RequestContext): RequestFacts | Error => {
    try {
      return ctx.out.facts ?? engine.factsFor(ctx)
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err))
    }
  }
  const checker = (ctx: RequestContext, st: ResponseState) =>
    (st.checker ??= new CallChecker(ctx, engine, (st.facts ??= factsOf(ctx)), (tool, errors) =>
      logger.warn('a response tool call could not be evaluated; it is refused', { request_id: ctx.id, tool: loggable(tool), errors: errors.slice(0, 8).map((e) => e.slice(0, 256)) }),
    ))

  const refuseOrEnd = (ctx: RequestContext, chunk: BodyChunk, st: ResponseState, denied: Extract<Verdict, { effect: 'deny' }>, partial = false): void => {
    const err = refusal(denied)
    logger.info('response tool call refused', { request_id: ctx.id, reason: err.details.reason, streamed: ctx.responseStreaming })
    if (!ctx.responseStreaming) throw err
    end(ctx, chunk, st, err, partial)
  }

  return {
    name: 'tool-calls',
    consumes: ['request', 'decision', 'facts'],

    responseHeaders(ctx) {
      // An MCP server's answers carry no model tool calls (the mcp stage governs MCP).
      if (ctx.out.request?.operation === 'mcp') return
      const st = state(ctx)
      // The facts the request was decided with: later, the response's findings are in the context too.
      st.facts = factsOf(ctx)
      const codings = parseContentEncoding(ctx.responseHeaders.get('content-encoding'))
      if (!codings) {
        throw new GateError('MG_RESPONSE_UNREADABLE', {
          details: { content_encoding: (ctx.responseHeaders.get('content-encoding') ?? '').slice(0, 64) },
          internal: 'response content-encoding cannot be decoded to check its tool calls',
        })
      }
      st.codings = codings
      if (ctx.responseStreaming && codings.length > 0) {
        st.decoder = new StreamDecoder(codings, maxBytes)
        st.framer = new SseFramer()
      }
    },

    async responseBody(ctx, chunk) {
      if (ctx.responseTerminated || ctx.out.request?.operation === 'mcp') return
      const st = state(ctx)
      if (!ctx.responseStreaming) {
        if (!chunk.end) return
        let body = chunk.data
        if (st.codings.length > 0) {
          try {
            body = decodeBuffered(body, st.codings, maxBytes)
          } catch (err) {
            throw new GateError('MG_RESPONSE_UNREADABLE', { internal: `response does not decode to check its tool calls: ${(err as Error).message}` })
          }
        }
        if (!mayNameToolCall(body)) return
        const denied = checker(ctx, st).check(callsInBody(body))
        if (denied) refuseOrEnd(ctx, chunk, st, denied)
        return
      }

      if (st.decoder && st.framer) {
        // A compressed stream: the check reads a decoded copy; the bytes go on as they came.
        let plain: Buffer
        try {
          plain = await st.decoder.push(chunk.data, chunk.end)
        } catch (err) {
          logger.warn('response stream cannot be decoded to check its tool calls; ending it', { request_id: ctx.id, error: (err as Error).message })
          return end(ctx, chunk, st, new GateError('MG_RESPONSE_UNREADABLE'))
        }
        const events = st.framer.push(plain)
        if (chunk.end) {
          const rest = st.framer.flush()
          if (rest) events.push(rest)
        }
        if (st.framer.pendingBytes > maxBytes) return end(ctx, chunk, st, new GateError('MG_RESPONSE_UNREADABLE', { internal: 'an SSE event exceeds the inspected size' }))
        const calls: ToolCall[] = []
        callsInEvents(events, calls)
        const denied = calls.length > 0 ? checker(ctx, st).check(calls) : undefined
        if (denied) refuseOrEnd(ctx, chunk, st, denied)
        return
      }

      const cut = st.cutter.push(chunk.data, chunk.end)
      if (st.cutter.openBytes > maxBytes) {
        logger.warn('response stream event exceeds the inspected size; ending it', { request_id: ctx.id, bytes: st.cutter.openBytes })
        return end(ctx, chunk, st, new GateError('MG_RESPONSE_UNREADABLE', { internal: 'an SSE event exceeds the inspected size' }), cut.partial)
      }
      if (cut.check) {
        const framer = new SseFramer()
        const events = framer.push(cut.check)
        const rest = framer.flush()
        if (rest) events.push(rest)
        const calls: ToolCall[] = []
        callsInEvents(events, calls)
        const denied = calls.length > 0 ? checker(ctx, st).check(calls) : undefined
        if (denied) return refuseOrEnd(ctx, chunk, st, denied, cut.partial)
      }
      if (cut.out !== chunk.data) chunk.data = cut.out
    },

    close(ctx) {
      ctx.local<ResponseState | undefined>(STATE, () => undefined)?.decoder?.destroy()
    },
  }
}

/**
 * Ends a stream with an SSE error event in the caller's dialect; nothing
 * after it is sent. `partial`: part of an unfinished event was passed on (only
 * a stream nothing else holds back, with response redaction off), so a blank
 * line ends it first and the error event stays whole.
 */
function end(ctx: RequestContext, chunk: BodyChunk, st: ResponseState, err: GateError, partial = false): void {
  const { status, message } = ERRORS[err.code]
  const event = errorEvent(errorDocument(ctx.dialect, { code: err.code, status, message, details: err.details }, { requestId: ctx.id, decisionId: ctx.out.decision?.decisionId }))
  chunk.data = partial ? Buffer.concat([BLANK_LINE, event]) : event
  st.decoder?.destroy()
  ctx.responseTerminated = true
  ctx.denial = err
}
