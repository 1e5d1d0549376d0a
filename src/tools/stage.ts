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
 * SSE is read as the redactor reads it (redaction/sse.ts): a stream is passed
 * on only up to the end of its last complete event, and the rest is held
 * until the event is whole, so no event leaves before it was checked (and an
 * event that ends the stream never follows a part of another). Bytes without
 * a trace of a tool call (calls.ts, mayNameToolCall) are passed on without
 * being framed or parsed. Compressed responses are decoded for the check;
 * the bytes passed on stay as they came (the redactor decodes them).
 *
 * Answers are asked of the policy engine's cached evaluation with the
 * request's facts, once per tool and response.
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
import { collectCalls, DeclaredTools, mayNameToolCall, type ToolCall } from './calls.ts'

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
  /** Identity-encoded streams: bytes after the last complete event, not yet passed on. */
  held: Buffer
  checker: CallChecker | undefined
}

type Verdict = { readonly id: string; readonly kind: string; readonly effect: 'allow' } | { readonly id: string; readonly kind: string; readonly effect: 'deny'; readonly reason: NonNullable<ToolDecision['reason']> }

/** One response's answers: each tool decided once, recorded for the audit trail. */
class CallChecker {
  readonly #ctx: RequestContext
  readonly #engine: ToolCallStageOptions['engine']
  readonly #declared: DeclaredTools
  readonly #answers = new Map<string, Verdict>()
  #facts: RequestFacts | undefined

  constructor(ctx: RequestContext, engine: ToolCallStageOptions['engine']) {
    this.#ctx = ctx
    this.#engine = engine
    this.#declared = new DeclaredTools(ctx.request?.tools ?? [])
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
        this.#facts ??= this.#engine.factsFor(this.#ctx)
        const e = this.#engine.evaluate(this.#facts, { action: 'call_tool', resource: { type: ENTITY.Tool, id: r.id } })
        errors = e.errors
        allowed = e.decision === 'allow'
      } catch (err) {
        errors = [(err as Error).message]
        allowed = false
      }
      v = errors.length > 0 ? { id: r.id, kind: r.kind, effect: 'deny', reason: 'error' } : allowed ? { id: r.id, kind: r.kind, effect: 'allow' } : { id: r.id, kind: r.kind, effect: 'deny', reason: 'policy' }
    }
    this.#answers.set(key, v)
    // The record is bounded; the answer that ends the response is always in it.
    if (this.#answers.size <= MAX_RECORDED || v.effect === 'deny') this.#ctx.toolDecisions.push({ tool: v.id, kind: v.kind, phase: 'response', effect: v.effect, ...(v.effect === 'deny' ? { reason: v.reason } : {}) })
    return v
  }
}

/** The refusal for a call: the tool is named to the caller only when the request named it (the caller's own word). */
function refusal(v: Extract<Verdict, { effect: 'deny' }>): GateError {
  return new GateError('MG_RESPONSE_TOOL_DENIED', {
    details: { reason: v.reason, ...(v.reason === 'policy' || v.reason === 'error' ? { tool: v.id } : {}) },
    internal: `the response calls ${v.reason === 'limit' ? `more than ${MAX_RESPONSE_TOOLS} tools` : `the tool ${JSON.stringify(v.id.slice(0, 256))} (${v.kind})`}: ${v.reason}`,
  })
}

const LF = 0x0a
const CR = 0x0d
const BLANK_LINES = [Buffer.from('\n\n'), Buffer.from('\n\r'), Buffer.from('\r\r')]

/**
 * The offset just past the last blank line in `buf` (the end of its last
 * complete SSE event), 0 when there is none. A line ends at LF, CR or CRLF,
 * so two line ends in a row always contain LF LF, LF CR or CR CR.
 */
export function lastEventEnd(buf: Buffer): number {
  let at = -1
  for (const b of BLANK_LINES) at = Math.max(at, buf.lastIndexOf(b))
  if (at < 0) return 0
  let end = at + 2
  if (buf[end - 1] === CR && buf[end] === LF) end++
  return end
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
  const state = (ctx: RequestContext) => ctx.local<ResponseState>(STATE, () => ({ codings: [], decoder: undefined, framer: undefined, held: EMPTY, checker: undefined }))
  const checker = (ctx: RequestContext, st: ResponseState) => (st.checker ??= new CallChecker(ctx, engine))

  const refuseOrEnd = (ctx: RequestContext, chunk: BodyChunk, st: ResponseState, denied: Extract<Verdict, { effect: 'deny' }>): void => {
    const err = refusal(denied)
    logger.info('response tool call refused', { request_id: ctx.id, reason: err.details.reason, streamed: ctx.responseStreaming })
    if (!ctx.responseStreaming) throw err
    end(ctx, chunk, st, err)
  }

  return {
    name: 'tool-calls',

    responseHeaders(ctx) {
      const st = state(ctx)
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
      if (ctx.responseTerminated) return
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

      // Pass on whole events only; hold the rest until its event is complete.
      const data = st.held.length > 0 ? Buffer.concat([st.held, chunk.data]) : chunk.data
      const cut = chunk.end ? data.length : lastEventEnd(data)
      const ready = cut === data.length ? data : data.subarray(0, cut)
      st.held = cut === data.length ? EMPTY : Buffer.from(data.subarray(cut))
      if (st.held.length > maxBytes) {
        logger.warn('response stream event exceeds the inspected size; ending it', { request_id: ctx.id, bytes: st.held.length })
        return end(ctx, chunk, st, new GateError('MG_RESPONSE_UNREADABLE', { internal: 'an SSE event exceeds the inspected size' }))
      }
      if (ready.length > 0 && mayNameToolCall(ready)) {
        const framer = new SseFramer()
        const events = framer.push(ready)
        const rest = framer.flush()
        if (rest) events.push(rest)
        const calls: ToolCall[] = []
        callsInEvents(events, calls)
        const denied = calls.length > 0 ? checker(ctx, st).check(calls) : undefined
        if (denied) return refuseOrEnd(ctx, chunk, st, denied)
      }
      if (ready !== chunk.data) chunk.data = ready
    },

    close(ctx) {
      ctx.local<ResponseState | undefined>(STATE, () => undefined)?.decoder?.destroy()
    },
  }
}

/** Ends a stream with an SSE error event in the caller's dialect; nothing after it is sent. */
function end(ctx: RequestContext, chunk: BodyChunk, st: ResponseState, err: GateError): void {
  const { status, message } = ERRORS[err.code]
  chunk.data = errorEvent(errorDocument(ctx.dialect, { code: err.code, status, message, details: err.details }, { requestId: ctx.id, decisionId: ctx.decision?.decisionId }))
  st.held = EMPTY
  st.decoder?.destroy()
  ctx.responseTerminated = true
  ctx.denial = err
}
