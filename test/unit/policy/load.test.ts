import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { compilePolicySources, hashSources, loadPolicyDirSync, readPolicyDirSync, type CompileResult } from '../../../src/policy/load.ts'
import { formatProblem, SourceText } from '../../../src/policy/problems.ts'
import { ALLOW_ALL, PERMIT_MINI, SCHEMA_TEXT, SHIPPED, writePolicyDir } from './fixtures.ts'

function errors(r: CompileResult): string[] {
  if (r.ok) return []
  return r.problems.filter((p) => p.severity === 'error').map((p) => formatProblem(p, '/'))
}

function load(dir: string): CompileResult {
  return loadPolicyDirSync(dir).result
}

t.test('the shipped policy directory loads with every policy named and owned', async (t) => {
  const r = load(SHIPPED)
  if (!r.ok) return t.fail(errors(r).join('\n'))
  t.equal(r.set.warnings.length, 0, 'no warnings')
  t.ok(r.set.policies.size >= 10)
  for (const p of r.set.policies.values()) {
    t.ok(p.owner, `${p.id} has an owner`)
    t.match(p.file, /\.cedar$/)
    t.ok(p.line >= 1)
  }
  t.equal(r.set.policies.get('no-secrets-anywhere')?.effect, 'forbid')
  t.equal(r.set.policies.get('payments-approved-models')?.effect, 'permit')
  t.match(r.set.hash, /^[0-9a-f]{64}$/)
})

t.test('policies are located at the line and column of their first annotation', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': '// héader with ünicode\n\n@id("first")\n@owner("x")\npermit (principal, action, resource);\n\n  @id("second") @owner("y")\nforbid (principal, action, resource) when { context.dataClasses.contains("secret") };\n',
  })
  const r = load(dir)
  if (!r.ok) return t.fail(errors(r).join('\n'))
  t.match(r.set.policies.get('first'), { line: 3, column: 1, owner: 'x' })
  t.match(r.set.policies.get('second'), { line: 7, column: 3, owner: 'y', effect: 'forbid' })
})

const BROKEN: { name: string; policy: string; expect: RegExp }[] = [
  {
    name: 'an unknown attribute',
    policy: '// comment\n@id("bad-attr")\n@owner("t")\npermit (principal, action, resource)\nwhen { principal.team == "payments" };\n',
    expect: /^a\.cedar:5:8: error: for policy `bad-attr`, attribute `team` on entity type `ModelGate::Workload` not found/,
  },
  {
    name: 'an unknown entity type',
    policy: '@id("bad-type")\n@owner("t")\npermit (principal in ModelGate::Group::"x", action, resource);\n',
    expect: /^a\.cedar:3:22: error: for policy `bad-type`, unrecognized entity type `ModelGate::Group`/,
  },
  {
    name: 'an unknown context attribute',
    policy: '@id("bad-ctx")\n@owner("t")\npermit (principal, action, resource)\nwhen { context.prompt like "*password*" };\n',
    expect: /^a\.cedar:4:8: error: for policy `bad-ctx`, attribute `prompt` in context/,
  },
  {
    name: 'an optional attribute used without `has`',
    policy: '@id("no-has")\n@owner("t")\nforbid (principal, action, resource)\nwhen { context.maxTokens > 10 };\n',
    expect: /^a\.cedar:4:8: error: for policy `no-has`, unable to guarantee safety of access to optional attribute `maxTokens`/,
  },
  {
    name: 'a syntax error',
    policy: '@id("syntax")\npermit (principal, action, resource) when { 1 + };\n',
    expect: /^a\.cedar:2:49: error: unexpected token `}`/,
  },
  {
    name: 'a policy without @id',
    policy: ALLOW_ALL + '\npermit (principal, action, resource);\n',
    expect: /^a\.cedar:5:1: error: policy has no @id annotation/,
  },
  {
    name: 'a duplicate @id',
    policy: ALLOW_ALL + '\n' + ALLOW_ALL,
    expect: /^a\.cedar:5:1: error: duplicate policy id "allow-all" \(first defined at a\.cedar:1:1\)/,
  },
  {
    name: 'a template',
    policy: '@id("tmpl")\npermit (principal == ?principal, action, resource);\n',
    expect: /^a\.cedar:1:1: error: policy templates are not supported/,
  },
]

for (const c of BROKEN) {
  t.test(`a policy with ${c.name} is refused with file:line:col`, async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': c.policy })
    const r = compilePolicySources(readPolicyDirSync(dir))
    t.equal(r.ok, false)
    const lines = errors(r).map((l) => l.slice(l.indexOf('a.cedar')))
    t.ok(
      lines.some((l) => c.expect.test(l)),
      `expected ${c.expect}, got:\n${lines.join('\n')}`,
    )
  })
}

t.test('Cedar errors repeated once per action are reported once', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': '@id("x")\n@owner("t")\npermit (principal, action, resource) when { context.nope };\n' })
  const lines = errors(load(dir))
  t.equal(lines.length, 1, lines.join('\n'))
})

t.test('every error in every file is reported together', async (t) => {
  const dir = writePolicyDir(t.testdir(), {
    'a.cedar': '@id("a")\npermit (principal, action, resource) when { principal.x };\n',
    'b.cedar': '@id("b")\npermit (principal, action, resource) when { resource.y };\n',
  })
  const lines = errors(load(dir))
  t.ok(lines.some((l) => /a\.cedar:2:\d+: error: .*attribute `x`/.test(l)))
  t.ok(lines.some((l) => /b\.cedar:2:\d+: error: .*attribute `y`/.test(l)))
})

t.test('a policy without @owner loads with a warning', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': '@id("anon")\npermit (principal, action, resource);\n' })
  const r = load(dir)
  if (!r.ok) return t.fail(errors(r).join('\n'))
  t.equal(r.set.policies.get('anon')?.owner, undefined)
  t.match(formatProblem(r.set.warnings[0]!, dir), /^a\.cedar:1:1: warning: policy "anon" has no @owner annotation/)
})

t.test('the schema', async (t) => {
  t.test('is required', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL }, { schema: false })
    t.match(errors(load(dir)), [/error: no schema: the directory needs a \*\.cedarschema file/])
  })
  t.test('reports syntax errors at their line in the schema file', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, 'modelgate.cedarschema': SCHEMA_TEXT.replace('entity UserGroup;', 'entity UserGroup') })
    t.match(errors(load(dir)), [/modelgate\.cedarschema:\d+:\d+: error: .*unexpected token/])
  })
  t.test('must declare the names modelgate uses', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, 'modelgate.cedarschema': SCHEMA_TEXT.replace('action call_tool', 'action use_tool') })
    t.match(errors(load(dir)), [/error: the schema does not declare action ModelGate::Action::"call_tool"/])
  })
  t.test('must keep the derived attributes', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, 'modelgate.cedarschema': SCHEMA_TEXT.replace('serviceAccount: String,', '') })
    t.match(errors(load(dir)), [/entity type ModelGate::Workload lacks attribute `serviceAccount`/])
  })
  t.test('must accept the context modelgate sends', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, 'modelgate.cedarschema': SCHEMA_TEXT.replace('stream: Bool,', 'stream: Bool,\n    costCentre: String,') })
    t.match(errors(load(dir)), [/the schema does not accept the requests modelgate sends for ModelGate::Action::"chat"/])
  })
  t.test('may grow optional context attributes', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, 'modelgate.cedarschema': SCHEMA_TEXT.replace('stream: Bool,', 'stream: Bool,\n    costCentre?: String,') })
    t.equal(load(dir).ok, true)
  })
})

t.test('entities.json', async (t) => {
  const bad: { name: string; text: string; expect: RegExp }[] = [
    { name: 'invalid JSON', text: '[\n  { "uid": { "type": "ModelGate::Team", "id": "a" }, }\n]', expect: /entities\.json:2:\d+: error: invalid JSON/ },
    { name: 'not an array', text: '{}', expect: /entities\.json:1:1: error: entities\.json must be a JSON array/ },
    {
      name: 'an unknown type',
      text: '[\n {"uid": {"type": "ModelGate::Squad", "id": "a"}, "attrs": {}, "parents": []}\n]',
      expect: /entities\.json:2:\d+: error: entities\.json\[0\]: unknown entity type `ModelGate::Squad`/,
    },
    {
      name: 'attributes on a derived type',
      text: '[{"uid": {"type": "ModelGate::Workload", "id": "spiffe://x/ns/a/sa/b"}, "attrs": {"trustDomain": "evil"}, "parents": []}]',
      expect: /entities\.json\[0\]: the attributes of ModelGate::Workload are derived from the request/,
    },
    {
      name: 'a workload id that is not a SPIFFE ID',
      text: '[{"uid": {"type": "ModelGate::Workload", "id": "checkout"}, "attrs": {}, "parents": []}]',
      expect: /workload id "checkout" is not a valid SPIFFE ID/,
    },
    {
      name: 'a model id without a provider',
      text: '[{"uid": {"type": "ModelGate::Model", "id": "gpt-4o"}, "attrs": {}, "parents": []}]',
      expect: /model id "gpt-4o" must be "<provider>\/<model>"/,
    },
    {
      name: 'a wrongly typed attribute',
      text: '[{"uid": {"type": "ModelGate::Provider", "id": "internal"}, "attrs": {"internal": "yes"}, "parents": []}]',
      expect: /entities\.json:1:\d+: error: .*internal/,
    },
    {
      name: 'a duplicate entity',
      text: '[{"uid": {"type": "ModelGate::Team", "id": "a"}}, {"uid": {"type": "ModelGate::Team", "id": "a"}}]',
      expect: /duplicate entity ModelGate::Team::"a"/,
    },
    {
      name: 'a declared user',
      text: '[{"uid": {"type": "ModelGate::User", "id": "alice"}}]',
      expect: /users come from verified tokens/,
    },
  ]
  for (const c of bad) {
    t.test(`with ${c.name} is refused`, async (t) => {
      const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL, 'entities.json': c.text })
      const lines = errors(load(dir))
      t.ok(
        lines.some((l) => c.expect.test(l)),
        `expected ${c.expect}, got:\n${lines.join('\n')}`,
      )
    })
  }
  t.test('is optional', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
    const r = load(dir)
    t.equal(r.ok, true)
  })
  t.test('indexes every ancestor of a declared entity', async (t) => {
    const dir = writePolicyDir(t.testdir(), {
      'a.cedar': ALLOW_ALL,
      'entities.json': JSON.stringify([
        { uid: { type: 'ModelGate::Namespace', id: 'pay' }, parents: [{ type: 'ModelGate::Team', id: 'payments' }] },
        { uid: { type: 'ModelGate::Team', id: 'payments' }, parents: [{ type: 'ModelGate::Team', id: 'finance' }] },
      ]),
    })
    const r = load(dir)
    if (!r.ok) return t.fail(errors(r).join('\n'))
    t.same([...(r.set.entities.ancestors.get('ModelGate::Namespace::"pay"') ?? [])].sort(), ['ModelGate::Team::"finance"', 'ModelGate::Team::"payments"'])
  })
})

t.test('hidden files and subdirectories are not read', async (t) => {
  const dir = writePolicyDir(t.testdir({ tests: { 'x.cedar': 'garbage' } }), { 'a.cedar': ALLOW_ALL, '.swap.cedar': 'garbage' })
  t.equal(load(dir).ok, true)
})

t.test('the hash changes with any file and nothing else', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL })
  const h1 = hashSources(readPolicyDirSync(dir))
  t.equal(hashSources(readPolicyDirSync(dir)), h1, 'stable')
  writeFileSync(join(dir, 'a.cedar'), ALLOW_ALL + '\n')
  t.not(hashSources(readPolicyDirSync(dir)), h1, 'content')
  writeFileSync(join(dir, 'entities.json'), '[]')
  const h3 = hashSources(readPolicyDirSync(dir))
  writeFileSync(join(dir, 'entities.json'), '[ ]')
  t.not(hashSources(readPolicyDirSync(dir)), h3, 'entities')
})

t.test('a shadow directory without a schema borrows the primary schema and entities', async (t) => {
  const root = t.testdir()
  const primary = writePolicyDir(join(root, 'primary'), { 'a.cedar': ALLOW_ALL, 'entities.json': '[{"uid": {"type": "ModelGate::Team", "id": "payments"}}]' })
  const shadow = writePolicyDir(join(root, 'shadow'), { 'b.cedar': PERMIT_MINI }, { schema: false })
  const r = loadPolicyDirSync(shadow, readPolicyDirSync(primary)).result
  if (!r.ok) return t.fail(errors(r).join('\n'))
  t.same([...r.set.policies.keys()], ['mini'])
  t.equal(r.set.entities.byKey.size, 1)
})

t.test('an unreadable directory is a problem, not an exception', async (t) => {
  const r = load(join(t.testdir(), 'missing'))
  t.match(errors(r), [/error: cannot read the policy directory/])
})

t.test('source positions count UTF-8 bytes from Cedar as characters', async (t) => {
  const s = new SourceText('ab\nçé x\n')
  t.same(s.position(0), { line: 1, column: 1 })
  t.same(s.position(3), { line: 2, column: 1 })
  t.same(s.position(Buffer.byteLength('ab\nçé ')), { line: 2, column: 4 })
  t.same(s.position(999), { line: 3, column: 1 })
})
