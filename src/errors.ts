/**
 * The error catalog. Every denial modelgate produces carries one of these
 * stable codes, an HTTP status and a message that is safe to show the caller.
 * Internal details never reach the client: they go to logs and the audit span.
 */
import { pathPart } from './providers/routes.ts'

export interface ErrorSpec {
  readonly status: number
  readonly message: string
}

export const ERRORS = {
  MG_IDENTITY_MISSING: { status: 401, message: 'The connection carries no client certificate identity.' },
  MG_IDENTITY_INVALID: { status: 403, message: 'The client certificate does not carry exactly one valid SPIFFE ID.' },
  MG_IDENTITY_UNTRUSTED: { status: 403, message: 'The client identity belongs to a trust domain that is not allowed.' },
  MG_USER_TOKEN_INVALID: { status: 401, message: 'The delegated user token is missing, expired or not signed by a trusted issuer.' },
  MG_ROUTE_UNSUPPORTED: { status: 404, message: 'This API path is not one modelgate knows how to inspect.' },
  MG_METHOD_UNSUPPORTED: { status: 405, message: 'This HTTP method is not allowed on a model API path.' },
  MG_MODEL_NOT_SERVED: { status: 404, message: 'No configured provider serves the requested model on this route.' },
  MG_CONTENT_TYPE_UNSUPPORTED: { status: 400, message: 'The request body must be JSON (content-type application/json).' },
  MG_CONTENT_ENCODING_UNSUPPORTED: { status: 400, message: 'The request body uses a content-encoding modelgate cannot inspect.' },
  MG_BODY_MALFORMED: { status: 400, message: 'The request body is not valid JSON.' },
  MG_BODY_INVALID: { status: 400, message: 'The request body does not match the provider API.' },
  MG_BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than the configured limit.' },
  MG_BODY_TOO_DEEP: { status: 400, message: 'The request body nests JSON deeper than the configured limit.' },
  MG_BODY_TOO_COMPLEX: { status: 413, message: 'The request body holds more JSON values than the configured limit.' },
  MG_BODY_DUPLICATE_KEY: { status: 400, message: 'The request body names the same key twice in one JSON object.' },
  MG_POLICY_DENIED: { status: 403, message: 'The request is not permitted by policy.' },
  MG_POLICY_ERROR: { status: 403, message: 'The request could not be evaluated against policy, so it is denied.' },
  MG_DATA_BLOCKED: { status: 403, message: 'The request carries data that policy does not allow to leave.' },
  MG_DATA_OUTSIDE_BODY: { status: 400, message: 'The request URL or a header carries data that must not leave as it is; modelgate redacts bodies only.' },
  MG_TOOL_TYPE_UNKNOWN: { status: 403, message: 'The request declares a tool type modelgate does not know, and the configuration does not allow it.' },
  MG_RESPONSE_TOOL_DENIED: { status: 403, message: 'The response calls a tool the caller may not call, so it is withheld.' },
  MG_RESPONSE_BLOCKED: { status: 502, message: 'The response carried data that policy does not allow to be returned.' },
  MG_RESPONSE_UNREADABLE: { status: 502, message: 'The response could not be inspected (unsupported or corrupt content-encoding), so it is withheld.' },
  MG_RESPONSE_BINARY: { status: 502, message: 'The response is binary (not UTF-8 text) and cannot be inspected, so it is withheld.' },
  MG_MCP_INVALID: { status: 400, message: 'The request body is not a JSON-RPC 2.0 message.' },
  MG_MCP_BATCH: { status: 400, message: 'JSON-RPC batches are not accepted: send one message per request.' },
  MG_MCP_HEADER_MISMATCH: { status: 400, message: 'The MCP request headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name) are missing or do not match the body.' },
  MG_MCP_METHOD_UNSUPPORTED: { status: 403, message: 'This MCP method is not one modelgate authorises, so it is refused.' },
  MG_APPROVAL_REQUIRED: { status: 403, message: 'Policy requires a human approval for this call: an approver must grant the approval id, then the same call may be retried once.' },
  MG_APPROVAL_UNKNOWN: { status: 404, message: 'No pending approval has this id: it is unknown, already granted or used, or expired.' },
  MG_APPROVAL_SELF: { status: 403, message: 'An approval must be granted by someone other than the caller who asked for it.' },
  MG_CREDENTIAL_MISSING: { status: 403, message: 'No provider credential is configured for this caller on this provider.' },
  MG_CREDENTIAL_UNAVAILABLE: { status: 503, message: 'The provider credential is not available right now, so the request is refused; retry later.' },
  MG_QUOTA_EXCEEDED: { status: 429, message: 'The request would exceed a quota.' },
  MG_QUOTA_UNAVAILABLE: { status: 503, message: 'The quota store cannot be reached, so the request is refused; retry later.' },
  MG_STATE_UNAVAILABLE: { status: 503, message: 'The store that keeps agent sessions and approvals cannot be reached, so the request is refused; retry later.' },
  MG_AUDIT_UNAVAILABLE: { status: 503, message: 'The audit trail cannot record this request, so it is refused.' },
  MG_TIMEOUT: { status: 504, message: 'modelgate did not reach a decision in time, so the request is refused.' },
  MG_SHUTTING_DOWN: { status: 503, message: 'modelgate is shutting down; retry on another replica.' },
  MG_INTERNAL: { status: 500, message: 'modelgate failed while processing the request, so it is refused.' },
  // Envoy's own answers, written by the local_reply_config of envoy/ and the chart (never raised by a stage).
  MG_GATEWAY_TIMEOUT: { status: 504, message: 'The policy check did not answer in time, so the request is refused.' },
  MG_GATEWAY_ERROR: { status: 500, message: 'The policy check could not be completed, so the request is refused.' },
  MG_HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are larger than the gateway accepts.' },
  MG_UPSTREAM_TIMEOUT: { status: 504, message: 'The model provider did not answer in time.' },
  MG_UPSTREAM_UNAVAILABLE: { status: 503, message: 'The model provider cannot be reached right now; retry later.' },
  MG_REQUEST_REJECTED: { status: 400, message: 'The gateway could not accept the request as sent.' },
} as const satisfies Record<string, ErrorSpec>

/**
 * The codes Envoy answers with itself (its local replies), with the catalog's
 * message as the body. MG_BODY_TOO_LARGE and MG_ROUTE_UNSUPPORTED are shared
 * with modelgate's own denials.
 */
export const ENVOY_REPLY_CODES = [
  'MG_GATEWAY_TIMEOUT',
  'MG_GATEWAY_ERROR',
  'MG_BODY_TOO_LARGE',
  'MG_HEADERS_TOO_LARGE',
  'MG_UPSTREAM_TIMEOUT',
  'MG_UPSTREAM_UNAVAILABLE',
  'MG_ROUTE_UNSUPPORTED',
  'MG_REQUEST_REJECTED',
] as const satisfies readonly (keyof typeof ERRORS)[]

export type ErrorCode = keyof typeof ERRORS

/**
 * A denial raised by a pipeline stage. `details` are safe, structured facts the
 * caller may see (e.g. the data classes found, never the values); `internal`
 * explains the cause to operators and is recorded in the audit span and logs only.
 */
export class GateError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: Readonly<Record<string, unknown>>
  readonly internal: string | undefined
  /** Headers the denial carries besides the standard ones (e.g. `retry-after`, the RateLimit fields of a quota refusal). */
  readonly headers: Readonly<Record<string, string>>

  constructor(code: ErrorCode, opts: { details?: Record<string, unknown>; internal?: string; cause?: unknown; headers?: Record<string, string> } = {}) {
    super(ERRORS[code].message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'GateError'
    this.code = code
    this.status = ERRORS[code].status
    this.details = Object.freeze({ ...(opts.details ?? {}) })
    this.internal = opts.internal
    this.headers = Object.freeze({ ...(opts.headers ?? {}) })
  }
}

/** Any thrown value becomes a GateError; unknown failures become MG_INTERNAL (fail closed). */
export function toGateError(err: unknown): GateError {
  if (err instanceof GateError) return err
  const internal = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  return new GateError('MG_INTERNAL', { internal, cause: err })
}

/**
 * The error format a caller's SDK understands. modelgate answers in the
 * dialect of the API the request was sent to: the OpenAI SDK (also for Azure
 * OpenAI and OpenAI-compatible servers) reads `{"error":{…}}` and the
 * `x-request-id` header; the Anthropic SDK reads `{"type":"error","error":
 * {"type":…,"message":…},"request_id":…}` and the `request-id` header.
 */
export type Dialect = 'openai' | 'anthropic' | 'mcp'

/**
 * The JSON-RPC error code of a refusal sent to an MCP client: the
 * protocol's own for malformed messages (-32600), unknown methods (-32601)
 * and header mismatches (-32020, 2026-07-28); -32001 for every other
 * refusal, with modelgate's code in `error.data.code`.
 */
export function jsonRpcCode(code: ErrorCode): number {
  switch (code) {
    case 'MG_MCP_HEADER_MISMATCH':
      return -32020
    case 'MG_MCP_INVALID':
    case 'MG_MCP_BATCH':
    case 'MG_BODY_MALFORMED':
      return -32600
    case 'MG_MCP_METHOD_UNSUPPORTED':
      return -32601
    default:
      return -32001
  }
}

/** Refusals of a message's form: answered with their HTTP status (400) even when the message has an id. */
const MCP_PROTOCOL_ERRORS: ReadonlySet<string> = new Set(['MG_MCP_HEADER_MISMATCH', 'MG_MCP_INVALID', 'MG_MCP_BATCH', 'MG_BODY_MALFORMED', 'MG_BODY_TOO_LARGE', 'MG_BODY_TOO_DEEP', 'MG_BODY_TOO_COMPLEX', 'MG_BODY_DUPLICATE_KEY'])

/**
 * The HTTP status of a refusal in the caller's dialect. An MCP request that
 * modelgate read (it has a JSON-RPC id) is answered like any JSON-RPC error,
 * with 200 and the error as the response, so the client's SDK hands it to
 * the caller as the request's error (the MCP TypeScript SDK raises McpError
 * with `code`, `message` and `data`); refusals of the message's form, and
 * requests refused before their body was read, keep the catalog's status.
 */
export function denialStatus(err: GateError, dialect: Dialect, rpcId: string | number | null | undefined): number {
  if (dialect !== 'mcp' || rpcId === undefined || rpcId === null || MCP_PROTOCOL_ERRORS.has(err.code)) return err.status
  return 200
}

/**
 * The dialect of a request path, decided when its headers arrive, before any
 * stage ran: Anthropic's when the path lies under an Anthropic API prefix,
 * else OpenAI's. Once the provider stage has matched the path to a route
 * (with the configured base paths), the route's kind decides instead.
 */
export function dialectForPath(rawPath: string): Dialect {
  const path = pathPart(rawPath)
  return ANTHROPIC_PREFIXES.some((p) => path === p || path.startsWith(`${p}/`)) ? 'anthropic' : 'openai'
}

/** Paths of Anthropic's API that modelgate does not inspect (refused, but answered in Anthropic's format). */
const ANTHROPIC_PREFIXES = ['/v1/messages', '/v1/complete']

/**
 * Anthropic's error `type` for an HTTP status, as Anthropic's API documents
 * them (errors page): the SDK exposes it as `err.type`.
 */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error'
    case 401:
      return 'authentication_error'
    case 402:
      return 'billing_error'
    case 403:
      return 'permission_error'
    case 404:
      return 'not_found_error'
    case 409:
      return 'conflict_error'
    case 413:
      return 'request_too_large'
    case 429:
      return 'rate_limit_error'
    case 503:
    case 529:
      return 'overloaded_error'
    case 504:
      return 'timeout_error'
  }
  return status >= 500 ? 'api_error' : 'invalid_request_error'
}

/** What an error body says: the code, its status and safe message, and the safe details. */
export interface ErrorFacts {
  readonly code: string
  readonly status: number
  readonly message: string
  readonly details: Readonly<Record<string, unknown>>
}

export interface DenialIds {
  readonly requestId: string
  readonly decisionId?: string | undefined
  /** MCP: the JSON-RPC id of the refused request (null or absent when it has none or was not read). */
  readonly rpcId?: string | number | null | undefined
}

/** The fields of an error object that details cannot overwrite. */
const DENIAL_FIELDS: ReadonlySet<string> = new Set(['type', 'code', 'message', 'request_id', 'decision_id', 'details'])

/**
 * The error document in the caller's dialect, as a plain object: the denial
 * body, and the `data` of the SSE error event that ends a stream mid-way.
 *
 * - openai: `{"error":{"type":"modelgate_error","code","message","request_id","decision_id"?,…details}}`;
 *   the OpenAI SDK surfaces `err.code`, `err.type` and the message.
 * - mcp: a JSON-RPC error response `{"jsonrpc":"2.0","id",<code (jsonRpcCode)>,"message",
 *   "data":{"code","request_id","decision_id"?,…details}}`; the MCP SDK raises it as McpError.
 * - anthropic: `{"type":"error","error":{"type":<Anthropic type for the status>,"message","code",
 *   "decision_id"?,…details,"details":{"error_code":code}},"request_id"}`; the Anthropic SDK
 *   surfaces `err.type`, the message and `err.errorCode` (from `error.details.error_code`).
 */
export function errorDocument(dialect: Dialect, e: ErrorFacts, ids: DenialIds): Record<string, unknown> {
  // Details add facts; they never replace the fields of the format.
  const facts = Object.fromEntries(Object.entries(e.details).filter(([k]) => !DENIAL_FIELDS.has(k)))
  const decision = ids.decisionId ? { decision_id: ids.decisionId } : {}
  if (dialect === 'mcp') {
    return {
      jsonrpc: '2.0',
      id: ids.rpcId ?? null,
      error: { code: jsonRpcCode(e.code as ErrorCode), message: e.message, data: { code: e.code, request_id: ids.requestId, ...decision, ...facts } },
    }
  }
  if (dialect === 'anthropic') {
    return {
      type: 'error',
      error: { type: anthropicErrorType(e.status), message: e.message, code: e.code, ...decision, ...facts, details: { error_code: e.code } },
      request_id: ids.requestId,
    }
  }
  return { error: { type: 'modelgate_error', code: e.code, message: e.message, request_id: ids.requestId, ...decision, ...facts } }
}

/** The JSON body sent to the caller on a denial, in the caller's dialect (OpenAI's by default). */
export function denialBody(err: GateError, ids: DenialIds, dialect: Dialect = 'openai'): Buffer {
  return Buffer.from(JSON.stringify(errorDocument(dialect, err, ids)))
}

/**
 * The headers of a denial: the code (`x-modelgate-error`), the request id as
 * `x-request-id` (what the OpenAI SDK reads) and, for Anthropic callers, also
 * as `request-id` (what the Anthropic SDK reads); then the error's own headers.
 */
export function denialHeaders(err: GateError, ids: DenialIds, dialect: Dialect): Map<string, string> {
  const h = new Map([
    ['content-type', 'application/json'],
    ['x-modelgate-error', err.code],
    ['x-request-id', ids.requestId],
  ])
  // The error's own headers (a quota refusal's Retry-After and RateLimit fields) never replace these.
  for (const [k, v] of Object.entries(err.headers)) if (!h.has(k)) h.set(k, v)
  if (dialect === 'anthropic') h.set('request-id', ids.requestId)
  return h
}
