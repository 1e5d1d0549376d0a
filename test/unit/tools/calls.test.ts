import t from 'tap'
import { collectCalls, mayNameToolCall, toolsOf, type ToolCall } from '../../../src/providers/apis/index.ts'
import { DeclaredTools } from '../../../src/tools/calls.ts'

const calls = (v: unknown): ToolCall[] => {
  const out: ToolCall[] = []
  collectCalls(v, out)
  return out
}

t.test('OpenAI chat completions: tool_calls and the legacy function_call, whole and in deltas', async (t) => {
  const completion = {
    object: 'chat.completion',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'lookup_order', arguments: '{}' } },
            { id: 'c2', type: 'custom', custom: { name: 'sql', input: 'select 1' } },
          ],
        },
      },
      { index: 1, message: { role: 'assistant', function_call: { name: 'legacy', arguments: '{}' } } },
    ],
  }
  t.same(calls(completion), [
    { by: 'name', name: 'lookup_order', kind: 'function' },
    { by: 'name', name: 'sql', kind: 'custom' },
    { by: 'name', name: 'legacy', kind: 'function' },
  ])
  t.same(calls({ choices: [{ delta: { tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'refund_order', arguments: '' } }] } }] }), [{ by: 'name', name: 'refund_order', kind: 'function' }], 'the first delta names the tool')
  t.same(calls({ choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '{"id":' } }] } }] }), [], 'later deltas carry arguments only')
  t.same(calls({ choices: [{ delta: { tool_calls: [{ index: 0, function: { name: '', arguments: '1}' } }] } }] }), [], 'an empty name names nothing')
  t.same(calls({ choices: [{ delta: { function_call: { name: 'legacy' } } }] }), [{ by: 'name', name: 'legacy', kind: 'function' }])
  t.same(calls({ choices: [{ message: { tool_calls: [{ id: 'x', type: 'web_search' }] } }] }), [{ by: 'builtin', id: 'web_search', kind: 'web_search' }], 'a call of another type names a built-in')
  t.same(calls({ choices: [{ delta: { content: 'Hello' } }] }), [])
})

t.test('Anthropic: tool_use, server_tool_use and mcp_tool_use blocks in messages, message_start and content_block_start', async (t) => {
  const message = {
    type: 'message',
    content: [
      { type: 'text', text: 'Let me look.' },
      { type: 'tool_use', id: 't1', name: 'lookup_order', input: { nested: { type: 'tool_use', name: 'not_a_call' } } },
      { type: 'server_tool_use', id: 's1', name: 'bash_code_execution', input: {} },
      { type: 'web_search_tool_result', tool_use_id: 's0', content: [] },
      { type: 'mcp_tool_use', id: 'm1', server_name: 'payments', name: 'refund_order', input: {} },
      { type: 'tool_use', id: 't2', name: 'close_tab', toolset_name: 'browser', input: {} },
      { type: 'future_tool_use', id: 'f1', name: 'x' },
    ],
  }
  t.same(calls(message), [
    { by: 'name', name: 'lookup_order', kind: 'tool_use' },
    { by: 'builtin', id: 'code_execution', kind: 'server_tool_use' },
    { by: 'mcp', server: 'payments', tool: 'refund_order', kind: 'mcp' },
    { by: 'toolset', toolset: 'browser', kind: 'tool_use' },
    { by: 'builtin', id: 'future', kind: 'future_tool_use' },
  ], "a tool's input is not read as calls")
  t.same(calls({ type: 'message_start', message: { ...message, content: [{ type: 'tool_use', id: 't', name: 'a', input: {} }] } }), [{ by: 'name', name: 'a', kind: 'tool_use' }])
  t.same(calls({ type: 'content_block_start', index: 1, content_block: { type: 'server_tool_use', id: 's', name: 'web_search', input: {} } }), [{ by: 'builtin', id: 'web_search', kind: 'server_tool_use' }])
  t.same(calls({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json: '{"q":' } }), [])
})

t.test('OpenAI Responses: output items of responses, response events and output_item events', async (t) => {
  const response = {
    object: 'response',
    output: [
      { type: 'reasoning', id: 'r', summary: [] },
      { type: 'function_call', call_id: 'c', name: 'lookup_order', arguments: '{}' },
      { type: 'custom_tool_call', call_id: 'c2', name: 'sql', input: '' },
      { type: 'mcp_list_tools', server_label: 'payments', tools: [{ name: 'refund_order' }] },
      { type: 'mcp_call', server_label: 'payments', name: 'refund_order', arguments: '{}' },
      { type: 'mcp_approval_request', server_label: 'payments', name: 'admin_reset', arguments: '{}' },
      { type: 'web_search_call', id: 'w', status: 'completed', action: { type: 'search', query: 'x' } },
      { type: 'computer_call', id: 'cc', action: { type: 'click' } },
      { type: 'code_interpreter_call', id: 'ci' },
      { type: 'image_generation_call', id: 'ig' },
      { type: 'message', content: [{ type: 'output_text', text: 'function_call' }] },
    ],
  }
  t.same(calls(response), [
    { by: 'name', name: 'lookup_order', kind: 'function_call' },
    { by: 'name', name: 'sql', kind: 'custom_tool_call' },
    { by: 'mcp', server: 'payments', tool: 'refund_order', kind: 'mcp' },
    { by: 'mcp', server: 'payments', tool: 'admin_reset', kind: 'mcp' },
    { by: 'builtin', id: 'web_search', kind: 'web_search_call' },
    { by: 'builtin', id: 'computer', kind: 'computer_call' },
    { by: 'builtin', id: 'code_interpreter', kind: 'code_interpreter_call' },
    { by: 'builtin', id: 'image_generation', kind: 'image_generation_call' },
  ])
  t.same(calls({ type: 'response.output_item.added', item: { type: 'web_search_call', id: 'w', status: 'in_progress' } }), [{ by: 'builtin', id: 'web_search', kind: 'web_search_call' }])
  t.same(calls({ type: 'response.completed', response: { output: [{ type: 'function_call', name: 'f', arguments: '' }] } }), [{ by: 'name', name: 'f', kind: 'function_call' }])
  t.same(calls({ type: 'response.output_text.delta', delta: 'hi' }), [])
})

t.test('the cheap test is true for every call shape, escaped ones included, and false for plain text', async (t) => {
  const bodies = [
    '{"choices":[{"delta":{"tool_calls":[{"function":{"name":"x"}}]}}]}',
    '{"choices":[{"message":{"function_call":{"name":"x"}}}]}',
    '{"content_block":{"type":"tool_use","name":"x"}}',
    '{"content_block":{"type":"server_tool_use","name":"web_search"}}',
    '{"item":{"type":"mcp_approval_request","server_label":"s","name":"x"}}',
    '{"item":{"type":"web_search_call"}}',
    '{"choices":[{"delta":{"tool\\u005fcalls":[{"function":{"name":"x"}}]}}]}',
  ]
  for (const b of bodies) {
    t.ok(mayNameToolCall(b), b)
    t.ok(mayNameToolCall(Buffer.from(b)), `${b} (bytes)`)
  }
  t.same(calls(JSON.parse(bodies[6]!)), [{ by: 'name', name: 'x', kind: 'function' }], 'an escaped key is the same key once parsed')
  for (const b of ['{"choices":[{"delta":{"content":"Hello there"}}]}', 'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}\n\n', '']) t.notOk(mayNameToolCall(Buffer.from(b)), b)
})

t.test('calls resolve to the tools the request named, by the way each is called', async (t) => {
  const responses = new DeclaredTools(
    toolsOf('openai.responses', {
      tools: [
        { type: 'function', name: 'lookup_order' },
        { type: 'web_search_preview' },
        { type: 'mcp', server_label: 'payments', server_url: 'https://mcp.payments.example.com', allowed_tools: ['lookup_order'] },
        { type: 'mcp', server_label: 'wiki', server_url: 'https://wiki.example.com' },
      ],
    }),
  )
  t.same(responses.resolve({ by: 'name', name: 'lookup_order', kind: 'function_call' }), { id: 'lookup_order', kind: 'function', declared: true })
  t.same(responses.resolve({ by: 'name', name: 'refund_order', kind: 'function_call' }), { id: 'refund_order', kind: 'function_call', declared: false })
  t.same(responses.resolve({ by: 'builtin', id: 'web_search', kind: 'web_search_call' }), { id: 'web_search', kind: 'web_search_preview', declared: true })
  t.same(responses.resolve({ by: 'builtin', id: 'code_interpreter', kind: 'code_interpreter_call' }), { id: 'code_interpreter', kind: 'code_interpreter_call', declared: false })
  t.same(responses.resolve({ by: 'name', name: 'web_search', kind: 'function_call' }), { id: 'web_search', kind: 'function_call', declared: false }, 'a built-in is not a function of the same name')
  t.same(responses.resolve({ by: 'builtin', id: 'lookup_order', kind: 'x_call' }), { id: 'lookup_order', kind: 'x_call', declared: false }, 'nor a function a built-in')
  t.same(responses.resolve({ by: 'mcp', server: 'payments', tool: 'lookup_order', kind: 'mcp' }), { id: 'mcp:payments/lookup_order', kind: 'mcp', declared: true })
  t.same(responses.resolve({ by: 'mcp', server: 'payments', tool: 'refund_order', kind: 'mcp' }), { id: 'mcp:payments/refund_order', kind: 'mcp', declared: false }, 'outside the tools a server was narrowed to')
  t.same(responses.resolve({ by: 'mcp', server: 'wiki', tool: 'anything', kind: 'mcp' }), { id: 'mcp:wiki/anything', kind: 'mcp', declared: true }, 'any tool of a server not narrowed, for policy to decide')
  t.same(responses.resolve({ by: 'mcp', server: 'other', tool: 'x', kind: 'mcp' }), { id: 'mcp:other/x', kind: 'mcp', declared: false })

  const anthropic = new DeclaredTools(
    toolsOf('anthropic.messages', {
      tools: [
        { name: 'lookup_order', input_schema: {} },
        { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' },
        { type: 'code_execution_20250825', name: 'code_execution' },
        { type: 'browser_toolset_20260801' },
      ],
    }),
  )
  t.same(anthropic.resolve({ by: 'name', name: 'str_replace_based_edit_tool', kind: 'tool_use' }), { id: 'text_editor', kind: 'text_editor_20250728', declared: true })
  t.same(anthropic.resolve({ by: 'builtin', id: 'code_execution', kind: 'server_tool_use' }), { id: 'code_execution', kind: 'code_execution_20250825', declared: true })
  t.same(anthropic.resolve({ by: 'toolset', toolset: 'browser', kind: 'tool_use' }), { id: 'browser', kind: 'browser_toolset_20260801', declared: true })
  t.same(anthropic.resolve({ by: 'toolset', toolset: 'computer', kind: 'tool_use' }), { id: 'computer', kind: 'tool_use', declared: false })
  t.same(anthropic.resolve({ by: 'builtin', id: 'web_search', kind: 'server_tool_use' }), { id: 'web_search', kind: 'server_tool_use', declared: false })
  t.same(new DeclaredTools([]).resolve({ by: 'name', name: 'anything', kind: 'tool_use' }), { id: 'anything', kind: 'tool_use', declared: false }, 'a request that named no tools declared none')
})
