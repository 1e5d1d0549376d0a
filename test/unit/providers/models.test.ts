/**
 * Model allow-lists and aliases of the provider catalog: a model the route's
 * provider does not serve is refused before policy; an alias becomes its
 * target in what goes upstream (the body's `model`, or the Azure deployment
 * in the path), in one rewrite with redaction's placeholders, and policy and
 * the audit trail see the target.
 */
import t from 'tap'
import type { ProvidersConfig } from '../../../src/config/sections/providers.ts'
import { modelMatcher } from '../../../src/config/sections/providers.ts'
import { GateError, denialBody } from '../../../src/errors.ts'
import { inProcessInspector } from '../../../src/inspection/inspector.ts'
import { silentLogger } from '../../../src/log.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { createProviderStage, PROVIDER_METADATA_KEY } from '../../../src/providers/stage.ts'
import { redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { createRedactionStages } from '../../../src/redaction/stage.ts'

const CATALOG: ProvidersConfig = {
  catalog: {
    openai: { kind: 'openai', upstream: 'https://api.openai.com', models: ['gpt-4o-mini', 'gpt-4.1*', 'o*-mini'], aliases: { fast: 'gpt-4o-mini', 'smart-1': 'gpt-4.1-2025-04-14' } },
    anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', aliases: { claude: 'claude-haiku-4-5' } },
    azure: { kind: 'azure-openai', upstream: 'https://r.openai.azure.com', models: ['prod-gpt4o'], aliases: { 'gpt-4o': 'prod-gpt4o' } },
  },
}

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'

/** The provider stage and both redaction stages, as the server runs them; what goes upstream, or the refusal. */
async function send(path: string, body: object, opts: { redaction?: boolean; provider?: string } = {}) {
  const stages = createRedactionStages(redactionConfigFrom({ enabled: opts.redaction ?? true }), { logger: silentLogger })
  const provider = createProviderStage({ config: CATALOG, maxBodyBytes: 1 << 20, inspector: inProcessInspector({ engine: stages.engine, budgetMs: 30_000 }) })
  const ctx = new RequestContext()
  ctx.method = 'POST'
  ctx.path = path
  ctx.requestHeaders.set('content-type', 'application/json')
  if (opts.provider) ctx.streamMetadata.set(PROVIDER_METADATA_KEY, opts.provider)
  const raw = JSON.stringify(body)
  ctx.requestBody = Buffer.from(raw)
  try {
    await provider.requestHeaders!(ctx)
    await stages.scan.requestHeaders!(ctx)
    await provider.requestBody!(ctx)
    await stages.scan.requestBody!(ctx)
    await stages.apply.requestBody!(ctx)
  } catch (err) {
    if (err instanceof GateError) return { ctx, denial: err, sent: undefined, path: undefined }
    throw err
  }
  return { ctx, denial: undefined, sent: ctx.requestBody.toString('utf8'), path: ctx.requestHeaderChanges.set.get(':path'), replaced: ctx.requestBodyReplaced }
}

const user = [{ role: 'user', content: 'hello' }]

t.test('allow-lists: exact names and * patterns, matched in linear time', async (t) => {
  const served = modelMatcher(['gpt-4o-mini', 'gpt-4.1*', 'o*-mini', '*-instruct'])
  for (const m of ['gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-nano-2025-04-14', 'o4-mini', 'o3-mini', 'llama-3-instruct']) t.ok(served(m), m)
  for (const m of ['gpt-4o', 'gpt-4o-mini-2024-07-18', 'o3', 'gpt-4', 'mini', 'o-mini-x']) t.notOk(served(m), m)
  const started = performance.now()
  t.notOk(modelMatcher(['*a*a*a*a*a*a*a*b'])('a'.repeat(256)), 'a pattern of many stars over a long name')
  t.ok(performance.now() - started < 50, 'without backtracking')
})

t.test('a model the provider does not serve is MG_MODEL_NOT_SERVED (404), in the route’s dialect, without the name', async (t) => {
  const r = await send('/v1/chat/completions', { model: 'gpt-4o', messages: user })
  t.equal(r.denial?.code, 'MG_MODEL_NOT_SERVED')
  t.equal(r.denial?.status, 404)
  t.same(r.denial?.details, { provider: 'openai' })
  t.equal(r.denial?.internal, 'provider "openai" does not list the requested model')
  const body = JSON.parse(denialBody(r.denial!, { requestId: 'r1' }, 'openai').toString())
  t.same(body, { error: { type: 'modelgate_error', code: 'MG_MODEL_NOT_SERVED', message: 'No configured provider serves the requested model on this route.', request_id: 'r1', provider: 'openai' } })
  const anthropic = JSON.parse(denialBody(r.denial!, { requestId: 'r1' }, 'anthropic').toString())
  t.equal(anthropic.error.type, 'not_found_error', 'Anthropic callers get not_found_error')
  const secret = await send('/v1/chat/completions', { model: TOKEN, messages: user })
  t.equal(secret.denial?.code, 'MG_MODEL_NOT_SERVED')
  t.notMatch(JSON.stringify(secret.denial), TOKEN, 'a name holding a secret is repeated nowhere')
  const azure = await send('/openai/deployments/other/chat/completions?api-version=2024-10-21', { messages: user })
  t.equal(azure.denial?.code, 'MG_MODEL_NOT_SERVED', 'an Azure deployment outside the list')
})

t.test('a provider without a models list serves any model', async (t) => {
  const r = await send('/v1/messages', { model: 'claude-opus-4-1', max_tokens: 10, messages: user })
  t.equal(r.denial, undefined)
  t.equal(r.replaced, false, 'the body goes up as sent')
})

t.test('an alias becomes its target in the body, byte for byte elsewhere, and policy sees the target', async (t) => {
  const body = { model: 'fast', messages: user, metadata: { note: 'model: fast' } }
  const r = await send('/v1/chat/completions', body)
  t.equal(r.denial, undefined)
  t.equal(r.sent, JSON.stringify({ ...body, model: 'gpt-4o-mini' }), 'only the model field changed')
  t.equal(r.ctx.out.request?.model, 'gpt-4o-mini')
  t.equal(r.ctx.out.request?.requestedModel, 'fast')
  t.equal(r.ctx.requestBodyReplaced, true, 'the server sets the new content-length')
  const anthropic = await send('/v1/messages', { model: 'claude', max_tokens: 10, messages: user })
  t.equal(JSON.parse(anthropic.sent!).model, 'claude-haiku-4-5')
})

t.test('an alias rewrite and redaction placeholders are one rewrite', async (t) => {
  const r = await send('/v1/chat/completions', { model: 'smart-1', messages: [{ role: 'user', content: `my key ${TOKEN}` }] })
  t.equal(r.denial, undefined)
  const sent = JSON.parse(r.sent!)
  t.equal(sent.model, 'gpt-4.1-2025-04-14')
  t.equal(sent.messages[0].content, 'my key [GITHUB_TOKEN_1]')
})

t.test('with redaction off the alias is still rewritten', async (t) => {
  const r = await send('/v1/chat/completions', { model: 'fast', messages: user }, { redaction: false })
  t.equal(JSON.parse(r.sent!).model, 'gpt-4o-mini')
})

t.test('an Azure alias changes the deployment in the path and keeps the query', async (t) => {
  const r = await send('/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21', { messages: user })
  t.equal(r.denial, undefined)
  t.equal(r.path, '/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21')
  t.equal(r.ctx.out.request?.model, 'prod-gpt4o')
  t.equal(r.ctx.out.request?.requestedModel, 'gpt-4o')
  t.equal(r.replaced, false, 'the body is not touched')
})
