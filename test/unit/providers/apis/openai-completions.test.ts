import t from 'tap'
import type { DeltaSlot, ToolCall } from '../../../../src/providers/apis/api.ts'
import { openaiCompletions } from '../../../../src/providers/apis/openai-completions.ts'
import { refusal, route, usageOf } from './helpers.ts'

const PATH = '/v1/completions'

t.test('a valid completions request is read into model, stream and max_tokens, with no tools', async (t) => {
  const req = openaiCompletions.parseRequest({ model: 'gpt-3.5-turbo-instruct', prompt: ['a', [1, 2]], max_tokens: 16, stream: true, tools: [{ type: 'function' }] }, route(PATH), 'openai')
  t.match(req, { operation: 'completion', api: 'openai.completions', model: 'gpt-3.5-turbo-instruct', stream: true, maxTokens: 16 })
  t.same(req.tools, [])
})

t.test('a wrong field of a completions request is refused with its name', async (t) => {
  t.same(refusal(openaiCompletions, PATH, { model: 'm' }), { code: 'MG_BODY_INVALID', field: 'prompt', problem: 'is required and must be a string or an array' })
  t.same(refusal(openaiCompletions, PATH, { model: 'm', prompt: [] }), { code: 'MG_BODY_INVALID', field: 'prompt', problem: 'must not be empty' })
  t.same(refusal(openaiCompletions, PATH, { model: 'm', prompt: [{}] }), { code: 'MG_BODY_INVALID', field: 'prompt[0]', problem: 'must be a string or tokens' })
  t.same(refusal(openaiCompletions, PATH, { model: 'm', prompt: 'x', max_tokens: 1.5 }), { code: 'MG_BODY_INVALID', field: 'max_tokens', problem: 'must be a positive integer' })
})

t.test('usage is read from a completion and from its last stream chunk', async (t) => {
  t.same(usageOf(openaiCompletions, { model: 'i', choices: [{ text: 'x' }], usage: { prompt_tokens: 3, completion_tokens: 1 } }), { model: 'i', usage: { input: 3, output: 1 } })
  t.same(usageOf(openaiCompletions, { model: 'i', choices: [{ text: 'x' }] }, { model: 'i', choices: [], usage: { prompt_tokens: 4, completion_tokens: 9 } }), { model: 'i', usage: { input: 4, output: 9 } })
})

t.test("the output text and deltas of a chunk are each choice's text", async (t) => {
  const chunk = { choices: [{ index: 0, text: 'lo' }, { index: 1, text: '!' }] }
  t.equal(openaiCompletions.outputText(chunk), 'lo!')
  const out: DeltaSlot[] = []
  openaiCompletions.deltaSlots(chunk, out)
  t.same(
    out.map((d) => [d.channel, d.path.join('.')]),
    [
      ['completion.0', 'choices.0.text'],
      ['completion.1', 'choices.1.text'],
    ],
  )
})

t.test('completions make no tool calls', async (t) => {
  const out: ToolCall[] = []
  openaiCompletions.toolCalls({ choices: [{ text: 'x', message: { tool_calls: [{ function: { name: 'a' } }] } }] }, out)
  t.same(out, [])
})
