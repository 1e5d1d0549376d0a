/**
 * Tools through a real Envoy, with the official SDKs (raw requests only
 * where an SDK cannot express the request): every way a request names a tool
 * is a `call_tool` question, denied for a caller without the permit (the
 * provider sees nothing) and allowed for one with it; tool types the tool
 * map does not know are refused unless configured; and a response calling a
 * tool the caller may not call, or one the request never named, is refused
 * (buffered) or ended (SSE) before the caller sees the call.
 *
 * Policies: the shipped ones (checkout may use the payments-api functions and
 * the payments MCP service; notebook the public-web tools), plus one permit
 * giving research every provider built-in, so that each built-in type has a
 * caller allowed to use it.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { ANTHROPIC_BUILTIN_TYPES } from '../../src/providers/apis/anthropic-messages.ts'
import { RESPONSES_BUILTIN_TYPES } from '../../src/providers/apis/openai-responses.ts'
import { startStack, type ClientName, type Stack } from '../helpers/stack.ts'
import { copyShipped } from '../unit/policy/fixtures.ts'

const GPT = 'gpt-4o-mini'
const CLAUDE = 'claude-haiku-4-5'
const PAYMENTS_MCP = 'https://mcp.payments.example.com/mcp'
const user = [{ role: 'user' as const, content: 'Check order 1042.' }]
/** Pause between scripted SSE chunks, so that most arrive one by one. */
const SPACED = 20

const BUILTINS_FOR_RESEARCH = `@id("e2e-research-builtins")
@owner("e2e")
permit (
  principal in ModelGate::Team::"research",
  action == ModelGate::Action::"call_tool",
  resource
)
unless { resource.kind == "function" || resource.kind == "custom" || resource.kind == "mcp" };
`

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  )
}

/** The MG code of an SDK error: OpenAI's `code`, Anthropic's `errorCode`. */
function codeOf(err: unknown): string | undefined {
  if (err instanceof OpenAI.APIError) return err.code ?? undefined
  if (err instanceof Anthropic.APIError) return (err as unknown as { errorCode?: string }).errorCode
  return undefined
}

/** One way of naming a tool: who may, who may not, and the request (by SDK, or raw). */
interface ToolPath {
  readonly name: string
  readonly allowed: ClientName
  readonly denied: ClientName
  send(stack: Stack, client: ClientName): Promise<unknown>
}

t.test('tools through Envoy', async (t) => {
  const dir = copyShipped(join(t.testdir(), 'policies'))
  writeFileSync(join(dir, 'e2e-builtins.cedar'), BUILTINS_FOR_RESEARCH)
  const stack: Stack = await startStack({ config: { policy: { dir, watch: false } } })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  const chat = (client: ClientName, body: Record<string, unknown>) => stack.openai(client).chat.completions.create({ model: GPT, messages: user, ...body } as never)
  const responses = (client: ClientName, body: Record<string, unknown>) => stack.openai(client).responses.create({ model: GPT, input: 'Check order 1042.', ...body } as never)
  const messages = (client: ClientName, body: Record<string, unknown>) => stack.anthropic(client).messages.create({ model: CLAUDE, max_tokens: 64, messages: user, ...body } as never)
  const betaMessages = (client: ClientName, body: Record<string, unknown>, beta: string) =>
    stack.anthropic(client).beta.messages.create({ model: CLAUDE, max_tokens: 64, messages: user, betas: [beta], ...body } as never)

  const paths: ToolPath[] = [
    // OpenAI chat completions
    { name: 'chat tools[]: a function', allowed: 'checkout', denied: 'notebook', send: (_, c) => chat(c, { tools: [{ type: 'function', function: { name: 'lookup_order', parameters: { type: 'object' } } }] }) },
    { name: 'chat tools[]: a custom tool', allowed: 'checkout', denied: 'notebook', send: (_, c) => chat(c, { tools: [{ type: 'custom', custom: { name: 'refund_order' } }] }) },
    { name: 'chat: the legacy functions[]', allowed: 'notebook', denied: 'checkout', send: (_, c) => chat(c, { functions: [{ name: 'fetch_url', parameters: { type: 'object' } }] }) },
    { name: 'chat: the legacy function_call', allowed: 'notebook', denied: 'checkout', send: (_, c) => chat(c, { function_call: { name: 'fetch_url' } }) },
    { name: 'chat tool_choice: a function', allowed: 'checkout', denied: 'notebook', send: (_, c) => chat(c, { tool_choice: { type: 'function', function: { name: 'lookup_order' } } }) },
    { name: 'chat tool_choice: a custom tool', allowed: 'checkout', denied: 'notebook', send: (_, c) => chat(c, { tool_choice: { type: 'custom', custom: { name: 'refund_order' } } }) },
    {
      name: 'chat tool_choice: allowed_tools',
      allowed: 'notebook',
      denied: 'checkout',
      send: (_, c) => chat(c, { tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [{ type: 'function', function: { name: 'fetch_url' } }] } } }),
    },
    { name: 'chat: web_search_options', allowed: 'notebook', denied: 'checkout', send: (_, c) => chat(c, { web_search_options: {} }) },
    // OpenAI Responses
    { name: 'responses tools[]: a function', allowed: 'checkout', denied: 'notebook', send: (_, c) => responses(c, { tools: [{ type: 'function', name: 'lookup_order', parameters: { type: 'object' }, strict: false }] }) },
    ...[...RESPONSES_BUILTIN_TYPES].map(
      (type): ToolPath => ({ name: `responses tools[]: the built-in ${type}`, allowed: 'notebook', denied: 'checkout', send: (_, c) => responses(c, { tools: [{ type }] }) }),
    ),
    { name: 'responses tools[]: an MCP server', allowed: 'checkout', denied: 'notebook', send: (_, c) => responses(c, { tools: [{ type: 'mcp', server_label: 'payments', server_url: PAYMENTS_MCP, require_approval: 'never' }] }) },
    {
      name: 'responses tools[]: an MCP server narrowed by allowed_tools',
      allowed: 'checkout',
      denied: 'notebook',
      send: (_, c) => responses(c, { tools: [{ type: 'mcp', server_label: 'payments', server_url: PAYMENTS_MCP, allowed_tools: ['lookup_order'] }] }),
    },
    {
      name: 'responses tool_choice: a tool of an MCP server',
      allowed: 'checkout',
      denied: 'notebook',
      send: (_, c) => responses(c, { tools: [{ type: 'mcp', server_label: 'payments', server_url: PAYMENTS_MCP }], tool_choice: { type: 'mcp', server_label: 'payments', name: 'lookup_order' } }),
    },
    { name: 'responses tool_choice: a function', allowed: 'checkout', denied: 'notebook', send: (_, c) => responses(c, { tool_choice: { type: 'function', name: 'refund_order' } }) },
    { name: 'responses tool_choice: a hosted tool', allowed: 'notebook', denied: 'checkout', send: (_, c) => responses(c, { tool_choice: { type: 'image_generation' } }) },
    {
      name: 'responses tool_choice: allowed_tools',
      allowed: 'notebook',
      denied: 'checkout',
      send: (_, c) => responses(c, { tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'web_search_preview' }] } }),
    },
    {
      name: 'responses input: additional_tools',
      allowed: 'notebook',
      denied: 'checkout',
      send: (_, c) => responses(c, { input: [{ role: 'user', content: 'hi' }, { type: 'additional_tools', role: 'developer', tools: [{ type: 'function', name: 'fetch_url', parameters: { type: 'object' }, strict: false }] }] }),
    },
    // Anthropic messages
    { name: 'anthropic tools[]: a custom tool', allowed: 'checkout', denied: 'notebook', send: (_, c) => messages(c, { tools: [{ name: 'lookup_order', input_schema: { type: 'object' } }] }) },
    ...[...ANTHROPIC_BUILTIN_TYPES].map(
      (type): ToolPath => ({ name: `anthropic tools[]: the ${type} tool`, allowed: 'notebook', denied: 'checkout', send: (_, c) => messages(c, { tools: [anthropicTool(type)] }) }),
    ),
    { name: 'anthropic tool_choice: a tool', allowed: 'checkout', denied: 'notebook', send: (_, c) => messages(c, { tool_choice: { type: 'tool', name: 'refund_order' } }) },
    {
      name: 'anthropic mcp_servers[]',
      allowed: 'checkout',
      denied: 'notebook',
      send: (_, c) => betaMessages(c, { mcp_servers: [{ type: 'url', name: 'payments', url: PAYMENTS_MCP, tool_configuration: { allowed_tools: ['lookup_order'] } }] }, 'mcp-client-2025-04-04'),
    },
    {
      name: 'anthropic tools[]: an mcp_toolset',
      allowed: 'checkout',
      denied: 'notebook',
      send: (_, c) => betaMessages(c, { mcp_servers: [{ type: 'url', name: 'payments', url: PAYMENTS_MCP }], tools: [{ type: 'mcp_toolset', mcp_server_name: 'payments' }] }, 'mcp-client-2025-11-20'),
    },
  ]

  for (const p of paths) {
    t.test(`${p.name}: denied for ${p.denied}, allowed for ${p.allowed}`, async (t) => {
      const err = await rejection(p.send(stack, p.denied))
      t.ok(err instanceof OpenAI.APIError || err instanceof Anthropic.APIError, 'the SDK raises an API error')
      t.equal((err as { status?: number }).status, 403)
      t.equal(codeOf(err), 'MG_POLICY_DENIED')
      t.equal(stack.provider.requests.length, 0, 'the provider saw nothing')
      await p.send(stack, p.allowed)
      t.equal(stack.provider.requests.length, 1, 'the allowed request reached the provider')
    })
  }

  t.test('the admin tools of an MCP server are refused even on the server its caller may use', async (t) => {
    const err = await rejection(responses('checkout', { tools: [{ type: 'mcp', server_label: 'payments', server_url: PAYMENTS_MCP, allowed_tools: ['lookup_order', 'admin_reset'] }] }))
    t.equal(codeOf(err), 'MG_POLICY_DENIED')
    const anthropic = await rejection(betaMessages('checkout', { mcp_servers: [{ type: 'url', name: 'pay', url: PAYMENTS_MCP, tool_configuration: { allowed_tools: ['admin_reset'] } }] }, 'mcp-client-2025-04-04'))
    t.equal(codeOf(anthropic), 'MG_POLICY_DENIED', 'whatever the request calls the server')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('an MCP server under an approved label at another host is refused', async (t) => {
    const err = await rejection(responses('checkout', { tools: [{ type: 'mcp', server_label: 'payments', server_url: 'https://mcp.attacker.example.net/mcp' }] }))
    t.equal(codeOf(err), 'MG_POLICY_DENIED')
    const connector = await rejection(responses('checkout', { tools: [{ type: 'mcp', server_label: 'payments', connector_id: 'connector_gmail' }] }))
    t.equal(codeOf(connector), 'MG_POLICY_DENIED', 'nor a connector, which has no host')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a tool type the tool map does not know is refused before policy, naming the field', async (t) => {
    const err = await rejection(responses('notebook', { tools: [{ type: 'web_search' }, { type: 'programmatic_tool_calling' }] }))
    t.ok(err instanceof OpenAI.APIError)
    t.equal((err as InstanceType<typeof OpenAI.APIError>).status, 403)
    t.equal(codeOf(err), 'MG_TOOL_TYPE_UNKNOWN')
    t.match((err as InstanceType<typeof OpenAI.APIError>).error, { field: 'tools[1]', tool_type: 'programmatic_tool_calling' })
    const future = await rejection(messages('notebook', { tools: [{ type: 'web_search_20991231', name: 'web_search' }] }))
    t.equal(codeOf(future), 'MG_TOOL_TYPE_UNKNOWN', 'nor a dated version it does not know')
    const raw = await stack.request('notebook', { path: '/v1/chat/completions', body: { model: GPT, messages: user, tools: [{ type: 'web_search_preview' }] } })
    t.equal(raw.status, 403)
    t.equal(raw.headers['x-modelgate-error'], 'MG_TOOL_TYPE_UNKNOWN', 'chat completions know no built-in tool types')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a request that makes two tools look like one is refused', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', body: { model: GPT, messages: user, tools: [{ type: 'function', name: 'lookup_order', function: { name: 'fetch_url' } }] } })
    t.equal(res.status, 400)
    t.match(res.json(), { error: { code: 'MG_BODY_INVALID', field: 'tools[0].name', problem: 'differs from tools[0].function.name' } })
    const mcpLike = await rejection(chat('checkout', { tools: [{ type: 'function', function: { name: 'mcp:payments/lookup_order' } }] }))
    t.equal(codeOf(mcpLike), 'MG_BODY_INVALID')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('responses that call tools', async (t) => {
    const chunk = (delta: Record<string, unknown>) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: GPT, choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`
    const ev = (type: string, body: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...body })}\n\n`
    const completion = (name: string) => ({
      id: 'c1',
      object: 'chat.completion',
      created: 1,
      model: GPT,
      choices: [{ index: 0, finish_reason: 'tool_calls', logprobs: null, message: { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name, arguments: '{"order":1042}' } }] } }],
    })
    const lookup = { tools: [{ type: 'function', function: { name: 'lookup_order', parameters: { type: 'object' } } }] }

    t.test('a buffered chat completion calling a declared, permitted tool reaches the caller', async (t) => {
      stack.provider.enqueue({ body: completion('lookup_order') })
      const answer = (await chat('checkout', lookup)) as OpenAI.ChatCompletion
      t.match(answer.choices[0]?.message.tool_calls, [{ type: 'function', function: { name: 'lookup_order' } }])
    })

    t.test('a buffered chat completion calling a tool the request did not declare is refused whole', async (t) => {
      stack.provider.enqueue({ body: completion('refund_order') })
      const err = await rejection(chat('checkout', lookup))
      t.ok(err instanceof OpenAI.APIError)
      t.equal((err as InstanceType<typeof OpenAI.APIError>).status, 403)
      t.equal(codeOf(err), 'MG_RESPONSE_TOOL_DENIED')
      t.match((err as InstanceType<typeof OpenAI.APIError>).error, { reason: 'undeclared' })
      t.notMatch(JSON.stringify((err as InstanceType<typeof OpenAI.APIError>).error), /refund_order/, 'the call never reaches the caller')
    })

    t.test('a chat stream ends before the delta that names an undeclared tool', async (t) => {
      stack.provider.enqueue({
        sse: [chunk({ role: 'assistant', content: '' }), chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'refund_order', arguments: '' } }] }), chunk({ tool_calls: [{ index: 0, function: { arguments: '{}' } }] }), 'data: [DONE]\n\n'],
        chunkDelayMs: SPACED,
      })
      const stream = await stack.openai('checkout').chat.completions.create({ model: GPT, messages: user, stream: true, tools: lookup.tools as OpenAI.ChatCompletionTool[] })
      const seen: unknown[] = []
      const err = await rejection(
        (async () => {
          for await (const c of stream) seen.push(c)
        })(),
      )
      t.equal(codeOf(err), 'MG_RESPONSE_TOOL_DENIED')
      t.ok(seen.length <= 1, 'at most the event before it arrived (events that share the call\'s chunk are dropped with it)')
      t.notMatch(JSON.stringify(seen), /refund_order/, 'the call did not')
    })

    t.test('a chat stream ends when a later delta renames a permitted call', async (t) => {
      stack.provider.enqueue({
        sse: [chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup_order', arguments: '' } }] }), chunk({ tool_calls: [{ index: 0, function: { name: 'fetch_url', arguments: '{}' } }] }), 'data: [DONE]\n\n'],
        chunkDelayMs: SPACED,
      })
      const stream = await stack.openai('checkout').chat.completions.create({ model: GPT, messages: user, stream: true, tools: lookup.tools as OpenAI.ChatCompletionTool[] })
      const names: string[] = []
      const err = await rejection(
        (async () => {
          for await (const c of stream) for (const tc of c.choices[0]?.delta.tool_calls ?? []) if (tc.function?.name) names.push(tc.function.name)
        })(),
      )
      t.equal(codeOf(err), 'MG_RESPONSE_TOOL_DENIED')
      t.notOk(names.includes('fetch_url'), 'the new name never arrived')
      t.ok(names.every((n) => n === 'lookup_order'))
    })

    t.test('an Anthropic stream ends at the content block calling a forbidden MCP tool, and the record names the tool', async (t) => {
      stack.provider.enqueue({
        sse: [
          ev('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model: CLAUDE, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } } }),
          ev('content_block_start', { index: 0, content_block: { type: 'mcp_tool_use', id: 'mcptoolu_1', server_name: 'payments', name: 'lookup_order', input: {} } }),
          ev('content_block_stop', { index: 0 }),
          ev('content_block_start', { index: 1, content_block: { type: 'mcp_tool_use', id: 'mcptoolu_2', server_name: 'payments', name: 'admin_reset', input: {} } }),
          ev('content_block_stop', { index: 1 }),
          ev('message_stop', {}),
        ],
        chunkDelayMs: SPACED,
      })
      const { data: stream, response } = await stack.anthropic('checkout').beta.messages.create({ model: CLAUDE, max_tokens: 64, messages: user, stream: true, betas: ['mcp-client-2025-04-04'], mcp_servers: [{ type: 'url', name: 'payments', url: PAYMENTS_MCP }] }).withResponse()
      const blocks: string[] = []
      const err = await rejection(
        (async () => {
          for await (const e of stream) if (e.type === 'content_block_start') blocks.push(JSON.stringify(e.content_block))
        })(),
      )
      t.ok(err instanceof Anthropic.APIError)
      t.equal(codeOf(err), 'MG_RESPONSE_TOOL_DENIED')
      t.match((err as InstanceType<typeof Anthropic.APIError>).error, { type: 'error', error: { type: 'permission_error', reason: 'policy', tool: 'mcp:payments/admin_reset' } })
      t.ok(blocks.length <= 1, 'at most the permitted call arrived')
      t.notMatch(blocks.join(''), /admin_reset/, 'the forbidden one did not')
      const record = await stack.auditRecord(response.headers.get('x-request-id') ?? '')
      t.equal(record['modelgate.denial.code'], 'MG_RESPONSE_TOOL_DENIED')
      t.equal(record['modelgate.response.tool_denied'], 'mcp:payments/admin_reset')
      t.equal(record['modelgate.response.tool_denied_reason'], 'policy')
      t.same(record['modelgate.response.tools'], ['mcp:payments/lookup_order', 'mcp:payments/admin_reset'])
      t.same(record['modelgate.response.tool_effects'], ['allow', 'deny'])
      t.same(record['modelgate.decision.tools'], ['mcp:payments'])
      t.same(record['modelgate.decision.tool_effects'], ['allow'])
    })

    t.test('a buffered Anthropic message running a server tool the request did not ask for is refused', async (t) => {
      stack.provider.enqueue({
        body: {
          id: 'msg_2',
          type: 'message',
          role: 'assistant',
          model: CLAUDE,
          content: [{ type: 'server_tool_use', id: 'srvtoolu_1', name: 'bash_code_execution', input: { command: 'ls' } }],
          stop_reason: 'end_turn',
          stop_sequence: null,
          usage: { input_tokens: 3, output_tokens: 5 },
        },
      })
      const err = await rejection(messages('notebook', { tools: [{ type: 'web_search_20250305', name: 'web_search' }] }))
      t.ok(err instanceof Anthropic.APIError)
      t.equal((err as InstanceType<typeof Anthropic.APIError>).status, 403)
      t.equal(codeOf(err), 'MG_RESPONSE_TOOL_DENIED')
    })

    t.test('a Responses stream passes the built-in call it declared and ends at one it did not', async (t) => {
      stack.provider.enqueue({
        sse: [
          ev('response.created', { sequence_number: 0, response: { id: 'resp_1', object: 'response', status: 'in_progress', model: GPT, output: [], tools: [{ type: 'web_search_preview' }], parallel_tool_calls: true } }),
          ev('response.output_item.added', { sequence_number: 1, output_index: 0, item: { type: 'web_search_call', id: 'ws_1', status: 'in_progress' } }),
          ev('response.output_item.added', { sequence_number: 2, output_index: 1, item: { type: 'code_interpreter_call', id: 'ci_1', status: 'in_progress', code: '', container_id: 'c', outputs: null } }),
          ev('response.completed', { sequence_number: 3, response: { id: 'resp_1', object: 'response', status: 'completed', model: GPT, output: [] } }),
        ],
        chunkDelayMs: SPACED,
      })
      const stream = await stack.openai('notebook').responses.create({ model: GPT, input: 'news?', stream: true, tools: [{ type: 'web_search_preview' }] })
      const items: string[] = []
      const err = await rejection(
        (async () => {
          for await (const e of stream) if (e.type === 'response.output_item.added') items.push(e.item.type)
        })(),
      )
      t.equal(codeOf(err), 'MG_RESPONSE_TOOL_DENIED')
      t.notOk(items.includes('code_interpreter_call'), 'the undeclared call never arrived')
      t.ok(items.every((i) => i === 'web_search_call'))
    })

    t.test('a buffered Responses answer calling a tool of a permitted MCP server reaches the caller', async (t) => {
      stack.provider.enqueue({
        body: { id: 'resp_2', object: 'response', created_at: 1, status: 'completed', model: GPT, output: [{ type: 'mcp_call', id: 'mcp_1', server_label: 'payments', name: 'lookup_order', arguments: '{}', output: 'shipped' }], usage: { input_tokens: 1, output_tokens: 1, total_tokens: 2 } },
      })
      const answer = (await responses('checkout', { tools: [{ type: 'mcp', server_label: 'payments', server_url: PAYMENTS_MCP }] })) as OpenAI.Responses.Response
      t.match(answer.output[0], { type: 'mcp_call', name: 'lookup_order' })
    })
  })

  t.test('a tool type the configuration allows reaches policy like any other', async (t) => {
    await stack.stopModelgate()
    await stack.startModelgate({ config: { providers: { allowedToolTypes: ['programmatic_tool_calling'] } } })
    const denied = await rejection(responses('checkout', { tools: [{ type: 'programmatic_tool_calling' }] }))
    t.equal(codeOf(denied), 'MG_POLICY_DENIED', 'policy decides it: checkout has no permit')
    t.equal(stack.provider.requests.length, 0)
    await responses('notebook', { tools: [{ type: 'programmatic_tool_calling' }] })
    t.equal(stack.provider.requests.length, 1, 'research may use built-ins')
  })
})

/** An Anthropic tool of a built-in type, with the fields its type requires. */
function anthropicTool(type: string): Record<string, unknown> {
  if (type.startsWith('computer_toolset') || type.startsWith('browser_toolset')) return { type }
  if (type.startsWith('computer_')) return { type, name: 'computer', display_width_px: 1024, display_height_px: 768 }
  if (type.startsWith('advisor_')) return { type, name: 'advisor', model: 'claude-opus-4-1' }
  const names: Record<string, string> = { bash: 'bash', text_editor: 'str_replace_based_edit_tool', memory: 'memory', web_search: 'web_search', web_fetch: 'web_fetch', code_execution: 'code_execution' }
  const family = type.replace(/_\d{8}$/, '')
  if (family.startsWith('tool_search_tool_')) return { type, name: family }
  if (type.startsWith('text_editor_2024') || type === 'text_editor_20250124') return { type, name: 'str_replace_editor' }
  return { type, name: names[family] ?? family }
}
