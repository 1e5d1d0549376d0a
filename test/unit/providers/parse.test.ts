import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { pathString } from '../../../src/providers/apis/fields.ts'
import { parseProviderRequest } from '../../../src/providers/parse.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import type { ParsedRequest } from '../../../src/providers/types.ts'

const CHAT = '/v1/chat/completions'
const COMPLETIONS = '/v1/completions'
const RESPONSES = '/v1/responses'
const EMBEDDINGS = '/v1/embeddings'
const MESSAGES = '/v1/messages'

function parse(path: string, body: unknown, providerName?: string): ParsedRequest {
  const route = matchRoute(path)
  if (!route) throw new Error(`no route for ${path}`)
  return parseProviderRequest(route, body, providerName ?? route.kind)
}

/** The denial a parse raises: code, the caller-visible details and the internal reason. */
function failure(path: string, body: unknown): { code: string; details: Record<string, unknown>; internal: string | undefined } | undefined {
  try {
    parse(path, body)
    return undefined
  } catch (err) {
    if (!(err instanceof GateError)) throw err
    return { code: err.code, details: { ...err.details }, internal: err.internal }
  }
}

t.test('pathString writes JSON paths the way the errors and findings show them', async (t) => {
  t.equal(pathString(['messages', 0, 'content', 1, 'text']), 'messages[0].content[1].text')
  t.equal(pathString(['input']), 'input')
  t.equal(pathString([]), '')
  t.equal(pathString([3, 'a']), '[3].a')
})

t.test('OpenAI chat completions', async (t) => {
  t.test('reads the model, stream flag, output budget and tools of a request with every kind of message', async (t) => {
    const body = {
      model: 'gpt-4o-mini',
      stream: true,
      max_completion_tokens: 300,
      max_tokens: 50,
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in this image?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
            { type: 'text', text: '' },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"account":"DE89370400440532013000"}' } },
            { id: 'call_2', type: 'function', function: { name: 'noop' } },
            'not-an-object',
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'balance: 12 EUR' },
        { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: 'part result' }] },
        { role: 'developer', content: 'Use tools.' },
      ],
      tools: [
        { type: 'function', function: { name: 'lookup', description: 'Looks up an account.', parameters: { type: 'object' } } },
        { type: 'function', function: { name: 'noop' } },
      ],
    }
    const r = parse(CHAT, body)
    t.equal(r.provider, 'openai')
    t.equal(r.providerName, 'openai')
    t.equal(r.operation, 'chat')
    t.equal(r.api, 'openai.chat_completions')
    t.equal(r.model, 'gpt-4o-mini')
    t.equal(r.stream, true)
    t.equal(r.maxTokens, 300, 'the larger of max_completion_tokens and max_tokens')
    t.same(r.tools, [
      { name: 'lookup', type: 'function', origin: 'function', known: true, field: 'tools[0]', callName: 'lookup' },
      { name: 'noop', type: 'function', origin: 'function', known: true, field: 'tools[1]', callName: 'noop' },
    ])
    t.same(Object.keys(r).sort(), ['api', 'maxTokens', 'model', 'operation', 'provider', 'providerName', 'stream', 'tools'], 'a summary: no text of the body')
    t.ok(Object.isFrozen(r) && Object.isFrozen(r.tools), 'the result is frozen')
  })

  t.test('a deprecated function_call message and a function role are accepted', async (t) => {
    const r = parse(CHAT, {
      model: 'm',
      messages: [
        { role: 'user', content: 'pay it' },
        { role: 'assistant', content: null, function_call: { name: 'pay', arguments: '{"card":"4111 1111 1111 1111"}' } },
        { role: 'function', name: 'pay', content: 'paid' },
      ],
    })
    t.equal(r.model, 'm')
    t.equal(r.maxTokens, undefined)
  })

  t.test('defaults: not streaming, no output budget, no tools', async (t) => {
    const r = parse(CHAT, { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: null, max_tokens: null, tools: null })
    t.equal(r.stream, false)
    t.equal(r.maxTokens, undefined)
    t.same(r.tools, [])
  })

  t.test('max_tokens is used when max_completion_tokens is absent, and the other way round', async (t) => {
    t.equal(parse(CHAT, { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 7 }).maxTokens, 7)
    t.equal(parse(CHAT, { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 9 }).maxTokens, 9)
  })

  t.test('with both max_tokens and max_completion_tokens, the larger is the budget whichever comes first', async (t) => {
    const user = [{ role: 'user', content: 'hi' }]
    t.equal(parse(CHAT, { model: 'm', messages: user, max_completion_tokens: 10, max_tokens: 4000 }).maxTokens, 4000)
    t.equal(parse(CHAT, { model: 'm', max_tokens: 4000, messages: user, max_completion_tokens: 10 }).maxTokens, 4000)
    t.equal(parse(CHAT, { model: 'm', messages: user, max_completion_tokens: 4000, max_tokens: 10 }).maxTokens, 4000)
    t.equal(parse(CHAT, { model: 'm', messages: user, max_completion_tokens: 5, max_tokens: null }).maxTokens, 5)
    t.same(failure(CHAT, { model: 'm', messages: user, max_completion_tokens: 10, max_tokens: 0 }), {
      code: 'MG_BODY_INVALID',
      details: { field: 'max_tokens', problem: 'must be a positive integer' },
      internal: 'max_tokens must be a positive integer',
    }, 'each one must still be a positive integer')
    t.equal(failure(CHAT, { model: 'm', messages: user, max_completion_tokens: 'lots', max_tokens: 10 })?.details.field, 'max_completion_tokens')
  })

  t.test('the provider name from the route is kept', async (t) => {
    t.equal(parse(CHAT, { model: 'm', messages: [{ role: 'user', content: 'hi' }] }, 'internal-llm').providerName, 'internal-llm')
  })
})

t.test('OpenAI completions: a prompt is a string, strings, token ids or token arrays', async (t) => {
  const cases: [name: string, prompt: unknown][] = [
    ['a string prompt', 'Once upon a time'],
    ['an array of strings', ['a', 'b']],
    ['an array of token ids', [1, 2, 3]],
    ['an array of token arrays', [[1, 2], [3]]],
    ['strings mixed with tokens', ['x', [1]]],
  ]
  for (const [name, prompt] of cases) {
    const r = parse(COMPLETIONS, { model: 'gpt-3.5-turbo-instruct', prompt, max_tokens: 16 })
    t.equal(r.operation, 'completion', name)
    t.equal(r.maxTokens, 16, name)
  }
})

t.test('OpenAI responses', async (t) => {
  t.test('a string input with instructions', async (t) => {
    const r = parse(RESPONSES, { model: 'gpt-4.1', instructions: 'Answer in French.', input: 'Hello', max_output_tokens: 64, stream: true })
    t.equal(r.api, 'openai.responses')
    t.equal(r.operation, 'responses')
    t.equal(r.maxTokens, 64)
    t.equal(r.stream, true)
    t.equal(r.model, 'gpt-4.1')
  })

  t.test('input items: messages, function calls and their outputs', async (t) => {
    const r = parse(RESPONSES, {
      model: 'gpt-4.1',
      input: [
        { role: 'user', content: 'plain message' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'part text' }, { type: 'input_image', image_url: 'https://x' }] },
        { type: 'function_call', call_id: 'c1', name: 'lookup', arguments: '{"q":"card 4111"}' },
        { type: 'function_call_output', call_id: 'c1', output: 'found it' },
        { type: 'reasoning', id: 'r1', summary: [] },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'earlier answer' }] },
      ],
      tools: [
        { type: 'function', name: 'lookup', description: 'Finds things.', parameters: {} },
        { type: 'web_search' },
      ],
    })
    t.same(r.tools, [
      { name: 'lookup', type: 'function', origin: 'function', known: true, field: 'tools[0]', callName: 'lookup' },
      { name: 'web_search', type: 'web_search', origin: 'builtin', known: true, field: 'tools[1]' },
    ])
  })
})

t.test('OpenAI responses: a function_call_output is a string or content parts', async (t) => {
  const r = parse(RESPONSES, {
    model: 'gpt-4.1',
    input: [{ type: 'function_call_output', call_id: 'c1', output: [{ type: 'input_text', text: 'account DE89370400440532013000' }, { type: 'input_image', image_url: 'https://x' }] }],
  })
  t.equal(r.api, 'openai.responses')
  t.same(failure(RESPONSES, { model: 'm', input: [{ type: 'function_call_output', call_id: 'c1', output: 42 }] }), {
    code: 'MG_BODY_INVALID',
    details: { field: 'input[0].output', problem: 'must be a string or an array of parts' },
    internal: 'input[0].output must be a string or an array of parts',
  })
})

t.test('OpenAI embeddings: an input is a string, strings or tokens', async (t) => {
  const one = parse(EMBEDDINGS, { model: 'text-embedding-3-small', input: 'embed me' })
  t.equal(one.operation, 'embedding')
  t.equal(one.maxTokens, undefined)
  const many = parse(EMBEDDINGS, { model: 'text-embedding-3-small', input: ['a', 'b', [1, 2]] })
  t.equal(many.model, 'text-embedding-3-small')
})

t.test('Azure OpenAI deployment paths', async (t) => {
  const chat = parse('/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21', { messages: [{ role: 'user', content: 'hi' }] })
  t.equal(chat.provider, 'azure-openai')
  t.equal(chat.api, 'azure_openai.chat_completions')
  t.equal(chat.model, 'gpt4o-prod', 'the deployment is the model')
  const named = parse('/openai/deployments/gpt4o-prod/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
  t.equal(named.model, 'gpt4o-prod', 'the deployment wins over a model in the body')
  const completions = parse('/openai/deployments/instruct/completions', { prompt: 'x', max_tokens: 5 })
  t.equal(completions.api, 'azure_openai.completions')
  t.equal(completions.maxTokens, 5)
  const embeddings = parse('/openai/deployments/embed/embeddings', { input: ['x'] })
  t.equal(embeddings.api, 'azure_openai.embeddings')
  t.equal(embeddings.model, 'embed')
})

t.test('Anthropic messages', async (t) => {
  t.test('system string, text, tool_use, tool_result and tools', async (t) => {
    const r = parse(MESSAGES, {
      model: 'claude-sonnet-4-5',
      max_tokens: 1024,
      stream: true,
      system: 'You are terse.',
      messages: [
        { role: 'user', content: 'What is the weather?' },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Let me check.' },
            { type: 'tool_use', id: 'tu1', name: 'weather', input: { city: 'Berlin', opts: { units: ['metric', 7, true], note: 'n' } } },
            { type: 'thinking', thinking: 'hidden' },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'tu1', content: '12 degrees' },
            { type: 'tool_result', tool_use_id: 'tu1', content: [{ type: 'text', text: 'block result' }, 'junk', { type: 'image' }] },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
          ],
        },
      ],
      tools: [
        { name: 'weather', description: 'Current weather.', input_schema: { type: 'object' } },
        { type: 'web_search_20250305', name: 'web_search' },
      ],
    })
    t.equal(r.provider, 'anthropic')
    t.equal(r.api, 'anthropic.messages')
    t.equal(r.operation, 'messages')
    t.equal(r.model, 'claude-sonnet-4-5')
    t.equal(r.maxTokens, 1024)
    t.equal(r.stream, true)
    t.same(r.tools, [
      { name: 'weather', type: 'custom', origin: 'function', known: true, field: 'tools[0]', callName: 'weather' },
      { name: 'web_search', type: 'web_search_20250305', origin: 'builtin', known: true, field: 'tools[1]', callName: 'web_search' },
    ])
  })

  t.test('document blocks of every source type are accepted', async (t) => {
    const r = parse(MESSAGES, {
      model: 'claude-sonnet-4-5',
      max_tokens: 10,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'document', title: 'Q3 notes', context: 'internal', source: { type: 'text', media_type: 'text/plain', data: 'revenue figures' } },
            { type: 'document', source: { type: 'content', content: [{ type: 'text', text: 'chunk one' }, { type: 'image' }] } },
            { type: 'document', source: { type: 'content', content: 'whole text' } },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
            { type: 'document' },
          ],
        },
      ],
    })
    t.equal(r.maxTokens, 10)
  })

  t.test('system as text blocks', async (t) => {
    const r = parse(MESSAGES, {
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      system: [{ type: 'text', text: 'Block one.' }, 'junk', { type: 'text', text: 'Block two.', cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: 'hi' }],
    })
    t.equal(r.stream, false)
    t.equal(r.model, 'claude-haiku-4-5')
  })
})

t.test('shape errors name the field and the problem', async (t) => {
  const user = [{ role: 'user', content: 'hi' }]
  const cases: [name: string, path: string, body: unknown, field: string, problem: string][] = [
    ['an array body', CHAT, [], '', 'the body must be a JSON object'],
    ['a null body', CHAT, null, '', 'the body must be a JSON object'],
    ['a string body', MESSAGES, 'hello', '', 'the body must be a JSON object'],
    ['a number body', EMBEDDINGS, 42, '', 'the body must be a JSON object'],
    ['a missing model', CHAT, { messages: user }, 'model', 'is required and must be a non-empty string'],
    ['an empty model', CHAT, { model: '', messages: user }, 'model', 'is required and must be a non-empty string'],
    ['a blank model', RESPONSES, { model: '   ', input: 'x' }, 'model', 'is required and must be a non-empty string'],
    ['a numeric model', MESSAGES, { model: 4, max_tokens: 1, messages: user }, 'model', 'is required and must be a non-empty string'],
    ['an over-long model', EMBEDDINGS, { model: 'm'.repeat(257), input: 'x' }, 'model', 'is longer than 256 characters'],
    ['missing messages', CHAT, { model: 'm' }, 'messages', 'is required and must be an array'],
    ['messages as an object', CHAT, { model: 'm', messages: { role: 'user' } }, 'messages', 'is required and must be an array'],
    ['empty messages', CHAT, { model: 'm', messages: [] }, 'messages', 'must not be empty'],
    ['a message that is a string', CHAT, { model: 'm', messages: ['hi'] }, 'messages[0]', 'must be an object'],
    ['a message without a role', CHAT, { model: 'm', messages: [{ content: 'hi' }] }, 'messages[0].role', 'is required'],
    ['content that is a number', CHAT, { model: 'm', messages: [{ role: 'user', content: 5 }] }, 'messages[0].content', 'must be a string or an array of parts'],
    ['content that is an object', CHAT, { model: 'm', messages: [{ role: 'user', content: { text: 'x' } }] }, 'messages[0].content', 'must be a string or an array of parts'],
    ['a content part that is a string', CHAT, { model: 'm', messages: [{ role: 'user', content: ['x'] }] }, 'messages[0].content[0]', 'must be an object'],
    ['a non-boolean stream flag', CHAT, { model: 'm', messages: user, stream: 'true' }, 'stream', 'must be a boolean'],
    ['a zero max_tokens', CHAT, { model: 'm', messages: user, max_tokens: 0 }, 'max_tokens', 'must be a positive integer'],
    ['a negative max_tokens', COMPLETIONS, { model: 'm', prompt: 'x', max_tokens: -1 }, 'max_tokens', 'must be a positive integer'],
    ['a fractional max_completion_tokens', CHAT, { model: 'm', messages: user, max_completion_tokens: 1.5 }, 'max_completion_tokens', 'must be a positive integer'],
    ['a string max_tokens', CHAT, { model: 'm', messages: user, max_tokens: '10' }, 'max_tokens', 'must be a positive integer'],
    ['an unsafe-integer max_tokens', CHAT, { model: 'm', messages: user, max_tokens: 1e20 }, 'max_tokens', 'must be a positive integer'],
    ['tools as an object', CHAT, { model: 'm', messages: user, tools: {} }, 'tools', 'must be an array'],
    ['a tool that is a string', CHAT, { model: 'm', messages: user, tools: ['lookup'] }, 'tools[0]', 'must be an object'],
    ['a function tool without a name', CHAT, { model: 'm', messages: user, tools: [{ type: 'function', function: { description: 'x' } }] }, 'tools[0].function.name', 'is required for function tools'],
    ['a responses function tool without a name', RESPONSES, { model: 'm', input: 'x', tools: [{ type: 'function' }] }, 'tools[0].name', 'is required for function tools'],
    ['a missing prompt', COMPLETIONS, { model: 'm' }, 'prompt', 'is required and must be a string or an array'],
    ['an empty prompt array', COMPLETIONS, { model: 'm', prompt: [] }, 'prompt', 'must not be empty'],
    ['an object in the prompt array', COMPLETIONS, { model: 'm', prompt: ['a', { x: 1 }] }, 'prompt[1]', 'must be a string or tokens'],
    ['a missing embeddings input', EMBEDDINGS, { model: 'm' }, 'input', 'is required and must be a string or an array'],
    ['a missing responses input', RESPONSES, { model: 'm' }, 'input', 'is required and must be a string or an array of items'],
    ['a responses input item that is a string', RESPONSES, { model: 'm', input: ['x'] }, 'input[0]', 'must be an object'],
    ['a bad max_output_tokens', RESPONSES, { model: 'm', input: 'x', max_output_tokens: 0 }, 'max_output_tokens', 'must be a positive integer'],
    ['Anthropic without max_tokens', MESSAGES, { model: 'c', messages: user }, 'max_tokens', 'is required for Anthropic messages'],
    ['Anthropic with a system role message', MESSAGES, { model: 'c', max_tokens: 1, messages: [{ role: 'system', content: 'x' }] }, 'messages[0].role', 'must be "user" or "assistant"'],
    ['Anthropic with a numeric system', MESSAGES, { model: 'c', max_tokens: 1, system: 1, messages: user }, 'system', 'must be a string or an array of text blocks'],
    ['Anthropic with numeric content', MESSAGES, { model: 'c', max_tokens: 1, messages: [{ role: 'user', content: 1 }] }, 'messages[0].content', 'must be a string or an array of content blocks'],
    ['Anthropic with null content', MESSAGES, { model: 'c', max_tokens: 1, messages: [{ role: 'user', content: null }] }, 'messages[0].content', 'must be a string or an array of content blocks'],
    ['Anthropic with a string content block', MESSAGES, { model: 'c', max_tokens: 1, messages: [{ role: 'user', content: ['x'] }] }, 'messages[0].content[0]', 'must be an object'],
    ['Anthropic with empty messages', MESSAGES, { model: 'c', max_tokens: 1, messages: [] }, 'messages', 'must not be empty'],
    ['Anthropic tools as a string', MESSAGES, { model: 'c', max_tokens: 1, messages: user, tools: 'x' }, 'tools', 'must be an array'],
    ['an Anthropic tool without a name', MESSAGES, { model: 'c', max_tokens: 1, messages: user, tools: [{ description: 'x' }] }, 'tools[0].name', 'is required'],
    ['an Anthropic tool that is not an object', MESSAGES, { model: 'c', max_tokens: 1, messages: user, tools: [null] }, 'tools[0]', 'must be an object'],
  ]
  for (const [name, path, body, field, problem] of cases) {
    const f = failure(path, body)
    t.same(f, { code: 'MG_BODY_INVALID', details: { field, problem }, internal: `${field || 'body'} ${problem}` }, name)
  }
})

t.test('a route without a parser is refused', async (t) => {
  t.throws(() => parseProviderRequest({ kind: 'openai', operation: 'chat', api: 'openai.audio' }, {}, 'openai'), { code: 'MG_ROUTE_UNSUPPORTED', internal: 'no parser for openai.audio' })
})

t.test('hostile bodies', async (t) => {
  t.test('tool input of any depth is not walked (the document parser bounds depth)', async (t) => {
    let input: unknown = 'leaf'
    for (let i = 0; i < 10_000; i++) input = { a: input }
    const r = parse(MESSAGES, { model: 'c', max_tokens: 1, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'x', input }] }] })
    t.equal(r.model, 'c')
  })

  t.test('very deep JSON outside the read fields is not walked', async (t) => {
    let extra: unknown = 1
    for (let i = 0; i < 10_000; i++) extra = [extra]
    const r = parse(CHAT, { model: 'm', messages: [{ role: 'user', content: 'hi' }], metadata: extra })
    t.equal(r.model, 'm')
  })

  t.test('huge token arrays are read without being walked element by element', async (t) => {
    const prompt = Array.from({ length: 200_000 }, (_, i) => i % 50_000)
    const r = parse(COMPLETIONS, { model: 'm', prompt })
    t.equal(r.operation, 'completion')
  })

  t.test('"__proto__" keys do not pollute prototypes', async (t) => {
    const raw =
      '{"__proto__":{"polluted":"yes"},"model":"c","max_tokens":5,"messages":[{"role":"assistant","content":[' +
      '{"type":"tool_use","id":"t","name":"x","input":{"__proto__":{"secret":"hidden text"},"constructor":{"prototype":{"p":"q"}}}}]}]}'
    const body = JSON.parse(raw)
    const r = parse(MESSAGES, body)
    t.equal(r.model, 'c')
    t.equal(({} as Record<string, unknown>).polluted, undefined)
    t.equal((Object.prototype as Record<string, unknown>).secret, undefined)
  })

  t.test('a "__proto__" model or stream key does not stand in for the real field', async (t) => {
    const body = JSON.parse('{"__proto__":{"model":"m","messages":[{"role":"user","content":"x"}]}}')
    t.same(failure(CHAT, body), { code: 'MG_BODY_INVALID', details: { field: 'model', problem: 'is required and must be a non-empty string' }, internal: 'model is required and must be a non-empty string' })
  })

  t.test('non-string text values are accepted, never coerced', async (t) => {
    const r = parse(CHAT, { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 42 }, { type: 'text', text: { x: 'y' } }] }] })
    t.equal(r.model, 'm')
  })
})
