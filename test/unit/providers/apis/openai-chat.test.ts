import t from 'tap'
import { parseJsonDocument } from '../../../../src/json/document.ts'
import type { DeltaSlot, ToolCall } from '../../../../src/providers/apis/api.ts'
import { openaiChat } from '../../../../src/providers/apis/openai-chat.ts'
import { refusal, route, usageOf } from './helpers.ts'

const PATH = '/v1/chat/completions'

t.test('a valid chat request is read into model, stream, the larger output budget and its tools', async (t) => {
  const body = {
    model: 'gpt-4o-mini',
    stream: true,
    max_tokens: 100,
    max_completion_tokens: 300,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    tools: [{ type: 'function', function: { name: 'get_weather' } }],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  }
  const req = openaiChat.parseRequest(body, route(PATH), 'openai')
  t.match(req, { provider: 'openai', providerName: 'openai', operation: 'chat', api: 'openai.chat_completions', model: 'gpt-4o-mini', stream: true, maxTokens: 300 })
  t.same(
    req.tools.map((x) => [x.name, x.type, x.field]),
    [['get_weather', 'function', 'tools[0]']],
  )
  t.ok(Object.isFrozen(req), 'the parsed request is frozen')
})

t.test('an Azure OpenAI chat request takes its model from the deployment in the path', async (t) => {
  const req = openaiChat.parseRequest({ messages: [{ role: 'user', content: 'hi' }] }, route('/openai/deployments/my-gpt/chat/completions'), 'azure')
  t.equal(req.model, 'my-gpt')
  t.equal(req.provider, 'azure-openai')
})

t.test('a wrong field of a chat request is refused with its name', async (t) => {
  const ok = { model: 'm', messages: [{ role: 'user', content: 'hi' }] }
  const cases: [string, Record<string, unknown>, string, string][] = [
    ['no messages', { model: 'm' }, 'messages', 'is required and must be an array'],
    ['a message without a role', { model: 'm', messages: [{ content: 'x' }] }, 'messages[0].role', 'is required'],
    ['content that is a number', { model: 'm', messages: [{ role: 'user', content: 3 }] }, 'messages[0].content', 'must be a string or an array of parts'],
    ['a zero budget', { ...ok, max_completion_tokens: 0 }, 'max_completion_tokens', 'must be a positive integer'],
    ['a string stream flag', { ...ok, stream: 'yes' }, 'stream', 'must be a boolean'],
    ['a tool without a name', { ...ok, tools: [{ type: 'function', function: {} }] }, 'tools[0].function.name', 'is required for function tools'],
  ]
  for (const [name, body, field, problem] of cases) t.same(refusal(openaiChat, PATH, body), { code: 'MG_BODY_INVALID', field, problem }, name)
})

t.test('the stream-usage option says whether a streaming request asked, and which edit asks', async (t) => {
  const of = (text: string, stream = true) => openaiChat.streamUsage!.of(parseJsonDocument(Buffer.from(text)), stream)
  // What the body says once the edit is made, and what a client's JSON.parse then reads.
  const asked = (text: string) => {
    const u = of(text)!
    t.equal(u.asked, false, text)
    const e = u.ask!
    const edited = text.slice(0, e.start) + e.text + text.slice(e.end)
    return { edited, include: (JSON.parse(edited) as { stream_options: { include_usage: unknown } }).stream_options.include_usage }
  }
  t.same(asked('{"model":"m","stream":true}'), { edited: '{"model":"m","stream":true,"stream_options":{"include_usage":true}}', include: true }, 'no option: added')
  t.same(asked('{"model":"m","stream_options":null}'), { edited: '{"model":"m","stream_options":{"include_usage":true}}', include: true }, 'null: replaced')
  t.same(asked('{"model":"m","stream_options": { } }'), { edited: '{"model":"m","stream_options": {"include_usage":true } }', include: true }, 'an empty option: the member added')
  t.same(asked('{"stream_options":{"continuous_usage_stats":true}}'), { edited: '{"stream_options":{"include_usage":true,"continuous_usage_stats":true}}', include: true }, 'other members kept')
  t.same(asked('{"stream_options":{"include_usage" : false}}'), { edited: '{"stream_options":{"include_usage" : true}}', include: true }, 'false made true')
  t.same(of('{"stream_options":{"include_usage":true}}'), { asked: true })
  t.same(of('{"stream_options":{"include_usage":"yes"}}'), { asked: false }, 'a value that is neither: left to the provider to refuse')
  t.same(of('{"stream_options":[]}'), { asked: false })
  t.equal(of('{"model":"m"}', false), undefined, 'a request that does not stream')
})

t.test('a caller that did not ask for usage sees neither the usage chunk nor usage: null', async (t) => {
  const hide = openaiChat.streamUsage!.withoutUsage
  t.equal(hide({ choices: [], usage: { prompt_tokens: 1 } }), undefined, 'the usage chunk is dropped')
  t.same(hide({ id: 'c', choices: [{ delta: { content: 'x' } }], usage: null }), { id: 'c', choices: [{ delta: { content: 'x' } }] }, 'usage: null is removed')
  const plain = { choices: [{ delta: { content: 'x' } }] }
  t.equal(hide(plain), plain, 'any other chunk is passed as it is')
})

t.test('usage is read from a chat completion and from the stream usage chunk', async (t) => {
  t.same(usageOf(openaiChat, { model: 'gpt-4o', usage: { prompt_tokens: 12, completion_tokens: 34 } }), { model: 'gpt-4o', usage: { input: 12, output: 34 } })
  t.same(usageOf(openaiChat, { model: 'gpt-4o', choices: [{ delta: { content: 'a' } }] }, { model: 'gpt-4o', choices: [], usage: { prompt_tokens: 5, completion_tokens: 2 } }), { model: 'gpt-4o', usage: { input: 5, output: 2 } })
  t.same(usageOf(openaiChat, { usage: { input_tokens: 5 } }), { model: undefined, usage: { input: undefined, output: undefined } }, "another API's keys are not chat usage")
})

t.test('the output text and deltas of a chunk are its content, refusal, reasoning and tool-call arguments', async (t) => {
  const chunk = { choices: [{ index: 0, delta: { content: 'Hel', reasoning: 'r', tool_calls: [{ index: 1, function: { arguments: '{"a"' } }] } }] }
  t.equal(openaiChat.outputText(chunk), 'Helr{"a"')
  const out: DeltaSlot[] = []
  openaiChat.deltaSlots(chunk, out)
  t.same(
    out.map((d) => [d.channel, d.json, d.path.join('.')]),
    [
      ['chat.0.content', false, 'choices.0.delta.content'],
      ['chat.0.reasoning', false, 'choices.0.delta.reasoning'],
      ['chat.0.tool.1', true, 'choices.0.delta.tool_calls.0.function.arguments'],
    ],
  )
})

t.test('tool calls are found in a message, in stream deltas and in the legacy function_call', async (t) => {
  const out: ToolCall[] = []
  openaiChat.toolCalls({ choices: [{ message: { tool_calls: [{ type: 'function', function: { name: 'a' } }], function_call: { name: 'b' } } }, { delta: { tool_calls: [{ custom: { name: 'c' } }, { function: { name: '' } }] } }] }, out)
  t.same(out, [
    { by: 'name', name: 'a', kind: 'function' },
    { by: 'name', name: 'b', kind: 'function' },
    { by: 'name', name: 'c', kind: 'custom' },
  ])
})
