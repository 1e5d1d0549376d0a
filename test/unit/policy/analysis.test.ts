import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import t from 'tap'
import { analysePolicy, withoutScope, type PolicyAnalysis } from '../../../src/policy/analysis.ts'

function analyse(text: string): PolicyAnalysis {
  const j = cedar.policyToJson(text)
  if (j.type !== 'success') throw new Error(j.errors.map((e) => e.message).join('; '))
  return analysePolicy(j.json)
}

const when = (cond: string) => analyse(`permit (principal, action, resource) when { ${cond} };`)

t.test('scopes become index keys', async (t) => {
  t.same(analyse('permit (principal, action, resource);').scope, { principal: '*', action: undefined, resource: '*' })
  t.same(analyse('permit (principal == ModelGate::Workload::"spiffe://x/y", action == ModelGate::Action::"chat", resource in ModelGate::ModelGroup::"g");').scope, {
    principal: '=ModelGate::Workload::"spiffe://x/y"',
    action: { op: '==', uids: ['ModelGate::Action::"chat"'] },
    resource: '<ModelGate::ModelGroup::"g"',
  })
  t.same(analyse('permit (principal is ModelGate::Workload in ModelGate::Team::"t", action in [ModelGate::Action::"chat", ModelGate::Action::"call_tool"], resource is ModelGate::Tool);').scope, {
    principal: ':ModelGate::Workload<ModelGate::Team::"t"',
    action: { op: 'in', uids: ['ModelGate::Action::"chat"', 'ModelGate::Action::"call_tool"'] },
    resource: ':ModelGate::Tool',
  })
})

t.test('a guard is the first thing Cedar evaluates, when it cannot fail', async (t) => {
  const cases: [string, PolicyAnalysis['guard']][] = [
    ['context.dataClasses.contains("secret")', [{ kind: 'contains', attr: 'dataClasses', value: 'secret' }]],
    ['context.dataClasses.contains("secret") && principal.namespace == "x"', [{ kind: 'contains', attr: 'dataClasses', value: 'secret' }]],
    ['context.tenant == "" || "acme" == context.tenant', [{ kind: 'equals', attr: 'tenant', value: '' }, { kind: 'equals', attr: 'tenant', value: 'acme' }]],
    ['context.tools.containsAny(["a", "b"])', [{ kind: 'contains', attr: 'tools', value: 'a' }, { kind: 'contains', attr: 'tools', value: 'b' }]],
    ['context has user && context.user in ModelGate::UserGroup::"g"', [{ kind: 'has', attr: 'user', value: '' }]],
    ['context has maxTokens && context.maxTokens > 5', [{ kind: 'has', attr: 'maxTokens', value: '' }]],
    // Not guards: could fail, not first, not a test of one fact against a literal.
    ['principal.namespace == "x" && context.dataClasses.contains("secret")', undefined],
    ['context.dataClasses.contains("secret") || context.utcHour < 5', undefined],
    ['context.utcHour == 5', undefined],
    ['context.tenant == context.purpose', undefined],
    ['context.tools.containsAny(context.dataClasses)', undefined],
    ['!context.dataClasses.contains("secret")', undefined],
  ]
  for (const [cond, guard] of cases) t.same(when(cond).guard, guard, cond)
  t.equal(analyse('permit (principal, action, resource) unless { context.dataClasses.contains("x") };').guard, undefined, 'an unless is not a guard')
  t.equal(analyse('permit (principal, action, resource) when { context.utcHour < 3 } when { context.dataClasses.contains("x") };').guard, undefined, 'only the first clause counts')
})

t.test('a policy is decided by the index when it has no condition, or only its guard', async (t) => {
  t.equal(analyse('permit (principal in ModelGate::Team::"t", action, resource);').decidedByIndex, true)
  t.equal(when('context.tenant == "" || context.tenant == "a"').decidedByIndex, true)
  t.equal(when('context.dataClasses.contains("secret")').decidedByIndex, true)
  t.equal(when('context.dataClasses.contains("secret") && context.stream').decidedByIndex, false, 'more than the guard')
  t.equal(when('context.stream').decidedByIndex, false, 'no guard')
  t.equal(analyse('permit (principal, action, resource) when { context has user } unless { context.stream };').decidedByIndex, false, 'another clause')
})

t.test('reads: context attributes by name, and which request entities are looked into', async (t) => {
  const r = when('context.tenant == "a" && context has maxTokens && context.maxTokens > 5').reads
  t.same([...(r.context as Set<string>)].sort(), ['maxTokens', 'tenant'])
  t.match(r, { principalUid: false, principalEntity: false, resourceUid: false, resourceEntity: false, modelUid: false, modelEntity: false, full: false })

  t.match(when('principal == ModelGate::Workload::"spiffe://x/y"').reads, { principalUid: true, principalEntity: false }, 'comparing the principal needs its id only')
  t.match(when('principal in ModelGate::Team::"t"').reads, { principalUid: true, principalEntity: true }, 'membership needs its ancestors')
  t.match(when('principal.namespace == "n"').reads, { principalEntity: true })
  t.match(when('resource.provider.internal').reads, { resourceEntity: true, full: false }, "a model's provider travels with it")
  t.match(when('context.model.provider.internal').reads, { modelEntity: true, full: false })
  t.match(when('context.model == ModelGate::Model::"a/b"').reads, { modelUid: true, modelEntity: false })
  t.match(when('ModelGate::Provider::"p".internal').reads, { full: true }, 'an entity that is not the request\'s own')
  t.match(when('ModelGate::Team::"a" in ModelGate::Team::"b"').reads, { full: true })
  t.match(when('(if context.stream then principal else principal).namespace == "n"').reads, { full: true, principalEntity: true })
  const whole = when('context == context').reads
  t.equal(whole.context, 'all', 'the context as a whole')
  t.match(whole.user, { presence: true, identity: true, email: true, groups: true })
})

t.test('reads: how the delegated user is used', async (t) => {
  const user = (cond: string) => when(`context has user && ${cond}`).reads.user
  t.same(when('context has user').reads.user, { presence: true, identity: false, email: false, groups: false, entity: false })
  t.same(user('context.user in ModelGate::UserGroup::"g"'), { presence: true, identity: false, email: false, groups: true, entity: true })
  t.same(user('context.user in ModelGate::User::"i#s"'), { presence: true, identity: true, email: false, groups: true, entity: true })
  t.same(user('context.user == ModelGate::User::"i#s"'), { presence: true, identity: true, email: false, groups: false, entity: false })
  t.same(user('context.user.email like "*@x"'), { presence: true, identity: false, email: true, groups: false, entity: true })
  t.same(user('context.user.subject == "s"'), { presence: true, identity: true, email: false, groups: false, entity: true })
  t.same(user('[context.user].contains(context.user)'), { presence: true, identity: true, email: true, groups: true, entity: true })
})

t.test('a slice evaluates the conditions without the scope', async (t) => {
  const j = cedar.policyToJson('@id("x")\nforbid (principal in ModelGate::Team::"t", action == ModelGate::Action::"chat", resource) when { context.stream };')
  if (j.type !== 'success') throw new Error('parse')
  const stripped = withoutScope(j.json)
  t.same(stripped, { effect: 'forbid', principal: { op: 'All' }, action: { op: 'All' }, resource: { op: 'All' }, conditions: j.json.conditions })
  t.same(cedar.policyToText(stripped), { type: 'success', text: 'forbid(principal, action, resource) when { context.stream };' })
})
