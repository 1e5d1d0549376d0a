import t from 'tap'
import { captureContent, genAiOperation, genAiProvider, isFailure, outcomeOf, parseEnvoyTime, requestAttributes, requestStart, settleFindings, spanName } from '../../../src/audit/span-attributes.ts'
import { GateError, type ErrorCode } from '../../../src/errors.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { allowedContext, deniedContext, parsedRequest, PROVIDER, SECRET } from './fixtures.ts'
import { story } from '../../../src/cli/audit.ts'

const extras = { durationMs: 12.3456, upstreamReached: true }

t.test('an allowed request records who, which model, which data and which policy', async (t) => {
  const ctx = allowedContext()
  ctx.timings.set('identity', 0.25)
  ctx.timings.set('policy', 1.0004)
  const a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.same(a, {
    'modelgate.request.id': 'req-allowed-1',
    'modelgate.outcome': 'allowed',
    'modelgate.stream.outcome': 'completed',
    'modelgate.upstream.reached': true,
    'modelgate.response.complete': false,
    'http.request.method': 'POST',
    'url.path': '/v1/chat/completions',
    'http.route': '/v1/chat/completions',
    'server.address': 'llm.internal',
    'http.response.status_code': 200,
    'modelgate.duration_ms': 12.346,
    'modelgate.request.body_bytes': ctx.requestBody.length,
    'modelgate.identity.spiffe_id': 'spiffe://example.org/ns/payments/sa/checkout',
    'modelgate.identity.trust_domain': 'example.org',
    'modelgate.identity.path': '/ns/payments/sa/checkout',
    'modelgate.identity.namespace': 'payments',
    'modelgate.identity.service_account': 'checkout',
    'modelgate.identity.source': 'mtls',
    'modelgate.identity.cert_sha256': 'c0ffee',
    'modelgate.user.subject': 'alice',
    'modelgate.user.issuer': 'https://idp.example.org',
    'modelgate.user.email': 'alice@example.org',
    'modelgate.user.groups': ['payments', 'eng'],
    'modelgate.caller.class': 'user',
    'gen_ai.provider.name': 'openai',
    'gen_ai.system': 'openai',
    'gen_ai.operation.name': 'chat',
    'modelgate.operation': 'chat',
    'modelgate.api': 'openai.chat_completions',
    'modelgate.provider.route': 'openai',
    'modelgate.url.query_params': ['api-key'],
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.request.stream': false,
    'gen_ai.request.max_tokens': 256,
    'modelgate.request.tools': ['lookup'],
    'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
    'gen_ai.usage.input_tokens': 12,
    'gen_ai.usage.output_tokens': 34,
    'modelgate.decision.effect': 'allow',
    'modelgate.decision.id': 'd-0001',
    'modelgate.decision.policies': ['allow-payments-chat', 'baseline'],
    'modelgate.decision.policy_owners': ['team-payments', ''],
    'modelgate.decision.policy_set_hash': 'ps-3af2',
    'modelgate.decision.cached': false,
    'modelgate.decision.shadow.effect': 'deny',
    'modelgate.decision.shadow.policies': ['shadow-deny-secrets'],
    'modelgate.decision.shadow.policy_owners': ['security'],
    'modelgate.decision.shadow.policy_set_hash': 'ps-shadow-9',
    'modelgate.decision.shadow.differs': true,
    'modelgate.data.classes': ['pii.email', 'secret.cloud_key'],
    'modelgate.data.detectors': ['aws-access-key', 'email'],
    'modelgate.data.request.findings': 2,
    'modelgate.data.response.findings': 1,
    'modelgate.data.class.pii.email.count': 2,
    'modelgate.data.class.secret.cloud_key.count': 1,
    'modelgate.data.detector.aws-access-key.count': 1,
    'modelgate.data.detector.email.count': 2,
    'modelgate.data.hashes': ['secret.cloud_key:h-5e1f', 'pii.email:h-aa01', 'pii.email:h-aa02'],
    'modelgate.redaction.action': 'redact',
    'modelgate.redaction.redacted_classes': ['pii.email', 'secret.cloud_key'],
    'modelgate.redaction.allowed_classes': ['pii.email'],
    'modelgate.redaction.body_rewritten': true,
    'modelgate.quota.rules': ['team-daily-tokens'],
    'modelgate.quota.remaining.team-daily-tokens': 9000,
    'modelgate.stage.identity.duration_ms': 0.25,
    'modelgate.stage.policy.duration_ms': 1,
  })
})

t.test('the classes policy let leave unredacted are recorded with the decision, and only when there are some', async (t) => {
  const ctx = allowedContext()
  const decision = ctx.need('decision')
  ctx.put('decision', { ...decision, unredactedClasses: ['internal', 'pii'] })
  t.same(requestAttributes(ctx, { kind: 'completed' }, extras)['modelgate.decision.unredacted_classes'], ['internal', 'pii'])
  ctx.put('decision', { ...decision, unredactedClasses: [] })
  t.notOk('modelgate.decision.unredacted_classes' in requestAttributes(ctx, { kind: 'completed' }, extras))
})

t.test('no attribute carries the matched value or the body', async (t) => {
  const ctx = allowedContext()
  const json = JSON.stringify(requestAttributes(ctx, { kind: 'completed' }, extras))
  t.notMatch(json, SECRET)
  t.notMatch(json, 'my key is')
  t.notMatch(json, 'should-not-appear', 'the query string is dropped')
})

t.test('a denial records its code, status and caller-safe details, never the internal reason', async (t) => {
  const ctx = deniedContext('MG_DATA_BLOCKED', { details: { data_classes: ['secret.cloud_key'] }, internal: `blocked value ${SECRET}` })
  const a = requestAttributes(ctx, { kind: 'completed' }, { durationMs: 1, upstreamReached: false })
  t.equal(a['modelgate.outcome'], 'denied')
  t.equal(a['modelgate.denial.code'], 'MG_DATA_BLOCKED')
  t.equal(a['modelgate.denial.status'], 403)
  t.equal(a['modelgate.denial.details'], '{"data_classes":["secret.cloud_key"]}')
  t.equal(a['modelgate.upstream.reached'], false)
  t.equal(a['error.type'], undefined, 'a policy denial is not an error')
  t.notMatch(JSON.stringify(a), SECRET)
})

t.test('denial details never carry free text that could quote the body', async (t) => {
  let problem = ''
  try {
    JSON.parse(`{"messages": ${SECRET}}`)
  } catch (err) {
    problem = (err as Error).message
  }
  t.match(problem, SECRET.slice(0, 8), 'a JSON parse error quotes the body')
  const ctx = deniedContext('MG_BODY_MALFORMED', { details: { problem, data_classes: ['secret', 'pii.email'], limit: 1024, retry: false, nested: { rule: 'team-a/daily', text: 'two words' } } })
  const a = requestAttributes(ctx, { kind: 'completed' }, { durationMs: 1, upstreamReached: false })
  t.same(JSON.parse(a['modelgate.denial.details'] as string), {
    problem: '[omitted]',
    data_classes: ['secret', 'pii.email'],
    limit: 1024,
    retry: false,
    nested: { rule: 'team-a/daily', text: '[omitted]' },
  })
  t.notMatch(JSON.stringify(a), SECRET.slice(0, 8))
})

t.test('outcome, failure and error type follow the stream and the denial', async (t) => {
  const cases: { name: string; ctx: () => RequestContext; kind: 'completed' | 'cancelled' | 'error'; error?: unknown; outcome: string; failure: boolean; errorType?: string }[] = [
    { name: 'completed', ctx: () => allowedContext(), kind: 'completed', outcome: 'allowed', failure: false },
    { name: 'cancelled by Envoy', ctx: () => allowedContext(), kind: 'cancelled', outcome: 'cancelled', failure: false },
    { name: 'stream error', ctx: () => allowedContext(), kind: 'error', error: Object.assign(new Error('boom'), { code: 'ECONNRESET' }), outcome: 'error', failure: true, errorType: 'ECONNRESET' },
    { name: 'policy denial', ctx: () => deniedContext('MG_POLICY_DENIED'), kind: 'completed', outcome: 'denied', failure: false },
    { name: 'internal failure', ctx: () => deniedContext('MG_INTERNAL'), kind: 'completed', outcome: 'denied', failure: true, errorType: 'MG_INTERNAL' },
    { name: 'audit unavailable', ctx: () => deniedContext('MG_AUDIT_UNAVAILABLE'), kind: 'completed', outcome: 'denied', failure: true, errorType: 'MG_AUDIT_UNAVAILABLE' },
    {
      name: 'upstream 502',
      ctx: () => {
        const c = allowedContext()
        c.responseStatus = 502
        return c
      },
      kind: 'completed',
      outcome: 'allowed',
      failure: true,
      errorType: '502',
    },
  ]
  for (const c of cases) {
    const ctx = c.ctx()
    const stream = { kind: c.kind, error: c.error }
    t.equal(outcomeOf(ctx, stream), c.outcome, `${c.name}: outcome`)
    t.equal(isFailure(ctx, stream), c.failure, `${c.name}: failure`)
    t.equal(requestAttributes(ctx, stream, extras)['error.type'], c.errorType, `${c.name}: error.type`)
  }
})

t.test('a stream Envoy resets after the whole response passed is an allowed request, before that a cancelled one', async (t) => {
  const ctx = allowedContext()
  const reset = { kind: 'cancelled' as const }
  t.equal(outcomeOf(ctx, reset, true), 'allowed')
  t.equal(outcomeOf(ctx, reset, false), 'cancelled')
  const a = requestAttributes(ctx, reset, { ...extras, responseComplete: true })
  t.equal(a['modelgate.outcome'], 'allowed')
  t.equal(a['modelgate.stream.outcome'], 'cancelled')
  t.equal(a['modelgate.response.complete'], true)
  t.equal(outcomeOf(ctx, { kind: 'error' }, true), 'error', 'a server failure stays an error')
})

t.test('a request denied before anything was known records what little there is', async (t) => {
  const ctx = new RequestContext()
  ctx.id = 'early'
  ctx.denial = new GateError('MG_IDENTITY_MISSING')
  const a = requestAttributes(ctx, { kind: 'completed' }, { durationMs: 0.5, upstreamReached: false })
  t.same(a, {
    'modelgate.request.id': 'early',
    'modelgate.outcome': 'denied',
    'modelgate.stream.outcome': 'completed',
    'modelgate.upstream.reached': false,
    'modelgate.duration_ms': 0.5,
    'modelgate.denial.code': 'MG_IDENTITY_MISSING',
    'modelgate.denial.status': 401,
    'modelgate.redaction.action': 'none',
  })
  t.equal(spanName(ctx), 'modelgate.request')
})

t.test('a blocked class makes the redaction action block', async (t) => {
  const ctx = allowedContext()
  ctx.addFinding({ detector: 'pem', dataClass: 'secret.private_key', confidence: 'high', direction: 'request', location: '$', start: 0, length: 1, hash: 'h-1', action: 'block' })
  const a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.equal(a['modelgate.redaction.action'], 'block')
  t.same(a['modelgate.redaction.blocked_classes'], ['secret.private_key'])
})

t.test('the record lists the tools asked and their answers, and the tool whose call ended the response', async (t) => {
  const ctx = allowedContext()
  ctx.toolDecisions.push(
    { tool: 'lookup_order', kind: 'function', phase: 'request', effect: 'allow' },
    { tool: 'mcp:payments', kind: 'mcp', phase: 'request', effect: 'allow' },
    { tool: 'mcp:payments/lookup_order', kind: 'mcp', phase: 'response', effect: 'allow' },
    { tool: 'send all my secrets', kind: 'function_call', phase: 'response', effect: 'deny', reason: 'undeclared' },
  )
  const a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.same(a['modelgate.decision.tools'], ['lookup_order', 'mcp:payments'])
  t.same(a['modelgate.decision.tool_kinds'], ['function', 'mcp'])
  t.same(a['modelgate.decision.tool_effects'], ['allow', 'allow'])
  t.same(a['modelgate.response.tools'], ['mcp:payments/lookup_order', '[omitted]'], 'a name a model made up is kept only when it is identifier-like')
  t.same(a['modelgate.response.tool_effects'], ['allow', 'deny'])
  t.equal(a['modelgate.response.tool_denied'], '[omitted]')
  t.equal(a['modelgate.response.tool_denied_reason'], 'undeclared')

  const many = allowedContext()
  for (let i = 0; i < 100; i++) many.toolDecisions.push({ tool: `t${i}`, kind: 'function', phase: 'request', effect: 'allow' })
  for (let i = 0; i < 100; i++) many.toolDecisions.push({ tool: `r${i}`, kind: 'mcp', phase: 'response', effect: i === 99 ? 'deny' : 'allow', ...(i === 99 ? { reason: 'limit' as const } : {}) })
  const b = requestAttributes(many, { kind: 'completed' }, extras)
  t.equal((b['modelgate.decision.tools'] as string[]).length, 64)
  t.equal((b['modelgate.response.tools'] as string[]).length, 64)
  t.same([b['modelgate.response.tool_denied'], b['modelgate.response.tool_denied_reason']], ['r99', 'limit'], 'the refused call is named even past the list cap')
  t.notOk('modelgate.decision.tools' in requestAttributes(allowedContext(), { kind: 'completed' }, extras), 'absent when no tool was asked about')
})

t.test('lists and caller-controlled strings are capped', async (t) => {
  const ctx = allowedContext()
  ctx.put('request', parsedRequest({ model: 'm'.repeat(5000), tools: Array.from({ length: 100 }, (_, i) => ({ name: `tool-${i}`, type: 'function' })) }))
  for (let i = 0; i < 100; i++) {
    ctx.addFinding({ detector: `det-${i}`, dataClass: `class.${i}`, confidence: 'low', direction: 'request', location: '$', start: 0, length: 1, hash: `hash-${i}`, action: 'allow' })
  }
  const a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.equal((a['gen_ai.request.model'] as string).length, 1024)
  t.equal((a['modelgate.request.tools'] as string[]).length, 64)
  t.equal((a['modelgate.data.classes'] as string[]).length, 64)
  t.equal((a['modelgate.data.hashes'] as string[]).length, 32)
  t.ok(Object.keys(a).length < 400, 'well under the span attribute limit')
  t.equal(spanName(ctx).length, 'chat '.length + 128)
})

t.test('per-item keys are cleaned to a safe alphabet', async (t) => {
  const ctx = allowedContext()
  ctx.put('quota', { rules: ['Team Budget/EU'], remaining: { 'Team Budget/EU': 5, bad: Number.NaN } })
  ctx.timings.set('Redaction Apply', 0.5)
  const a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.equal(a['modelgate.quota.remaining.team_budget_eu'], 5)
  t.notOk('modelgate.quota.remaining.bad' in a, 'non-finite numbers are left out')
  t.equal(a['modelgate.stage.redaction_apply.duration_ms'], 0.5)
})

t.test('GenAI names map modelgate providers and operations to the semantic conventions', async (t) => {
  t.same(
    (['openai', 'anthropic', 'azure-openai'] as const).map(genAiProvider),
    ['openai', 'anthropic', 'azure.ai.openai'],
  )
  t.same(
    (['chat', 'messages', 'responses', 'completion', 'embedding'] as const).map(genAiOperation),
    ['chat', 'chat', 'chat', 'text_completion', 'embeddings'],
  )
  t.equal(spanName(allowedContext()), 'chat gpt-4o-mini')
})

t.test('content is captured up to the cap without splitting a character', async (t) => {
  t.same(captureContent(Buffer.from('hello'), 10), { text: 'hello', truncated: false })
  t.same(captureContent(Buffer.from('hello world'), 5), { text: 'hello', truncated: true })
  // "é" is two bytes: a cap in its middle stops before it.
  t.same(captureContent(Buffer.from('abé'), 3), { text: 'ab', truncated: true })
  t.same(captureContent(Buffer.from('€€'), 4), { text: '€', truncated: true })
  t.same(captureContent(Buffer.from('abc'), 0), { text: '', truncated: true })
})

t.test('the URL is recorded as scanned: no raw query, no path of a refused route, the template when no scan ran', async (t) => {
  const ctx = new RequestContext()
  ctx.method = 'POST'
  ctx.path = '/v1/ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2/v1/chat/completions?api_key=ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
  let a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.notOk('url.path' in a, 'a path no route matched is not recorded')
  t.notOk(JSON.stringify(a).includes('ghp_'), 'nothing of it is')
  ctx.path = '/openai/deployments/ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2/chat/completions?api_key=ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
  ctx.put('target', { route: matchRoute(ctx.path)!, provider: PROVIDER })
  a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.equal(a['url.path'], '/openai/deployments/{deployment}/chat/completions', 'unscanned: the route template')
  t.notOk('modelgate.url.query_params' in a, 'unscanned: no query names')
  ctx.put('url', { path: '/openai/deployments/[GITHUB_TOKEN]/chat/completions', queryNames: ['api_key'] })
  a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.equal(a['url.path'], '/openai/deployments/[GITHUB_TOKEN]/chat/completions', 'scanned: placeholders in place of findings')
  t.equal(a['http.route'], '/openai/deployments/{deployment}/chat/completions')
  t.same(a['modelgate.url.query_params'], ['api_key'])
  t.notOk(JSON.stringify(a).includes('ghp_'), 'the token is nowhere in the record')
})

t.test('what happened to the data: each outcome is recorded as it happened', async (t) => {
  const finding = (dataClass: string, action: 'allow' | 'redact' | 'block' | 'withheld', direction: 'request' | 'response' = 'request') =>
    ({ detector: `${dataClass}-detector`, dataClass, confidence: 'high', direction, location: '$', start: 0, length: 4, hash: `h-${dataClass}`, action }) as const
  const cases: { name: string; findings: ReturnType<typeof finding>[]; denial?: ErrorCode; upstream: boolean; action: string; lists: Record<string, string[]> }[] = [
    { name: 'sent redacted', findings: [finding('pii', 'redact')], upstream: true, action: 'redact', lists: { redacted_classes: ['pii'] } },
    { name: 'sent as is, policy permitting', findings: [finding('pii', 'allow')], upstream: true, action: 'allow', lists: { allowed_classes: ['pii'] } },
    {
      name: 'refused for a class configured to block; the other class was not sent either',
      findings: [finding('secret', 'block'), finding('pii', 'withheld')],
      denial: 'MG_DATA_BLOCKED',
      upstream: false,
      action: 'block',
      lists: { blocked_classes: ['secret'], withheld_classes: ['pii'] },
    },
    { name: 'refused by policy before redaction applied', findings: [finding('secret', 'withheld')], denial: 'MG_POLICY_DENIED', upstream: false, action: 'withheld', lists: { withheld_classes: ['secret'] } },
    {
      name: 'refused after redaction decided (a later stage): the redacted value was never sent',
      findings: [finding('pii', 'redact'), finding('internal', 'allow')],
      denial: 'MG_QUOTA_EXCEEDED',
      upstream: false,
      action: 'withheld',
      lists: { withheld_classes: ['internal', 'pii'] },
    },
    {
      name: 'a response refused after the request left redacted keeps the request\'s redaction',
      findings: [finding('pii', 'redact'), finding('secret', 'block', 'response')],
      denial: 'MG_RESPONSE_BLOCKED',
      upstream: true,
      action: 'block',
      lists: { redacted_classes: ['pii'], blocked_classes: ['secret'] },
    },
  ]
  for (const c of cases) {
    const ctx = allowedContext()
    ctx.findings.splice(0, ctx.findings.length, ...c.findings)
    if (c.denial) ctx.denial = new GateError(c.denial)
    settleFindings(ctx, c.upstream)
    const a = requestAttributes(ctx, { kind: 'completed' }, { ...extras, upstreamReached: c.upstream })
    t.equal(a['modelgate.redaction.action'], c.action, `${c.name}: redaction.action`)
    for (const list of ['redacted_classes', 'blocked_classes', 'withheld_classes', 'allowed_classes']) {
      t.same(a[`modelgate.redaction.${list}`], c.lists[list], `${c.name}: ${list}`)
    }
  }
})

t.test('Envoy\'s request.time is read to the nanosecond; anything else is not a time', async (t) => {
  t.equal(parseEnvoyTime('2026-11-26T02:37:23.116208+00:00'), 1795660643116208000n)
  t.equal(parseEnvoyTime('2026-11-26T02:37:23Z'), 1795660643000000000n)
  t.equal(parseEnvoyTime('2026-11-26T03:37:23.5+01:00'), 1795660643500000000n)
  for (const bad of [undefined, 17, '', 'yesterday', '2026-11-26 02:37:23Z', '2026-13-45T99:00:00Z', '2026-11-26T02:37:23.1234567891Z']) t.equal(parseEnvoyTime(bad), undefined, String(bad))
})

t.test('a request starts when Envoy started it, if that is plausibly before modelgate saw the stream', async (t) => {
  const ctx = allowedContext()
  const seen = BigInt(ctx.startedAt) * 1_000_000n
  const envoyIso = (msBefore: number) => new Date(ctx.startedAt - msBefore).toISOString()
  t.same(requestStart(ctx), { startNs: seen, waitNs: undefined }, 'no attribute: when the stream was seen')
  ctx.attributes.set('request.time', envoyIso(2500))
  t.same(requestStart(ctx), { startNs: seen - 2_500_000_000n, waitNs: 2_500_000_000n }, 'stalled: Envoy\'s start, and the wait')
  ctx.attributes.set('request.time', `${envoyIso(0).slice(0, 23)}400+00:00`)
  t.same(requestStart(ctx), { startNs: seen, waitNs: 0n }, 'a hair after the millisecond clock: when seen')
  ctx.attributes.set('request.time', envoyIso(2 * 3600 * 1000))
  t.same(requestStart(ctx), { startNs: seen, waitNs: undefined }, 'hours before: not believable')
  ctx.attributes.set('request.time', 'garbage')
  t.same(requestStart(ctx), { startNs: seen, waitNs: undefined })
})

t.test('a quota decision records the deciding rule, the reservation, the settlement, the store and a cut stream; audit show tells it', async (t) => {
  const ctx = deniedContext('MG_QUOTA_EXCEEDED', { details: { rule: 'notebook-rpm' } })
  ctx.put('quota', { rules: ['notebook-rpm', 'daily'], remaining: { 'notebook-rpm': 0, daily: 1200 }, decidingRule: 'notebook-rpm', reservedTokens: 530, settledTokens: 41, settledBy: 'streamed', store: 'local', storeError: 'redis is reconnecting', streamCut: true })
  const a = requestAttributes(ctx, { kind: 'completed' }, extras)
  t.match(a, {
    'modelgate.quota.rules': ['notebook-rpm', 'daily'],
    'modelgate.quota.remaining.notebook-rpm': 0,
    'modelgate.quota.remaining.daily': 1200,
    'modelgate.quota.deciding_rule': 'notebook-rpm',
    'modelgate.quota.reserved_tokens': 530,
    'modelgate.quota.settled_tokens': 41,
    'modelgate.quota.settled_by': 'streamed',
    'modelgate.quota.store': 'local',
    'modelgate.quota.store_error': 'redis is reconnecting',
    'modelgate.quota.stream_cut': true,
  })
  const told = story({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'chat', kind: 1, start: '1', end: '2', status: { code: 2 }, attributes: a as never })
  t.match(told, /quota\s+notebook-rpm \(remaining 0\), daily \(remaining 1200\)/)
  t.match(told, /deciding rule notebook-rpm: ended the stream/)
  t.match(told, /tokens reserved 530, settled 41 \(streamed\)/)
  t.match(told, /store local \(store error: redis is reconnecting\)/)
})
