import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { promisify } from 'node:util'
import t from 'tap'
import { run } from '../../../src/cli/policy.ts'
import { ALLOW_ALL, CHECKOUT, copyShipped, REPO, SHIPPED, writePolicyDir } from './fixtures.ts'

interface Result {
  code: number
  stdout: string
  stderr: string
}

async function cli(argv: string[], opts: { cwd?: string; stdin?: string } = {}): Promise<Result> {
  const out = new PassThrough()
  const err = new PassThrough()
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] }
  out.on('data', (c: Buffer) => chunks.out.push(c))
  err.on('data', (c: Buffer) => chunks.err.push(c))
  const code = await run(argv, { stdout: out, stderr: err, stdin: Readable.from([opts.stdin ?? '']), cwd: opts.cwd ?? REPO, env: {} })
  return { code, stdout: Buffer.concat(chunks.out).toString(), stderr: Buffer.concat(chunks.err).toString() }
}

t.test('validate', async (t) => {
  t.test('exits 0 for the shipped policies and prints the hash', async (t) => {
    const r = await cli(['validate', '--dir', 'policies'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /^policies: valid: \d+ policies in 6 files, \d+ entities; hash [0-9a-f]{64}\n$/)
    t.equal(r.stderr, '')
  })

  t.test('exits 1 with file:line:col and Cedar\'s message for an unknown attribute', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'team.cedar': '@id("t")\n@owner("o")\npermit (principal, action, resource)\nwhen { principal.team == "payments" };\n' })
    const r = await cli(['validate', '--dir', dir], { cwd: dir })
    t.equal(r.code, 1)
    t.match(r.stderr, /^team\.cedar:4:8: error: for policy `t`, attribute `team` on entity type `ModelGate::Workload` not found\n  help: did you mean `namespace`\?\n/)
    t.match(r.stderr, /\.: invalid: 1 error\n$/)
  })

  t.test('exits 1 with file:line:col for an unknown entity type', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'x.cedar': '@id("t")\n@owner("o")\npermit (\n  principal in ModelGate::Squad::"payments",\n  action,\n  resource\n);\n' })
    const r = await cli(['validate', '--dir', dir], { cwd: dir })
    t.equal(r.code, 1)
    t.match(r.stderr, /^x\.cedar:4:16: error: for policy `t`, unrecognized entity type `ModelGate::Squad`/)
  })

  t.test('prints warnings but exits 0 unless --deny-warnings', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': '@id("anon")\npermit (principal, action, resource);\n' })
    const r = await cli(['validate', '--dir', dir], { cwd: dir })
    t.equal(r.code, 0)
    t.match(r.stdout, /a\.cedar:1:1: warning: policy "anon" has no @owner annotation/)
    t.equal((await cli(['validate', '--dir', dir, '--deny-warnings'], { cwd: dir })).code, 1)
  })

  t.test('checks a shadow directory against the primary schema', async (t) => {
    const root = t.testdir()
    const shadow = writePolicyDir(join(root, 'shadow'), { 's.cedar': '@id("s")\n@owner("o")\nforbid (principal, action, resource) when { context.nope };\n' }, { schema: false })
    const r = await cli(['validate', '--dir', SHIPPED, '--shadow-dir', shadow], { cwd: root })
    t.equal(r.code, 1)
    t.match(r.stderr, /shadow\/s\.cedar:3:45: error: .*attribute `nope`/)
  })

  t.test('runs as `node src/cli/main.ts policy validate --dir policies`', async (t) => {
    const { stdout } = await promisify(execFile)(process.execPath, ['src/cli/main.ts', 'policy', 'validate', '--dir', 'policies'], { cwd: REPO })
    t.match(stdout, /policies: valid/)
    const bad = writePolicyDir(t.testdir(), { 'a.cedar': '@id("a")\npermit (principal is ModelGate::Robot, action, resource);\n' })
    const failed = await promisify(execFile)(process.execPath, ['src/cli/main.ts', 'policy', 'validate', '--dir', bad], { cwd: REPO }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    )
    t.equal(failed?.code, 1)
    t.match(failed?.stderr, /a\.cedar:2:22: error: for policy `a`, unrecognized entity type `ModelGate::Robot`/)
  })
})

t.test('format', async (t) => {
  const messy = '@id("m")   @owner("o")\npermit(principal,action,resource)when{context.stream};\n'
  t.test('--check lists unformatted files and exits 1; --write fixes them', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'm.cedar': messy })
    const check = await cli(['format', '--dir', dir, '--check'], { cwd: dir })
    t.equal(check.code, 1)
    t.match(check.stderr, /^m\.cedar: not formatted\n1 file need/)
    const write = await cli(['format', '--dir', dir, '--write'], { cwd: dir })
    t.equal(write.code, 0)
    t.equal(write.stdout, 'formatted m.cedar\n')
    t.equal(readFileSync(join(dir, 'm.cedar'), 'utf8'), '@id("m")\n@owner("o")\npermit (principal, action, resource)\nwhen { context.stream };\n')
    t.match(await cli(['format', '--dir', dir, '--check'], { cwd: dir }), { code: 0, stdout: '1 file formatted correctly\n' })
  })
  t.test('prints the formatted text of a file without options', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'm.cedar': messy })
    const r = await cli(['format', join(dir, 'm.cedar')], { cwd: dir })
    t.equal(r.code, 0)
    t.match(r.stdout, /^@id\("m"\)\n@owner\("o"\)\npermit \(principal, action, resource\)/)
  })
  t.test('reports syntax errors with file:line:col', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'm.cedar': '@id("m")\npermit (principal action, resource);\n' })
    const r = await cli(['format', '--dir', dir, '--check'], { cwd: dir })
    t.equal(r.code, 1)
    t.match(r.stderr, /^m\.cedar:2:19: error: /)
  })
  t.test('the shipped files are formatted', async (t) => {
    t.equal((await cli(['format', '--dir', 'policies', '--check'])).code, 0)
  })
  t.test('refuses --check with --write', async (t) => {
    t.equal((await cli(['format', '--check', '--write'])).code, 2)
  })
})

t.test('test', async (t) => {
  t.test('runs the shipped cases, all passing, every policy covered', async (t) => {
    const r = await cli(['test', '--dir', 'policies', '--require-coverage'])
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.match(r.stdout, /^ok {4}ALLOW\/checkout-chat-gpt-4o-mini\.json +allow by payments-approved-models$/m)
    t.match(r.stdout, /^ok {4}DENY\/checkout-gpt-4o-premium\.json +deny by premium-models-platform-only$/m)
    t.match(r.stdout, /\n\d+ cases: \d+ passed, 0 failed\ncoverage: (\d+) of \1 policies determined at least one case\n$/)
  })

  t.test('fails when a case expectation is wrong', async (t) => {
    const root = t.testdir()
    const dir = copyShipped(join(root, 'policies'))
    const cases = join(SHIPPED, 'tests')
    const wrong = join(root, 'cases')
    mkdirSync(join(wrong, 'ALLOW'), { recursive: true })
    mkdirSync(join(wrong, 'DENY'), { recursive: true })
    writeFileSync(join(wrong, 'ALLOW', 'right.json'), readFileSync(join(cases, 'ALLOW', 'checkout-chat-gpt-4o-mini.json')))
    writeFileSync(join(wrong, 'ALLOW', 'premium.json'), JSON.stringify({ description: 'expects the premium model to be allowed', request: { principal: CHECKOUT, model: 'gpt-4o' }, determining: ['payments-approved-models'] }))
    writeFileSync(join(wrong, 'DENY', 'wrong-policy.json'), JSON.stringify({ request: { principal: CHECKOUT, model: 'gpt-4o', dataClasses: ['secret'] }, determining: ['no-secrets-anywhere'] }))
    const r = await cli(['test', '--dir', dir, '--cases', wrong], { cwd: root })
    t.equal(r.code, 1)
    t.match(r.stdout, /^FAIL {2}ALLOW\/premium\.json +deny by premium-models-platform-only\n {6}expects the premium model to be allowed\n {6}expected allow, got deny\n {6}expected determining policies \[payments-approved-models\], got \[premium-models-platform-only\]\n/m)
    t.match(r.stdout, /^FAIL {2}DENY\/wrong-policy\.json/m, 'two forbids determine it; the case names one')
    t.match(r.stdout, /^ok {4}ALLOW\/right\.json/m)
    t.match(r.stdout, /3 cases: 1 passed, 2 failed/)
  })

  t.test('lists the policies no case exercised, and --require-coverage fails on them', async (t) => {
    const root = t.testdir()
    const dir = copyShipped(join(root, 'policies'))
    const cases = join(root, 'cases')
    mkdirSync(join(cases, 'ALLOW'), { recursive: true })
    writeFileSync(join(cases, 'ALLOW', 'one.json'), readFileSync(join(SHIPPED, 'tests', 'ALLOW', 'checkout-chat-gpt-4o-mini.json')))
    const r = await cli(['test', '--dir', dir, '--cases', cases], { cwd: dir })
    t.equal(r.code, 0)
    t.match(r.stdout, /coverage: 1 of \d+ policies determined at least one case\npolicies no case exercised:\n/)
    t.match(r.stdout, /^ {2}no-secrets-anywhere {2}\(forbid, owner security@example\.com\) {2}data\.cedar:\d+:1$/m)
    const strict = await cli(['test', '--dir', dir, '--cases', cases, '--require-coverage'], { cwd: dir })
    t.equal(strict.code, 1)
    t.match(strict.stderr, /policies without a case \(--require-coverage\)/)
  })

  t.test('reports malformed cases as failures', async (t) => {
    const cases = t.testdir({ ALLOW: { 'bad.json': '{ nope', 'no-determining.json': JSON.stringify({ request: {} }) }, DENY: { 'bad-request.json': JSON.stringify({ request: { principal: 'x' }, determining: [] }) } })
    const r = await cli(['test', '--dir', 'policies', '--cases', cases])
    t.equal(r.code, 1)
    t.match(r.stderr, /bad\.json: error: not valid JSON/)
    t.match(r.stderr, /no-determining\.json: error: "determining" must list the expected policy ids/)
    t.match(r.stdout, /FAIL {2}DENY\/bad-request\.json\n {6}request: "principal" is not a valid SPIFFE ID/)
  })

  t.test('prints JSON with --json', async (t) => {
    const r = await cli(['test', '--dir', 'policies', '--json'])
    const j = JSON.parse(r.stdout)
    t.equal(j.failed, 0)
    t.match(j.cases[0], { case: /^ALLOW\//, passed: true })
    t.same(j.unexercised, [])
  })

  t.test('fails when there are no cases', async (t) => {
    const r = await cli(['test', '--dir', 'policies', '--cases', t.testdir()])
    t.equal(r.code, 1)
    t.match(r.stderr, /no cases found/)
  })
})

t.test('explain', async (t) => {
  t.test('prints the decision, the determining policies with owners, and errors; exits 3 on deny', async (t) => {
    const r = await cli(['explain', '--dir', 'policies', '--principal', CHECKOUT, '--model', 'gpt-4o', '--tool', 'lookup_order'])
    t.equal(r.code, 3)
    t.match(r.stdout, /^decision: deny \(MG_POLICY_DENIED\)\npolicy set: policies [0-9a-f]{64}\nquestions:\n/)
    t.match(r.stdout, /  ModelGate::Action::"chat" on ModelGate::Model::"openai\/gpt-4o": deny by premium-models-platform-only\n/)
    t.match(r.stdout, /  ModelGate::Action::"call_tool" on ModelGate::Tool::"lookup_order": allow by payments-order-tools\n/)
    t.match(r.stdout, /determining policies:\n  premium-models-platform-only  forbid  owner finops@example\.com  policies\/models\.cedar:\d+:1\nerrors: none\n$/)
  })

  t.test('reads a request description or a test case from a file, exits 0 on allow', async (t) => {
    const r = await cli(['explain', '--dir', 'policies', 'policies/tests/ALLOW/checkout-order-tools.json'])
    t.equal(r.code, 0)
    t.match(r.stdout, /^decision: allow\n/)
    t.match(r.stdout, /payments-order-tools +permit +owner payments-platform@example\.com +policies\/tools\.cedar:\d+:1/)
    const stdin = await cli(['explain', '--dir', 'policies', '-'], { stdin: JSON.stringify({ principal: CHECKOUT, model: 'gpt-4o-mini' }) })
    t.equal(stdin.code, 0)
  })

  t.test('says when no policy permits', async (t) => {
    const r = await cli(['explain', '--principal', 'spiffe://modelgate.local/ns/x/sa/y', '--model', 'gpt-4o-mini'])
    t.equal(r.code, 3)
    t.match(r.stdout, /determining policies:\n  none: no policy permits this request \(default deny\)\n/)
  })

  t.test('explains send_unredacted for a data class', async (t) => {
    const r = await cli(['explain', '--principal', 'spiffe://modelgate.local/ns/research/sa/notebook', '--provider', 'internal-llm', '--model', 'llama', '--data-class', 'pii', '--unredacted', 'pii', '--json'])
    t.equal(r.code, 0)
    t.match(JSON.parse(r.stdout), {
      decision: 'allow',
      determining: [{ id: 'research-pii-internal-unredacted', effect: 'permit', owner: 'privacy@example.com', file: 'policies/data.cedar' }],
      questions: [{ action: 'ModelGate::Action::"send_unredacted"', resource: 'ModelGate::DataClass::"pii"', decision: 'allow' }],
    })
  })

  t.test('shows evaluation errors', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': ALLOW_ALL + '\n@id("boom")\n@owner("o")\nforbid (principal, action, resource) when { context has maxTokens && context.maxTokens * 10000000000 > 0 };\n' })
    const r = await cli(['explain', '--dir', dir, '--principal', CHECKOUT, '--model', 'm', '--max-tokens', '1000000000000'], { cwd: dir })
    t.equal(r.code, 3)
    t.match(r.stdout, /^decision: deny \(MG_POLICY_ERROR\)\n/)
    t.match(r.stdout, /errors:\n  boom: integer overflow/)
  })

  t.test('rejects an invalid description with exit 2', async (t) => {
    const r = await cli(['explain', '--principal', 'not-spiffe', '--model', 'm'])
    t.equal(r.code, 2)
    t.match(r.stderr, /"principal" is not a valid SPIFFE ID/)
    t.equal((await cli(['explain'])).code, 2)
  })

  t.test('exits 1 for an invalid policy set', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': 'permit (' })
    const r = await cli(['explain', '--dir', dir, '--principal', CHECKOUT, '--model', 'm'], { cwd: dir })
    t.equal(r.code, 1)
    t.match(r.stderr, /a\.cedar:1:\d+: error/)
  })
})

t.test('usage', async (t) => {
  t.equal((await cli([])).code, 2)
  t.match(await cli(['--help']), { code: 0, stdout: /usage: modelgate policy <command>/ })
  t.match(await cli(['frobnicate']), { code: 2, stderr: /unknown command "frobnicate"/ })
  t.match(await cli(['validate', '--bogus']), { code: 2, stderr: /Unknown option '--bogus'/ })
})
