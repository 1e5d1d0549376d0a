import t from 'tap'
import { anthropicMessagesApi } from '../../../../src/providers/apis/anthropic-messages.ts'
import type { DeltaSlot, ToolCall } from '../../../../src/providers/apis/api.ts'
import { refusal, route, usageOf } from './helpers.ts'

const PATH = '/v1/messages'

t.test('a valid Anthropic request is read into model, stream, max_tokens and its tools', async (t) => {
  const body = {
    model: 'claude-sonnet-4-5',
    max_tokens: 1024,
    stream: true,
    system: [{ type: 'text', text: 'be brief' }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }],
    tools: [{ name: 'lookup', input_schema: { type: 'object' } }, { type: 'web_search_20250305', name: 'web_search' }],
    tool_choice: { type: 'tool', name: 'lookup' },
  }
  const req = anthropicMessagesApi.parseRequest(body, route(PATH), 'anthropic')
  t.match(req, { provider: 'anthropic', operation: 'messages', api: 'anthropic.messages', model: 'claude-sonnet-4-5', stream: true, maxTokens: 1024 })
  t.same(
    req.tools.map((x) => [x.name, x.type]),
    [
      ['lookup', 'custom'],
      ['web_search', 'web_search_20250305'],
    ],
  )
  t.equal(anthropicMessagesApi.streamUsage, undefined, 'Anthropic streams always report usage')
})

t.test('a wrong field of an Anthropic request is refused with its name', async (t) => {
  const ok = { model: 'c', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }
  const cases: [string, Record<string, unknown>, string, string][] = [
    ['no max_tokens', { model: 'c', messages: ok.messages }, 'max_tokens', 'is required for Anthropic messages'],
    ['a system role in messages', { ...ok, messages: [{ role: 'system', content: 'x' }] }, 'messages[0].role', 'must be "user" or "assistant"'],
    ['a number as system', { ...ok, system: 5 }, 'system', 'must be a string or an array of text blocks'],
    ['a content block that is a string', { ...ok, messages: [{ role: 'user', content: ['x'] }] }, 'messages[0].content[0]', 'must be an object'],
    ['a tool_choice of an unknown type', { ...ok, tool_choice: { type: 'some' } }, 'tool_choice.type', 'must be "auto", "any", "tool" or "none"'],
  ]
  for (const [name, body, field, problem] of cases) t.same(refusal(anthropicMessagesApi, PATH, body), { code: 'MG_BODY_INVALID', field, problem }, name)
})

t.test('usage is read from a message and from message_start and message_delta events', async (t) => {
  t.same(usageOf(anthropicMessagesApi, { type: 'message', model: 'claude', usage: { input_tokens: 20, output_tokens: 7 } }), { model: 'claude', usage: { input: 20, output: 7 } })
  t.same(
    usageOf(
      anthropicMessagesApi,
      { type: 'message_start', message: { model: 'claude-haiku', usage: { input_tokens: 25, output_tokens: 1 } } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hi' } },
      { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 15 } },
    ),
    { model: 'claude-haiku', usage: { input: 25, output: 15 } },
  )
  t.same(usageOf(anthropicMessagesApi, { usage: { prompt_tokens: 3 } }), { model: undefined, usage: { input: undefined, output: undefined } }, "OpenAI's keys are not Anthropic usage")
})

t.test('the output text and deltas of an event are a content block text, thinking and partial JSON', async (t) => {
  t.equal(anthropicMessagesApi.outputText({ type: 'content_block_delta', delta: { type: 'input_json_delta', partial_json: '{"q":' } }), '{"q":')
  t.equal(anthropicMessagesApi.outputText({ type: 'message_start', message: { content: [] } }), '')
  const out: DeltaSlot[] = []
  anthropicMessagesApi.deltaSlots({ type: 'content_block_start', index: 1, content_block: { type: 'thinking', thinking: '' } }, out)
  anthropicMessagesApi.deltaSlots({ type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{"a"' } }, out)
  t.same(
    out.map((d) => [d.channel, d.json, d.path.join('.')]),
    [
      ['block.1.thinking', false, 'content_block.thinking'],
      ['block.2.json', true, 'delta.partial_json'],
    ],
  )
})

t.test('tool calls are found in content blocks, message_start and content_block_start', async (t) => {
  const out: ToolCall[] = []
  anthropicMessagesApi.toolCalls({ content: [{ type: 'text', text: 'x' }, { type: 'tool_use', name: 'lookup' }, { type: 'server_tool_use', name: 'bash_code_execution' }] }, out)
  anthropicMessagesApi.toolCalls({ type: 'message_start', message: { content: [{ type: 'mcp_tool_use', server_name: 'docs', name: 'search' }] } }, out)
  anthropicMessagesApi.toolCalls({ type: 'content_block_start', content_block: { type: 'tool_use', toolset_name: 'computer_toolset_20260801' } }, out)
  t.same(out, [
    { by: 'name', name: 'lookup', kind: 'tool_use' },
    { by: 'builtin', id: 'code_execution', kind: 'server_tool_use' },
    { by: 'mcp', server: 'docs', tool: 'search', kind: 'mcp' },
    { by: 'toolset', toolset: 'computer_toolset_20260801', kind: 'tool_use' },
  ])
})
