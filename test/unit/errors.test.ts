import t from 'tap'
import { anthropicErrorType, denialBody, denialHeaders, dialectForPath, errorDocument, ERRORS, GateError, toGateError, type ErrorCode } from '../../src/errors.ts'

t.test('the catalog: stable codes, explicit statuses, safe messages', async (t) => {
  const codes = Object.keys(ERRORS) as ErrorCode[]
  t.ok(codes.length >= 20)
  for (const code of codes) {
    const spec = ERRORS[code]
    t.match(code, /^MG_[A-Z_]+$/, `${code} is an MG_ code`)
    t.ok(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599, `${code} has a 4xx/5xx status (${spec.status})`)
    t.match(spec.message, /^[A-Za-z].*\.$/, `${code} has a sentence as its message`)
    t.notMatch(spec.message, /\$\{|undefined|null/, `${code}'s message is fixed text`)
  }
})

t.test('identity, body and infrastructure failures map to the documented statuses', async (t) => {
  const expected: Partial<Record<ErrorCode, number>> = {
    MG_IDENTITY_MISSING: 401,
    MG_IDENTITY_INVALID: 403,
    MG_IDENTITY_UNTRUSTED: 403,
    MG_USER_TOKEN_INVALID: 401,
    MG_ROUTE_UNSUPPORTED: 404,
    MG_METHOD_UNSUPPORTED: 405,
    MG_CONTENT_TYPE_UNSUPPORTED: 400,
    MG_CONTENT_ENCODING_UNSUPPORTED: 400,
    MG_BODY_MALFORMED: 400,
    MG_BODY_INVALID: 400,
    MG_BODY_TOO_LARGE: 413,
    MG_TIMEOUT: 504,
    MG_SHUTTING_DOWN: 503,
    MG_INTERNAL: 500,
  }
  for (const [code, status] of Object.entries(expected)) t.equal(ERRORS[code as ErrorCode].status, status, code)
})

t.test('GateError carries code, status, the safe message, frozen details and the internal reason', async (t) => {
  const cause = new Error('underlying')
  const details = { field: 'model' }
  const e = new GateError('MG_BODY_INVALID', { details, internal: 'model is required', cause })
  t.ok(e instanceof Error)
  t.equal(e.name, 'GateError')
  t.equal(e.code, 'MG_BODY_INVALID')
  t.equal(e.status, 400)
  t.equal(e.message, ERRORS.MG_BODY_INVALID.message)
  t.same(e.details, { field: 'model' })
  t.ok(Object.isFrozen(e.details))
  details.field = 'changed'
  t.equal(e.details.field, 'model', 'details are copied')
  t.equal(e.internal, 'model is required')
  t.equal(e.cause, cause)
  const bare = new GateError('MG_TIMEOUT')
  t.same(bare.details, {})
  t.equal(bare.internal, undefined)
  t.notOk('cause' in bare, 'no cause unless one is given')
})

t.test('toGateError fails closed: anything that is not a GateError becomes MG_INTERNAL', async (t) => {
  const g = new GateError('MG_POLICY_DENIED')
  t.equal(toGateError(g), g, 'a GateError passes through')
  const cases: [name: string, thrown: unknown, internal: string][] = [
    ['an Error', new Error('boom'), 'Error: boom'],
    ['a TypeError', new TypeError('x is not a function'), 'TypeError: x is not a function'],
    ['a string', 'bad', 'bad'],
    ['undefined', undefined, 'undefined'],
    ['null', null, 'null'],
    ['an object', { a: 1 }, '[object Object]'],
  ]
  for (const [name, thrown, internal] of cases) {
    const e = toGateError(thrown)
    t.equal(e.code, 'MG_INTERNAL', name)
    t.equal(e.status, 500, name)
    t.equal(e.internal, internal, name)
    t.equal(e.message, ERRORS.MG_INTERNAL.message, `${name}: the caller never sees the cause`)
  }
})

t.test('denialBody is a provider-style JSON error with the code and request id, never the internal reason', async (t) => {
  const e = new GateError('MG_BODY_INVALID', { details: { field: 'messages', problem: 'must not be empty' }, internal: 'secret internal reason' })
  const body = denialBody(e, { requestId: 'req-1' })
  t.ok(Buffer.isBuffer(body))
  t.same(JSON.parse(body.toString()), {
    error: {
      type: 'modelgate_error',
      code: 'MG_BODY_INVALID',
      message: ERRORS.MG_BODY_INVALID.message,
      request_id: 'req-1',
      field: 'messages',
      problem: 'must not be empty',
    },
  })
  t.notMatch(body.toString(), /secret internal reason/)
  const withDecision = JSON.parse(denialBody(new GateError('MG_POLICY_DENIED'), { requestId: 'req-2', decisionId: 'dec-9' }).toString())
  t.same(withDecision, { error: { type: 'modelgate_error', code: 'MG_POLICY_DENIED', message: ERRORS.MG_POLICY_DENIED.message, request_id: 'req-2', decision_id: 'dec-9' } })
  const noDecision = JSON.parse(denialBody(new GateError('MG_POLICY_DENIED'), { requestId: 'r', decisionId: undefined }).toString())
  t.notOk('decision_id' in noDecision.error)
})

t.test('details cannot overwrite the stable fields of a denial body', async (t) => {
  const e = new GateError('MG_DATA_BLOCKED', {
    details: { code: 'MG_OK', type: 'other', message: 'all fine', request_id: 'forged', decision_id: 'forged', data_classes: ['email'] },
  })
  const body = JSON.parse(denialBody(e, { requestId: 'req-3', decisionId: 'dec-3' }).toString())
  t.same(body, {
    error: {
      type: 'modelgate_error',
      code: 'MG_DATA_BLOCKED',
      message: ERRORS.MG_DATA_BLOCKED.message,
      request_id: 'req-3',
      decision_id: 'dec-3',
      data_classes: ['email'],
    },
  })
  const noDecision = JSON.parse(denialBody(new GateError('MG_DATA_BLOCKED', { details: { decision_id: 'forged' } }), { requestId: 'r' }).toString())
  t.notOk('decision_id' in noDecision.error, 'a detail does not stand in for a missing decision id')
})

t.test('dialectForPath: Anthropic paths answer in Anthropic\'s format, everything else in OpenAI\'s', async (t) => {
  const cases: [path: string, dialect: 'openai' | 'anthropic'][] = [
    ['/v1/messages', 'anthropic'],
    ['/v1/messages?beta=true', 'anthropic'],
    ['/v1/messages/count_tokens', 'anthropic'],
    ['/v1/messages/batches/abc', 'anthropic'],
    ['/v1/complete', 'anthropic'],
    ['/v1/chat/completions', 'openai'],
    ['/openai/v1/responses', 'openai'],
    ['/openai/deployments/gpt4/chat/completions', 'openai'],
    ['/v1/files', 'openai'],
    ['/v1/messagesX', 'openai'],
    ['', 'openai'],
  ]
  for (const [path, dialect] of cases) t.equal(dialectForPath(path), dialect, path || '(empty)')
})

t.test('anthropicErrorType gives Anthropic\'s documented type for every status the catalog uses', async (t) => {
  const expected: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    403: 'permission_error',
    404: 'not_found_error',
    405: 'invalid_request_error',
    413: 'request_too_large',
    431: 'invalid_request_error',
    429: 'rate_limit_error',
    500: 'api_error',
    502: 'api_error',
    503: 'overloaded_error',
    504: 'timeout_error',
    529: 'overloaded_error',
  }
  for (const [status, type] of Object.entries(expected)) t.equal(anthropicErrorType(Number(status)), type, status)
  for (const code of Object.keys(ERRORS) as ErrorCode[]) t.ok(expected[ERRORS[code].status], `${code}'s status ${ERRORS[code].status} has a type`)
})

t.test('an Anthropic denial body: type error, Anthropic\'s error type, the code in error.details.error_code, the request id at the top', async (t) => {
  const e = new GateError('MG_DATA_BLOCKED', { details: { data_classes: ['secret'], type: 'forged', details: 'forged', request_id: 'forged' }, internal: 'secret internal reason' })
  const body = denialBody(e, { requestId: 'req-7', decisionId: 'dec-7' }, 'anthropic')
  t.same(JSON.parse(body.toString()), {
    type: 'error',
    error: {
      type: 'permission_error',
      message: ERRORS.MG_DATA_BLOCKED.message,
      code: 'MG_DATA_BLOCKED',
      decision_id: 'dec-7',
      data_classes: ['secret'],
      details: { error_code: 'MG_DATA_BLOCKED' },
    },
    request_id: 'req-7',
  })
  t.notMatch(body.toString(), /secret internal reason/)
  t.same(errorDocument('openai', e, { requestId: 'req-7' }), JSON.parse(denialBody(e, { requestId: 'req-7' }).toString()), 'OpenAI is the default dialect')
})

t.test('denial headers: the code and x-request-id always, request-id for Anthropic callers', async (t) => {
  const e = new GateError('MG_QUOTA_EXCEEDED')
  t.same(Object.fromEntries(denialHeaders(e, { requestId: 'r1' }, 'openai')), { 'content-type': 'application/json', 'x-modelgate-error': 'MG_QUOTA_EXCEEDED', 'x-request-id': 'r1' })
  t.same(Object.fromEntries(denialHeaders(e, { requestId: 'r1' }, 'anthropic')), { 'content-type': 'application/json', 'x-modelgate-error': 'MG_QUOTA_EXCEEDED', 'x-request-id': 'r1', 'request-id': 'r1' })
})
