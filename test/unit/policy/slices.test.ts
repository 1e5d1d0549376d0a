/**
 * Slices and the reduced decision-cache key must never change an answer:
 * for generated policy sets, entities and requests, an engine that evaluates
 * slices and caches on the facts they read decides exactly as one that asks
 * Cedar every question against the whole set with every request entity.
 */
import { join } from 'node:path'
import * as fc from 'fast-check'
import t from 'tap'
import type { DecisionResult, PolicyEngine as Engine } from '../../../src/policy/engine.ts'
import { PolicyEngine } from '../../../src/policy/engine.ts'
import { loadPolicyDirSync } from '../../../src/policy/load.ts'
import { EntityGroups, factsFromDescription, modelQuery, unredactedQuery, type RequestDescription } from '../../../src/policy/request.ts'
import { pruningIsExact, Slicer } from '../../../src/policy/slices.ts'
import { ALLOW_ALL, CHECKOUT, FORBID_SECRET, writePolicyDir } from './fixtures.ts'

const NS = 'ModelGate'
const TEAMS = ['t0', 't1', 't2', 't3']
const NAMESPACES = ['ns0', 'ns1', 'ns2', 'ns3', 'ns4']
const DECLARED_WORKLOAD = 'spiffe://td.local/ns/ns0/sa/a'
const PRINCIPALS = [DECLARED_WORKLOAD, 'spiffe://td.local/ns/ns1/sa/b', 'spiffe://td.local/ns/ns4/sa/c', 'spiffe://td.local/svc/x', 'spiffe://other.local/ns/ns2/sa/d']
const MODELS = [
  ['p0', 'm0'],
  ['p1', 'm0'],
  ['p1', 'm1'],
  ['p2', 'm0'],
  ['p0', 'm1'],
] as const
const GROUPS = ['g0', 'g1', 'g2']
const SERVERS = ['s0', 's1']
const TOOLS = ['t0', 't1', 't2']
const CLASSES = ['c0', 'pii', 'secret']

const q = (s: string) => JSON.stringify(s)
const uid = (type: string, id: string) => `${NS}::${type}::${q(id)}`

// ---- generated policies ------------------------------------------------------

const principalScope = fc.constantFrom(
  'principal',
  ...TEAMS.map((x) => `principal in ${uid('Team', x)}`),
  ...NAMESPACES.slice(0, 3).map((x) => `principal in ${uid('Namespace', x)}`),
  `principal == ${uid('Workload', DECLARED_WORKLOAD)}`,
  `principal is ${NS}::Workload`,
  `principal is ${NS}::Workload in ${uid('Team', 't1')}`,
)

const modelActions = [`action == ${uid('Action', 'chat')}`, `action == ${uid('Action', 'embedding')}`, `action in ${uid('Action', 'generate')}`, `action in ${uid('Action', 'use_model')}`, `action in [${uid('Action', 'chat')}, ${uid('Action', 'messages')}]`]
const modelResources = ['resource', ...MODELS.slice(0, 3).map(([p, m]) => `resource == ${uid('Model', `${p}/${m}`)}`), ...GROUPS.map((g) => `resource in ${uid('ModelGroup', g)}`), `resource in ${uid('Provider', 'p1')}`, `resource is ${NS}::Model`, `resource is ${NS}::Model in ${uid('ModelGroup', 'g2')}`]
const toolResources = ['resource', `resource == ${uid('Tool', 't1')}`, ...SERVERS.map((s) => `resource in ${uid('ToolServer', s)}`), `resource is ${NS}::Tool`]
const dataResources = ['resource', ...CLASSES.map((c) => `resource == ${uid('DataClass', c)}`)]

type Family = 'model' | 'tool' | 'data' | 'any'

/** Conditions valid for every action. */
const commonAtoms = [
  ...CLASSES.map((c) => `context.dataClasses.contains(${q(c)})`),
  `context.detectors.contains("d0")`,
  ...TOOLS.map((x) => `context.tools.contains(${q(x)})`),
  `context.tools.containsAny(["t0", "t2"])`,
  `context.tenant == ""`,
  `context.tenant == "a"`,
  `"x" == context.purpose`,
  `context.api == "openai.chat_completions"`,
  `context.region == "eu"`,
  `context.clientApp == "x"`,
  `context.stream`,
  `context has maxTokens && context.maxTokens > 4096`,
  `context has maxTokens && context.maxTokens * 1000000000000 > 5`,
  `context has maxTokens && context.maxTokens * 10000000000000000 > 5`,
  `context.utcHour * 1000000000000000000 > 5`,
  `context.utcHour < 12`,
  `context.dayOfWeek > 5`,
  `context has user`,
  `context has user && context.user in ${uid('UserGroup', 'ug0')}`,
  `context has user && context.user in [${uid('UserGroup', 'ug1')}, ${uid('UserGroup', 'ug0')}]`,
  `context has user && context.user in ${uid('User', 'i0#s1')}`,
  `context has user && context.user.email like "*@example.com"`,
  `context has user && context.user == ${uid('User', 'i0#s0')}`,
  `context has user && context.user.subject == "s1"`,
  `context has user && context.user is ${NS}::User`,
  `principal in ${uid('Team', 't2')}`,
  `principal.namespace == "ns1"`,
  `principal == ${uid('Workload', DECLARED_WORKLOAD)}`,
  `principal.trustDomain == "td.local"`,
  `context.model in ${uid('ModelGroup', 'g1')}`,
  `context.model.provider.internal`,
  `context.model.name == "m0"`,
  `context.model == ${uid('Model', 'p0/m0')}`,
  `context.model.provider == ${uid('Provider', 'p1')}`,
  `${uid('Provider', 'p0')}.internal`,
  `${uid('Team', 't0')} in ${uid('Team', 't3')}`,
  `if context.stream then context.utcHour < 12 else context.utcHour > 3`,
  `[context.tenant, context.purpose].contains("a")`,
]

const familyAtoms: Record<Family, string[]> = {
  model: [`resource.provider.internal`, `resource in ${uid('ModelGroup', 'g0')}`, `resource.name == "m1"`, `resource == ${uid('Model', 'p1/m1')}`, `resource.provider == ${uid('Provider', 'p2')}`],
  tool: [`resource.kind == "function"`, `resource in ${uid('ToolServer', 's1')}`, `resource == ${uid('Tool', 't0')}`],
  data: [`resource == ${uid('DataClass', 'pii')}`],
  any: [],
}

function condition(family: Family): fc.Arbitrary<string> {
  const atom = fc.constantFrom(...commonAtoms, ...familyAtoms[family])
  return fc.oneof(
    { weight: 4, arbitrary: atom },
    { weight: 1, arbitrary: fc.tuple(atom, atom).map(([a, b]) => `(${a}) && (${b})`) },
    { weight: 1, arbitrary: fc.tuple(atom, atom).map(([a, b]) => `(${a}) || (${b})`) },
    { weight: 1, arbitrary: atom.map((a) => `!(${a})`) },
  )
}

const family = fc.constantFrom<Family>('model', 'model', 'model', 'tool', 'data', 'any', 'any')

const policy = family.chain((f) =>
  fc.record({
    effect: fc.constantFrom('permit', 'permit', 'permit', 'forbid'),
    principal: principalScope,
    action: f === 'model' ? fc.constantFrom(...modelActions) : f === 'tool' ? fc.constant(`action == ${uid('Action', 'call_tool')}`) : f === 'data' ? fc.constant(`action == ${uid('Action', 'send_unredacted')}`) : fc.constantFrom('action', `action in [${uid('Action', 'chat')}, ${uid('Action', 'call_tool')}]`),
    resource: f === 'model' ? fc.constantFrom(...modelResources) : f === 'tool' ? fc.constantFrom(...toolResources) : f === 'data' ? fc.constantFrom(...dataResources) : fc.constant('resource'),
    clauses: fc.array(fc.tuple(fc.constantFrom('when', 'unless'), condition(f)), { maxLength: 2 }),
  }),
)

function policyText(p: { effect: string; principal: string; action: string; resource: string; clauses: [string, string][] }, i: number): string {
  const body = p.clauses.map(([k, c]) => `\n${k} { ${c} }`).join('')
  return `@id("p${i}")\n@owner("o")\n${p.effect} (${p.principal}, ${p.action}, ${p.resource})${body};`
}

// ---- generated entities ------------------------------------------------------

const entities = fc
  .record({
    teamParents: fc.tuple(...TEAMS.map((_, i) => fc.subarray(TEAMS.slice(i + 1)))),
    nsParents: fc.tuple(...NAMESPACES.slice(0, 4).map(() => fc.subarray(TEAMS, { maxLength: 2 }))),
    workloadTeams: fc.subarray(TEAMS, { maxLength: 2 }),
    modelGroups: fc.tuple(...MODELS.slice(0, 3).map(() => fc.subarray(GROUPS))),
    toolServers: fc.tuple(fc.subarray(SERVERS), fc.subarray(SERVERS)),
    internal: fc.tuple(fc.boolean(), fc.boolean()),
    bareProvider: fc.boolean(),
  })
  .map((g) => {
    const e = (type: string, id: string, parents: [string, string][] = [], attrs: Record<string, unknown> = {}) => ({
      uid: { type: `${NS}::${type}`, id },
      attrs,
      parents: parents.map(([pt, pid]) => ({ type: `${NS}::${pt}`, id: pid })),
    })
    const list = [
      ...TEAMS.map((x, i) => e('Team', x, g.teamParents[i]!.map((p) => ['Team', p]))),
      ...NAMESPACES.slice(0, 4).map((x, i) => e('Namespace', x, g.nsParents[i]!.map((p) => ['Team', p]))),
      e('Workload', DECLARED_WORKLOAD, g.workloadTeams.map((p) => ['Team', p])),
      e('Provider', 'p0', [], { internal: g.internal[0] }),
      e('Provider', 'p1', [], { internal: g.internal[1] }),
      ...GROUPS.map((x) => e('ModelGroup', x)),
      ...MODELS.slice(0, 3).map(([p, m], i) => e('Model', `${p}/${m}`, g.modelGroups[i]!.map((x) => ['ModelGroup', x]))),
      ...SERVERS.map((x) => e('ToolServer', x)),
      e('Tool', 't0', g.toolServers[0].map((x) => ['ToolServer', x])),
      e('Tool', 't1', g.toolServers[1].map((x) => ['ToolServer', x])),
      e('UserGroup', 'ug0'),
      e('DataClass', 'pii'),
    ]
    // A parent nobody declared whose type requires attributes: entity groups can no longer be left out.
    if (g.bareProvider) list.push(e('Model', 'p2/m0', [['Provider', 'p2']]))
    return list
  })

// ---- generated requests -------------------------------------------------------

const requestFields = {
  principal: fc.constantFrom(...PRINCIPALS),
  model: fc.constantFrom(...MODELS),
  operation: fc.constantFrom('chat', 'messages', 'embedding', 'responses', 'completion' as const),
  stream: fc.boolean(),
  maxTokens: fc.option(fc.constantFrom(0, 100, 5000, 10_000_000_000), { nil: undefined }),
  tools: fc.oneof(fc.constant([]), fc.subarray(TOOLS, { maxLength: 2 })).chain((names) => fc.tuple(...names.map((name) => fc.constantFrom('function', 'web_search').map((type) => ({ name, type }))))),
  dataClasses: fc.subarray(CLASSES),
  detectors: fc.subarray(['d0', 'd1']),
  tenant: fc.constantFrom('', 'a', 'b'),
  purpose: fc.constantFrom('', 'x'),
  clientApp: fc.constantFrom('', 'x'),
  region: fc.constantFrom('', 'eu'),
  time: fc.constantFrom('2025-01-06T09:00:00Z', '2025-01-06T20:00:00Z', '2025-01-11T09:00:00Z'),
  user: fc.option(
    fc.record({ subject: fc.constantFrom('s0', 's1'), issuer: fc.constant('i0'), email: fc.constantFrom('', 'a@example.com', 'b@other.org'), groups: fc.subarray(['ug0', 'ug1']) }),
    { nil: undefined },
  ),
}

type Drawn = Partial<Omit<RequestDescription, 'model' | 'provider'> & { model: (typeof MODELS)[number] }>

const describe = ({ model, ...r }: Drawn): RequestDescription => ({ ...(r as RequestDescription), ...(model ? { provider: model[0], model: model[1] } : {}) })

/** Requests, and near copies of them that differ in one or two facts (which may or may not matter to the policies). */
const requests = fc
  .tuple(fc.array(fc.record(requestFields), { minLength: 10, maxLength: 20 }), fc.array(fc.tuple(fc.nat(), fc.record(requestFields, { requiredKeys: [] })), { maxLength: 20 }))
  .map(([base, variants]) => [...base.map(describe), ...variants.map(([i, over]) => describe({ ...base[i % base.length]!, ...Object.fromEntries(Object.entries(over).slice(0, 2)) }))])

/** Everything an answer is made of, comparable between engines. */
function answer(r: DecisionResult): unknown {
  return {
    effect: r.decision.effect,
    code: r.code,
    policies: r.decision.policies,
    errors: r.decision.errors,
    unredactedClasses: r.decision.unredactedClasses,
    results: [...r.results, ...r.unredactedResults].map((x) => ({ query: x.query, decision: x.evaluation.decision, determining: x.evaluation.determining, errors: x.evaluation.errors })),
  }
}

function engines(dir: string): { sliced: Engine; whole: Engine; uncachedSlices: Engine } {
  return {
    sliced: new PolicyEngine({ dir, slices: 8, slicePolicies: 40 }),
    uncachedSlices: new PolicyEngine({ dir, cacheSize: 0 }),
    whole: new PolicyEngine({ dir, slices: 0, cacheSize: 0 }),
  }
}

t.test('slices and the reduced cache key decide exactly as the whole set without a cache', async (t) => {
  let runs = 0
  let decisions = 0
  let cachedDecisions = 0
  let sharedAnswers = 0
  let pruned = 0
  let allowed = 0
  let errored = 0
  let withDecided = 0
  const root = t.testdir()
  fc.assert(
    fc.property(fc.array(policy, { minLength: 1, maxLength: 12 }), entities, requests, (policies, ents, list) => {
      const dir = writePolicyDir(join(root, `set-${runs}`), { 'p.cedar': policies.map(policyText).join('\n\n') + '\n', 'entities.json': JSON.stringify(ents) })
      let built: ReturnType<typeof engines>
      try {
        built = engines(dir)
      } catch (err) {
        throw new Error(`a generated policy set does not load: ${(err as Error).message}\n${policies.map(policyText).join('\n')}`)
      }
      const { sliced, whole, uncachedSlices } = built
      runs++
      if (policies.some((p) => p.clauses.length === 0)) withDecided++
      if (pruningIsExact(sliced.activeSet)) pruned++
      const seen = new Set<string>()
      // Twice through: the second pass answers from the cache what the first one stored.
      for (const d of [...list, ...list]) {
        const facts = factsFromDescription(d).facts
        const exact = JSON.stringify(facts)
        const want = whole.decide(facts)
        const got = sliced.decide(facts)
        decisions++
        if (got.decision.cached) cachedDecisions++
        if (got.decision.cached && !seen.has(exact)) sharedAnswers++
        seen.add(exact)
        if (want.decision.effect === 'allow') allowed++
        if (want.decision.errors.length) errored++
        const same = JSON.stringify(answer(got)) === JSON.stringify(answer(want)) && JSON.stringify(answer(uncachedSlices.decide(facts))) === JSON.stringify(answer(want))
        if (!same) throw new Error(`different answers for ${JSON.stringify(d)}:\nsliced ${JSON.stringify(answer(got))}\nwhole  ${JSON.stringify(answer(want))}`)
        for (const c of CLASSES) {
          const uq = unredactedQuery(c)
          const a = sliced.evaluate(facts, uq)
          const b = whole.evaluate(facts, uq)
          if (a.decision !== b.decision || JSON.stringify(a.determining) !== JSON.stringify(b.determining) || JSON.stringify(a.errors) !== JSON.stringify(b.errors))
            throw new Error(`send_unredacted ${c}: ${JSON.stringify(a)} vs ${JSON.stringify(b)} for ${JSON.stringify(d)}`)
        }
      }
    }),
    { numRuns: Number(process.env.RUNS ?? 30), ...(process.env.SEED ? { seed: Number(process.env.SEED), endOnFailure: true } : {}) },
  )
  t.equal(runs, Number(process.env.RUNS ?? 30))
  // The generated material exercises what it should: hits, allows, and both entity modes.
  t.ok(cachedDecisions > decisions / 4, `${cachedDecisions} of ${decisions} decisions came from the cache`)
  t.ok(sharedAnswers > decisions / 20, `${sharedAnswers} decisions were answered from the cache for facts never seen before`)
  t.ok(allowed > 0 && allowed < decisions, `${allowed} of ${decisions} decisions allowed`)
  t.ok(errored > 0, `${errored} decisions had evaluation errors`)
  t.ok(withDecided > 0, `${withDecided} sets had policies the index decides`)
  t.ok(pruned > 0 && pruned < runs, `${pruned} of ${runs} sets left entity groups out`)
})

t.test('a slice holds only the policies whose scope and guard can apply', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': [
      '@id("payments-models")\npermit (principal in ModelGate::Namespace::"payments", action in ModelGate::Action::"use_model", resource);',
      '@id("research-models")\npermit (principal in ModelGate::Namespace::"research", action in ModelGate::Action::"use_model", resource);',
      '@id("payments-tools")\npermit (principal in ModelGate::Namespace::"payments", action == ModelGate::Action::"call_tool", resource);',
      FORBID_SECRET,
      '@id("acme-only")\nforbid (principal, action, resource) when { context.tenant == "acme" || context.tenant == "acme-eu" };',
    ].join('\n'),
  })
  const r = loadPolicyDirSync(dir).result
  if (!r.ok) throw new Error('does not load')
  const slicer = new Slicer(r.set, { idPrefix: 'slices-test-a', maxSlices: 16, maxPolicies: 100 })
  const groups = new EntityGroups(r.set)
  const ids = (d: Partial<RequestDescription>) => {
    const f = factsFromDescription({ principal: CHECKOUT, model: 'gpt-4o-mini', ...d }).facts
    const s = slicer.select(f, modelQuery(f), groups)
    return s.key ? s.key.split(',').map((i) => [...r.set.policyJson.keys()][Number(i)]) : []
  }
  t.same(ids({}), ['payments-models'])
  t.same(ids({ dataClasses: ['pii', 'secret'] }), ['payments-models', 'no-secret'])
  t.same(ids({ tenant: 'acme-eu' }), ['payments-models', 'acme-only'])
  t.same(ids({ principal: 'spiffe://modelgate.local/ns/research/sa/notebook' }), ['research-models'])
  t.same(ids({ principal: 'spiffe://modelgate.local/ns/marketing/sa/web' }), [])
  t.equal(slicer.preparsed, 5, 'each distinct slice is preparsed once')
  ids({})
  t.equal(slicer.preparsed, 5)
})

t.test('slices beyond the bound are evicted and prepared again when needed, with the same answers', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': ALLOW_ALL + Array.from({ length: 6 }, (_, i) => `\n@id("no-c${i}")\nforbid (principal, action, resource) when { context.dataClasses.contains("c${i}") };\n`).join(''),
  })
  const engine = new PolicyEngine({ dir, slices: 2, cacheSize: 0 })
  const whole = new PolicyEngine({ dir, slices: 0, cacheSize: 0 })
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 6; i++) {
      const f = factsFromDescription({ principal: CHECKOUT, model: 'gpt-4o-mini', dataClasses: [`c${i}`] }).facts
      t.same(answer(engine.decide(f)), answer(whole.decide(f)), `round ${round}, class c${i}`)
    }
  }
  t.ok(engine.slicesPreparsed <= 2)
})

t.test('entity groups are left out only when that cannot change an answer', async (t) => {
  const load = (files: Record<string, string>) => {
    const r = loadPolicyDirSync(writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, ...files })).result
    if (!r.ok) throw new Error(JSON.stringify(r.problems))
    return r.set
  }
  t.equal(pruningIsExact(load({})), true, 'the shipped schema, no entities')
  const bareProvider = JSON.stringify([{ uid: { type: 'ModelGate::Model', id: 'x/y' }, attrs: {}, parents: [{ type: 'ModelGate::Provider', id: 'x' }] }])
  t.equal(pruningIsExact(load({ 'entities.json': bareProvider })), false, 'an undeclared parent whose type requires attributes')
  const bareTeam = JSON.stringify([{ uid: { type: 'ModelGate::Namespace', id: 'n' }, attrs: {}, parents: [{ type: 'ModelGate::Team', id: 'nobody-declared-me' }] }])
  t.equal(pruningIsExact(load({ 'entities.json': bareTeam })), true, 'an undeclared parent without required attributes')
})
