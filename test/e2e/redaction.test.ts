/**
 * Redaction through a real Envoy: the stand-in provider receives the redacted
 * body, and a streamed answer with a secret split across two SSE chunks
 * reaches the client redacted (and a placeholder split the same way comes
 * back restored when restoration is on).
 */
import t from 'tap'
import { gzipSync } from 'node:zlib'
import { startStack, type Stack } from '../helpers/stack.ts'

const EMAIL = 'dana.whitfield@gmail.com'
const IBAN = 'DE89370400440532013000'
const GITHUB = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'

function chunk(content: string): string {
  return `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`
}

t.test('with redaction in the pipeline and placeholder restoration on', async (t) => {
  const stack: Stack = await startStack({ config: { redaction: { restore: { enabled: true } } } })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  t.test('the provider receives the redacted body, with a correct content-length', async (t) => {
    const res = await stack.request('checkout', {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Mail ${EMAIL} the refund to ${IBAN}, thanks` }] },
    })
    t.equal(res.status, 200)
    const seen = stack.provider.requests[0]!
    const text = seen.body.toString('utf8')
    t.notOk(text.includes(EMAIL), 'the e-mail address never reached the provider')
    t.notOk(text.includes(IBAN), 'the IBAN never reached the provider')
    t.same((seen.json as { messages: { content: string }[] }).messages[0]!.content, 'Mail [EMAIL_1] the refund to [IBAN_1], thanks')
    t.equal(Number(seen.headers['content-length']), seen.body.length)
    t.match(res.json().choices[0].message.content, `You said: Mail ${EMAIL} the refund to ${IBAN}, thanks`, 'the caller gets its own values back')
  })

  t.test('a secret in the prompt is refused by policy and reaches no provider', async (t) => {
    const res = await stack.request('checkout', {
      path: '/v1/chat/completions',
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `deploy with ${GITHUB}` }] },
    })
    t.equal(res.status, 403)
    t.equal(res.json().error.code, 'MG_POLICY_DENIED')
    t.notOk(res.text().includes(GITHUB), 'the denial does not echo the secret')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a secret split across two streamed chunks reaches the client redacted', async (t) => {
    stack.provider.enqueue({
      sse: [chunk('Your token is ghp_Zq8Xw2Lk9Vb4'), chunk('Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2 keep it safe'), 'data: [DONE]\n\n'],
      chunkDelayMs: 20,
    })
    const stream = await stack.openai('checkout').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'what is my token?' }], stream: true })
    let text = ''
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
    t.equal(text, 'Your token is [GITHUB_TOKEN_1] keep it safe')
  })

  t.test('a placeholder split across chunks is restored to the caller’s own value', async (t) => {
    stack.provider.enqueue({ sse: [chunk('I will write to [EMA'), chunk('IL_1] today.'), 'data: [DONE]\n\n'], chunkDelayMs: 20 })
    const stream = await stack.openai('checkout').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Please email ${EMAIL}` }], stream: true })
    let text = ''
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
    t.equal(text, `I will write to ${EMAIL} today.`)
    const upstream = stack.provider.requests[0]!.body.toString('utf8')
    t.notOk(upstream.includes(EMAIL), 'the provider only saw the placeholder')
  })

  t.test('a gzip-encoded JSON answer is decoded, redacted and sent identity-encoded', async (t) => {
    const answer = { id: 'x', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `Use ${GITHUB}` }, finish_reason: 'stop' }] }
    stack.provider.enqueue({ headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(Buffer.from(JSON.stringify(answer))) })
    const res = await stack.request('checkout', {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
    })
    t.equal(res.status, 200)
    t.equal(res.headers['content-encoding'], undefined)
    t.equal(res.json().choices[0].message.content, 'Use [GITHUB_TOKEN_1]')
  })
})
