/**
 * Denials in the caller's dialect, through a real Envoy and the official
 * SDKs: on Anthropic paths the Anthropic SDK raises an APIError with the
 * status, Anthropic's error type, the message, the request id and modelgate's
 * code; on OpenAI paths the OpenAI SDK does the same in OpenAI's terms.
 */
import t from 'tap'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { ERRORS } from '../../src/errors.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

const claude = { model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user' as const, content: 'hello' }] }

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  )
}

t.test('denials through Envoy, as each SDK sees them', async (t) => {
  const stack: Stack = await startStack()
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  t.test('a policy denial on /v1/messages is an Anthropic permission_error with the request id and the MG code', async (t) => {
    // claude-sonnet-4-5 is for the research team only (policies/models.cedar).
    const err = await rejection(stack.anthropic('checkout').messages.create(claude))
    t.ok(err instanceof Anthropic.APIError, 'an Anthropic APIError')
    t.ok(err instanceof Anthropic.PermissionDeniedError, 'the class the SDK picks for 403')
    const e = err as InstanceType<typeof Anthropic.APIError>
    t.equal(e.status, 403)
    t.equal(e.type, 'permission_error')
    t.equal(e.apiMessage, ERRORS.MG_POLICY_DENIED.message)
    t.equal(e.errorCode, 'MG_POLICY_DENIED', 'the SDK reads the code from error.details.error_code')
    t.match(e.requestID, /^[0-9a-f-]{36}$/, 'the SDK finds the request id')
    t.equal(e.headers?.get('x-request-id'), e.requestID, 'the same id as x-request-id')
    t.equal(e.headers?.get('x-modelgate-error'), 'MG_POLICY_DENIED')
    t.match(e.error, { type: 'error', request_id: e.requestID, error: { type: 'permission_error', code: 'MG_POLICY_DENIED', decision_id: /^[0-9a-f-]{36}$/ } })
    // The SDK prints Anthropic's own error bodies the same way: the status, then the body.
    t.ok(e.message.startsWith('403 ') && e.message.includes(ERRORS.MG_POLICY_DENIED.message), 'the message names the status and the reason')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('an identity refusal before the route is known is still Anthropic-shaped on an Anthropic path', async (t) => {
    const res = await stack.request('twoUris', { path: '/v1/messages', body: claude })
    t.equal(res.status, 403)
    t.equal(res.headers['request-id'], res.headers['x-request-id'])
    t.match(res.json(), { type: 'error', error: { type: 'permission_error', code: 'MG_IDENTITY_INVALID', message: ERRORS.MG_IDENTITY_INVALID.message }, request_id: res.headers['x-request-id'] })
  })

  t.test('an unknown path under /v1/messages is an Anthropic not_found_error', async (t) => {
    const err = await rejection(stack.anthropic('notebook').messages.countTokens({ model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: 'hi' }] }))
    t.ok(err instanceof Anthropic.NotFoundError)
    const e = err as InstanceType<typeof Anthropic.APIError>
    t.equal(e.type, 'not_found_error')
    t.equal(e.errorCode, 'MG_ROUTE_UNSUPPORTED')
    t.match(e.requestID, /^[0-9a-f-]{36}$/)
  })

  t.test('a malformed body on /v1/messages is an Anthropic invalid_request_error', async (t) => {
    const res = await stack.request('notebook', { path: '/v1/messages', body: '{"model":' })
    t.equal(res.status, 400)
    t.match(res.json(), { type: 'error', error: { type: 'invalid_request_error', code: 'MG_BODY_MALFORMED' } })
  })

  t.test('a policy denial on an OpenAI path surfaces in the OpenAI SDK with code, message and request id', async (t) => {
    const err = await rejection(stack.openai('checkout').chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] }))
    t.ok(err instanceof OpenAI.PermissionDeniedError)
    const e = err as InstanceType<typeof OpenAI.APIError>
    t.equal(e.status, 403)
    t.equal(e.code, 'MG_POLICY_DENIED')
    t.equal(e.type, 'modelgate_error')
    t.equal(e.message, `403 ${ERRORS.MG_POLICY_DENIED.message}`)
    t.match(e.requestID, /^[0-9a-f-]{36}$/, 'the SDK finds the request id in x-request-id')
    t.match(e.error, { request_id: e.requestID, decision_id: /^[0-9a-f-]{36}$/ })
    t.equal(e.headers?.get('request-id'), null, 'no Anthropic header on an OpenAI answer')
  })

  t.test('an identity refusal on an OpenAI path keeps the OpenAI shape', async (t) => {
    const res = await stack.request('nonSpiffe', { path: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] } })
    t.equal(res.status, 403)
    t.match(res.json(), { error: { type: 'modelgate_error', code: 'MG_IDENTITY_INVALID', request_id: res.headers['x-request-id'] } })
    t.notOk('type' in res.json() && res.json().type === 'error')
  })
})

t.test('a stream ended mid-way by modelgate raises the error in each SDK, in its own terms', async (t) => {
  const stack: Stack = await startStack({ config: { redaction: { responses: { actions: { secret: 'block' } } } } })
  t.teardown(() => stack.close())
  const GITHUB = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
  const ev = (type: string, body: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...body })}\n\n`

  t.test('Anthropic: the stream raises an api_error APIError with the MG code and the request id', async (t) => {
    stack.provider.enqueue({
      sse: [
        ev('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], usage: { input_tokens: 3, output_tokens: 0 } } }),
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `Here you go: ${GITHUB}` } }),
        ev('content_block_stop', { index: 0 }),
        ev('message_stop', {}),
      ],
    })
    const stream = await stack.anthropic('notebook').messages.create({ ...claude, stream: true })
    let text = ''
    const err = await rejection(
      (async () => {
        for await (const e of stream) if (e.type === 'content_block_delta' && e.delta.type === 'text_delta') text += e.delta.text
      })(),
    )
    t.ok(err instanceof Anthropic.APIError, 'an Anthropic APIError')
    const e = err as InstanceType<typeof Anthropic.APIError>
    t.match(e.error, { type: 'error', error: { type: 'api_error', code: 'MG_RESPONSE_BLOCKED', data_classes: ['secret'] }, request_id: /^[0-9a-f-]{36}$/ })
    t.notOk(text.includes(GITHUB), 'the secret never reached the caller')
  })

  t.test('OpenAI: the stream raises an APIError with the MG code', async (t) => {
    const chunk = (content: string) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`
    stack.provider.enqueue({ sse: [chunk('Here you go: '), chunk(GITHUB), 'data: [DONE]\n\n'] })
    const stream = await stack.openai('checkout').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'token?' }], stream: true })
    let text = ''
    const err = await rejection(
      (async () => {
        for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
      })(),
    )
    t.ok(err instanceof OpenAI.APIError, 'an OpenAI APIError')
    const e = err as InstanceType<typeof OpenAI.APIError>
    t.equal(e.code, 'MG_RESPONSE_BLOCKED')
    t.equal(e.type, 'modelgate_error')
    t.notOk(text.includes(GITHUB), 'the secret never reached the caller')
  })
})
