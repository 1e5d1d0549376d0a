/**
 * Responses that used to carry a value past redaction, through a real Envoy,
 * read by the official OpenAI and Anthropic SDKs: SSE framing the SDKs accept
 * (two spaces after `data:`, continuation lines, a byte-order mark, CR line
 * ends, field lines without a colon, comments), values outside content deltas
 * (keys, numbers, structural fields, `data:;base64,` prefixes), bodies whose
 * declared type is not what they carry, surrogates and UTF-8 characters split
 * across events and chunks, and a long PEM block in tiny deltas. In every case
 * the planted value never reaches the caller and the SDK decodes the redacted
 * text.
 */
import t from 'tap'
import { startStack, type Stack } from '../helpers/stack.ts'

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const CARD = '4539578763621486'
const PLACEHOLDER = '[GITHUB_TOKEN_1]'

/** JSON text of a value with the token's `g` written as a \u escape: what a client's JSON.parse turns back into the token. */
const escaped = (v: unknown) => JSON.stringify(v).replaceAll('ghp_', '\\u0067hp_')

const chunk = (content: string, extra: Record<string, unknown> = {}) =>
  escaped({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }], ...extra })
const done = 'data: [DONE]\n\n'

const chatBody = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hello' }] }

async function chatText(stack: Stack): Promise<string> {
  const stream = await stack.openai('checkout').chat.completions.create({ ...chatBody, stream: true })
  let text = ''
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
  return text
}

t.test('responses read by the SDKs never carry a planted value', async (t) => {
  const stack: Stack = await startStack()
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  // 1. SSE framing read differently from the SDKs.
  const framings: [name: string, sse: (string | Buffer)[]][] = [
    ['two spaces after data:', [`data:  ${chunk(`Your token is ${TOKEN} ok`)}\n\n`, done]],
    ['a data line continued on a second data line', [`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,\ndata: "delta":{"content":"Your token is \\u0067hp_${TOKEN.slice(4)} ok"}}]}\n\n`, done]],
    ['a byte-order mark before the first event', [`\ufeffdata: ${chunk(`Your token is ${TOKEN} ok`)}\n\n`, done]],
    ['CR-only line endings', [`data: ${chunk('Your token is ')}\r\r`, `data: ${chunk(`${TOKEN} ok`)}\r\r`, 'data: [DONE]\r\r']],
    ['a field line without a colon and comments', [': keep-alive\n\n', `data\ndata: ${chunk(`Your token is ${TOKEN} ok`)}\n\n`, `: ${TOKEN}\n\n`, done]],
  ]
  for (const [name, sse] of framings) {
    t.test(`chat stream, ${name}: the SDK decodes the placeholder`, async (t) => {
      stack.provider.enqueue({ sse, chunkDelayMs: 5 })
      const text = await chatText(stack)
      t.notOk(text.includes(TOKEN))
      t.match(text, /Your token is \[GITHUB_TOKEN_1\] ok/)
    })
  }

  t.test('the raw bytes of a streamed answer carry no planted value in any form', async (t) => {
    stack.provider.enqueue({ sse: [`data:  ${chunk(`Your token is ${TOKEN}`)}\r\n\r\n`, `: ${TOKEN}\r\n\r\n`, done], chunkDelayMs: 5 })
    const res = await stack.request('checkout', { path: '/v1/chat/completions', body: { ...chatBody, stream: true } })
    t.equal(res.status, 200)
    t.notOk(res.text().includes(TOKEN) || res.text().includes('\\u0067hp_'))
    t.notOk(res.text().includes('\r'), 'written back in canonical form')
  })

  // 2. Everything in an event is scanned.
  t.test('chat stream: a content that begins with data:;base64, and values in keys, numbers and structural fields', async (t) => {
    stack.provider.enqueue({
      sse: [`data: ${chunk(`data:;base64,${TOKEN}`, { system_fingerprint: TOKEN, meta: { [TOKEN]: Number(CARD) } })}\n\n`, done],
      chunkDelayMs: 5,
    })
    const stream = await stack.openai('checkout').chat.completions.create({ ...chatBody, stream: true })
    const seen: unknown[] = []
    for await (const c of stream) seen.push(c)
    const text = JSON.stringify(seen)
    t.notOk(text.includes(TOKEN) || text.includes(CARD))
    const first = seen[0] as { choices: { delta: { content: string } }[]; system_fingerprint: string; meta: Record<string, unknown> }
    t.equal(first.choices[0]!.delta.content, `data:;base64,${PLACEHOLDER}`)
    t.equal(first.system_fingerprint, PLACEHOLDER)
    t.same(first.meta, { [PLACEHOLDER]: '[CARD_NUMBER_1]' })
  })

  t.test('chat, buffered: a content that begins with data:;base64, and a key and a number', async (t) => {
    stack.provider.enqueue({
      headers: { 'content-type': 'application/json' },
      body: escaped({ id: 'c', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `data:;base64,${TOKEN}` }, finish_reason: 'stop' }], meta: { [TOKEN]: Number(CARD) } }),
    })
    const answer = (await stack.openai('checkout').chat.completions.create(chatBody)) as unknown as { choices: { message: { content: string } }[]; meta: unknown }
    t.equal(answer.choices[0]!.message.content, `data:;base64,${PLACEHOLDER}`)
    t.notOk(JSON.stringify(answer).includes(TOKEN) || JSON.stringify(answer).includes(CARD))
  })

  t.test('Responses stream: response.completed repeating the text with a data:;base64, prefix', async (t) => {
    const completed = { id: 'resp_1', object: 'response', status: 'completed', model: 'gpt-4o-mini', output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: `data:;base64,${TOKEN}`, annotations: [] }] }], usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 } }
    stack.provider.enqueue({
      sse: [
        `event: response.created\ndata: ${escaped({ type: 'response.created', response: { ...completed, status: 'in_progress', output: [] } })}\n\n`,
        `event: response.output_text.delta\ndata: ${escaped({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'data:;base64,ghp_Zq8X' })}\n\n`,
        `event: response.output_text.delta\ndata: ${escaped({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: TOKEN.slice(8) })}\n\n`,
        `event: response.completed\ndata: ${escaped({ type: 'response.completed', response: completed })}\n\n`,
      ],
      chunkDelayMs: 5,
    })
    const stream = await stack.openai('checkout').responses.create({ model: 'gpt-4o-mini', input: 'hello', stream: true })
    let deltas = ''
    let final = ''
    for await (const e of stream) {
      if (e.type === 'response.output_text.delta') deltas += e.delta
      if (e.type === 'response.completed') final = JSON.stringify(e.response.output)
    }
    t.equal(deltas, `data:;base64,${PLACEHOLDER}`)
    t.notOk(final.includes(TOKEN))
    t.match(final, `data:;base64,${PLACEHOLDER}`)
  })

  t.test('Responses, buffered: the output text is redacted', async (t) => {
    stack.provider.enqueue({
      headers: { 'content-type': 'application/json' },
      body: escaped({ id: 'resp_1', object: 'response', status: 'completed', model: 'gpt-4o-mini', output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: `data:;base64,${TOKEN}`, annotations: [] }] }] }),
    })
    const r = await stack.openai('checkout').responses.create({ model: 'gpt-4o-mini', input: 'hello' })
    t.equal(r.output_text, `data:;base64,${PLACEHOLDER}`)
  })

  t.test('Anthropic stream: escaped text deltas, tool input fragments and message fields', async (t) => {
    const ev = (type: string, v: unknown) => `event: ${type}\ndata: ${escaped(v)}\n\n`
    const args = JSON.stringify({ token: TOKEN })
    stack.provider.enqueue({
      sse: [
        ev('message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, usage: { input_tokens: 1, output_tokens: 1 }, [TOKEN]: 1 } }),
        ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
        ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Use ghp_Zq8X' } }),
        ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: `${TOKEN.slice(8)} now` } }),
        ev('content_block_stop', { type: 'content_block_stop', index: 0 }),
        ev('content_block_start', { type: 'content_block_start', index: 1, content_block: { type: 'tool_use', id: 'toolu_1', name: 'fetch_url', input: {} } }),
        ev('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: args.slice(0, 14).replace('ghp_', '\\u0067hp_') } }),
        ev('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: args.slice(14) } }),
        ev('content_block_stop', { type: 'content_block_stop', index: 1 }),
        ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 5 } }),
        ev('message_stop', { type: 'message_stop' }),
      ],
      chunkDelayMs: 5,
    })
    // The call is to a tool the request declares and the caller may use: a response may call no other.
    const tools = [{ name: 'fetch_url', input_schema: { type: 'object' as const } }]
    const stream = stack.anthropic('notebook').messages.stream({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }], tools })
    const message = await stream.finalMessage()
    const text = JSON.stringify(message)
    t.notOk(text.includes(TOKEN))
    t.same(
      message.content.map((b) => (b.type === 'text' ? b.text : b.type === 'tool_use' ? b.input : undefined)),
      [`Use ${PLACEHOLDER} now`, { token: PLACEHOLDER }],
    )
  })

  t.test('Anthropic, buffered: text and a key', async (t) => {
    stack.provider.enqueue({
      headers: { 'content-type': 'application/json' },
      body: escaped({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [{ type: 'text', text: `data:;base64,${TOKEN}` }], stop_reason: 'end_turn', usage: { input_tokens: 1, output_tokens: 1 }, [TOKEN]: Number(CARD) }),
    })
    const msg = await stack.anthropic('notebook').messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] })
    t.same(msg.content, [{ type: 'text', text: `data:;base64,${PLACEHOLDER}` }])
    t.notOk(JSON.stringify(msg).includes(TOKEN) || JSON.stringify(msg).includes(CARD))
  })

  // 3. Classification by content, not by declared type.
  for (const type of ['text/plain', 'application/json']) {
    t.test(`a stream declared ${type} (buffered by Envoy) is redacted as the SSE the SDK decodes`, async (t) => {
      stack.provider.enqueue({ headers: { 'content-type': type }, body: `data:  ${chunk(`Your token is ${TOKEN} ok`)}\n\n${done}` })
      const text = await chatText(stack)
      t.equal(text, `Your token is ${PLACEHOLDER} ok`)
    })
  }

  t.test('JSON declared as application/octet-stream is scanned', async (t) => {
    stack.provider.enqueue({ headers: { 'content-type': 'application/octet-stream' }, body: escaped({ id: 'c', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: TOKEN } }] }) })
    // The SDK hands back a body it does not read as JSON as text.
    const answer = (await stack.openai('checkout').chat.completions.create(chatBody)) as unknown
    t.equal(typeof answer, 'string')
    t.notOk(String(answer).includes('hp_Zq8X'))
    t.same(JSON.parse(String(answer)).choices[0].message.content, PLACEHOLDER)
  })

  t.test('a binary body is withheld with MG_RESPONSE_BINARY', async (t) => {
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from(TOKEN), Buffer.alloc(32, 0)])
    stack.provider.enqueue({ headers: { 'content-type': 'image/png' }, body: png })
    const err = await stack
      .openai('checkout')
      .chat.completions.create(chatBody)
      .then(
        () => undefined,
        (e: { status?: number; error?: { code?: string } }) => e,
      )
    t.match(err, { status: 502, error: { code: 'MG_RESPONSE_BINARY' } })
    t.notOk(JSON.stringify(err).includes(TOKEN))
  })

  // 4. Surrogates and UTF-8 split across events and chunks.
  t.test('an emoji split into two escaped surrogates across events, and a stream cut inside UTF-8 characters', async (t) => {
    const raw = Buffer.from(
      `data: {"choices":[{"index":0,"delta":{"content":"Grüße \\ud83d"}}]}\n\n` +
        `data: {"choices":[{"index":0,"delta":{"content":"\\ude00 \\u0067hp_${TOKEN.slice(4, 20)}"}}]}\n\n` +
        `data: ${chunk(`${TOKEN.slice(20)} 🌍 ok`)}\n\n` +
        done,
    )
    // Cut inside ü, inside 🌍 and inside the token.
    const cuts = [raw.indexOf(Buffer.from('ü')) + 1, raw.indexOf(Buffer.from('hp_')), raw.indexOf(Buffer.from('🌍')) + 2]
    const parts: Buffer[] = []
    let at = 0
    for (const c of [...cuts, raw.length]) {
      parts.push(raw.subarray(at, c))
      at = c
    }
    stack.provider.enqueue({ sse: parts, chunkDelayMs: 20 })
    t.equal(await chatText(stack), `Grüße 😀 ${PLACEHOLDER} 🌍 ok`)
  })

  // 5. A long match in tiny deltas.
  t.test('a PEM block streamed in 4-byte deltas reaches the caller as one placeholder', async (t) => {
    const pem = `-----BEGIN PRIVATE KEY-----\n${'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7'.repeat(80)}\n-----END PRIVATE KEY-----`
    const answer = `Here: ${pem} done`
    const sse: string[] = []
    for (let i = 0; i < answer.length; i += 4) sse.push(`data: ${chunk(answer.slice(i, i + 4))}\n\n`)
    sse.push(done)
    // One write per 64 events: Envoy sees realistic chunks without a timer per delta.
    const batched: string[] = []
    for (let i = 0; i < sse.length; i += 64) batched.push(sse.slice(i, i + 64).join(''))
    stack.provider.enqueue({ sse: batched, chunkDelayMs: 1 })
    t.equal(await chatText(stack), 'Here: [PRIVATE_KEY_1] done')
  })
})

t.test('a provider allowed to return binary bodies gets them through, and the audit record says so', async (t) => {
  const stack: Stack = await startStack({ config: { redaction: { responses: { binaryProviders: ['openai'] } } } })
  t.teardown(() => stack.close())
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 0)])
  stack.provider.enqueue({ headers: { 'content-type': 'image/png' }, body: png })
  const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chatBody })
  t.equal(res.status, 200)
  t.same(res.body, png, 'the body passed as it came')
  const id = String(res.headers['x-request-id'])
  const record = await stack.auditRecord(id)
  t.equal(record['modelgate.request.id'], id, 'the request has its record')
  t.same(record['modelgate.redaction.allowed_classes'], ['binary'])
  t.same(record['modelgate.data.detectors'], ['binary-body'])
})
