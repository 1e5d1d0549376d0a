import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { run } from '../../../src/cli/quota.ts'
import { RedisStore } from '../../../src/quotas/redis.ts'
import { compileRule, counterKey } from '../../../src/quotas/rules.ts'
import { startRedis } from '../../helpers/redis.ts'

function io(cwd: string) {
  const out: string[] = []
  const err: string[] = []
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  stdout.on('data', (c: Buffer) => out.push(c.toString()))
  stderr.on('data', (c: Buffer) => err.push(c.toString()))
  return { io: { stdout, stderr, stdin: new PassThrough(), cwd, env: {} }, out: () => out.join(''), err: () => err.join('') }
}

const NOTEBOOK = 'spiffe://modelgate.local/ns/research/sa/notebook'
const rulesYaml = [
  '  rules:',
  '    - name: notebook-rpm',
  `      match: { identity: ["${NOTEBOOK}"] }`,
  '      per: [identity]',
  '      limit: { requests: 3 }',
  '      window: minute',
  '    - name: research-tokens',
  '      per: [team]',
  '      limit: { tokens: 100000 }',
  '      window: day',
]

t.test('quota show prints the use of every counter in use, per rule and partition, from Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const dir = t.testdir()
  writeFileSync(join(dir, 'modelgate.yaml'), ['identity: { trustDomains: [modelgate.local] }', 'quotas:', '  store: redis', `  redis: { url: "${redis.url}", keyPrefix: "show:" }`, ...rulesYaml, ''].join('\n'))
  // What the quota stage would have reserved: two requests of notebook, 1500 tokens of research.
  const store = new RedisStore({ url: redis.url, keyPrefix: 'show:', timeoutMs: 500 })
  await store.connect()
  t.teardown(() => store.close())
  const rpm = compileRule({ name: 'notebook-rpm', match: { identity: [NOTEBOOK] }, per: ['identity'], limit: { requests: 3 }, window: 'minute' })
  const tok = compileRule({ name: 'research-tokens', per: ['team'], limit: { tokens: 100000 }, window: 'day' })
  const facts = { identity: NOTEBOOK, teams: ['research'], namespace: 'research', user: undefined, provider: 'openai', model: 'gpt-4o-mini', operation: 'chat' }
  for (let i = 0; i < 2; i++) t.ok((await store.reserve([{ key: counterKey(rpm, 'requests', rpm.partition(facts)), algorithm: 'gcra', limit: 3, windowMs: 60_000, cost: 1 }], { id: `r${i}`, ttlMs: 1000 })).ok)
  t.ok((await store.reserve([{ key: counterKey(tok, 'tokens', tok.partition(facts)), algorithm: 'gcra', limit: 100000, windowMs: 86_400_000, cost: 1500 }], { id: 't', ttlMs: 1000 })).ok)

  const c = io(dir)
  t.equal(await run(['show', '--config', 'modelgate.yaml'], c.io), 0, c.err())
  const lines = c.out().trim().split('\n')
  t.match(lines[0], /^rule\s+counter\s+window\s+limit\s+used\s+remaining\s+partition$/)
  t.match(lines[1], new RegExp(`^notebook-rpm\\s+requests\\s+minute\\s+3\\s+2\\s+1\\s+identity=${NOTEBOOK.replace(/[./]/g, '\\$&')}$`))
  t.match(lines[2], /^research-tokens\s+tokens\s+day\s+100000\s+1500\s+98500\s+team=research$/)
})

t.test('quota show with the memory store says the counters cannot be read from outside', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'modelgate.yaml'), ['identity: { trustDomains: [modelgate.local] }', 'quotas:', ...rulesYaml, ''].join('\n'))
  const c = io(dir)
  t.equal(await run(['show', '--config', join(dir, 'modelgate.yaml')], c.io), 0)
  t.match(c.out(), /quotas\.store is memory: the counters live inside each modelgate process/)
})

t.test('quota show with an unreachable Redis fails without printing the password', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'modelgate.yaml'), ['identity: { trustDomains: [modelgate.local] }', 'quotas:', '  store: redis', '  redis: { url: "redis://:s3cret@127.0.0.1:1", timeoutMs: 100 }', ...rulesYaml, ''].join('\n'))
  const c = io(dir)
  t.equal(await run(['show', '--config', 'modelgate.yaml'], c.io), 1)
  t.match(c.err(), /cannot reach redis:\/\/:\*\*\*@127\.0\.0\.1:1/)
  t.notMatch(c.err(), /s3cret/)
})

t.test('quota without show is a usage error', async (t) => {
  const c = io(t.testdir())
  t.equal(await run([], c.io), 2)
  t.match(c.err(), /a subcommand is required/)
})
