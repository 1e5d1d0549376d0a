/**
 * Envoy's own answers through a real Envoy: a hung or absent modelgate, a body
 * or headers over the limits, an unreachable provider. Each carries a JSON
 * body in the route's dialect, the request id and an x-modelgate-error code,
 * while modelgate's own denials pass through untouched. The access log never
 * holds the raw path.
 */
import t from 'tap'
import { ERRORS, GateError, denialBody, type ErrorCode } from '../../src/errors.ts'
import type { Stage } from '../../src/pipeline/stage.ts'
import { startStack, type HttpResult, type Stack } from '../helpers/stack.ts'

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] }
const messages = { model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hello there' }] }
type TestT = Parameters<Parameters<typeof t.test>[0]>[0]
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The OpenAI-style body Envoy's mapper writes for `code`. */
function assertOpenAiReply(t: TestT, res: HttpResult, status: number, code: ErrorCode): void {
  t.equal(res.status, status, `status ${status}`)
  t.equal(res.headers['x-modelgate-error'], code, 'x-modelgate-error names the code')
  t.match(res.headers['content-type'], /^application\/json/)
  const id = res.headers['x-request-id']
  t.match(id, UUID, 'the request id is returned')
  t.same(res.json(), { error: { type: 'modelgate_error', code, message: ERRORS[code].message, request_id: id } })
}

/** The Anthropic-style body (and request-id header) Envoy's mapper writes for /v1/messages. */
function assertAnthropicReply(t: TestT, res: HttpResult, status: number, code: ErrorCode, type: string): void {
  t.equal(res.status, status, `status ${status}`)
  t.equal(res.headers['x-modelgate-error'], code, 'x-modelgate-error names the code')
  const id = res.headers['x-request-id']
  t.match(id, UUID)
  t.equal(res.headers['request-id'], id, 'request-id carries the request id, as Anthropic answers do')
  t.same(res.json(), { type: 'error', error: { type, message: ERRORS[code].message }, request_id: id })
}

t.test('modelgate hung past message_timeout: 504 MG_GATEWAY_TIMEOUT in each dialect, and the provider sees nothing', async (t) => {
  const hang: Stage = { name: 'hang', requestBody: () => new Promise<void>(() => {}) }
  const stack = await startStack({ messageTimeout: '0.3s', config: { server: { phaseTimeoutMs: 20000, drainTimeoutMs: 100 } }, extraStages: { last: [hang] } })
  t.teardown(() => stack.close())
  assertOpenAiReply(t, await stack.request('checkout', { path: '/v1/chat/completions', body: chat }), 504, 'MG_GATEWAY_TIMEOUT')
  assertAnthropicReply(t, await stack.request('notebook', { path: '/v1/messages', body: messages }), 504, 'MG_GATEWAY_TIMEOUT', 'api_error')
  t.equal(stack.provider.requests.length, 0)
})

t.test('modelgate not running: 500 MG_GATEWAY_ERROR in each dialect', async (t) => {
  const stack = await startStack({ withoutModelgate: true })
  t.teardown(() => stack.close())
  assertOpenAiReply(t, await stack.request('checkout', { path: '/v1/chat/completions', body: chat }), 500, 'MG_GATEWAY_ERROR')
  assertAnthropicReply(t, await stack.request('notebook', { path: '/v1/messages?beta=true', body: messages }), 500, 'MG_GATEWAY_ERROR', 'api_error')
  t.equal(stack.provider.requests.length, 0)
})

t.test('with modelgate running', async (t) => {
  /** Denies with the code named in `x-test-deny`: every code modelgate raises, with its own body. */
  const denier: Stage = {
    name: 'denier',
    requestHeaders(ctx) {
      const code = ctx.requestHeaders.get('x-test-deny')
      if (code) throw new GateError(code as ErrorCode, { internal: 'test denial' })
    },
  }
  const stack: Stack = await startStack({ extraStages: { first: [denier] } })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  t.test('a body over the buffer limit: 413 MG_BODY_TOO_LARGE in each dialect', async (t) => {
    const big = JSON.stringify({ ...chat, messages: [{ role: 'user', content: 'x'.repeat(1_200_000) }] })
    assertOpenAiReply(t, await stack.request('checkout', { path: '/v1/chat/completions', body: big }), 413, 'MG_BODY_TOO_LARGE')
    const bigMessages = JSON.stringify({ ...messages, messages: [{ role: 'user', content: 'x'.repeat(1_200_000) }] })
    assertAnthropicReply(t, await stack.request('notebook', { path: '/v1/messages', body: bigMessages }), 413, 'MG_BODY_TOO_LARGE', 'request_too_large')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('headers over the limit never reach a provider; Envoy 1.40 closes the connection instead of answering 431', async (t) => {
    // The 431 is a local reply Envoy sends before the request reached ext_proc; the ext_proc
    // filter still holds its headers for the processor, and the codec error closes the
    // connection first. The MG_HEADERS_TOO_LARGE mapper is in place for when Envoy delivers it.
    const err = await stack.request('checkout', { path: '/v1/chat/completions', headers: { 'x-padding': 'p'.repeat(70 * 1024) }, body: chat }).then(
      (res) => new Error(`answered ${res.status}`),
      (e: Error) => e,
    )
    t.match(err.message, /socket hang up|ECONNRESET/)
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('the provider unreachable: 503 MG_UPSTREAM_UNAVAILABLE in each dialect', async (t) => {
    const port = stack.provider.port!
    await stack.provider.close()
    t.teardown(() => stack.provider.listen(port).then(() => {}))
    assertOpenAiReply(t, await stack.request('checkout', { path: '/v1/chat/completions', body: chat }), 503, 'MG_UPSTREAM_UNAVAILABLE')
    assertAnthropicReply(t, await stack.request('notebook', { path: '/v1/messages', body: messages }), 503, 'MG_UPSTREAM_UNAVAILABLE', 'api_error')
  })

  t.test("modelgate's own denials pass the mappers unchanged, whatever their status", async (t) => {
    const own = (Object.keys(ERRORS) as ErrorCode[]).filter((c) => !['MG_GATEWAY_TIMEOUT', 'MG_GATEWAY_ERROR', 'MG_HEADERS_TOO_LARGE', 'MG_UPSTREAM_TIMEOUT', 'MG_UPSTREAM_UNAVAILABLE', 'MG_REQUEST_REJECTED'].includes(c))
    for (const code of own) {
      for (const [client, path, body] of [
        ['checkout', '/v1/chat/completions', chat],
        ['notebook', '/v1/messages', messages],
      ] as const) {
        const res = await stack.request(client, { path, headers: { 'x-test-deny': code }, body })
        const id = res.headers['x-request-id'] as string
        t.equal(res.status, ERRORS[code].status, `${code} on ${path}: modelgate's status`)
        t.equal(res.headers['x-modelgate-error'], code, `${code} on ${path}: modelgate's code`)
        const dialect = path === '/v1/messages' ? 'anthropic' : 'openai'
        t.equal(res.text(), denialBody(new GateError(code), { requestId: id }, dialect).toString(), `${code} on ${path}: modelgate's own body, byte for byte`)
      }
    }
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('the access log holds the route template, never the raw path or its query', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions?api_key=sk-live-do-not-log-0123456789', body: chat })
    t.equal(res.status, 200)
    const id = res.headers['x-request-id'] as string
    let line: Record<string, unknown> | undefined
    for (let i = 0; i < 100 && !line; i++) {
      line = stack.envoy
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.request_id === id)
      if (!line) await new Promise((r) => setTimeout(r, 20))
    }
    t.match(line, { path: '/v1/chat/completions', route: 'openai', status: 200 })
    t.notMatch(stack.envoy.output(), /do-not-log/, 'the query never reaches the log')
  })
})
