import { randomUUID } from 'node:crypto'
import { GateError, type Dialect } from '../errors.ts'
import type { OutputName, OutputOwners, StageOutputs } from './outputs.ts'

/** A header change for Envoy: values set (overwriting) and names removed. */
export class HeaderChanges {
  readonly set = new Map<string, string>()
  readonly remove = new Set<string>()

  setHeader(name: string, value: string): void {
    const key = name.toLowerCase()
    this.remove.delete(key)
    this.set.set(key, value)
  }

  removeHeader(name: string): void {
    const key = name.toLowerCase()
    this.set.delete(key)
    this.remove.add(key)
  }

  get empty(): boolean {
    return this.set.size === 0 && this.remove.size === 0
  }

  clear(): void {
    this.set.clear()
    this.remove.clear()
  }
}

/** One detection in a request or response. Never carries the matched value. */
export interface Finding {
  readonly detector: string
  readonly dataClass: string
  readonly confidence: 'high' | 'medium' | 'low'
  /** Where it was found: 'request' or 'response'. */
  readonly direction: 'request' | 'response'
  /** JSON path of the text field (request) or SSE/JSON location (response), as a string. */
  readonly location: string
  /** Offset and length in UTF-16 code units within that text field. */
  readonly start: number
  readonly length: number
  /** Salted SHA-256 of the value (hex, truncated): lets auditors correlate, never reverse. */
  readonly hash: string
  /** What happened to the value (see FindingAction). */
  readonly action: FindingAction
}

/**
 * What happened to a detected value, as the audit trail records it:
 * - `allow`: it left as is (the configured action, or policy permitted the class unredacted);
 * - `redact`: it left replaced by a placeholder;
 * - `block`: its class is configured to block, and the request (or response) was refused for it;
 * - `withheld`: nothing was sent, and not because of this value's class: the
 *   request was refused before (or regardless of) redaction — by policy, by a
 *   quota, because another class blocked it, or by a failure. A request finding
 *   keeps this action until redaction-apply decides it.
 */
export type FindingAction = 'allow' | 'redact' | 'block' | 'withheld'

/** The URL as the audit trail records it (see RequestContext.url). */
export interface UrlRecord {
  readonly path: string
  readonly queryNames: readonly string[]
}

/** The policy outcome for a request, as recorded in the audit trail. */
export interface PolicyDecision {
  readonly effect: 'allow' | 'deny'
  readonly decisionId: string
  /** Cedar's determining policies, with their @owner annotation. */
  readonly policies: readonly { readonly id: string; readonly owner: string | undefined }[]
  readonly errors: readonly string[]
  readonly policySetHash: string
  readonly cached: boolean
  /**
   * Data classes found in the request that policy lets it send unredacted
   * (`send_unredacted` allowed without errors), sorted; decided with the
   * request, so later stages read it instead of asking again. Empty on a
   * deny. Absent only for decisions not made by the policy engine.
   */
  readonly unredactedClasses?: readonly string[]
  /**
   * The `@credential("…")` annotations of the permits that allowed the model
   * question, distinct and sorted: the provider credential policy chose for
   * the request (credentials/). Empty when none names one; absent on a deny.
   */
  readonly credentials?: readonly string[]
  /**
   * The `@requires_approval("…")` reasons of the permits that allowed it,
   * distinct and sorted: the request runs only with a human's grant. Absent
   * when none asks for one, and on a deny.
   */
  readonly approval?: readonly string[]
  readonly shadow?: {
    readonly effect: 'allow' | 'deny'
    readonly policies: readonly { readonly id: string; readonly owner: string | undefined }[]
    readonly errors: readonly string[]
    readonly policySetHash: string
  }
}

/**
 * One `call_tool` answer, for the audit trail: for a tool the request names
 * (asked by the policy stage), or for a tool a response calls (asked by the
 * tool-calls stage before the call reaches the caller).
 */
export interface ToolDecision {
  /** The `Tool` id (providers/tools.ts). */
  readonly tool: string
  /** Its kind: the declared type, or the type of the call. */
  readonly kind: string
  readonly phase: 'request' | 'response'
  readonly effect: 'allow' | 'deny'
  /**
   * Why a response's call was refused: the request did not name the tool
   * (`undeclared`), policy denied it (`policy`), its evaluation failed
   * (`error`), or the response called more distinct tools than one may (`limit`).
   */
  readonly reason?: 'undeclared' | 'policy' | 'error' | 'limit'
}

/** Quota outcome, filled by the quota stage. */
export interface QuotaOutcome {
  /** The rules that matched the request. */
  readonly rules: readonly string[]
  /** Remaining budget per rule (its tightest counter) after this request was charged, corrected when it settled. */
  remaining: Record<string, number>
  /** The rule that refused the request, or ended its stream. */
  decidingRule?: string
  /** Tokens reserved (input estimate + output reserve, plus any extension while streaming). */
  reservedTokens?: number
  /** Tokens charged in the end: the provider's usage, or what the stream produced, or the reservation. */
  settledTokens?: number
  /** How the settled amount was found: `usage` (the provider's report), `streamed` (estimated from the streamed text), `reservation` (no usage), `released` (nothing reached the provider). */
  settledBy?: 'usage' | 'streamed' | 'reservation' | 'released'
  /** The store that holds the request's counters: `memory`, `redis`, or `local` (the per-replica share while the store was unreachable). */
  store?: 'memory' | 'redis' | 'local'
  /** Why the configured store was not used (it was unreachable), when it was not. */
  storeError?: string
  /** True when the stream was ended because it passed a rule's token budget. */
  streamCut?: boolean
}

/** The trace context Envoy propagated to the Process call. */
export interface TraceCarrier {
  traceparent?: string
  tracestate?: string
}

/**
 * Everything modelgate knows about one HTTP exchange. One instance per ext_proc
 * stream, created at the first message and discarded when the stream closes.
 */
export class RequestContext {
  #id: string | undefined
  /** Wall-clock start (ms since epoch) and monotonic start (ns) for stage timings. */
  readonly startedAt = Date.now()
  readonly startedNs = process.hrtime.bigint()
  readonly trace: TraceCarrier

  /**
   * gRPC metadata of the Process call whose names start with `x-modelgate-`:
   * per-route facts Envoy adds with `grpc_initial_metadata` (e.g. x-modelgate-provider).
   */
  readonly streamMetadata = new Map<string, string>()
  /** Envoy attributes (request_attributes / response_attributes), flattened to plain values. */
  readonly attributes = new Map<string, unknown>()
  readonly requestHeaders = new Map<string, string>()
  method = ''
  path = ''
  authority = ''
  /**
   * The error format the caller's SDK reads (OpenAI's or Anthropic's), set once
   * from the path when the request headers arrive (`dialectForPath`). Denials
   * and the SSE error event that ends a stream use it.
   */
  dialect: Dialect = 'openai'

  /**
   * The stages' outputs (pipeline/outputs.ts), each written with `put` by the
   * stage that produces it and read here by the stages after it.
   */
  readonly out: Readonly<Partial<StageOutputs>> = {}
  /** Who may write each output, and the stage running now: set by the pipeline, so a write by any other stage fails. */
  #owners: OutputOwners | undefined
  /** The stage whose phase method is running (set by the pipeline). */
  stage = ''

  /** The buffered request body. Replace it with `replaceRequestBody`. */
  requestBody: Buffer = Buffer.alloc(0)
  requestBodyReplaced = false

  readonly responseHeaders = new Map<string, string>()
  responseStatus: number | undefined
  /** True when the response is an SSE stream processed chunk by chunk. */
  responseStreaming = false
  /** True once a stage terminated the response mid-stream; later chunks are cleared. */
  responseTerminated = false

  readonly findings: Finding[] = []
  readonly dataClasses = new Set<string>()
  /** Every `call_tool` answer for this request, in the order asked (see ToolDecision). */
  readonly toolDecisions: ToolDecision[] = []

  /** Header changes for the request (sent to upstream) and for the response (sent to the client). */
  readonly requestHeaderChanges = new HeaderChanges()
  readonly responseHeaderChanges = new HeaderChanges()

  /** Milliseconds spent per stage (summed over phases). */
  readonly timings = new Map<string, number>()
  /** The denial sent to the client, if any. */
  denial: GateError | undefined
  /**
   * The stage that answers this exchange itself (modelgate's own endpoints,
   * e.g. the approval API): later stages do not see it, and nothing goes
   * upstream. Set in the request-headers phase.
   */
  answeredBy: string | undefined
  /** That stage's answer, once it has one: sent to the caller instead of forwarding the request. */
  answer: { readonly status: number; readonly body: Buffer; readonly headers?: ReadonlyMap<string, string> } | undefined
  /**
   * Stages that found nothing to do for this request (an MCP stage on a model
   * request, say): the pipeline calls them no more, and the audit trail
   * records no stage span for them (their time stays in the request span's
   * stage timings).
   */
  idleStages: Set<string> | undefined

  /** Called by a stage, from any of its phases: it has nothing to do for this request. */
  markIdle(stage: string): void {
    ;(this.idleStages ??= new Set()).add(stage)
  }

  readonly #local = new Map<symbol, unknown>()

  constructor(trace: TraceCarrier = {}) {
    this.trace = trace
  }

  /** The request id: x-request-id from Envoy, or one generated when first asked for. */
  get id(): string {
    return (this.#id ??= randomUUID())
  }

  set id(value: string) {
    this.#id = value
  }

  /** Per-request state private to one stage, created on first use. */
  local<T>(key: symbol, init: () => T): T {
    const v = this.#local.get(key)
    if (v !== undefined || this.#local.has(key)) return v as T
    const created = init()
    this.#local.set(key, created)
    return created
  }

  /** Binds the pipeline's output owners: from now on only they may `put` each output. */
  bindOwners(owners: OutputOwners): void {
    this.#owners = owners
  }

  /**
   * Writes a stage output. Only the stage that declares it in `produces` may
   * (checked once the pipeline has bound its owners); anything else is a
   * programming error, and the request fails closed.
   */
  put<K extends OutputName>(name: K, value: StageOutputs[K]): StageOutputs[K] {
    const owners = this.#owners
    if (owners !== undefined && owners[name]?.has(this.stage) !== true) {
      throw new GateError('MG_INTERNAL', { internal: `stage "${this.stage}" wrote output "${name}", which it does not produce` })
    }
    ;(this.out as Partial<StageOutputs>)[name] = value
    return value
  }

  /**
   * Reads an output a stage cannot work without. Its absence means the stage
   * that produces it did not run for this request: an internal error, and
   * the request is refused.
   */
  need<K extends OutputName>(name: K): StageOutputs[K] {
    const v = this.out[name]
    if (v === undefined) throw new GateError('MG_INTERNAL', { internal: `stage "${this.stage}" needs output "${name}", which no stage produced for this request` })
    return v as StageOutputs[K]
  }

  /** Replace the body sent upstream; the server adjusts content-length. */
  replaceRequestBody(body: Buffer): void {
    this.requestBody = body
    this.requestBodyReplaced = true
  }

  addFinding(f: Finding): void {
    this.findings.push(f)
    this.dataClasses.add(f.dataClass)
  }

  /**
   * A model name as logs, metrics, Envoy's metadata and the audit trail may
   * keep it: `[redacted]` when it is the requested model and that name held a
   * finding (the body's `model`, or an Azure deployment in the path).
   */
  recordableModel(model: string | undefined): string | undefined {
    if (model === undefined || model !== this.out.request?.model) return model
    const inPath = this.out.target?.route.deployment !== undefined
    return this.findings.some((f) => f.direction === 'request' && (f.location === 'model' || (inPath && f.location === 'url.path'))) ? '[redacted]' : model
  }

  /** Milliseconds since the stream started. */
  elapsedMs(): number {
    return Number(process.hrtime.bigint() - this.startedNs) / 1e6
  }
}
