import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadPolicyDirSync, type CompiledPolicySet } from '../../../src/policy/load.ts'
import { buildCall, DescriptionError, factsFromContext, factsFromDescription, factsKey, MAX_HEADER_VALUE, modelQuery, toLong, toolQueries, unredactedQuery } from '../../../src/policy/request.ts'
import { CHECKOUT, NOTEBOOK, requestContext, SHIPPED } from './fixtures.ts'

const shipped = (() => {
  const r = loadPolicyDirSync(SHIPPED).result
  if (!r.ok) throw new Error('shipped policies do not load')
  return r.set
})()

const entityIds = (set: CompiledPolicySet, call: ReturnType<typeof buildCall>) => {
  void set
  return call.entities.map((e) => `${'__entity' in e.uid ? e.uid.__entity.type : e.uid.type}::${'__entity' in e.uid ? e.uid.__entity.id : e.uid.id}`).sort()
}

t.test('facts from a live request', async (t) => {
  t.test('carry the identity, the parsed request and the data classes found', async (t) => {
    const ctx = requestContext({ request: { model: 'gpt-4.1-mini', stream: true, maxTokens: 300, tools: [{ name: 'lookup_order', type: 'function' }] }, dataClasses: ['pii', 'financial', 'pii'] })
    const f = factsFromContext(ctx, { region: 'eu-west-1' })
    t.match(f, {
      principal: { spiffeId: CHECKOUT, trustDomain: 'modelgate.local', namespace: 'payments', serviceAccount: 'checkout' },
      user: undefined,
      provider: 'openai',
      operation: 'chat',
      api: 'openai.chat_completions',
      model: 'gpt-4.1-mini',
      stream: true,
      maxTokens: 300,
      tools: [{ name: 'lookup_order', type: 'function' }],
      dataClasses: ['financial', 'pii'],
      detectors: ['financial-detector', 'pii-detector'],
      region: 'eu-west-1',
    })
  })

  t.test('take tenant, purpose and client app from the configured headers, bounded in length', async (t) => {
    const long = 'x'.repeat(MAX_HEADER_VALUE + 50)
    const ctx = requestContext({ headers: { 'x-modelgate-tenant': ' acme ', 'x-modelgate-purpose': 'support', 'x-team-app': long } })
    const f = factsFromContext(ctx, { headers: { tenant: 'x-modelgate-tenant', purpose: 'x-modelgate-purpose', clientApp: 'x-team-app' } })
    t.equal(f.tenant, 'acme')
    t.equal(f.purpose, 'support')
    t.equal(f.clientApp.length, MAX_HEADER_VALUE)
    const none = factsFromContext(requestContext())
    t.same([none.tenant, none.purpose, none.clientApp, none.region], ['', '', '', ''])
  })

  t.test('take the time from the request start (UTC hour, ISO weekday)', async (t) => {
    const ctx = requestContext()
    Object.defineProperty(ctx, 'startedAt', { value: Date.parse('2025-03-09T23:30:00Z') }) // a Sunday
    const f = factsFromContext(ctx)
    t.equal(f.utcHour, 23)
    t.equal(f.dayOfWeek, 7)
  })

  t.test('include the delegated user with sorted, distinct groups', async (t) => {
    const ctx = requestContext()
    ctx.put('caller', { workload: ctx.need('caller').workload, user: { subject: 'alice', issuer: 'https://idp.example.com', email: undefined, groups: ['b', 'a', 'b'] } })
    t.same(factsFromContext(ctx).user, { subject: 'alice', issuer: 'https://idp.example.com', email: '', groups: ['a', 'b'] })
  })

  t.test('keep non-Kubernetes SPIFFE paths with empty namespace and service account', async (t) => {
    const f = factsFromContext(requestContext({ spiffeId: 'spiffe://corp.example/billing/worker' }))
    t.same(f.principal, { spiffeId: 'spiffe://corp.example/billing/worker', trustDomain: 'corp.example', namespace: '', serviceAccount: '' })
  })

  t.test('cannot be taken without an identity or a parsed request', async (t) => {
    const noRequest = requestContext({ request: null })
    t.throws(() => factsFromContext(noRequest), { name: 'GateError', code: 'MG_POLICY_ERROR' })
    const noIdentity = requestContext()
    delete (noIdentity.out as { caller?: unknown }).caller
    t.throws(() => factsFromContext(noIdentity), { code: 'MG_POLICY_ERROR' })
  })

  t.test('have a key that changes with every fact and with nothing else', async (t) => {
    const a = factsFromContext(requestContext({ dataClasses: ['pii'] }))
    const b = factsFromContext(requestContext({ dataClasses: ['pii'] }))
    t.equal(factsKey({ ...a, utcHour: 0, dayOfWeek: 1 }), factsKey({ ...b, utcHour: 0, dayOfWeek: 1 }))
    t.not(factsKey(a), factsKey({ ...a, dataClasses: ['pii', 'secret'] }))
    t.not(factsKey(a), factsKey({ ...a, maxTokens: 1 }))
  })
})

t.test('requested token budgets become conservative Cedar Longs', async (t) => {
  const cases: [number, number][] = [
    [512, 512],
    [10.7, 10],
    [0, 0],
    [-5, 0],
    [Infinity, Number.MAX_SAFE_INTEGER],
    [NaN, Number.MAX_SAFE_INTEGER],
    [1e300, Number.MAX_SAFE_INTEGER],
  ]
  for (const [input, want] of cases) t.equal(toLong(input), want, String(input))
})

t.test('questions', async (t) => {
  t.test('ask the operation as the action on Model::"<provider>/<model>"', async (t) => {
    const f = factsFromContext(requestContext({ request: { provider: 'anthropic', providerName: 'anthropic', operation: 'messages', model: 'claude-haiku-4-5' } }))
    t.same(modelQuery(f), { action: 'messages', resource: { type: 'ModelGate::Model', id: 'anthropic/claude-haiku-4-5' } })
  })
  t.test('ask call_tool once per distinct declared tool', async (t) => {
    const f = factsFromContext(requestContext({ request: { tools: [{ name: 'a', type: 'function' }, { name: 'b', type: 'function' }, { name: 'a', type: 'function' }] } }))
    t.same(
      toolQueries(f).map((q) => q.resource.id),
      ['a', 'b'],
    )
    t.same(unredactedQuery('pii'), { action: 'send_unredacted', resource: { type: 'ModelGate::DataClass', id: 'pii' } })
  })
})

t.test('the Cedar call', async (t) => {
  t.test('derives the principal, its namespace and declared teams, the model and its provider', async (t) => {
    const f = factsFromContext(requestContext({ spiffeId: CHECKOUT }))
    const call = buildCall(f, modelQuery(f), shipped)
    t.same(call.principal, { type: 'ModelGate::Workload', id: CHECKOUT })
    t.same(call.resource, { type: 'ModelGate::Model', id: 'openai/gpt-4o-mini' })
    t.same(entityIds(shipped, call), [
      'ModelGate::Model::openai/gpt-4o-mini',
      'ModelGate::ModelGroup::agent-approved',
      'ModelGate::ModelGroup::payments-approved',
      'ModelGate::ModelGroup::research-approved',
      'ModelGate::Namespace::payments',
      'ModelGate::Provider::openai',
      'ModelGate::Team::payments',
      `ModelGate::Workload::${CHECKOUT}`,
    ])
    const w = call.entities.find((e) => 'type' in e.uid && e.uid.type === 'ModelGate::Workload')!
    t.same(w.attrs, { trustDomain: 'modelgate.local', namespace: 'payments', serviceAccount: 'checkout' })
  })

  t.test('merges parents declared for a workload with the derived namespace', async (t) => {
    const f = factsFromContext(requestContext({ spiffeId: NOTEBOOK }))
    const call = buildCall(f, modelQuery(f), shipped)
    const w = call.entities.find((e) => 'type' in e.uid && e.uid.type === 'ModelGate::Workload')!
    t.same(w.parents, [
      { type: 'ModelGate::Namespace', id: 'research' },
      { type: 'ModelGate::Team', id: 'research' },
    ])
  })

  t.test('takes provider attributes from entities.json', async (t) => {
    const f = factsFromContext(requestContext({ request: { providerName: 'internal-llm', model: 'llama' } }))
    const call = buildCall(f, modelQuery(f), shipped)
    const p = call.entities.find((e) => 'type' in e.uid && e.uid.type === 'ModelGate::Provider')!
    t.same(p.attrs, { internal: true })
    const unknown = factsFromContext(requestContext({ request: { providerName: 'somewhere', model: 'x' } }))
    const p2 = buildCall(unknown, modelQuery(unknown), shipped).entities.find((e) => 'type' in e.uid && e.uid.type === 'ModelGate::Provider')!
    t.same(p2.attrs, { internal: false })
  })

  t.test('has a small context of derived features, never text', async (t) => {
    const ctx = requestContext({ request: { maxTokens: 64 }, dataClasses: ['pii'] })
    ctx.requestBody = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'my secret prompt' }] }))
    const f = factsFromContext(ctx)
    const call = buildCall(f, modelQuery(f), shipped)
    t.same(Object.keys(call.context).sort(), ['api', 'callerClass', 'clientApp', 'dataClasses', 'dayOfWeek', 'detectors', 'maxTokens', 'model', 'purpose', 'region', 'stream', 'tenant', 'tools', 'utcHour'])
    t.notMatch(JSON.stringify(call), /my secret prompt/)
    const noBudget = factsFromContext(requestContext())
    t.notOk('maxTokens' in buildCall(noBudget, modelQuery(noBudget), shipped).context, 'maxTokens is absent when the request sets none')
  })

  t.test('adds the user and their groups', async (t) => {
    const ctx = requestContext()
    ctx.put('caller', { workload: ctx.need('caller').workload, user: { subject: 'alice', issuer: 'https://idp', email: 'a@example.com', groups: ['contractors'] } })
    const f = factsFromContext(ctx)
    const call = buildCall(f, modelQuery(f), shipped)
    t.same(call.context.user, { __entity: { type: 'ModelGate::User', id: 'https://idp#alice' } })
    t.ok(entityIds(shipped, call).includes('ModelGate::UserGroup::contractors'))
  })

  t.test('adds the tool and its declared server for call_tool', async (t) => {
    const f = factsFromContext(requestContext({ request: { tools: [{ name: 'lookup_order', type: 'function' }] } }))
    const call = buildCall(f, toolQueries(f)[0]!, shipped)
    t.same(call.action, { type: 'ModelGate::Action', id: 'call_tool' })
    const tool = call.entities.find((e) => 'type' in e.uid && e.uid.type === 'ModelGate::Tool')!
    t.same(tool, { uid: { type: 'ModelGate::Tool', id: 'lookup_order' }, attrs: { kind: 'function' }, parents: [{ type: 'ModelGate::ToolServer', id: 'payments-api' }] })
    t.ok(entityIds(shipped, call).includes('ModelGate::ToolServer::payments-api'))
  })
})

t.test('MCP tools for call_tool', async (t) => {
  const H = 'mcp.payments.example.com'
  const mcpRequest = {
    api: 'openai.responses',
    operation: 'responses' as const,
    tools: [
      { name: 'mcp:payments', type: 'mcp', origin: 'mcp-server' as const, known: true, host: H, narrowed: true },
      { name: 'mcp:payments/lookup_order', type: 'mcp', origin: 'mcp-tool' as const, known: true, host: H },
      { name: 'mcp:wiki', type: 'mcp', origin: 'mcp-server' as const, known: true },
    ],
  }
  const toolOf = (call: ReturnType<typeof buildCall>) => call.entities.find((e) => 'type' in e.uid && e.uid.type === 'ModelGate::Tool')!
  const ask = (set: CompiledPolicySet, id: string) => {
    const f = factsFromContext(requestContext({ request: mcpRequest }))
    return buildCall(f, { action: 'call_tool', resource: { type: 'ModelGate::Tool', id } }, set)
  }

  t.test('the facts carry each tool with its host, and context.tools every identity', async (t) => {
    const f = factsFromContext(requestContext({ request: mcpRequest }))
    t.same(f.tools, [
      { name: 'mcp:payments', type: 'mcp', host: H },
      { name: 'mcp:payments/lookup_order', type: 'mcp', host: H },
      { name: 'mcp:wiki', type: 'mcp' },
    ])
    t.same(
      toolQueries(f).map((q) => q.resource.id),
      ['mcp:payments', 'mcp:payments/lookup_order', 'mcp:wiki'],
    )
    t.same(ask(shipped, 'mcp:wiki').context.tools, ['mcp:payments', 'mcp:payments/lookup_order', 'mcp:wiki'])
  })

  t.test('a server is kind mcp, with its host, in ToolServer mcp:<server>', async (t) => {
    t.same(toolOf(ask(shipped, 'mcp:payments')), { uid: { type: 'ModelGate::Tool', id: 'mcp:payments' }, attrs: { kind: 'mcp', host: H }, parents: [{ type: 'ModelGate::ToolServer', id: 'mcp:payments' }] })
    t.same(toolOf(ask(shipped, 'mcp:wiki')).attrs, { kind: 'mcp' }, 'no URL, no host')
  })

  // No server hints known: the protocol's defaults.
  const WORST_CASE = { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true }

  t.test('a tool of a server also carries its own name, the declared one and one a response calls alike', async (t) => {
    t.same(toolOf(ask(shipped, 'mcp:payments/lookup_order')), {
      uid: { type: 'ModelGate::Tool', id: 'mcp:payments/lookup_order' },
      attrs: { kind: 'mcp', host: H, mcpTool: 'lookup_order', ...WORST_CASE },
      parents: [{ type: 'ModelGate::ToolServer', id: 'mcp:payments' }],
    })
    t.same(toolOf(ask(shipped, 'mcp:payments/admin/reset')).attrs, { kind: 'mcp', host: H, mcpTool: 'admin/reset', ...WORST_CASE }, "a tool the request did not list takes its server's host")
  })

  t.test('a schema without the optional Tool attributes gets none of them', async (t) => {
    const dir = t.testdir({})
    const schema = readFileSync(join(SHIPPED, 'modelgate.cedarschema'), 'utf8').replace(/\n\s*\/\/ MCP servers and their tools[^\n]*\n[^\n]*\n\s*host\?: String,\n\s*\/\/[^\n]*\n\s*mcpTool\?: String,/, '').replace(/\n\s*\/\/ A tool of an MCP server: the hints[\s\S]*?openWorldHint\?: Bool,/, '')
    t.notMatch(schema, /mcpTool/, 'the test schema lacks them')
    writeFileSync(join(dir, 'modelgate.cedarschema'), schema)
    writeFileSync(join(dir, 'p.cedar'), '@id("any-tool")\n@owner("x")\npermit (principal, action == ModelGate::Action::"call_tool", resource);\n')
    const r = loadPolicyDirSync(dir).result
    if (!r.ok) throw new Error(r.problems.map((p) => p.message).join('; '))
    t.same(toolOf(ask(r.set, 'mcp:payments/lookup_order')).attrs, { kind: 'mcp' })
  })
})

t.test('request descriptions', async (t) => {
  t.test('need only a principal and a model', async (t) => {
    const { facts, unredacted } = factsFromDescription({ principal: CHECKOUT, model: 'gpt-4o-mini' }, { now: Date.parse('2025-01-06T12:00:00Z') })
    t.equal(unredacted, undefined)
    t.match(facts, { provider: 'openai', operation: 'chat', api: 'openai.chat_completions', stream: false, maxTokens: undefined, tools: [], utcHour: 12, dayOfWeek: 1 })
  })

  t.test('describe everything a live request carries', async (t) => {
    const { facts, unredacted } = factsFromDescription({
      principal: NOTEBOOK,
      provider: 'anthropic',
      operation: 'messages',
      model: 'claude-sonnet-4-5',
      stream: true,
      maxTokens: 100,
      tools: ['a', { name: 'web_search', type: 'web_search_20250305' }, { name: 'mcp:payments', type: 'mcp', host: 'mcp.payments.example.com' }],
      dataClasses: ['pii'],
      detectors: ['email'],
      tenant: 't',
      purpose: 'p',
      clientApp: 'c',
      region: 'r',
      time: '2025-03-08T18:00:00Z',
      user: { subject: 's', issuer: 'i', groups: ['g'] },
      unredacted: 'pii',
    })
    t.equal(unredacted, 'pii')
    t.match(facts, { api: 'anthropic.messages', stream: true, maxTokens: 100, tools: [{ name: 'a', type: 'function' }, { name: 'web_search', type: 'web_search_20250305' }, { name: 'mcp:payments', type: 'mcp', host: 'mcp.payments.example.com' }], utcHour: 18, dayOfWeek: 6, user: { email: '', groups: ['g'] } })
  })

  t.test('list every problem at once', async (t) => {
    try {
      factsFromDescription({ principal: 'spiffe://x/../y', operation: 'dance', maxTokens: -1, tools: [3], time: 'soon', extra: 1 })
      t.fail('should throw')
    } catch (err) {
      t.type(err, DescriptionError)
      t.match((err as DescriptionError).problems, [
        /unknown field "extra"/,
        /"principal" is not a valid SPIFFE ID/,
        /"model" is required/,
        /"operation" must be one of/,
        /"maxTokens" must be a non-negative integer/,
        /"tools" entries must be names/,
        /"time" must be an ISO 8601/,
      ])
    }
    t.throws(() => factsFromDescription([]), DescriptionError)
  })
})
