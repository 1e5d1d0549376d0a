import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { run } from '../../../src/cli/redact.ts'

function io(cwd: string, stdin = '') {
  const out: Buffer[] = []
  const err: Buffer[] = []
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  stdout.on('data', (b: Buffer) => out.push(b))
  stderr.on('data', (b: Buffer) => err.push(b))
  const input = new PassThrough()
  input.end(stdin)
  return { io: { stdout, stderr, stdin: input, cwd, env: {} }, out: () => Buffer.concat(out).toString(), err: () => Buffer.concat(err).toString() }
}

const body = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'mail jane.roe@gmail.com, key ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2' }] })

t.test('writes the redacted body to stdout and the findings (no values) to a file; exit 0', async (t) => {
  const dir = t.testdir({ 'req.json': body })
  const c = io(dir)
  t.equal(await run(['--input', 'req.json', '--findings', 'f.json'], c.io), 0)
  t.equal(JSON.parse(c.out()).messages[0].content, 'mail [EMAIL_1], key [GITHUB_TOKEN_1]')
  const report = JSON.parse(readFileSync(join(dir, 'f.json'), 'utf8'))
  t.same(report.findings.map((f: { detector: string; class: string; location: string; length: number }) => [f.detector, f.class, f.location, f.length]), [
    ['email', 'pii', 'messages[0].content', 18],
    ['github-pat', 'secret', 'messages[0].content', 40],
  ])
  t.notOk(readFileSync(join(dir, 'f.json'), 'utf8').includes('jane.roe'))
})

t.test('reads stdin, text format, and exits 3 with nothing on stdout when a class is blocked', async (t) => {
  const dir = t.testdir({ 'cfg.yaml': 'identity:\n  trustDomains: [example.org]\nredaction:\n  actions:\n    secret: block\n' })
  const c = io(dir, 'plain text with ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2')
  t.equal(await run(['--format', 'text', '--config', 'cfg.yaml'], c.io), 3)
  t.equal(c.out(), '')
  t.same(JSON.parse(c.err()).error.data_classes, ['secret'])
  const c2 = io(dir, 'just text, mail jane.roe@gmail.com')
  t.equal(await run(['--format', 'text'], c2.io), 0)
  t.equal(c2.out(), 'just text, mail [EMAIL_1]')
})

t.test('usage errors exit 2 and list every problem', async (t) => {
  const dir = t.testdir({})
  const c = io(dir)
  t.equal(await run(['--format', 'xml', '--input', 'missing.json'], c.io), 2)
  t.match(c.err(), /--format must be one of auto, openai, anthropic, text/)
  t.match(c.err(), /cannot read missing\.json/)
  const c2 = io(dir, '{"messages": "nope"}')
  t.equal(await run(['--format', 'anthropic'], c2.io), 2)
  const c3 = io(dir)
  t.equal(await run(['--bogus'], c3.io), 2)
})

t.test('an Anthropic body is detected and its content blocks rewritten', async (t) => {
  const dir = t.testdir({})
  const req = { model: 'claude-x', max_tokens: 10, system: 'be brief', messages: [{ role: 'user', content: [{ type: 'text', text: 'SSN 536-22-1234' }] }] }
  const c = io(dir, JSON.stringify(req))
  t.equal(await run([], c.io), 0)
  t.equal(JSON.parse(c.out()).messages[0].content[0].text, 'SSN [SSN_1]')
})
