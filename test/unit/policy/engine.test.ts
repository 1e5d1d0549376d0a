import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { PolicyEngine } from '../../../src/policy/engine.ts'
import { PolicyLoadError } from '../../../src/policy/problems.ts'
import { factsFromDescription, type RequestDescription } from '../../../src/policy/request.ts'
import { ADMIN, ALLOW_ALL, CHECKOUT, NOTEBOOK, PERMIT_MINI, requestContext, SHIPPED, writePolicyDir } from './fixtures.ts'

const facts = (d: Partial<RequestDescription>) => factsFromDescription({ principal: CHECKOUT, model: 'gpt-4o-mini', time: '2025-01-06T12:00:00Z', ...d }).facts

t.test('decisions on the shipped policies', async (t) => {
  const engine = new PolicyEngine({ dir: SHIPPED })
  const cases: { name: string; d: Partial<RequestDescription>; effect: 'allow' | 'deny'; code?: string; policies: string[] }[] = [
    { name: 'checkout may use openai/gpt-4o-mini', d: {}, effect: 'allow', policies: ['payments-approved-models'] },
    { name: 'checkout may not use the premium gpt-4o', d: { model: 'gpt-4o' }, effect: 'deny', code: 'MG_POLICY_DENIED', policies: ['premium-models-platform-only'] },
    { name: 'a secret in the body is refused by a forbid', d: { dataClasses: ['secret'] }, effect: 'deny', code: 'MG_POLICY_DENIED', policies: ['no-secrets-anywhere'] },
    { name: 'notebook may use anthropic/claude-sonnet-4-5', d: { principal: NOTEBOOK, provider: 'anthropic', operation: 'messages', model: 'claude-sonnet-4-5', maxTokens: 1000 }, effect: 'allow', policies: ['research-approved-models'] },
    { name: 'checkout may not use claude-sonnet-4-5 (no permit)', d: { provider: 'anthropic', operation: 'messages', model: 'claude-sonnet-4-5' }, effect: 'deny', code: 'MG_POLICY_DENIED', policies: [] },
    { name: 'a model approval does not grant tools', d: { tools: ['web_search'] }, effect: 'deny', code: 'MG_POLICY_DENIED', policies: [] },
    { name: 'tools need their own permit', d: { tools: ['lookup_order'] }, effect: 'allow', policies: ['payments-approved-models', 'payments-order-tools'] },
    { name: 'the platform team may use any model', d: { principal: ADMIN, model: 'gpt-4o' }, effect: 'allow', policies: ['platform-any-model'] },
  ]
  for (const c of cases) {
    const r = engine.decide(facts(c.d))
    t.equal(r.decision.effect, c.effect, c.name)
    t.equal(r.code, c.code, `${c.name}: code`)
    t.same(
      r.decision.policies.map((p) => p.id),
      c.policies,
      `${c.name}: policies`,
    )
  }
  const d = engine.decide(facts({ model: 'gpt-4o' })).decision
  t.match(d, { decisionId: /^[0-9a-f-]{36}$/, policySetHash: engine.policySetHash, errors: [], policies: [{ id: 'premium-models-platform-only', owner: 'finops@example.com' }] })
  t.not(engine.decide(facts({})).decision.decisionId, engine.decide(facts({})).decision.decisionId, 'every decision has its own id')
})

t.test('an invalid policy directory fails at construction with every problem', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': '@id("x")\npermit (principal, action, resource) when { principal.nope };\n' })
  t.throws(() => new PolicyEngine({ dir }), PolicyLoadError)
  try {
    new PolicyEngine({ dir })
  } catch (err) {
    t.match((err as PolicyLoadError).message, /a\.cedar:2:\d+: error: .*attribute `nope`/)
  }
})

t.test('evaluation errors deny, even when a permit matched', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar':
      ALLOW_ALL +
      '\n@id("overflow")\n@owner("t")\nforbid (principal, action, resource)\nwhen { context has maxTokens && context.maxTokens * 1000000000000 > 5 };\n',
  })
  const engine = new PolicyEngine({ dir })
  const ok = engine.decide(facts({ maxTokens: 0 }))
  t.equal(ok.decision.effect, 'allow', 'no error: the permit decides')
  const r = engine.decide(facts({ maxTokens: 10_000_000_000 }))
  t.equal(r.decision.effect, 'deny')
  t.equal(r.code, 'MG_POLICY_ERROR')
  t.same(r.decision.policies, [], 'no policy is named as determining a deny caused by errors')
  t.match(r.decision.errors, [/^overflow: integer overflow/])
})

t.test('the decision cache', async (t) => {
  t.test('answers a repeated request from the cache', async (t) => {
    const engine = new PolicyEngine({ dir: SHIPPED })
    const f = facts({})
    t.equal(engine.decide(f).decision.cached, false)
    const again = engine.decide(f)
    t.equal(again.decision.cached, true)
    t.equal(again.decision.effect, 'allow')
    t.same(again.decision.policies, [{ id: 'payments-approved-models', owner: 'payments-platform@example.com' }])
    t.equal(engine.cacheEntries, 1)
  })
  t.test('keys on the request facts the applicable policies read, and nothing else', async (t) => {
    const engine = new PolicyEngine({ dir: SHIPPED })
    const base: Partial<RequestDescription> = { maxTokens: 100 }
    engine.decide(facts(base))
    // Read by a policy that can apply to this request (the token limits read
    // any budget; a user brings in the contractors' hours): a new answer each.
    const read: Partial<RequestDescription>[] = [{ dataClasses: ['secret'] }, { maxTokens: 200 }, { maxTokens: undefined }, { principal: NOTEBOOK }, { model: 'gpt-4o' }, { user: { subject: 'a', issuer: 'i', groups: [] } }]
    for (const v of read) t.equal(engine.decide(facts({ ...base, ...v })).decision.cached, false, JSON.stringify(v))
    // Read by no policy that can apply: the answer is shared.
    const unread: Partial<RequestDescription>[] = [{ tenant: 'acme' }, { time: '2025-01-06T23:00:00Z' }, { model: 'gpt-4.1-mini' }, { stream: true }, { detectors: ['email'] }, { clientApp: 'web', purpose: 'support' }]
    for (const v of unread) t.equal(engine.decide(facts({ ...base, ...v })).decision.cached, true, JSON.stringify(v))
    // The contractors' policy reads the user's groups and the time, not who the user is.
    t.equal(engine.decide(facts({ ...base, user: { subject: 'b', issuer: 'i', groups: [] } })).decision.cached, true, 'another user with the same groups')
    t.equal(engine.decide(facts({ ...base, user: { subject: 'b', issuer: 'i', groups: ['contractors'] } })).decision.cached, false, 'a contractor')
    t.equal(engine.decide(facts({ ...base, user: { subject: 'b', issuer: 'i', groups: [] }, time: '2025-01-06T23:00:00Z' })).decision.cached, false, 'another hour')
    t.equal(engine.decide(facts({ dataClasses: ['secret'] })).decision.effect, 'deny', 'a cached deny stays a deny')
    t.equal(engine.decide(facts({ maxTokens: 9000 })).decision.effect, 'deny', 'over the budget')
    t.equal(engine.decide(facts({ maxTokens: 8000 })).decision.effect, 'allow', 'under the budget')
  })
  t.test('evicts the least recently used entries at its size', async (t) => {
    const engine = new PolicyEngine({ dir: SHIPPED, cacheSize: 2 })
    for (const m of [1, 2, 3]) engine.decide(facts({ maxTokens: 8190 + m }))
    t.equal(engine.cacheEntries, 2)
    t.equal(engine.decide(facts({ maxTokens: 8191 })).decision.cached, false)
    t.equal(engine.decide(facts({ maxTokens: 8193 })).decision.cached, true)
  })
  t.test('can be turned off', async (t) => {
    const engine = new PolicyEngine({ dir: SHIPPED, cacheSize: 0 })
    engine.decide(facts({}))
    t.equal(engine.decide(facts({})).decision.cached, false)
    t.equal(engine.cacheEntries, 0)
  })
})

t.test('permitsUnredacted asks send_unredacted on the data class with the request context', async (t) => {
  const engine = new PolicyEngine({ dir: SHIPPED })
  const internal = { providerName: 'internal-llm', model: 'llama-3.3-70b' }
  t.equal(engine.permitsUnredacted(requestContext({ spiffeId: NOTEBOOK, request: internal, dataClasses: ['pii'] }), 'pii'), true, 'research → internal provider')
  t.equal(engine.permitsUnredacted(requestContext({ spiffeId: NOTEBOOK, dataClasses: ['pii'] }), 'pii'), false, 'research → external provider')
  t.equal(engine.permitsUnredacted(requestContext({ spiffeId: CHECKOUT, request: internal, dataClasses: ['pii'] }), 'pii'), false, 'payments')
  t.equal(engine.permitsUnredacted(requestContext({ spiffeId: NOTEBOOK, request: internal, dataClasses: ['pii', 'secret'] }), 'pii'), false, 'a secret in the body forbids everything')
  t.equal(engine.permitsUnredacted(requestContext({ request: null }), 'pii'), false, 'no parsed request')
  const ctx = requestContext({ spiffeId: NOTEBOOK, request: internal, dataClasses: ['pii'] })
  engine.permitsUnredacted(ctx, 'pii')
  t.equal(engine.evaluateUnredacted(ctx, 'pii')?.cached, true, 'cached')
  t.same(engine.evaluateUnredacted(ctx, 'pii')?.determining, ['research-pii-internal-unredacted'])
})

t.test('a decision carries the data classes the request may send unredacted', async (t) => {
  const engine = new PolicyEngine({ dir: SHIPPED })
  const research = { principal: NOTEBOOK, provider: 'internal-llm', model: 'llama-3.3-70b' }
  const allowAll = new PolicyEngine({ dir: writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL }) })
  const r = allowAll.decide(facts({ ...research, dataClasses: ['pii', 'internal', 'health'] }))
  t.same(r.decision.unredactedClasses, ['health', 'internal', 'pii'], 'every class a policy permits, sorted')
  t.same(
    r.unredactedResults.map((x) => [x.query.action, x.query.resource.id, x.evaluation.decision]),
    [
      ['send_unredacted', 'health', 'allow'],
      ['send_unredacted', 'internal', 'allow'],
      ['send_unredacted', 'pii', 'allow'],
    ],
  )
  t.same(r.results.length, 1, 'the request\'s own questions stay apart')
  // The shipped policies: the research team's personal data may go to internal providers; nothing else here.
  const shipped = engine.decide(facts({ ...research, dataClasses: ['pii', 'financial'] }))
  t.equal(shipped.decision.effect, 'deny', 'no policy lets research use llama')
  t.same(shipped.decision.unredactedClasses, [], 'a denied request sends nothing')
  t.same(shipped.unredactedResults, [], 'and is not asked about')
  const platform = engine.decide(facts({ principal: ADMIN, provider: 'internal-llm', model: 'llama-3.3-70b', dataClasses: ['internal', 'pii'] }))
  t.equal(platform.decision.effect, 'allow')
  t.same(platform.decision.unredactedClasses, ['internal'], 'internal data to an internal provider; personal data stays redacted')
  t.same(engine.decide(facts({})).decision.unredactedClasses, [], 'no data classes, nothing to ask')
})

t.test('once a request is decided, permitsUnredacted reads the decision instead of asking again', async (t) => {
  const engine = new PolicyEngine({ dir: writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL }) })
  const ctx = requestContext({ spiffeId: NOTEBOOK, dataClasses: ['pii', 'financial'] })
  const decision = ctx.put('decision', engine.authorize(ctx).decision)
  t.same(decision.unredactedClasses, ['financial', 'pii'])
  t.equal(engine.permitsUnredacted(ctx, 'pii'), true)
  t.equal(engine.permitsUnredacted(ctx, 'health'), false, 'a class the decision did not cover is redacted')
  // What the decision says is what counts, even if the policies would now say otherwise.
  ctx.put('decision', { ...decision, unredactedClasses: ['financial'] })
  t.equal(engine.permitsUnredacted(ctx, 'pii'), false)
  t.equal(engine.permitsUnredacted(ctx, 'financial'), true)
  ctx.put('decision', { ...decision, unredactedClasses: ['financial'], effect: 'deny' })
  t.equal(engine.permitsUnredacted(ctx, 'financial'), false, 'never for a denied request')
})

t.test('shadow policies are evaluated and recorded, never enforced', async (t) => {
  const root = t.testdir()
  const primary = writePolicyDir(join(root, 'primary'), { 'a.cedar': ALLOW_ALL })
  const shadow = writePolicyDir(join(root, 'shadow'), { 'b.cedar': PERMIT_MINI }, { schema: false })
  const engine = new PolicyEngine({ dir: primary, shadowDir: shadow })
  t.ok(engine.shadowPolicySetHash)
  const stricter = engine.decide(facts({ model: 'gpt-4.1-mini' }))
  t.equal(stricter.decision.effect, 'allow', 'the primary set decides')
  t.match(stricter.decision.shadow, { effect: 'deny', policies: [], errors: [], policySetHash: engine.shadowPolicySetHash })
  const same = engine.decide(facts({}))
  t.match(same.decision.shadow, { effect: 'allow', policies: [{ id: 'mini', owner: 'payments' }] })
  t.equal(engine.decide(facts({})).decision.cached, true, 'shadow answers are cached too')
})

t.test('an invalid shadow set is logged and skipped; the primary set still serves', async (t) => {
  const root = t.testdir()
  const primary = writePolicyDir(join(root, 'primary'), { 'a.cedar': ALLOW_ALL })
  const shadow = writePolicyDir(join(root, 'shadow'), { 'b.cedar': 'permit (' }, { schema: false })
  const logs: string[] = []
  const logger = { debug() {}, info() {}, warn() {}, error: (m: string, f?: Record<string, unknown>) => logs.push(`${m} ${JSON.stringify(f)}`), child: () => logger }
  const engine = new PolicyEngine({ dir: primary, shadowDir: shadow, logger })
  t.equal(engine.shadowPolicySetHash, undefined)
  t.equal(engine.decide(facts({})).decision.shadow, undefined)
  t.match(logs.join('\n'), /shadow policy set is invalid.*b\.cedar:1:\d+/)
})

t.test('a decision carries the @credential annotations of the permits that allowed the model, never a tool’s or a deny’s', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': [
      '@id("payments-models") @owner("t") @credential("payments-openai")',
      'permit (principal in ModelGate::Team::"payments", action in ModelGate::Action::"generate", resource);',
      '@id("research-models") @owner("t")',
      'permit (principal in ModelGate::Team::"research", action in ModelGate::Action::"generate", resource);',
      '@id("tools") @owner("t") @credential("tools-account")',
      'permit (principal, action == ModelGate::Action::"call_tool", resource);',
      '@id("everyone-mini") @owner("t") @credential("shared")',
      'permit (principal, action in ModelGate::Action::"generate", resource) when { resource.name == "gpt-4.1-mini" };',
      '@id("no-secrets") @owner("t") @credential("never")',
      'forbid (principal, action, resource) when { context.dataClasses.contains("secret") };',
      '',
    ].join('\n'),
    'entities.json': readFileSync(join(SHIPPED, 'entities.json'), 'utf8'),
  })
  const engine = new PolicyEngine({ dir })
  t.same(engine.decide(facts({})).decision.credentials, ['payments-openai'], 'the permit that allowed the model names it')
  t.same(engine.decide(facts({ tools: ['lookup_order'] })).decision.credentials, ['payments-openai'], 'a tool’s permit does not choose the credential')
  t.same(engine.decide(facts({ principal: NOTEBOOK })).decision.credentials, [], 'a permit without the annotation')
  t.same(engine.decide(facts({ model: 'gpt-4.1-mini' })).decision.credentials, ['payments-openai', 'shared'], 'two permits naming two: both listed (the credentials stage refuses)')
  const denied = engine.decide(facts({ dataClasses: ['secret'] })).decision
  t.equal(denied.effect, 'deny')
  t.notOk('credentials' in denied, 'a deny chooses no credential')
  const cached = engine.decide(facts({}))
  t.equal(cached.decision.cached, true)
  t.same(cached.decision.credentials, ['payments-openai'], 'also from the cache')
})
