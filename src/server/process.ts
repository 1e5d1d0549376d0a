/**
 * The ext_proc stream loop. It moves messages: it decodes each
 * ProcessingRequest into the request context, runs the matching pipeline phase
 * and encodes the answer. It never decides anything itself, and it never ends
 * a stream with status OK before it has answered every message it owes (Envoy
 * would treat that as "continue without the processor": a fail-open path).
 *
 * How a stream ends: with `envoy.reloadable_features.ext_proc_graceful_grpc_close`
 * Envoy half-closes the stream once the HTTP exchange is over (or abandoned) and
 * waits for the server's status; modelgate answers whatever is still queued,
 * then ends the stream OK on the next turn. Without the guard, or on a message
 * timeout, Envoy resets the stream instead; a reset is reported (`onReset`), and
 * is a completed request only if every message of the exchange was answered.
 */
import type * as grpc from '@grpc/grpc-js'
import { denialBody, denialHeaders, denialStatus, dialectForPath, GateError, toGateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { RequestContext } from '../pipeline/context.ts'
import type { Pipeline } from '../pipeline/pipeline.ts'
import type { BodyChunk, StreamOutcome } from '../pipeline/stage.ts'
import type { StreamReset } from './transport.ts'
import {
  headerMutation,
  headersToMap,
  jsToStruct,
  structToJs,
  type CommonResponseMsg,
  type HttpBodyMsg,
  type HttpHeadersMsg,
  type ProcessingRequestMsg,
  type ProcessingResponseMsg,
} from './codec.ts'

/** The attribute namespace Envoy's ext_proc filter uses in ProcessingRequest.attributes. */
export const ATTRIBUTES_NAMESPACE = 'envoy.filters.http.ext_proc'
/** The dynamic metadata namespace modelgate writes (list it in Envoy's receiving_namespaces). */
export const METADATA_NAMESPACE = 'modelgate'

/** gRPC status INTERNAL, and the details sent with it when a stream cannot even be denied. */
const GRPC_INTERNAL = 13
const ABORT_DETAILS = 'modelgate failed; see its log'

export type ProcessCall = grpc.ServerDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>

export interface ProcessDeps {
  readonly pipeline: Pipeline
  readonly logger: Logger
  readonly maxBodyBytes: number
  /** True while the server drains: new streams are refused with 503. */
  readonly draining: () => boolean
  readonly onOpen?: () => void
  readonly onClose?: () => void
  /** A stream Envoy reset (or lost with its connection) before modelgate ended it. */
  readonly onReset?: (event: StreamReset) => void
}

export function createProcessHandler(deps: ProcessDeps): (call: ProcessCall) => void {
  return (call) => {
    new StreamSession(call, deps).start()
  }
}

class StreamSession {
  readonly #call: ProcessCall
  readonly #deps: ProcessDeps
  readonly #ctx: RequestContext
  #queue: Promise<void> = Promise.resolve()
  /** An ImmediateResponse went out: Envoy sends nothing more that needs an answer. */
  #answeredFinal = false
  #closed = false
  /**
   * Every message of the exchange has been answered (the last response message,
   * or a denial). Envoy often resets the gRPC stream instead of half-closing it
   * once the HTTP exchange is over; such a reset is a completed request.
   */
  #exchangeAnswered = false
  #requestChunks: Buffer[] = []
  #requestBytes = 0
  /** The last message Envoy sent (for the reset report). */
  #lastPhase: string | undefined

  constructor(call: ProcessCall, deps: ProcessDeps) {
    this.#call = call
    this.#deps = deps
    const md = call.metadata
    const traceparent = md.get('traceparent')[0]
    const tracestate = md.get('tracestate')[0]
    this.#ctx = new RequestContext({
      ...(typeof traceparent === 'string' ? { traceparent } : {}),
      ...(typeof tracestate === 'string' ? { tracestate } : {}),
    })
    for (const [k, v] of Object.entries(md.getMap())) {
      if (k.startsWith('x-modelgate-') && typeof v === 'string') this.#ctx.streamMetadata.set(k, v)
    }
  }

  start(): void {
    const call = this.#call
    this.#deps.onOpen?.()
    call.on('data', (msg: ProcessingRequestMsg) => {
      this.#queue = this.#queue.then(() => this.#handle(msg)).catch((err) => this.#fail(err))
    })
    call.on('end', () => {
      // Envoy half-closed: it sends nothing more. The status goes out only after every
      // message already received has been answered (the queue), so OK never precedes an
      // answer Envoy is owed. A reset stream also ends the readable side first, with
      // 'cancelled' following before the next macrotask: wait for it, so a reset is not
      // recorded as a completed request. A half-close before the exchange was answered
      // is Envoy abandoning the request (the caller went away): a cancellation.
      this.#queue = this.#queue
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => {
          if (this.#closed || call.cancelled) return
          this.#close({ kind: this.#exchangeAnswered ? 'completed' : 'cancelled' })
          call.end()
        })
    })
    // grpc-js also emits 'cancelled' after the status went out; by then the stream is closed.
    call.on('cancelled', () => this.#reset())
    call.on('error', (err) => this.#reset(err))
  }

  /** Envoy reset the stream (or its connection ended) before modelgate ended it. */
  #reset(err?: unknown): void {
    if (this.#closed) return
    const ctx = this.#ctx
    this.#deps.onReset?.({
      kind: 'stream_reset',
      requestId: ctx.id,
      answered: this.#exchangeAnswered,
      phase: this.#lastPhase,
      openMs: Math.round(ctx.elapsedMs()),
    })
    this.#close(this.#exchangeAnswered ? { kind: 'completed' } : err === undefined ? { kind: 'cancelled' } : { kind: 'cancelled', error: err })
  }

  async #handle(msg: ProcessingRequestMsg): Promise<void> {
    if (this.#closed) return
    this.#lastPhase = msg.request
    if (this.#answeredFinal) return
    const ctx = this.#ctx
    const attrs = msg.attributes?.[ATTRIBUTES_NAMESPACE]
    if (attrs) for (const [k, v] of Object.entries(structToJs(attrs))) ctx.attributes.set(k, v)

    try {
      if (msg.observability_mode) throw new GateError('MG_INTERNAL', { internal: 'observability_mode is not supported: modelgate must be in the request path' })
      switch (msg.request) {
        case 'request_headers':
          return await this.#requestHeaders(msg.request_headers ?? {})
        case 'request_body':
          return await this.#requestBody(msg.request_body ?? {})
        case 'request_trailers':
          await this.#deps.pipeline.run('requestTrailers', ctx)
          return this.#send({ request_trailers: {} })
        case 'response_headers':
          return await this.#responseHeaders(msg.response_headers ?? {})
        case 'response_body':
          return await this.#responseBody(msg.response_body ?? {})
        case 'response_trailers':
          await this.#deps.pipeline.run('responseTrailers', ctx)
          this.#exchangeAnswered = true
          return this.#send({ response_trailers: {} })
        default:
          throw new GateError('MG_INTERNAL', { internal: `unknown ext_proc message ${String(msg.request)}` })
      }
    } catch (err) {
      this.#deny(toGateError(err))
    }
  }

  async #requestHeaders(h: HttpHeadersMsg): Promise<void> {
    const ctx = this.#ctx
    headersToMap(h.headers, ctx.requestHeaders)
    ctx.method = ctx.requestHeaders.get(':method') ?? ''
    ctx.path = ctx.requestHeaders.get(':path') ?? ''
    ctx.authority = ctx.requestHeaders.get(':authority') ?? ''
    ctx.dialect = dialectForPath(ctx.path)
    const rid = ctx.requestHeaders.get('x-request-id') ?? ctx.attributes.get('request.id')
    if (typeof rid === 'string' && rid.length > 0 && rid.length <= 128) ctx.id = rid
    if (this.#deps.draining()) throw new GateError('MG_SHUTTING_DOWN')

    await this.#deps.pipeline.run('requestHeaders', ctx)
    if (h.end_of_stream) {
      // No body will follow: run the body phase now so body-time decisions (policy, quota) still happen.
      await this.#deps.pipeline.run('requestBody', ctx)
    }
    if (ctx.answer) return this.#answer()
    if (ctx.answeredBy !== undefined && h.end_of_stream) throw new GateError('MG_INTERNAL', { internal: `${ctx.answeredBy} took the exchange and gave no answer` })
    const common: CommonResponseMsg = {}
    const hm = headerMutation(ctx.requestHeaderChanges.set, ctx.requestHeaderChanges.remove)
    if (hm) common.header_mutation = hm
    ctx.requestHeaderChanges.clear()
    this.#send({ request_headers: { response: common }, ...(h.end_of_stream ? this.#metadata() : {}) })
  }

  async #requestBody(b: HttpBodyMsg): Promise<void> {
    const ctx = this.#ctx
    const chunk = b.body ?? Buffer.alloc(0)
    this.#requestBytes += chunk.length
    if (this.#requestBytes > this.#deps.maxBodyBytes) throw new GateError('MG_BODY_TOO_LARGE', { internal: `request body exceeds ${this.#deps.maxBodyBytes} bytes` })
    this.#requestChunks.push(chunk)
    if (!b.end_of_stream) {
      // Only BUFFERED mode delivers a whole body; a partial chunk would go upstream unscanned.
      throw new GateError('MG_INTERNAL', { internal: 'request body arrived in pieces: Envoy must send it BUFFERED' })
    }
    ctx.requestBody = this.#requestChunks.length === 1 ? this.#requestChunks[0]! : Buffer.concat(this.#requestChunks)
    this.#requestChunks = []
    await this.#deps.pipeline.run('requestBody', ctx)
    if (ctx.answer) return this.#answer()
    // Fail closed: an exchange a stage took is never forwarded.
    if (ctx.answeredBy !== undefined) throw new GateError('MG_INTERNAL', { internal: `${ctx.answeredBy} took the exchange and gave no answer` })
    const common: CommonResponseMsg = {}
    if (ctx.requestBodyReplaced) {
      common.body_mutation = { body: ctx.requestBody }
      ctx.requestHeaderChanges.setHeader('content-length', String(ctx.requestBody.length))
    }
    const hm = headerMutation(ctx.requestHeaderChanges.set, ctx.requestHeaderChanges.remove)
    if (hm) common.header_mutation = hm
    ctx.requestHeaderChanges.clear()
    this.#send({ request_body: { response: common }, ...this.#metadata() })
  }

  async #responseHeaders(h: HttpHeadersMsg): Promise<void> {
    const ctx = this.#ctx
    headersToMap(h.headers, ctx.responseHeaders)
    const status = Number(ctx.responseHeaders.get(':status'))
    ctx.responseStatus = Number.isInteger(status) ? status : undefined
    const contentType = (ctx.responseHeaders.get('content-type') ?? '').toLowerCase()
    ctx.responseStreaming = contentType.startsWith('text/event-stream')
    await this.#deps.pipeline.run('responseHeaders', ctx)
    const common: CommonResponseMsg = {}
    const hm = headerMutation(ctx.responseHeaderChanges.set, ctx.responseHeaderChanges.remove)
    if (hm) common.header_mutation = hm
    ctx.responseHeaderChanges.clear()
    const res: ProcessingResponseMsg = { response_headers: { response: common } }
    // Only a declared text/event-stream is switched to STREAMED and scanned chunk by chunk as it passes.
    // Everything else stays BUFFERED (the static mode) and redaction classifies it by its content:
    // SSE frames under another type are redacted whole, as a stream, before any byte leaves.
    if (ctx.responseStreaming) res.mode_override = { response_body_mode: 'STREAMED' }
    if (h.end_of_stream) this.#exchangeAnswered = true
    this.#send(res)
  }

  async #responseBody(b: HttpBodyMsg): Promise<void> {
    const ctx = this.#ctx
    const original = b.body ?? Buffer.alloc(0)
    const chunk: BodyChunk = { data: original, end: b.end_of_stream === true }
    if (!ctx.responseStreaming && !chunk.end) {
      throw new GateError('MG_INTERNAL', { internal: 'response body arrived in pieces without SSE: Envoy must send it BUFFERED' })
    }
    if (ctx.responseTerminated) chunk.data = Buffer.alloc(0)
    else await this.#deps.pipeline.run('responseBody', ctx, chunk)
    if (ctx.responseTerminated && chunk.data === original) chunk.data = Buffer.alloc(0)
    const common: CommonResponseMsg = {}
    if (chunk.data !== original) {
      common.body_mutation = chunk.data.length > 0 ? { body: chunk.data } : { clear_body: true }
      if (!ctx.responseStreaming) ctx.responseHeaderChanges.setHeader('content-length', String(chunk.data.length))
    }
    if (!ctx.responseStreaming) {
      const hm = headerMutation(ctx.responseHeaderChanges.set, ctx.responseHeaderChanges.remove)
      if (hm) common.header_mutation = hm
      ctx.responseHeaderChanges.clear()
    }
    if (chunk.end) this.#exchangeAnswered = true
    this.#send({ response_body: { response: common } })
  }

  /** A stage's own answer (modelgate's endpoints): sent instead of forwarding the request. */
  #answer(): void {
    const ctx = this.#ctx
    const a = ctx.answer!
    const headers = new Map([['content-type', 'application/json'], ['x-request-id', ctx.id], ...(a.headers ?? new Map<string, string>())])
    this.#answeredFinal = true
    this.#exchangeAnswered = true
    ctx.responseStatus = a.status
    this.#send({
      immediate_response: { status: { code: a.status }, headers: headerMutation(headers, new Set())!, body: a.body, details: `modelgate_answer_${ctx.answeredBy ?? 'stage'}` },
      ...this.#metadata(),
    })
  }

  #deny(err: GateError): void {
    const ctx = this.#ctx
    ctx.denial = err
    this.#deps.logger[err.code === 'MG_INTERNAL' ? 'error' : 'info']('request denied', {
      request_id: ctx.id,
      code: err.code,
      status: err.status,
      spiffe_id: ctx.out.caller?.workload.spiffeId,
      reason: err.internal,
    })
    const rpcId = ctx.out.request?.mcp?.id
    const ids = { requestId: ctx.id, decisionId: ctx.out.decision?.decisionId, rpcId }
    const body = denialBody(err, ids, ctx.dialect)
    this.#answeredFinal = true
    this.#exchangeAnswered = true
    this.#send({
      immediate_response: {
        status: { code: denialStatus(err, ctx.dialect, rpcId) },
        headers: headerMutation(denialHeaders(err, ids, ctx.dialect), new Set())!,
        body,
        details: `modelgate_${err.code}`,
      },
      ...this.#metadata(),
    })
  }

  /** Facts for Envoy's access log, in the `modelgate` dynamic metadata namespace. Never request content. */
  #metadata(): Pick<ProcessingResponseMsg, 'dynamic_metadata'> {
    const ctx = this.#ctx
    const facts: Record<string, unknown> = {
      request_id: ctx.id,
      // The route's template, never the raw path (a query or a segment may carry a secret).
      path: ctx.out.target?.route.template,
      spiffe_id: ctx.out.caller?.workload.spiffeId,
      decision_id: ctx.out.decision?.decisionId,
      policy_set: ctx.out.decision?.policySetHash,
      model: ctx.recordableModel(ctx.out.request?.model),
      error_code: ctx.denial?.code,
    }
    return { dynamic_metadata: jsToStruct({ [METADATA_NAMESPACE]: facts }) }
  }

  /** A failure of the loop itself: answer with a 500 if the stream can still take it, else reset it. */
  #fail(err: unknown): void {
    this.#deps.logger.error('ext_proc stream failed', { request_id: this.#ctx.id, error: err instanceof Error ? err.message : String(err) })
    if (!this.#answeredFinal && !this.#closed) {
      try {
        this.#deny(toGateError(err))
        return
      } catch {
        // fall through to reset
      }
    }
    this.#abort(err)
  }

  #send(res: ProcessingResponseMsg): void {
    if (this.#closed) return
    this.#call.write(res)
  }

  /** Ends the stream with an error status: Envoy answers the client with 5xx, never forwards. */
  #abort(err: unknown): void {
    if (this.#closed) return
    this.#close({ kind: 'error', error: err })
    // grpc-js turns an 'error' event into the stream's status (destroy() would send none and
    // leave Envoy waiting for its message timeout). The cause stays in modelgate's log.
    this.#call.emit('error', Object.assign(new Error(ABORT_DETAILS), { code: GRPC_INTERNAL, details: ABORT_DETAILS }))
  }

  #close(outcome: StreamOutcome): void {
    if (this.#closed) return
    this.#closed = true
    this.#deps.pipeline.close(this.#ctx, outcome)
    this.#deps.onClose?.()
  }
}
