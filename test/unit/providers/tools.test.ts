import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { ANTHROPIC_BUILTIN_TYPES, anthropicServerTool } from '../../../src/providers/apis/anthropic-messages.ts'
import { toolsOf } from '../../../src/providers/apis/index.ts'
import { responsesCallTool, RESPONSES_BUILTIN_TYPES } from '../../../src/providers/apis/openai-responses.ts'
import { canonicalToolName, MAX_TOOLS, mcpServerId, mcpToolId, parseMcpId } from '../../../src/providers/tools.ts'
import type { ToolDefinition } from '../../../src/providers/types.ts'

const CHAT = 'openai.chat_completions'
const AZURE = 'azure_openai.chat_completions'
const RESPONSES = 'openai.responses'
const MESSAGES = 'anthropic.messages'

/** The tools of a body: identity and kind, in the order first named. */
const ids = (api: string, body: Record<string, unknown>) => toolsOf(api, body).map((x) => [x.name, x.type])
const byName = (tools: readonly ToolDefinition[], name: string) => tools.find((x) => x.name === name)

/** The refusal of a body: MG_BODY_INVALID with the field and the problem. */
function refusal(api: string, body: Record<string, unknown>): { code: string; field: unknown; problem: unknown } | undefined {
  try {
    toolsOf(api, body)
    return undefined
  } catch (err) {
    if (!(err instanceof GateError)) throw err
    return { code: err.code, field: err.details.field, problem: err.details.problem }
  }
}

t.test('canonical names do not depend on the dated version or the provider', async (t) => {
  const cases: [type: string, name: string][] = [
    ['web_search', 'web_search'],
    ['web_search_2025_08_26', 'web_search'],
    ['web_search_preview', 'web_search'],
    ['web_search_preview_2025_03_11', 'web_search'],
    ['web_search_20250305', 'web_search'],
    ['web_search_20260318', 'web_search'],
    ['web_fetch_20250910', 'web_fetch'],
    ['computer_use_preview', 'computer'],
    ['computer_use', 'computer'],
    ['computer', 'computer'],
    ['computer_20250124', 'computer'],
    ['computer_toolset_20260801', 'computer'],
    ['browser_toolset_20260801', 'browser'],
    ['bash_20250124', 'bash'],
    ['text_editor_20250728', 'text_editor'],
    ['code_execution_20250825', 'code_execution'],
    ['memory_20250818', 'memory'],
    ['tool_search_tool_regex_20251119', 'tool_search'],
    ['tool_search_tool_bm25', 'tool_search'],
    ['tool_search', 'tool_search'],
    ['code_interpreter', 'code_interpreter'],
    ['image_generation', 'image_generation'],
    ['local_shell', 'local_shell'],
    ['a_tool_20991231', 'a_tool'],
    ['constructor', 'constructor'],
  ]
  for (const [type, name] of cases) t.equal(canonicalToolName(type), name, type)
  t.equal(anthropicServerTool('bash_code_execution'), 'code_execution', 'code execution runs bash under its own name')
  t.equal(anthropicServerTool('text_editor_code_execution'), 'code_execution')
  t.equal(anthropicServerTool('web_search'), 'web_search')
  t.equal(anthropicServerTool('tool_search_tool_regex'), 'tool_search')
  t.equal(anthropicServerTool('new_thing'), 'new_thing', 'a server tool name the table does not know keeps its name')
  t.equal(responsesCallTool('web_search_call'), 'web_search')
  t.equal(responsesCallTool('computer_call'), 'computer')
  t.equal(responsesCallTool('code_interpreter_call'), 'code_interpreter')
  t.equal(responsesCallTool('tool_search_call'), 'tool_search')
  for (const type of [...RESPONSES_BUILTIN_TYPES, ...ANTHROPIC_BUILTIN_TYPES]) t.notMatch(canonicalToolName(type), /\d{4}/, `${type} has a name without its date`)
})

t.test('MCP identities: mcp:<server> and mcp:<server>/<tool>, split at the first "/"', async (t) => {
  t.equal(mcpServerId('payments'), 'mcp:payments')
  t.equal(mcpToolId('payments', 'refund'), 'mcp:payments/refund')
  t.same(parseMcpId('mcp:payments'), { server: 'payments', tool: undefined })
  t.same(parseMcpId('mcp:payments/refund'), { server: 'payments', tool: 'refund' })
  t.same(parseMcpId(mcpToolId('docs', 'user-profile/update')), { server: 'docs', tool: 'user-profile/update' }, 'MCP tool names may hold "/" (SEP-986)')
  t.equal(parseMcpId('lookup_order'), undefined)
  t.equal(parseMcpId('web_search'), undefined)
})

t.test('OpenAI chat completions', async (t) => {
  t.test('tools[]: function and custom tools by name, any other type by its canonical name', async (t) => {
    const tools = toolsOf(CHAT, {
      tools: [
        { type: 'function', function: { name: 'lookup_order', parameters: {} } },
        { type: 'custom', custom: { name: 'sql', format: { type: 'text' } } },
        { type: 'web_search_preview' },
        { function: { name: 'untyped' } },
      ],
    })
    t.same(tools, [
      { name: 'lookup_order', type: 'function', origin: 'function', known: true, field: 'tools[0]', callName: 'lookup_order' },
      { name: 'sql', type: 'custom', origin: 'function', known: true, field: 'tools[1]', callName: 'sql' },
      { name: 'web_search', type: 'web_search_preview', origin: 'builtin', known: false, field: 'tools[2]' },
      { name: 'untyped', type: 'function', origin: 'function', known: true, field: 'tools[3]', callName: 'untyped' },
    ])
  })

  t.test('the legacy functions[] and function_call name function tools', async (t) => {
    t.same(ids(CHAT, { functions: [{ name: 'research_only', parameters: {} }] }), [['research_only', 'function']])
    t.same(ids(CHAT, { function_call: { name: 'forced' } }), [['forced', 'function']], 'a forced function is a tool even when nothing declares it')
    t.same(ids(CHAT, { functions: [{ name: 'a' }], function_call: 'auto' }), [['a', 'function']])
    t.same(ids(CHAT, { functions: [{ name: 'a' }], function_call: 'none' }), [['a', 'function']])
  })

  t.test('tool_choice names a function, a custom tool, a list of allowed tools or a built-in type', async (t) => {
    t.same(ids(CHAT, { tool_choice: { type: 'function', function: { name: 'f' } } }), [['f', 'function']])
    t.same(ids(CHAT, { tool_choice: { type: 'custom', custom: { name: 'c' } } }), [['c', 'custom']])
    t.same(
      ids(CHAT, {
        tool_choice: {
          type: 'allowed_tools',
          allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'a' } }, { type: 'custom', custom: { name: 'b' } }, { type: 'file_search' }] },
        },
      }),
      [
        ['a', 'function'],
        ['b', 'custom'],
        ['file_search', 'file_search'],
      ],
    )
    const builtin = toolsOf(CHAT, { tool_choice: { type: 'web_search' } })
    t.match(builtin, [{ name: 'web_search', type: 'web_search', origin: 'builtin', known: false, field: 'tool_choice' }], 'chat completions know no built-in tool types')
    for (const mode of ['none', 'auto', 'required']) t.same(ids(CHAT, { tool_choice: mode }), [], mode)
  })

  t.test('web_search_options asks for the web search tool', async (t) => {
    t.same(toolsOf(CHAT, { web_search_options: {} }), [{ name: 'web_search', type: 'web_search_options', origin: 'builtin', known: true, field: 'web_search_options' }])
    t.same(toolsOf(CHAT, { web_search_options: null }), [])
    t.same(ids(AZURE, { web_search_options: { search_context_size: 'low' } }), [['web_search', 'web_search_options']], 'Azure OpenAI reads the same fields')
  })

  t.test('a tool named in several places is one tool, in the place it was first named', async (t) => {
    const tools = toolsOf(CHAT, {
      tools: [
        { type: 'function', function: { name: 'lookup_order' } },
        { type: 'function', function: { name: 'lookup_order' } },
      ],
      functions: [{ name: 'lookup_order' }],
      function_call: { name: 'lookup_order' },
      tool_choice: { type: 'function', function: { name: 'lookup_order' } },
    })
    t.same(tools, [{ name: 'lookup_order', type: 'function', origin: 'function', known: true, field: 'tools[0]', callName: 'lookup_order' }])
    t.same(ids(CHAT, { tools: [{ type: 'custom', custom: { name: 'c' } }], tool_choice: { type: 'function', function: { name: 'c' } } }), [['c', 'custom']], 'a reference resolves to the declared tool of that name')
  })
})

t.test('OpenAI Responses', async (t) => {
  t.test('every built-in type is known, by its canonical name and with its declared type as kind', async (t) => {
    const types = [...RESPONSES_BUILTIN_TYPES]
    for (const type of types) {
      const [tool] = toolsOf(RESPONSES, { tools: [{ type }] })
      t.same(tool, { name: canonicalToolName(type), type, origin: 'builtin', known: true, field: 'tools[0]' }, type)
    }
    t.same(ids(RESPONSES, { tools: [{ type: 'function', name: 'f' }, { type: 'custom', name: 'c' }, { type: 'code_interpreter', container: { type: 'auto' } }, { type: 'image_generation' }] }), [
      ['f', 'function'],
      ['c', 'custom'],
      ['code_interpreter', 'code_interpreter'],
      ['image_generation', 'image_generation'],
    ])
  })

  t.test('an unknown type is kept, marked unknown, under its canonical name', async (t) => {
    t.same(toolsOf(RESPONSES, { tools: [{ type: 'programmatic_tool_calling' }] }), [{ name: 'programmatic_tool_calling', type: 'programmatic_tool_calling', origin: 'builtin', known: false, field: 'tools[0]' }])
    t.match(toolsOf(RESPONSES, { tools: [{ type: 'web_search_2027_01_01' }] }), [{ name: 'web_search', type: 'web_search_2027_01_01', known: false }], 'a version the map does not know')
  })

  t.test('an MCP server is mcp:<label> with its URL host; allowed_tools names one tool per allowed tool', async (t) => {
    const tools = toolsOf(RESPONSES, {
      tools: [{ type: 'mcp', server_label: 'payments', server_url: 'https://MCP.Payments.example.com:8443/mcp', allowed_tools: ['lookup_order', 'refund_order'], require_approval: 'never' }],
    })
    t.same(tools, [
      { name: 'mcp:payments', type: 'mcp', origin: 'mcp-server', known: true, field: 'tools[0]', host: 'mcp.payments.example.com', narrowed: true },
      { name: 'mcp:payments/lookup_order', type: 'mcp', origin: 'mcp-tool', known: true, field: 'tools[0].allowed_tools[0]', host: 'mcp.payments.example.com' },
      { name: 'mcp:payments/refund_order', type: 'mcp', origin: 'mcp-tool', known: true, field: 'tools[0].allowed_tools[1]', host: 'mcp.payments.example.com' },
    ])
  })

  t.test('an allowed_tools filter narrows by tool_names; read_only alone leaves each call to be decided', async (t) => {
    const narrowed = toolsOf(RESPONSES, { tools: [{ type: 'mcp', server_label: 'docs', server_url: 'https://docs.example.com/mcp', allowed_tools: { tool_names: ['search'], read_only: true } }] })
    t.same(
      narrowed.map((x) => [x.name, x.narrowed]),
      [
        ['mcp:docs', true],
        ['mcp:docs/search', undefined],
      ],
    )
    const readOnly = toolsOf(RESPONSES, { tools: [{ type: 'mcp', server_label: 'docs', server_url: 'https://docs.example.com/mcp', allowed_tools: { read_only: true } }] })
    t.same(
      readOnly.map((x) => [x.name, x.narrowed]),
      [['mcp:docs', undefined]],
    )
    const none = toolsOf(RESPONSES, { tools: [{ type: 'mcp', server_label: 'docs', server_url: 'https://docs.example.com/mcp', allowed_tools: [] }] })
    t.same(
      none.map((x) => [x.name, x.narrowed]),
      [['mcp:docs', true]],
      'an empty list allows no tool of the server',
    )
  })

  t.test('a connector has no URL, so no host', async (t) => {
    t.same(toolsOf(RESPONSES, { tools: [{ type: 'mcp', server_label: 'mail', connector_id: 'connector_gmail' }] }), [{ name: 'mcp:mail', type: 'mcp', origin: 'mcp-server', known: true, field: 'tools[0]' }])
  })

  t.test('a namespace groups functions the model calls by their own names', async (t) => {
    t.same(ids(RESPONSES, { tools: [{ type: 'namespace', name: 'crm', description: 'CRM', tools: [{ type: 'function', name: 'find_customer' }, { type: 'custom', name: 'notes' }] }] }), [
      ['find_customer', 'function'],
      ['notes', 'custom'],
    ])
  })

  t.test('input items that hand the model tools name them too', async (t) => {
    const body = {
      tools: [{ type: 'tool_search' }],
      input: [
        { role: 'user', content: 'hi' },
        { type: 'additional_tools', role: 'developer', tools: [{ type: 'function', name: 'late_function' }] },
        { type: 'tool_search_output', call_id: 'c1', execution: 'client', tools: [{ type: 'mcp', server_label: 'found', server_url: 'https://found.example.com' }] },
      ],
    }
    t.same(
      toolsOf(RESPONSES, body).map((x) => [x.name, x.field]),
      [
        ['tool_search', 'tools[0]'],
        ['late_function', 'input[1].tools[0]'],
        ['mcp:found', 'input[2].tools[0]'],
      ],
    )
  })

  t.test('tool_choice names functions, custom tools, MCP servers and their tools, built-ins and allowed lists', async (t) => {
    t.same(ids(RESPONSES, { tool_choice: { type: 'function', name: 'f' } }), [['f', 'function']])
    t.same(ids(RESPONSES, { tool_choice: { type: 'custom', name: 'c' } }), [['c', 'custom']])
    t.same(ids(RESPONSES, { tool_choice: { type: 'web_search_preview' } }), [['web_search', 'web_search_preview']])
    t.same(ids(RESPONSES, { tool_choice: { type: 'apply_patch' } }), [['apply_patch', 'apply_patch']])
    t.same(ids(RESPONSES, { tool_choice: { type: 'mcp', server_label: 'deepwiki', name: 'ask' } }), [
      ['mcp:deepwiki', 'mcp'],
      ['mcp:deepwiki/ask', 'mcp'],
    ])
    t.same(
      ids(RESPONSES, {
        tools: [{ type: 'web_search' }, { type: 'mcp', server_label: 'deepwiki', server_url: 'https://mcp.deepwiki.com/mcp' }],
        tool_choice: { type: 'allowed_tools', mode: 'required', tools: [{ type: 'function', name: 'get_weather' }, { type: 'mcp', server_label: 'deepwiki' }, { type: 'web_search_preview' }] },
      }),
      [
        ['web_search', 'web_search'],
        ['mcp:deepwiki', 'mcp'],
        ['get_weather', 'function'],
      ],
      'references resolve to the declared tools',
    )
    t.match(toolsOf(RESPONSES, { tool_choice: { type: 'mcp', server_label: 'deepwiki', name: 'ask' } })[1], { host: undefined }, 'a server named only by tool_choice has no host')
    const hosted = toolsOf(RESPONSES, { tools: [{ type: 'mcp', server_label: 'd', server_url: 'https://d.example.com' }], tool_choice: { type: 'mcp', server_label: 'd', name: 'ask' } })
    t.equal(byName(hosted, 'mcp:d/ask')?.host, 'd.example.com', "a server's tool carries the server's host")
  })
})

t.test('Anthropic messages', async (t) => {
  t.test('custom tools by name, server and client tools by canonical name, called by their given name', async (t) => {
    const tools = toolsOf(MESSAGES, {
      tools: [
        { name: 'lookup_order', input_schema: { type: 'object' } },
        { type: 'custom', name: 'refund_order', input_schema: { type: 'object' } },
        { type: 'web_search_20250305', name: 'web_search', max_uses: 3 },
        { type: 'web_fetch_20250910', name: 'web_fetch' },
        { type: 'code_execution_20250825', name: 'code_execution' },
        { type: 'bash_20250124', name: 'bash' },
        { type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' },
        { type: 'computer_20250124', name: 'computer', display_width_px: 1024, display_height_px: 768 },
        { type: 'memory_20250818', name: 'memory' },
        { type: 'tool_search_tool_regex_20251119', name: 'tool_search_tool_regex' },
      ],
    })
    t.same(
      tools.map((x) => [x.name, x.type, x.origin, x.callName, x.known]),
      [
        ['lookup_order', 'custom', 'function', 'lookup_order', true],
        ['refund_order', 'custom', 'function', 'refund_order', true],
        ['web_search', 'web_search_20250305', 'builtin', 'web_search', true],
        ['web_fetch', 'web_fetch_20250910', 'builtin', 'web_fetch', true],
        ['code_execution', 'code_execution_20250825', 'builtin', 'code_execution', true],
        ['bash', 'bash_20250124', 'builtin', 'bash', true],
        ['text_editor', 'text_editor_20250728', 'builtin', 'str_replace_based_edit_tool', true],
        ['computer', 'computer_20250124', 'builtin', 'computer', true],
        ['memory', 'memory_20250818', 'builtin', 'memory', true],
        ['tool_search', 'tool_search_tool_regex_20251119', 'builtin', 'tool_search_tool_regex', true],
      ],
    )
  })

  t.test('toolsets are tools of their own, without a name', async (t) => {
    t.same(ids(MESSAGES, { tools: [{ type: 'browser_toolset_20260801' }, { type: 'computer_toolset_20260801' }] }), [
      ['browser', 'browser_toolset_20260801'],
      ['computer', 'computer_toolset_20260801'],
    ])
  })

  t.test('a dated type the map does not know is kept, marked unknown', async (t) => {
    t.match(toolsOf(MESSAGES, { tools: [{ type: 'web_search_20991231', name: 'web_search' }] }), [{ name: 'web_search', type: 'web_search_20991231', known: false }])
  })

  t.test('mcp_servers: each server with its URL host, narrowed by tool_configuration', async (t) => {
    const tools = toolsOf(MESSAGES, {
      mcp_servers: [
        { type: 'url', name: 'payments', url: 'https://mcp.payments.example.com/sse', authorization_token: 't', tool_configuration: { enabled: true, allowed_tools: ['lookup_order'] } },
        { type: 'url', name: 'wiki', url: 'https://wiki.example.com/mcp' },
        { type: 'url', name: 'off', url: 'https://off.example.com/mcp', tool_configuration: { enabled: false } },
      ],
    })
    t.same(
      tools.map((x) => [x.name, x.host, x.narrowed ?? false]),
      [
        ['mcp:payments', 'mcp.payments.example.com', true],
        ['mcp:payments/lookup_order', 'mcp.payments.example.com', false],
        ['mcp:wiki', 'wiki.example.com', false],
        ['mcp:off', 'off.example.com', true],
      ],
    )
  })

  t.test('mcp_toolset: the server it names; with tools off by default, those its configs enable', async (t) => {
    const tools = toolsOf(MESSAGES, {
      mcp_servers: [{ type: 'url', name: 'payments', url: 'https://mcp.payments.example.com/mcp' }],
      tools: [{ type: 'mcp_toolset', mcp_server_name: 'payments', default_config: { enabled: false }, configs: { lookup_order: { enabled: true }, refund_order: { enabled: false } } }],
    })
    t.same(
      tools.map((x) => [x.name, x.host, x.narrowed ?? false]),
      [
        ['mcp:payments', 'mcp.payments.example.com', true],
        ['mcp:payments/lookup_order', 'mcp.payments.example.com', false],
      ],
    )
    const open = toolsOf(MESSAGES, { mcp_servers: [{ type: 'url', name: 'wiki', url: 'https://wiki.example.com' }], tools: [{ type: 'mcp_toolset', mcp_server_name: 'wiki', configs: { delete_page: { enabled: false } } }] })
    t.same(
      open.map((x) => [x.name, x.narrowed ?? false]),
      [['mcp:wiki', false]],
      'on by default: every call is decided when it comes',
    )
    const listed = toolsOf(MESSAGES, { tools: [{ type: 'mcp_toolset', mcp_server_name: 'wiki', tools: [{ name: 'read_page', input_schema: {} }] }] })
    t.same(
      listed.map((x) => x.name),
      ['mcp:wiki', 'mcp:wiki/read_page'],
    )
  })

  t.test('tool_choice {type: "tool"} names the tool given that name', async (t) => {
    t.same(ids(MESSAGES, { tools: [{ type: 'bash_20250124', name: 'bash' }], tool_choice: { type: 'tool', name: 'bash' } }), [['bash', 'bash_20250124']])
    t.same(ids(MESSAGES, { tool_choice: { type: 'tool', name: 'forced' } }), [['forced', 'custom']])
    for (const type of ['auto', 'any', 'none']) t.same(ids(MESSAGES, { tool_choice: { type } }), [], type)
  })
})

t.test('requests that could make two tools look like one are refused, naming the field', async (t) => {
  const cases: [name: string, api: string, body: Record<string, unknown>, field: string, problem: string][] = [
    ['a function name with ":"', CHAT, { tools: [{ type: 'function', function: { name: 'mcp:payments/refund' } }] }, 'tools[0].function.name', 'must not contain ":"'],
    ['a legacy function name with ":"', CHAT, { functions: [{ name: 'a:b' }] }, 'functions[0].name', 'must not contain ":"'],
    ['an Anthropic tool name with ":"', MESSAGES, { tools: [{ name: 'mcp:x' }] }, 'tools[0].name', 'must not contain ":"'],
    ['an MCP server label with "/"', RESPONSES, { tools: [{ type: 'mcp', server_label: 'payments/refund', server_url: 'https://x.example.com' }] }, 'tools[0].server_label', 'must not contain "/"'],
    ['an Anthropic MCP server name with "/"', MESSAGES, { mcp_servers: [{ type: 'url', name: 'a/b', url: 'https://x.example.com' }] }, 'mcp_servers[0].name', 'must not contain "/"'],
    ['two names for one chat function', CHAT, { tools: [{ type: 'function', name: 'lookup_order', function: { name: 'refund_order' } }] }, 'tools[0].name', 'differs from tools[0].function.name'],
    ['two names for one Responses function', RESPONSES, { tools: [{ type: 'function', name: 'a', function: { name: 'b' } }] }, 'tools[0].name', 'differs from tools[0].function.name'],
    ['one identity with two types', RESPONSES, { tools: [{ type: 'function', name: 'web_search' }, { type: 'web_search' }] }, 'tools[1]', 'names the same tool as tools[0] with another type'],
    ['two versions of one built-in', MESSAGES, { tools: [{ type: 'web_search_20250305', name: 'web_search' }, { type: 'web_search_20260318', name: 'web_search' }] }, 'tools[1]', 'names the same tool as tools[0] with another type'],
    ['a function beside web_search_options', CHAT, { tools: [{ type: 'function', function: { name: 'web_search' } }], web_search_options: {} }, 'web_search_options', 'names the same tool as tools[0] with another type'],
    ['one MCP server at two URLs', RESPONSES, { tools: [{ type: 'mcp', server_label: 'p', server_url: 'https://a.example.com' }, { type: 'mcp', server_label: 'p', server_url: 'https://b.example.com' }] }, 'tools[1]', 'names the same MCP server as tools[0] with another URL'],
    ['two tools called by one name', MESSAGES, { tools: [{ type: 'text_editor_20250728', name: 'str_replace_based_edit_tool' }, { name: 'str_replace_based_edit_tool' }] }, 'tools[1]', 'is called by the same name as tools[0]'],
    ['an MCP server URL that is not a URL', RESPONSES, { tools: [{ type: 'mcp', server_label: 'p', server_url: 'not a url' }] }, 'tools[0].server_url', 'must be a URL'],
    ['an MCP server without a label', RESPONSES, { tools: [{ type: 'mcp', server_url: 'https://a.example.com' }] }, 'tools[0].server_label', 'is required'],
    ['an allowed MCP tool that is not a name', RESPONSES, { tools: [{ type: 'mcp', server_label: 'p', allowed_tools: ['ok', 7] }] }, 'tools[0].allowed_tools[1]', 'must be a non-empty string'],
    ['a tool type with odd characters', RESPONSES, { tools: [{ type: 'web search' }] }, 'tools[0].type', 'must be a type name (letters, digits, "_", ".", "-")'],
    ['a tool type that is a number', CHAT, { tools: [{ type: 5 }] }, 'tools[0].type', 'must be a non-empty string'],
    ['an unknown tool_choice mode', CHAT, { tool_choice: 'always' }, 'tool_choice', 'must be "none", "auto", "required" or a tool'],
    ['a tool_choice without a type', RESPONSES, { tool_choice: { name: 'f' } }, 'tool_choice.type', 'is required'],
    ['allowed_tools without tools', CHAT, { tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto' } } }, 'tool_choice.allowed_tools.tools', 'must be an array'],
    ['a function_call that is neither a mode nor a name', CHAT, { function_call: 'required' }, 'function_call', 'must be "none", "auto" or {"name"}'],
    ['an Anthropic tool_choice of an unknown type', MESSAGES, { tool_choice: { type: 'toolset' } }, 'tool_choice.type', 'must be "auto", "any", "tool" or "none"'],
    ['an over-long function name', CHAT, { tools: [{ type: 'function', function: { name: 'f'.repeat(257) } }] }, 'tools[0].function.name', 'is longer than 256 characters'],
    ['functions as an object', CHAT, { functions: {} }, 'functions', 'must be an array'],
    ['web_search_options that is not an object', CHAT, { web_search_options: true }, 'web_search_options', 'must be an object'],
    ['an mcp_toolset without a server', MESSAGES, { tools: [{ type: 'mcp_toolset' }] }, 'tools[0].mcp_server_name', 'is required'],
    ['a namespace without tools', RESPONSES, { tools: [{ type: 'namespace', name: 'crm' }] }, 'tools[0].tools', 'must be an array'],
  ]
  for (const [name, api, body, field, problem] of cases) t.same(refusal(api, body), { code: 'MG_BODY_INVALID', field, problem }, name)
})

t.test(`a request naming more than ${MAX_TOOLS} tools is refused`, async (t) => {
  const tools = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'function', function: { name: `f${i}` } }))
  t.equal(toolsOf(CHAT, { tools: tools(MAX_TOOLS) }).length, MAX_TOOLS)
  t.same(refusal(CHAT, { tools: tools(MAX_TOOLS + 1) }), { code: 'MG_BODY_INVALID', field: `tools[${MAX_TOOLS}]`, problem: `is one tool more than the ${MAX_TOOLS} a request may name` })
  t.equal(toolsOf(CHAT, { tools: [...tools(MAX_TOOLS), ...tools(MAX_TOOLS)] }).length, MAX_TOOLS, 'the same tools twice are still that many')
})

t.test('APIs without tools name none', async (t) => {
  t.same(toolsOf('openai.completions', { tools: [{ type: 'function', function: { name: 'x' } }] }), [])
  t.same(toolsOf('openai.embeddings', { functions: [{ name: 'x' }] }), [])
})
