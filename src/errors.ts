/**
 * The error catalog. Every denial modelgate produces carries one of these
 * stable codes, an HTTP status and a message that is safe to show the caller.
 * Internal details never reach the client: they go to logs and the audit span.
 */
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
  MG_RESPONSE_BLOCKED: { status: 502, message: 'The response carried data that policy does not allow to be returned.' },
  MG_RESPONSE_UNREADABLE: { status: 502, message: 'The response could not be inspected (unsupported or corrupt content-encoding), so it is withheld.' },
  MG_QUOTA_EXCEEDED: { status: 429, message: 'The request would exceed a quota.' },
  MG_AUDIT_UNAVAILABLE: { status: 503, message: 'The audit trail cannot record this request, so it is refused.' },
  MG_TIMEOUT: { status: 504, message: 'modelgate did not reach a decision in time, so the request is refused.' },
  MG_SHUTTING_DOWN: { status: 503, message: 'modelgate is shutting down; retry on another replica.' },
  MG_INTERNAL: { status: 500, message: 'modelgate failed while processing the request, so it is refused.' },
} as const satisfies Record<string, ErrorSpec>

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

  constructor(code: ErrorCode, opts: { details?: Record<string, unknown>; internal?: string; cause?: unknown } = {}) {
    super(ERRORS[code].message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'GateError'
    this.code = code
    this.status = ERRORS[code].status
    this.details = Object.freeze({ ...(opts.details ?? {}) })
    this.internal = opts.internal
  }
}

/** Any thrown value becomes a GateError; unknown failures become MG_INTERNAL (fail closed). */
export function toGateError(err: unknown): GateError {
  if (err instanceof GateError) return err
  const internal = err instanceof Error ? `${err.name}: ${err.message}` : String(err)
  return new GateError('MG_INTERNAL', { internal, cause: err })
}

/** The fields of a denial body that a GateError's details cannot overwrite. */
const DENIAL_FIELDS: ReadonlySet<string> = new Set(['type', 'code', 'message', 'request_id', 'decision_id'])

/** The JSON body sent to the caller on a denial. Shaped like the providers' own error bodies. */
export function denialBody(err: GateError, ids: { requestId: string; decisionId?: string | undefined }): Buffer {
  return Buffer.from(
    JSON.stringify({
      error: {
        type: 'modelgate_error',
        code: err.code,
        message: err.message,
        request_id: ids.requestId,
        ...(ids.decisionId ? { decision_id: ids.decisionId } : {}),
        // Details add facts; they never replace the fields above.
        ...Object.fromEntries(Object.entries(err.details).filter(([k]) => !DENIAL_FIELDS.has(k))),
      },
    }),
  )
}
