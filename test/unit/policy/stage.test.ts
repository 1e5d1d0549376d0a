import { join } from 'node:path'
import t from 'tap'
import { configFromObject } from '../../../src/config/config.ts'
import { denialBody, GateError } from '../../../src/errors.ts'
import { silentLogger } from '../../../src/log.ts'
import type { RequestContext } from '../../../src/pipeline/context.ts'
import { createPolicyEngine, createPolicyStage, type PolicyStage } from '../../../src/policy/stage.ts'
import { ALLOW_ALL, CHECKOUT, NOTEBOOK, PERMIT_MINI, REPO, requestContext, writePolicyDir } from './fixtures.ts'

function config(policy: Record<string, unknown> = {}, baseDir = REPO) {
  return configFromObject({ identity: { trustDomains: ['modelgate.local'] }, policy: { watch: false, ...policy } }, 'test', baseDir)
}

function run(stage: PolicyStage, ctx: RequestContext): GateError | undefined {
  try {
    stage.requestBody!(ctx)
    return undefined
  } catch (err) {
    if (err instanceof GateError) return err
    throw err
  }
}

const stage = createPolicyStage(config(), { logger: silentLogger })
t.teardown(() => stage.engine.close())

t.test('the stage is named policy and decides in the request-body phase only', async (t) => {
  t.equal(stage.name, 'policy')
  t.type(stage.requestBody, 'function')
  t.equal(stage.requestHeaders, undefined)
  t.equal(stage.responseBody, undefined)
})

t.test('an allowed request passes and carries the decision', async (t) => {
  const ctx = requestContext({ spiffeId: CHECKOUT })
  t.equal(run(stage, ctx), undefined)
  t.match(ctx.out.decision, {
    effect: 'allow',
    decisionId: /^[0-9a-f-]{36}$/,
    policies: [{ id: 'payments-approved-models', owner: 'payments-platform@example.com' }],
    errors: [],
    policySetHash: stage.engine.policySetHash,
    cached: Boolean,
  })
})

t.test('the decision lists the data classes found that policy lets the request send unredacted', async (t) => {
  const admin = 'spiffe://modelgate.local/ns/platform/sa/admin'
  const ctx = requestContext({ spiffeId: admin, request: { providerName: 'internal-llm', model: 'llama-3.3-70b' }, dataClasses: ['pii', 'internal'] })
  t.equal(run(stage, ctx), undefined)
  t.same(ctx.out.decision?.unredactedClasses, ['internal'], 'internal data may reach an internal provider; personal data is redacted')
  t.equal(stage.engine.permitsUnredacted(ctx, 'internal'), true)
  t.equal(stage.engine.permitsUnredacted(ctx, 'pii'), false)
  const denied = requestContext({ spiffeId: CHECKOUT, request: { model: 'gpt-4o' }, dataClasses: ['internal'] })
  run(stage, denied)
  t.same(denied.out.decision?.unredactedClasses, [], 'nothing for a denied request')
})

t.test('a model the team may not use is denied with MG_POLICY_DENIED and a decision id, no policy text', async (t) => {
  const ctx = requestContext({ spiffeId: CHECKOUT, request: { model: 'gpt-4o' } })
  const err = run(stage, ctx)
  t.match(err, { code: 'MG_POLICY_DENIED', status: 403, internal: 'denied by premium-models-platform-only' })
  t.match(ctx.out.decision, { effect: 'deny', policies: [{ id: 'premium-models-platform-only' }] })
  const body = JSON.parse(denialBody(err!, { requestId: ctx.id, decisionId: ctx.out.decision!.decisionId }).toString())
  t.same(body, {
    error: { type: 'modelgate_error', code: 'MG_POLICY_DENIED', message: 'The request is not permitted by policy.', request_id: ctx.id, decision_id: ctx.out.decision!.decisionId },
  })
  t.notMatch(JSON.stringify(body), /premium|forbid|finops/)
})

t.test('every call_tool answer is recorded with its tool and kind, allowed or not', async (t) => {
  const allowed = requestContext({ spiffeId: CHECKOUT, request: { tools: [{ name: 'lookup_order', type: 'function' }] } })
  t.equal(run(stage, allowed), undefined)
  t.same(allowed.toolDecisions, [{ tool: 'lookup_order', kind: 'function', phase: 'request', effect: 'allow' }])
  const denied = requestContext({
    spiffeId: CHECKOUT,
    request: { api: 'openai.responses', operation: 'responses', tools: [{ name: 'lookup_order', type: 'function' }, { name: 'web_search', type: 'web_search_preview' }] },
  })
  t.match(run(stage, denied), { code: 'MG_POLICY_DENIED' })
  t.same(denied.toolDecisions, [
    { tool: 'lookup_order', kind: 'function', phase: 'request', effect: 'allow' },
    { tool: 'web_search', kind: 'web_search_preview', phase: 'request', effect: 'deny' },
  ])
  const none = requestContext({ spiffeId: CHECKOUT })
  run(stage, none)
  t.same(none.toolDecisions, [], 'no tools, no answers')
})

t.test('a data class forbidden by policy denies the request', async (t) => {
  const ctx = requestContext({ spiffeId: NOTEBOOK, request: { providerName: 'anthropic', provider: 'anthropic', operation: 'messages', model: 'claude-sonnet-4-5' }, dataClasses: ['secret'] })
  t.match(run(stage, ctx), { code: 'MG_POLICY_DENIED', internal: 'denied by no-secrets-anywhere' })
})

t.test('a request no policy permits is denied by default', async (t) => {
  const ctx = requestContext({ spiffeId: 'spiffe://modelgate.local/ns/marketing/sa/web' })
  t.match(run(stage, ctx), { code: 'MG_POLICY_DENIED', internal: 'no policy permits the request' })
  t.same(ctx.out.decision?.policies, [])
})

t.test('without a parsed request or an identity the stage refuses with MG_POLICY_ERROR', async (t) => {
  const noRequest = requestContext({ request: null })
  t.match(run(stage, noRequest), { code: 'MG_POLICY_ERROR' })
  const noIdentity = requestContext()
  delete (noIdentity.out as { caller?: unknown }).caller
  t.match(run(stage, noIdentity), { code: 'MG_POLICY_ERROR' })
})

t.test('evaluation errors refuse with MG_POLICY_ERROR', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': ALLOW_ALL + '\n@id("overflow")\nforbid (principal, action, resource) when { context has maxTokens && context.maxTokens * 1000000000000 > 0 };\n',
  })
  const s = createPolicyStage(config({ dir }), { logger: silentLogger })
  const ctx = requestContext({ request: { maxTokens: 1e12 } })
  const err = run(s, ctx)
  t.match(err, { code: 'MG_POLICY_ERROR', internal: /policy evaluation failed: overflow: integer overflow/ })
  t.equal(ctx.out.decision?.effect, 'deny')
})

t.test('configuration paths resolve against the configuration directory, and a shadow set is recorded', async (t) => {
  const root = t.testdir()
  writePolicyDir(join(root, 'live'), { 'a.cedar': ALLOW_ALL })
  writePolicyDir(join(root, 'next'), { 'a.cedar': PERMIT_MINI }, { schema: false })
  const s = createPolicyStage(config({ dir: 'live', shadowDir: 'next', cacheSize: 10 }, root), { logger: silentLogger })
  const ctx = requestContext({ request: { model: 'gpt-4.1-mini' } })
  t.equal(run(s, ctx), undefined)
  t.match(ctx.out.decision?.shadow, { effect: 'deny', policySetHash: s.engine.shadowPolicySetHash })
})

t.test('an engine can be shared with other stages', async (t) => {
  const engine = createPolicyEngine(config(), { logger: silentLogger })
  const s = createPolicyStage(config(), { logger: silentLogger, engine })
  t.equal(s.engine, engine)
})

t.test('request headers named in the configuration feed the context', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': '@id("tenant-acme")\n@owner("t")\npermit (principal, action, resource) when { context.tenant == "acme" && context.region == "eu" };\n',
  })
  const s = createPolicyStage(config({ dir, region: 'eu', contextHeaders: { tenant: 'x-org' } }), { logger: silentLogger })
  t.equal(run(s, requestContext({ headers: { 'x-org': 'acme' } })), undefined)
  t.match(run(s, requestContext({ headers: { 'x-modelgate-tenant': 'acme' } })), { code: 'MG_POLICY_DENIED' })
})

t.test('policies see the token estimate as context.inputTokens and context.estimatedTokens, and only sets that read it key their cache with it', async (t) => {
  const BIG = '@id("big")\n@owner("finops")\nforbid (principal, action, resource)\nwhen { context has estimatedTokens && context.estimatedTokens > 5000 };\n'
  const root = t.testdir()
  const dir = writePolicyDir(join(root, 'reading'), { 'all.cedar': ALLOW_ALL, 'big.cedar': BIG })
  const reading = createPolicyStage(config({ dir }), { logger: silentLogger })
  t.teardown(() => reading.engine.close())
  const small = requestContext({ spiffeId: CHECKOUT, request: { maxTokens: 100, input: { chars: 30, values: 2, media: 0, tokens: 8 } } })
  t.equal(run(reading, small), undefined)
  const facts = reading.engine.factsFor(small)
  t.equal(facts.inputTokens, 10, 'o200k tokens plus one per value')
  t.equal(facts.estimatedTokens, 110, 'plus the output budget')
  const big = requestContext({ spiffeId: CHECKOUT, request: { maxTokens: 6000, input: { chars: 30, values: 2, media: 0, tokens: 8 } } })
  t.equal(run(reading, big)?.code, 'MG_POLICY_DENIED')
  t.same(big.out.decision?.policies.map((p) => p.id), ['big'])

  const plain = writePolicyDir(join(root, 'plain'), { 'all.cedar': ALLOW_ALL })
  const other = createPolicyStage(config({ dir: plain }), { logger: silentLogger })
  t.teardown(() => other.engine.close())
  const f = other.engine.factsFor(small)
  t.equal(f.inputTokens, undefined, 'a set that never reads the estimate does not get it')
  t.equal(f.estimatedTokens, undefined)
})
