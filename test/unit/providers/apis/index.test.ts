import t from 'tap'
import { GateError } from '../../../../src/errors.ts'
import { anthropicMessagesApi } from '../../../../src/providers/apis/anthropic-messages.ts'
import { API_NAMES, apiFor, collectCalls, deltaSlots, ENUMERATED_VALUES, findApi, mayNameToolCall, modelApiFor, streamedText, type ToolCall } from '../../../../src/providers/apis/index.ts'
import { openaiChat } from '../../../../src/providers/apis/openai-chat.ts'
import { openaiResponses } from '../../../../src/providers/apis/openai-responses.ts'
import { route } from './helpers.ts'

t.test('every API name a route can carry has a module, found by that name', async (t) => {
  const paths = ['/v1/chat/completions', '/v1/completions', '/v1/responses', '/v1/embeddings', '/v1/messages', '/openai/deployments/d/chat/completions', '/openai/deployments/d/completions', '/openai/deployments/d/embeddings']
  for (const p of paths) {
    const r = route(p)
    t.equal(apiFor(r.api).name, r.api, p)
  }
  t.same([...API_NAMES].sort(), ['anthropic.messages', 'azure_openai.chat_completions', 'azure_openai.completions', 'azure_openai.embeddings', 'openai.chat_completions', 'openai.completions', 'openai.embeddings', 'openai.responses'])
  t.equal(apiFor('openai.responses'), openaiResponses)
  t.equal(apiFor('anthropic.messages'), anthropicMessagesApi)
})

t.test('an unknown API name is refused with the name and the known ones', async (t) => {
  t.equal(findApi('openai.audio'), undefined)
  try {
    apiFor('openai.audio')
    t.fail('no error')
  } catch (err) {
    t.ok(err instanceof GateError)
    t.equal((err as GateError).code, 'MG_ROUTE_UNSUPPORTED')
    t.match((err as GateError).internal, /no provider API module reads "openai\.audio"; known: .*openai\.chat_completions/)
  }
})

t.test('an MCP route has no model API module', async (t) => {
  t.equal(modelApiFor({ kind: 'mcp', operation: 'mcp', api: 'mcp.streamable_http' }), undefined)
  t.equal(modelApiFor(route('/v1/chat/completions')), openaiChat)
})

t.test('Azure OpenAI names read the OpenAI formats, without the stream-usage option', async (t) => {
  const azure = apiFor('azure_openai.chat_completions')
  t.equal(azure.parseRequest, openaiChat.parseRequest)
  t.equal(azure.toolCalls, openaiChat.toolCalls)
  t.equal(azure.streamUsage, undefined)
  t.ok(openaiChat.streamUsage)
})

t.test('responses are read by every API module, whatever the route', async (t) => {
  t.equal(streamedText({ choices: [{ index: 0, delta: { content: 'a' } }] }) + streamedText({ type: 'content_block_delta', delta: { text: 'b' } }) + streamedText({ type: 'response.output_text.delta', delta: 'c' }), 'abc')
  t.same(
    deltaSlots({ type: 'content_block_delta', index: 0, delta: { text: 'x' } }).map((d) => d.channel),
    ['block.0.text'],
  )
  const calls: ToolCall[] = []
  collectCalls({ choices: [{ message: { tool_calls: [{ function: { name: 'a' } }] } }], content: [{ type: 'tool_use', name: 'b' }], output: [{ type: 'function_call', name: 'c' }] }, calls)
  t.same(
    calls.map((c) => (c.by === 'name' ? c.name : c.by)),
    ['a', 'b', 'c'],
  )
})

t.test('bytes are looked at for tool calls when they hold a marker of any module', async (t) => {
  for (const text of ['"tool_calls"', '"type":"tool_use"', '"mcp_approval_request"', '"\\u005f"']) t.ok(mayNameToolCall(Buffer.from(text)), text)
  t.notOk(mayNameToolCall(Buffer.from('{"choices":[{"delta":{"content":"hi"}}]}')))
})

t.test("enumerated values are every module's own, together", async (t) => {
  t.ok(ENUMERATED_VALUES.role!.has('developer'), 'an OpenAI role')
  t.ok(ENUMERATED_VALUES.stop_reason!.has('pause_turn'), 'an Anthropic stop reason')
  t.ok(ENUMERATED_VALUES.type!.has('response.output_text.delta'), 'a Responses event')
  t.ok(ENUMERATED_VALUES.object!.has('model'), 'the models list')
  t.notOk(ENUMERATED_VALUES.role!.has('root'))
})
