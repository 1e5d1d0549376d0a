import t from 'tap'
import type { DeltaSlot, ToolCall } from '../../../../src/providers/apis/api.ts'
import { openaiResponses } from '../../../../src/providers/apis/openai-responses.ts'
import { refusal, route, usageOf } from './helpers.ts'

const PATH = '/v1/responses'

t.test('a valid Responses request is read into model, max_output_tokens and its tools', async (t) => {
  const body = {
    model: 'gpt-4.1',
    input: [{ role: 'user', content: 'hi' }, { type: 'function_call', call_id: 'c', name: 'f', arguments: '{}' }, { type: 'function_call_output', call_id: 'c', output: 'ok' }],
    max_output_tokens: 500,
    tools: [{ type: 'web_search_preview' }, { type: 'mcp', server_label: 'docs', server_url: 'https://docs.example/mcp', allowed_tools: ['search'] }],
  }
  const req = openaiResponses.parseRequest(body, route(PATH), 'openai')
  t.match(req, { operation: 'responses', api: 'openai.responses', model: 'gpt-4.1', stream: false, maxTokens: 500 })
  t.same(
    req.tools.map((x) => [x.name, x.type]),
    [
      ['web_search', 'web_search_preview'],
      ['mcp:docs', 'mcp'],
      ['mcp:docs/search', 'mcp'],
    ],
  )
})

t.test('a wrong field of a Responses request is refused with its name', async (t) => {
  t.same(refusal(openaiResponses, PATH, { model: 'm', input: 3 }), { code: 'MG_BODY_INVALID', field: 'input', problem: 'is required and must be a string or an array of items' })
  t.same(refusal(openaiResponses, PATH, { model: 'm', input: [{ role: 'user', content: 1 }] }), { code: 'MG_BODY_INVALID', field: 'input[0].content', problem: 'must be a string or an array of parts' })
  t.same(refusal(openaiResponses, PATH, { model: 'm', input: 'x', tools: [{ type: 'mcp' }] }), { code: 'MG_BODY_INVALID', field: 'tools[0].server_label', problem: 'is required' })
  t.same(refusal(openaiResponses, PATH, { model: 'm', input: 'x', max_output_tokens: -1 }), { code: 'MG_BODY_INVALID', field: 'max_output_tokens', problem: 'must be a positive integer' })
})

t.test('usage is read from a response and from the response its stream events carry', async (t) => {
  t.same(usageOf(openaiResponses, { object: 'response', model: 'gpt-4.1', usage: { input_tokens: 3, output_tokens: 4 } }), { model: 'gpt-4.1', usage: { input: 3, output: 4 } })
  t.same(
    usageOf(
      openaiResponses,
      { type: 'response.created', response: { model: 'gpt-4.1', usage: null } },
      { type: 'response.output_text.delta', delta: 'hi' },
      { type: 'response.completed', response: { model: 'gpt-4.1-2025', usage: { input_tokens: 8, output_tokens: 2 } } },
    ),
    { model: 'gpt-4.1-2025', usage: { input: 8, output: 2 } },
  )
})

t.test('the output text and deltas of an event are its response.*.delta text', async (t) => {
  t.equal(openaiResponses.outputText({ type: 'response.output_text.delta', delta: 'abc' }), 'abc')
  t.equal(openaiResponses.outputText({ type: 'response.completed', response: { output: [] } }), '')
  const out: DeltaSlot[] = []
  openaiResponses.deltaSlots({ type: 'response.function_call_arguments.delta', item_id: 'fc_1', output_index: 0, delta: '{"q"' }, out)
  openaiResponses.deltaSlots({ type: 'vendor.thing.delta', delta: 'x' }, out)
  t.same(
    out.map((d) => [d.channel, d.family, d.json]),
    [
      ['responses.fc_1.0.response.function_call_arguments.delta', 'responses.function_call_arguments', true],
      ['responses.0.0.vendor.thing.delta', 'responses.delta', false],
    ],
  )
})

t.test('tool calls are found in output items, in the response events carry and in output_item events', async (t) => {
  const out: ToolCall[] = []
  openaiResponses.toolCalls({ output: [{ type: 'function_call', name: 'f' }, { type: 'web_search_call' }, { type: 'message', content: [] }] }, out)
  openaiResponses.toolCalls({ type: 'response.completed', response: { output: [{ type: 'mcp_call', server_label: 'docs', name: 'search' }] } }, out)
  openaiResponses.toolCalls({ type: 'response.output_item.added', item: { type: 'custom_tool_call', name: 'g' } }, out)
  t.same(out, [
    { by: 'name', name: 'f', kind: 'function_call' },
    { by: 'builtin', id: 'web_search', kind: 'web_search_call' },
    { by: 'mcp', server: 'docs', tool: 'search', kind: 'mcp' },
    { by: 'name', name: 'g', kind: 'custom_tool_call' },
  ])
})
