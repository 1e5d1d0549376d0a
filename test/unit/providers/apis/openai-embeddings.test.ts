import t from 'tap'
import type { DeltaSlot, ToolCall } from '../../../../src/providers/apis/api.ts'
import { openaiEmbeddings } from '../../../../src/providers/apis/openai-embeddings.ts'
import { refusal, route, usageOf } from './helpers.ts'

const PATH = '/v1/embeddings'

t.test('a valid embeddings request is read into its model, with no budget and no tools', async (t) => {
  const req = openaiEmbeddings.parseRequest({ model: 'text-embedding-3-small', input: ['a', 'b'] }, route(PATH), 'openai')
  t.match(req, { operation: 'embedding', api: 'openai.embeddings', model: 'text-embedding-3-small', stream: false, maxTokens: undefined })
  t.same(req.tools, [])
})

t.test('a wrong field of an embeddings request is refused with its name', async (t) => {
  t.same(refusal(openaiEmbeddings, PATH, { input: 'x' }), { code: 'MG_BODY_INVALID', field: 'model', problem: 'is required and must be a non-empty string' })
  t.same(refusal(openaiEmbeddings, PATH, { model: 'm', input: 7 }), { code: 'MG_BODY_INVALID', field: 'input', problem: 'is required and must be a string or an array' })
})

t.test('usage is read from an embeddings response: input tokens only', async (t) => {
  t.same(usageOf(openaiEmbeddings, { object: 'list', model: 'e', usage: { prompt_tokens: 5, total_tokens: 5 } }), { model: 'e', usage: { input: 5, output: undefined } })
})

t.test('embeddings have no stream text and make no tool calls', async (t) => {
  const deltas: DeltaSlot[] = []
  const calls: ToolCall[] = []
  openaiEmbeddings.deltaSlots({ choices: [{ text: 'x' }] }, deltas)
  openaiEmbeddings.toolCalls({ output: [{ type: 'function_call', name: 'a' }] }, calls)
  t.equal(openaiEmbeddings.outputText({ choices: [{ text: 'x' }] }), '')
  t.same([deltas, calls], [[], []])
})
