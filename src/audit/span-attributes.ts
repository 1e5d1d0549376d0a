/**
 * What one request's audit record says, computed from the RequestContext when
 * the stream closes: who (SPIFFE identity, delegated user), what data (data
 * classes and detectors with counts, salted hashes, redaction action), which
 * model (provider, requested and response model, operation), under which
 * policy (decision, determining policies with owners, policy-set hash, shadow
 * result), quota, tokens, upstream status and timings. Pure functions: no
 * clock, no I/O.
 */
import type { RequestContext } from '../pipeline/context.ts'
import type { StreamOutcome } from '../pipeline/stage.ts'
import { mcpRecordOf } from '../mcp/governance.ts'
import { callerClass } from '../policy/request.ts'
import type { Operation, ProviderKind } from '../providers/types.ts'
import * as A from './attributes.ts'
import { cleanValue, type RecordValue } from './record.ts'

export type Outcome = 'allowed' | 'denied' | 'cancelled' | 'error'

/** Longest string value recorded for caller-controlled fields (model names, tool names, …). */
const MAX_STRING = 1024
/** At most this many items per list attribute (classes, detectors, hashes, policies, rules). */
const MAX_ITEMS = 64
const MAX_HASHES = 32
const MAX_ERRORS = 8
const MAX_ERROR_LENGTH = 256
const MAX_DETAILS = 1024

/** GenAI semconv provider names for modelgate's provider kinds. */
export function genAiProvider(kind: ProviderKind): string {
  switch (kind) {
    case 'openai':
      return 'openai'
    case 'anthropic':
      return 'anthropic'
    case 'azure-openai':
      return 'azure.ai.openai'
    case 'mcp':
      return 'mcp'
  }
}

/** GenAI semconv operation names for modelgate's operations (the Responses API is a chat operation). */
export function genAiOperation(op: Operation): string {
  switch (op) {
    case 'chat':
    case 'messages':
    case 'responses':
      return 'chat'
    case 'completion':
      return 'text_completion'
    case 'embedding':
      return 'embeddings'
    case 'mcp':
      return 'execute_tool'
  }
}

/**
 * How the request ended, from the auditor's point of view. Envoy half-closes
 * (or, without the graceful close, resets) the ext_proc stream once an
 * exchange is over, so an end after the whole response passed through
 * modelgate (`responseComplete`) is a completed, allowed request; an end
 * before that is a cancellation.
 */
export function outcomeOf(ctx: RequestContext, stream: StreamOutcome, responseComplete = false): Outcome {
  if (ctx.denial) return 'denied'
  if (stream.kind === 'error') return 'error'
  if (stream.kind === 'cancelled' && !responseComplete) return 'cancelled'
  return 'allowed'
}

/** Denials that mean modelgate (not policy) failed: the span gets status ERROR. */
const FAILURE_CODES = new Set(['MG_INTERNAL', 'MG_TIMEOUT', 'MG_AUDIT_UNAVAILABLE'])

/** True when the record should carry span status ERROR. */
export function isFailure(ctx: RequestContext, stream: StreamOutcome): boolean {
  if (stream.kind === 'error') return true
  if (ctx.denial && FAILURE_CODES.has(ctx.denial.code)) return true
  return ctx.responseStatus !== undefined && ctx.responseStatus >= 500
}

/** GenAI semconv span name `{operation} {model}`, or `modelgate.request` before the body was parsed. */
export function spanName(ctx: RequestContext): string {
  if (!ctx.out.request) return A.SPAN_REQUEST
  return `${genAiOperation(ctx.out.request.operation)} ${cap(ctx.recordableModel(ctx.out.request.model)!, 128)}`.trim()
}

export function cap(s: string, n = MAX_STRING): string {
  return s.length > n ? s.slice(0, n) : s
}

/** Milliseconds rounded to microseconds, so records stay readable. */
export function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

export interface CapturedContent {
  readonly text: string
  readonly truncated: boolean
}

/** UTF-8 text of at most `maxBytes` bytes, cut on a character boundary. */
export function captureContent(body: Buffer, maxBytes: number): CapturedContent {
  if (body.length <= maxBytes) return { text: body.toString('utf8'), truncated: false }
  let end = maxBytes
  // Step back over continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && (body[end]! & 0xc0) === 0x80) end--
  return { text: body.subarray(0, end).toString('utf8'), truncated: true }
}

/**
 * Settles what happened to the request's findings once the stream is over: a
 * request refused before it reached the model sent nothing, so values that
 * redaction-apply had already decided to redact or allow (before a later stage
 * refused the request) were withheld. A request that reached the model keeps
 * the actions redaction applied. Replaces the entries of `ctx.findings`.
 */
export function settleFindings(ctx: RequestContext, upstreamReached: boolean): void {
  if (!ctx.denial || upstreamReached) return
  const f = ctx.findings
  for (let i = 0; i < f.length; i++) {
    const x = f[i]!
    if (x.direction === 'request' && (x.action === 'redact' || x.action === 'allow')) f[i] = { ...x, action: 'withheld' }
  }
}

/** Envoy's `request.time` attribute (RFC 3339, e.g. `2025-05-01T12:03:11.482117+00:00`) as nanoseconds since the epoch. */
export function parseEnvoyTime(v: unknown): bigint | undefined {
  if (typeof v !== 'string') return undefined
  const m = ENVOY_TIME.exec(v)
  if (!m) return undefined
  // Requests of one second share the date and the zone: parse those once.
  const second = `${m[1]}${m[3]}`
  if (second !== lastSecond) {
    const ms = Date.parse(second)
    if (!Number.isFinite(ms)) return undefined
    lastSecond = second
    lastSecondNs = BigInt(ms) * 1_000_000n
  }
  return lastSecondNs + BigInt((m[2] ?? '').padEnd(9, '0'))
}
const ENVOY_TIME = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/
let lastSecond = ''
let lastSecondNs = 0n

/** Envoy's request start is used only when it lies before modelgate saw the stream, by at most this much. */
const MAX_STREAM_WAIT_NS = 3_600_000_000_000n

/**
 * When the request started (wall clock, ns since the epoch) and how long before
 * modelgate saw its stream. modelgate only learns of a request when it reads
 * the ext_proc stream, which can be long after Envoy opened it if modelgate
 * was stalled or stopped (SIGSTOP, a debugger, a starved CPU): Envoy's
 * `request.time` attribute is the start then. Without it (or when it is not
 * plausibly earlier), the moment the stream was seen.
 */
export function requestStart(ctx: RequestContext): { startNs: bigint; waitNs: bigint | undefined } {
  const seen = BigInt(ctx.startedAt) * 1_000_000n
  const envoy = parseEnvoyTime(ctx.attributes.get('request.time'))
  if (envoy === undefined) return { startNs: seen, waitNs: undefined }
  const wait = seen - envoy
  // Date.now() has millisecond resolution: Envoy's microsecond time may lie just after it.
  if (wait < 0n) return { startNs: seen, waitNs: 0n }
  if (wait > MAX_STREAM_WAIT_NS) return { startNs: seen, waitNs: undefined }
  return { startNs: envoy, waitNs: wait }
}

export interface RecordExtras {
  readonly durationMs: number
  /** Milliseconds between Envoy's request start and modelgate seeing the stream, when Envoy said when it started. */
  readonly streamWaitMs?: number | undefined
  /** True once the provider's response headers reached modelgate. */
  readonly upstreamReached: boolean
  /** True once the last byte of the response (or its trailers) passed modelgate. */
  readonly responseComplete?: boolean
  /** The content that left modelgate, or 'omitted' when it held a value let through unredacted. */
  readonly requestContent?: CapturedContent | 'omitted' | undefined
  readonly responseContent?: CapturedContent | 'omitted' | undefined
}

/** Every attribute of a request's audit record (chain attributes are added by the chain). */
export function requestAttributes(ctx: RequestContext, stream: StreamOutcome, extras: RecordExtras): Record<string, RecordValue> {
  const a: Record<string, RecordValue> = {}
  const set = (k: string, v: RecordValue | undefined) => {
    // Only what OpenTelemetry can carry (no NaN, no mixed arrays): the record is hashed as built.
    switch (typeof v) {
      case 'undefined':
        return
      case 'string':
        if (v !== '') a[k] = v
        return
      case 'boolean':
        a[k] = v
        return
      case 'number':
        if (Number.isFinite(v)) a[k] = v
        return
      default: {
        if (Array.isArray(v) && v.length === 0) return
        const c = cleanValue(v)
        if (c !== undefined) a[k] = c
      }
    }
  }

  // The request.
  set(A.MG_REQUEST_ID, ctx.id)
  set(A.MG_OUTCOME, outcomeOf(ctx, stream, extras.responseComplete))
  set(A.MG_STREAM_OUTCOME, stream.kind)
  set(A.MG_UPSTREAM_REACHED, extras.upstreamReached)
  if (extras.upstreamReached) set(A.MG_RESPONSE_COMPLETE, extras.responseComplete === true)
  set(A.HTTP_REQUEST_METHOD, ctx.method || undefined)
  // The scanned path, or the route's template; nothing of a path no route matched (it may hold anything).
  set(A.URL_PATH, ctx.out.url?.path !== undefined ? cap(ctx.out.url.path) : ctx.out.target?.route.template)
  set(A.HTTP_ROUTE, ctx.out.target?.route.template)
  set(A.MG_URL_QUERY_PARAMS, ctx.out.url ? ctx.out.url.queryNames.slice(0, MAX_ITEMS).map((n) => cap(n, 128)) : undefined)
  set(A.SERVER_ADDRESS, ctx.authority ? cap(ctx.authority, 256) : undefined)
  set(A.HTTP_RESPONSE_STATUS_CODE, ctx.responseStatus)
  set(A.MG_DURATION_MS, roundMs(extras.durationMs))
  set(A.MG_STREAM_WAIT_MS, extras.streamWaitMs === undefined ? undefined : roundMs(extras.streamWaitMs))
  if (ctx.requestBody.length > 0) set(A.MG_REQUEST_BODY_BYTES, ctx.requestBody.length)

  // Who.
  const id = ctx.out.caller?.workload
  if (id) {
    set(A.MG_IDENTITY_SPIFFE_ID, id.spiffeId)
    set(A.MG_IDENTITY_TRUST_DOMAIN, id.trustDomain)
    set(A.MG_IDENTITY_PATH, id.path)
    set(A.MG_IDENTITY_NAMESPACE, id.namespace)
    set(A.MG_IDENTITY_SERVICE_ACCOUNT, id.serviceAccount)
    set(A.MG_IDENTITY_SOURCE, id.source)
    set(A.MG_IDENTITY_CERT_SHA256, id.certificateSha256)
  }
  const user = ctx.out.caller?.user
  if (user) {
    set(A.MG_USER_SUBJECT, cap(user.subject))
    set(A.MG_USER_ISSUER, cap(user.issuer))
    set(A.MG_USER_EMAIL, user.email ? cap(user.email) : undefined)
    set(A.MG_USER_GROUPS, user.groups.slice(0, MAX_ITEMS).map((g) => cap(g, 256)))
    if (user.actor !== undefined) set(A.MG_USER_ACTOR, cap(user.actor, 256))
  }
  if (id) set(A.MG_CALLER_CLASS, callerClass(id.path, user))
  const mcp = mcpRecordOf(ctx)
  if (mcp) {
    set(A.MG_MCP_METHOD, mcp.method === undefined ? undefined : cap(mcp.method, 128))
    set(A.MG_MCP_SERVER, cap(mcp.server, 256))
    set(A.MG_MCP_NAME, mcp.name === undefined ? undefined : cap(mcp.name, 256))
    set(A.MG_MCP_ARGUMENTS_DIGEST, mcp.argumentsDigest)
    set(A.MG_MCP_SESSION_DATA_CLASSES, [...mcp.sessionDataClasses].slice(0, MAX_ITEMS))
    set(A.MG_MCP_SESSION_UNTRUSTED, mcp.sessionUntrusted)
    set(A.MG_MCP_TOOLS_LISTED, mcp.listed)
    set(A.MG_MCP_TOOLS_SHOWN, mcp.shown)
    set(A.MG_APPROVAL_ID, mcp.approvalId)
    set(A.MG_APPROVAL_OUTCOME, mcp.approvalOutcome)
    set(A.MG_APPROVAL_APPROVER, mcp.approver)
  }

  // Which model.
  const req = ctx.out.request
  if (req) {
    const provider = genAiProvider(req.provider)
    set(A.GEN_AI_PROVIDER_NAME, provider)
    set(A.GEN_AI_SYSTEM, provider)
    set(A.GEN_AI_OPERATION_NAME, genAiOperation(req.operation))
    set(A.MG_OPERATION, req.operation)
    set(A.MG_API, req.api)
    set(A.MG_PROVIDER_ROUTE, cap(req.providerName, 256))
    set(A.GEN_AI_REQUEST_MODEL, cap(ctx.recordableModel(req.model)!))
    if (req.requestedModel !== undefined) set(A.MG_REQUEST_MODEL_ALIAS, cap(req.requestedModel, 256))
    set(A.GEN_AI_REQUEST_STREAM, req.stream)
    set(A.GEN_AI_REQUEST_MAX_TOKENS, req.maxTokens)
    set(A.MG_TOOLS, [...new Set(req.tools.map((t) => cap(t.name, 256)))].slice(0, MAX_ITEMS))
  }
  const reply = ctx.out.reply
  set(A.GEN_AI_RESPONSE_MODEL, reply?.model ? cap(ctx.recordableModel(reply.model)!) : undefined)
  set(A.GEN_AI_USAGE_INPUT_TOKENS, reply?.usage.input)
  set(A.GEN_AI_USAGE_OUTPUT_TOKENS, reply?.usage.output)

  if (ctx.out.credential) {
    set(A.MG_CREDENTIAL_NAME, ctx.out.credential.name)
    set(A.MG_CREDENTIAL_SOURCE, ctx.out.credential.source)
  }

  // Under which policy.
  const d = ctx.out.decision
  if (d) {
    set(A.MG_DECISION_EFFECT, d.effect)
    set(A.MG_DECISION_ID, d.decisionId)
    set(A.MG_DECISION_POLICIES, d.policies.slice(0, MAX_ITEMS).map((p) => cap(p.id, 256)))
    if (d.policies.length > 0) set(A.MG_DECISION_POLICY_OWNERS, d.policies.slice(0, MAX_ITEMS).map((p) => cap(p.owner ?? '', 256)))
    set(A.MG_DECISION_POLICY_SET_HASH, d.policySetHash)
    set(A.MG_DECISION_ERRORS, d.errors.slice(0, MAX_ERRORS).map((e) => cap(e, MAX_ERROR_LENGTH)))
    set(A.MG_DECISION_CACHED, d.cached)
    if (d.unredactedClasses && d.unredactedClasses.length > 0) set(A.MG_DECISION_UNREDACTED_CLASSES, d.unredactedClasses.slice(0, MAX_ITEMS).map((c) => cap(c, 64)))
    const s = d.shadow
    if (s) {
      set(A.MG_SHADOW_EFFECT, s.effect)
      set(A.MG_SHADOW_POLICIES, s.policies.slice(0, MAX_ITEMS).map((p) => cap(p.id, 256)))
      if (s.policies.length > 0) set(A.MG_SHADOW_POLICY_OWNERS, s.policies.slice(0, MAX_ITEMS).map((p) => cap(p.owner ?? '', 256)))
      set(A.MG_SHADOW_POLICY_SET_HASH, s.policySetHash)
      set(A.MG_SHADOW_ERRORS, s.errors.slice(0, MAX_ERRORS).map((e) => cap(e, MAX_ERROR_LENGTH)))
      set(A.MG_SHADOW_DIFFERS, s.effect !== d.effect)
    }
  }
  addToolDecisions(ctx, set)
  const denial = ctx.denial
  if (denial) {
    set(A.MG_DENIAL_CODE, denial.code)
    set(A.MG_DENIAL_STATUS, denial.status)
    if (Object.keys(denial.details).length > 0) set(A.MG_DENIAL_DETAILS, cap(JSON.stringify(safeDetails(denial.details, 0)), MAX_DETAILS))
  }
  if (isFailure(ctx, stream)) {
    if (denial && FAILURE_CODES.has(denial.code)) set(A.ERROR_TYPE, denial.code)
    else if (stream.kind === 'error') set(A.ERROR_TYPE, errorName(stream.error))
    else if (ctx.responseStatus !== undefined) set(A.ERROR_TYPE, String(ctx.responseStatus))
  }

  // What data.
  addFindings(ctx, set)
  set(A.MG_REDACTION_BODY_REWRITTEN, ctx.requestBodyReplaced || undefined)

  // Quota.
  const q = ctx.out.quota
  if (q) {
    set(A.MG_QUOTA_RULES, q.rules.slice(0, MAX_ITEMS).map((r) => cap(r, 256)))
    let n = 0
    for (const [rule, remaining] of Object.entries(q.remaining)) {
      if (n++ >= MAX_ITEMS) break
      if (Number.isFinite(remaining)) set(A.itemKey(A.MG_QUOTA_REMAINING_PREFIX, rule), remaining)
    }
    set(A.MG_QUOTA_DECIDING_RULE, q.decidingRule)
    set(A.MG_QUOTA_RESERVED_TOKENS, q.reservedTokens)
    set(A.MG_QUOTA_SETTLED_TOKENS, q.settledTokens)
    set(A.MG_QUOTA_SETTLED_BY, q.settledBy)
    set(A.MG_QUOTA_STORE, q.store)
    if (q.storeError !== undefined) set(A.MG_QUOTA_STORE_ERROR, cap(q.storeError, 256))
    set(A.MG_QUOTA_STREAM_CUT, q.streamCut)
  }

  // Timings.
  let n = 0
  for (const [stage, ms] of ctx.timings) {
    if (n++ >= MAX_ITEMS) break
    set(A.itemKey(A.MG_STAGE_DURATION_PREFIX, stage, A.MG_STAGE_DURATION_SUFFIX), roundMs(ms))
  }

  // Content, only when switched on (and then only what left modelgate).
  if (extras.requestContent === 'omitted') set(A.MG_REQUEST_CONTENT_OMITTED, 'unredacted_data')
  else if (extras.requestContent) {
    // An empty body is recorded as empty: set() would drop the empty string.
    a[A.MG_REQUEST_CONTENT] = extras.requestContent.text
    set(A.MG_REQUEST_CONTENT_TRUNCATED, extras.requestContent.truncated)
  }
  if (extras.responseContent === 'omitted') set(A.MG_RESPONSE_CONTENT_OMITTED, 'unredacted_data')
  else if (extras.responseContent) {
    a[A.MG_RESPONSE_CONTENT] = extras.responseContent.text
    set(A.MG_RESPONSE_CONTENT_TRUNCATED, extras.responseContent.truncated)
  }
  return a
}

/**
 * The `call_tool` answers: the tools the decision asked about, and the tools
 * the response called (a model may name anything there, so only
 * identifier-like names are kept), with the one that ended the response.
 */
function addToolDecisions(ctx: RequestContext, set: (k: string, v: RecordValue | undefined) => void): void {
  if (ctx.toolDecisions.length === 0) return
  const asked = ctx.toolDecisions.filter((d) => d.phase === 'request').slice(0, MAX_ITEMS)
  set(A.MG_DECISION_TOOLS, asked.map((d) => cap(d.tool, 256)))
  set(A.MG_DECISION_TOOL_KINDS, asked.map((d) => cap(d.kind, 128)))
  set(A.MG_DECISION_TOOL_EFFECTS, asked.map((d) => d.effect))
  const called = ctx.toolDecisions.filter((d) => d.phase === 'response')
  const named = (tool: string) => (SAFE_STRING.test(tool) ? tool : '[omitted]')
  set(A.MG_RESPONSE_TOOLS, called.slice(0, MAX_ITEMS).map((d) => named(d.tool)))
  set(A.MG_RESPONSE_TOOL_EFFECTS, called.slice(0, MAX_ITEMS).map((d) => d.effect))
  const refused = called.find((d) => d.effect === 'deny')
  if (refused) {
    set(A.MG_RESPONSE_TOOL_DENIED, named(refused.tool))
    set(A.MG_RESPONSE_TOOL_DENIED_REASON, refused.reason)
  }
}

/** Counts per class and detector, what happened to the data, and salted hashes. Never a matched value. */
function addFindings(ctx: RequestContext, set: (k: string, v: RecordValue | undefined) => void): void {
  if (ctx.findings.length === 0) {
    set(A.MG_REDACTION_ACTION, 'none')
    return
  }
  const classes = new Map<string, number>()
  const detectors = new Map<string, number>()
  const redacted = new Set<string>()
  const blocked = new Set<string>()
  const withheld = new Set<string>()
  const allowed = new Set<string>()
  const hashes = new Set<string>()
  let requestFindings = 0
  let responseFindings = 0
  for (const f of ctx.findings) {
    classes.set(f.dataClass, (classes.get(f.dataClass) ?? 0) + 1)
    detectors.set(f.detector, (detectors.get(f.detector) ?? 0) + 1)
    if (f.action === 'redact') redacted.add(f.dataClass)
    else if (f.action === 'block') blocked.add(f.dataClass)
    else if (f.action === 'withheld') withheld.add(f.dataClass)
    else allowed.add(f.dataClass)
    if (f.direction === 'request') requestFindings++
    else responseFindings++
    if (f.hash && hashes.size < MAX_HASHES) hashes.add(`${cap(f.dataClass, 128)}:${cap(f.hash, 128)}`)
  }
  const sorted = (s: Iterable<string>) => [...s].sort().slice(0, MAX_ITEMS).map((x) => cap(x, 256))
  set(A.MG_DATA_CLASSES, sorted(classes.keys()))
  set(A.MG_DATA_DETECTORS, sorted(detectors.keys()))
  set(A.MG_DATA_REQUEST_FINDINGS, requestFindings)
  set(A.MG_DATA_RESPONSE_FINDINGS, responseFindings)
  for (const c of sorted(classes.keys())) set(A.itemKey(A.MG_DATA_CLASS_PREFIX, c, A.MG_COUNT_SUFFIX), classes.get(c))
  for (const d of sorted(detectors.keys())) set(A.itemKey(A.MG_DATA_DETECTOR_PREFIX, d, A.MG_COUNT_SUFFIX), detectors.get(d))
  set(A.MG_DATA_HASHES, [...hashes])
  set(A.MG_REDACTION_ACTION, blocked.size > 0 ? 'block' : withheld.size > 0 ? 'withheld' : redacted.size > 0 ? 'redact' : 'allow')
  set(A.MG_REDACTION_REDACTED, sorted(redacted))
  set(A.MG_REDACTION_BLOCKED, sorted(blocked))
  set(A.MG_REDACTION_WITHHELD, sorted(withheld))
  set(A.MG_REDACTION_ALLOWED, sorted(allowed))
}

/** Identifier-like strings: data classes, rule names, codes, encodings. Nothing that could be free text. */
const SAFE_STRING = /^[A-Za-z0-9_.:/@+-]{0,128}$/

/**
 * A denial's details with every value that could carry request text replaced:
 * stages put caller-safe facts there, but "caller-safe" is not "audit-safe" —
 * a JSON parse error, for one, quotes the body around the error. Numbers,
 * booleans and identifier-like strings stay; other strings become "[omitted]".
 */
export function safeDetails(v: unknown, depth: number): unknown {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return v
  if (typeof v === 'string') return SAFE_STRING.test(v) ? v : '[omitted]'
  if (depth >= 3 || typeof v !== 'object') return '[omitted]'
  if (Array.isArray(v)) return v.slice(0, 32).map((x) => safeDetails(x, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v as Record<string, unknown>).slice(0, 32)) out[SAFE_STRING.test(k) ? k : '[omitted]'] = safeDetails(x, depth + 1)
  return out
}

function errorName(err: unknown): string {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' || typeof code === 'number') return cap(String(code), 64)
    const name = (err as { name?: unknown }).name
    if (typeof name === 'string') return cap(name, 64)
  }
  return 'error'
}
