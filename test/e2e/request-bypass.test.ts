/**
 * Requests that try to slip data or decisions past modelgate, through a real
 * Envoy with the official SDKs where the request shape allows: data in keys,
 * numbers and fields that are not message text reaches the provider only as
 * placeholders; duplicate keys are refused.
 */
import t, { type Test } from 'tap'
import { APIError } from 'openai'
import { startStack, type Stack } from '../helpers/stack.ts'

const EMAIL = 'dana.whitfield@gmail.com'
const CARD = '4111111111111111'
const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const MODEL = 'gpt-4o-mini'

t.test('request bodies are scanned whole and duplicate keys are refused', async (t) => {
  const stack: Stack = await startStack()
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  /** What the provider received for the one request just made. */
  const received = (t: Test) => {
    t.equal(stack.provider.requests.length, 1, 'the provider got the request')
    const body = stack.provider.requests[0]!.body.toString('utf8')
    t.notOk(body.includes(EMAIL), 'the e-mail address never reached the provider')
    t.notOk(body.includes(CARD), 'the card number never reached the provider')
    return JSON.parse(body)
  }

  t.test('OpenAI SDK: data outside the message text reaches the provider only as placeholders', async (t) => {
    const openai = stack.openai('checkout')
    const user = { role: 'user' as const, content: 'hello' }

    await openai.chat.completions.create({ model: MODEL, messages: [user], metadata: { [EMAIL]: 'customer' } })
    t.same(Object.keys(received(t).metadata), ['[EMAIL_1]'], 'a key of metadata')
    stack.provider.clear()

    await openai.chat.completions.create({ model: MODEL, messages: [user], metadata: { customer: `mail ${EMAIL}` } })
    t.equal(received(t).metadata.customer, 'mail [EMAIL_1]', 'a value under metadata')
    stack.provider.clear()

    await openai.chat.completions.create({
      model: MODEL,
      messages: [
        user,
        { role: 'assistant', content: null, tool_calls: [{ id: EMAIL, type: 'function', function: { name: 'lookup_order', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: EMAIL, content: 'found' },
      ],
    })
    const calls = received(t).messages
    t.same([calls[1].tool_calls[0].id, calls[2].tool_call_id], ['[EMAIL_1]', '[EMAIL_1]'], 'tool call ids')
    stack.provider.clear()

    await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:;base64, mail ${EMAIL}`, detail: EMAIL as 'auto' } }] }],
    })
    const part = received(t).messages[0].content[0].image_url
    t.same([part.url, part.detail], ['data:;base64, mail [EMAIL_1]', '[EMAIL_1]'], 'a data: URL that is no image, and image_url.detail')
    stack.provider.clear()

    await openai.chat.completions.create({
      model: MODEL,
      messages: [user],
      tools: [{ type: 'function', function: { name: 'lookup_order', parameters: { type: 'object', properties: { [EMAIL]: { type: 'string' } } } } }],
    })
    t.same(Object.keys(received(t).tools[0].function.parameters.properties), ['[EMAIL_1]'], 'a tool parameter name')
    stack.provider.clear()

    await openai.chat.completions.create({ model: MODEL, messages: [user], seed: Number(CARD) })
    t.equal(received(t).seed, '[CARD_NUMBER_1]', 'a card number given as a JSON number')
  })

  t.test('Anthropic SDK: tool_use input keys and long document text sources are scanned', async (t) => {
    const anthropic = stack.anthropic('checkout')
    await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [
        { role: 'user', content: 'look it up' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'lookup_order', input: { customer: { [EMAIL]: true } } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'ok' }] },
      ],
    })
    t.same(Object.keys(received(t).messages[1].content[0].input.customer), ['[EMAIL_1]'])
    stack.provider.clear()

    const notes = `${'Quarterly reconciliation notes for the finance team. '.repeat(12)}Questions to ${EMAIL}.`
    t.ok(notes.length > 256)
    await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: notes } }, { type: 'text', text: 'Summarise.' }] }],
    })
    t.match(received(t).messages[0].content[0].source.data, /Questions to \[EMAIL_1\]\.$/)
  })

  t.test('a secret used as a key feeds policy like any other: refused, and nothing reaches the provider', async (t) => {
    const err = await stack
      .openai('checkout')
      .chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], metadata: { [TOKEN]: 'x' } })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    t.ok(err instanceof APIError)
    t.equal((err as APIError).status, 403)
    t.match((err as APIError).error, { code: 'MG_POLICY_DENIED' })
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('duplicate keys are refused before policy sees the request', async (t) => {
    const cases: [name: string, body: string, field: string][] = [
      ['a second model', `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`, 'model'],
      [
        'a second tools list',
        `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"lookup_order"}}],\n"tools":[{"type":"function","function":{"name":"web_search"}}]}`,
        'tools',
      ],
    ]
    for (const [name, body, field] of cases) {
      const res = await stack.request('checkout', { path: '/v1/chat/completions', body })
      t.equal(res.status, 400, name)
      t.equal(res.headers['x-modelgate-error'], 'MG_BODY_DUPLICATE_KEY', name)
      t.match(res.json().error, { code: 'MG_BODY_DUPLICATE_KEY', field }, name)
    }
    t.same(res2line(await stack.request('checkout', { path: '/v1/chat/completions', body: cases[1]![1] })), { line: 2, column: 1 })
    t.equal(stack.provider.requests.length, 0, 'nothing reached the provider')
  })
})

function res2line(res: { json(): any }): { line: unknown; column: unknown } {
  const e = res.json().error
  return { line: e.line, column: e.column }
}
