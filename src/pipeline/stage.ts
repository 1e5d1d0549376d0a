import type { RequestContext } from './context.ts'
import type { OutputName } from './outputs.ts'

/** The ext_proc phases, in the order Envoy sends them for one HTTP exchange. */
export const PHASES = [
  'requestHeaders',
  'requestBody',
  'requestTrailers',
  'responseHeaders',
  'responseBody',
  'responseTrailers',
] as const
export type Phase = (typeof PHASES)[number]

/**
 * One chunk of the response body. In BUFFERED mode there is a single chunk with
 * `end: true`; for SSE responses (STREAMED) there are many. A stage may replace
 * `data` (to redact, hold back or flush bytes); the server sends whatever `data`
 * holds after the last stage.
 */
export interface BodyChunk {
  data: Buffer
  readonly end: boolean
}

/** Why a stream ended. `close` receives it exactly once per request. */
export interface StreamOutcome {
  /** completed: every message of the exchange was answered; cancelled: Envoy reset or abandoned the stream before that; error: the server failed. */
  readonly kind: 'completed' | 'cancelled' | 'error'
  readonly error?: unknown
}

/**
 * A pipeline stage. Every method is optional; the pipeline calls the ones a
 * stage defines, in the fixed stage order, for each phase. A stage denies by
 * throwing a GateError; any other exception also denies (MG_INTERNAL).
 *
 * A stage hands its results to the stages after it as typed outputs
 * (pipeline/outputs.ts): it names those it writes in `produces` (written with
 * `ctx.put`) and those it reads in `consumes` (read from `ctx.out`, or
 * `ctx.need`). The pipeline refuses to start when a stage consumes an output
 * no stage before it produces, and refuses a write by any other stage.
 * Stages that only look back at close (the audit trail) declare nothing.
 *
 * Stages keep per-request state private to them on the RequestContext (see
 * `ctx.local`) and never on themselves: one stage instance serves every
 * concurrent request.
 */
export interface Stage {
  readonly name: string
  readonly produces?: readonly OutputName[]
  readonly consumes?: readonly OutputName[]
  requestHeaders?(ctx: RequestContext): void | Promise<void>
  /** The whole request body is in `ctx.requestBody` (BUFFERED mode). */
  requestBody?(ctx: RequestContext): void | Promise<void>
  requestTrailers?(ctx: RequestContext): void | Promise<void>
  responseHeaders?(ctx: RequestContext): void | Promise<void>
  responseBody?(ctx: RequestContext, chunk: BodyChunk): void | Promise<void>
  responseTrailers?(ctx: RequestContext): void | Promise<void>
  /**
   * Called once per request after the stream has ended, however it ended
   * (normal end, denial, cancellation, error). Must not throw.
   */
  close?(ctx: RequestContext, outcome: StreamOutcome): void
}
