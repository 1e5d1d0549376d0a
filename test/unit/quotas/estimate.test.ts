import t from 'tap'
import { configFromObject } from '../../../src/config/config.ts'
import { parseJsonDocument } from '../../../src/json/document.ts'
import { parseProviderRequest } from '../../../src/providers/parse.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { compileEstimator, MEDIA_TOKENS } from '../../../src/quotas/estimate.ts'
import { streamedText } from '../../../src/providers/apis/index.ts'
import { countO200k, measureInput } from '../../../src/quotas/measure.ts'
import { compileRule, counterKey, refResolver } from '../../../src/quotas/rules.ts'

const estimation = (over: Record<string, unknown> = {}) => configFromObject({ identity: { trustDomains: ['a.example'] }, quotas: { estimation: over } }, 'x').quotas.estimation

function parsed(path: string, body: Record<string, unknown>) {
  const doc = parseJsonDocument(Buffer.from(JSON.stringify(body)))
  const route = matchRoute(path)!
  return { ...parseProviderRequest(route, doc.value, route.kind), input: measureInput(doc, route.kind !== 'anthropic') }
}

t.test('input is the body\'s string values counted with o200k for OpenAI APIs, characters ÷ ratio for Anthropic, plus framing and media', async (t) => {
  const e = compileEstimator(estimation())
  const text = 'The quick brown fox jumps over the lazy dog.'
  const openai = parsed('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: text }] })
  t.equal(e.input(openai), countO200k(`Be brief.\n${text}`) + 2, 'roles and the model are not counted; one token per value')
  const claude = parsed('/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: text }] })
  t.equal(e.input(claude), Math.ceil(text.length / 3) + 1)
  const image = parsed('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(5000)}` } }] }] })
  t.equal(e.input(image), MEDIA_TOKENS, 'an inline image counts as media, not as its base64 text')
  const perModel = compileEstimator(estimation({ models: [{ match: ['gpt-4o*'], charsPerToken: 2 }] }))
  t.equal(perModel.input(openai), Math.ceil(('Be brief.'.length + text.length) / 2) + 2, 'a model\'s own ratio wins over the tokenizer')
})

t.test('the output reserve is max_tokens, else the model\'s default, else the configured default; embeddings reserve none', async (t) => {
  const e = compileEstimator(estimation({ defaultMaxTokens: 1000, models: [{ match: ['claude-*'], defaultMaxTokens: 8000 }] }))
  t.equal(e.outputReserve(parsed('/v1/chat/completions', { model: 'gpt-4o-mini', max_completion_tokens: 77, messages: [{ role: 'user', content: 'x' }] })), 77)
  t.equal(e.outputReserve(parsed('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] })), 1000)
  t.equal(e.outputReserve(parsed('/v1/responses', { model: 'claude-sonnet-4-5', input: 'x' })), 8000)
  t.equal(e.outputReserve(parsed('/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' })), 0)
})

t.test('streamed text is read from every API\'s deltas, and nothing else', async (t) => {
  t.equal(streamedText({ choices: [{ index: 0, delta: { content: 'Hel', tool_calls: [{ index: 0, function: { arguments: '{"a"' } }] } }] }), 'Hel{"a"')
  t.equal(streamedText({ choices: [{ index: 0, text: 'lo' }] }), 'lo')
  t.equal(streamedText({ type: 'response.output_text.delta', delta: 'abc' }), 'abc')
  t.equal(streamedText({ type: 'response.completed', response: { output: [{ content: [{ text: 'the whole answer again' }] }] } }), '')
  t.equal(streamedText({ type: 'content_block_delta', delta: { type: 'input_json_delta', partial_json: '{"q":' } }), '{"q":')
  t.equal(streamedText({ type: 'message_start', message: { content: [] } }), '')
  t.equal(streamedText('not an object'), '')
})

t.test('rules partition by their per facts and map store keys back to their counters', async (t) => {
  const r = compileRule({ name: 'r', match: { user: ['*@example.com'] }, per: ['team', 'user'], limit: { inputTokens: 10, outputTokens: 5 }, window: 'hour' })
  const facts = { identity: 'spiffe://a/ns/x/sa/y', teams: ['b', 'a'], namespace: 'x', user: { subject: 'ann@example.com', id: 'https://idp#ann@example.com' }, provider: 'openai', model: 'm', operation: 'chat' }
  t.ok(r.matches(facts))
  t.notOk(r.matches({ ...facts, user: undefined }), 'no user: a user selector does not match')
  t.equal(r.partition(facts), 'a%2Cb|https%3A%2F%2Fidp%23ann%40example.com')
  t.equal(r.partition({ ...facts, teams: [] }).split('|')[0], '-')
  const key = counterKey(r, 'output', r.partition(facts))
  t.match(refResolver([r])(key), { algorithm: 'gcra', limit: 5, windowMs: 3_600_000, kind: 'output' })
  t.equal(refResolver([r])('unknown:requests:*'), undefined)
})
