/**
 * Quotas over real gRPC: two `modelgate serve` processes sharing one real
 * redis-server never admit more than the budget together (by requests and
 * by tokens); with `onStoreError: local`, a replica whose Redis is gone counts
 * against its own share of each limit and no more, and goes back to Redis
 * when it returns.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { silentLogger } from '../../src/log.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { answerKind, connectExtProc, connectHealth, msg, mtlsAttributes, type ExtProcClient } from '../helpers/grpc-client.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'
import { startRedis } from '../helpers/redis.ts'

const TD = 'modelgate.local'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const dir = t.testdir({})
const ca = await createCa(dir, 'ca')
const ATTRS = mtlsAttributes(readFileSync((await issueCertificate(dir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8'), CHECKOUT)
const none = [{ name: 'none', none: true }]

const RULES = [
  { name: 'shared-requests', match: { model: ['gpt-4.1-mini'] }, per: ['identity'], limit: { requests: 9 }, window: 'hour' },
  // Input (a few tokens) + max_tokens 1000 per request: 5500 admits 5.
  { name: 'shared-tokens', match: { model: ['gpt-4o-mini'] }, limit: { tokens: 5500 }, window: 'day' },
]

function configObject(name: string, listen: string, quotas: Record<string, unknown>): Record<string, unknown> {
  return {
    server: { listen, phaseTimeoutMs: 2000 },
    identity: { trustDomains: [TD] },
    providers: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: none } } },
    audit: { enabled: false },
    redaction: { enabled: false },
    policy: { dir: permitAllPolicyDir(), watch: false },
    quotas,
  }
}

/** One request up to its body's answer: `continue` (admitted) or the denial's status. The stream stays open until `release`. */
async function admit(client: ExtProcClient, model: string, maxTokens: number): Promise<{ outcome: string; release: () => void }> {
  const s = client.open({ 'x-modelgate-provider': 'openai' })
  await s.exchange(msg.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json' }, { attributes: ATTRS }))
  const r = await s.exchange(msg.requestBody(JSON.stringify({ model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'Hello' }] })), 5000)
  const outcome = answerKind(r) === 'immediate_response' ? String(r.immediate_response!.status.code) : 'continue'
  return { outcome, release: () => s.cancel() }
}

async function waitServing(address: string, child: ChildProcess): Promise<void> {
  const health = connectHealth(address)
  const until = Date.now() + 30_000
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`modelgate exited with ${child.exitCode}`)
      const status = await health.check().catch(() => 'UNKNOWN')
      if (status === 'SERVING') return
      if (Date.now() > until) throw new Error(`modelgate at ${address} did not serve in time`)
      await new Promise((r) => setTimeout(r, 100))
    }
  } finally {
    health.close()
  }
}

t.test('two modelgate processes sharing one redis-server never exceed a budget together', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const procs: ChildProcess[] = []
  const clients: ExtProcClient[] = []
  t.teardown(async () => {
    for (const c of clients) c.close()
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null) return resolve()
            p.once('exit', () => resolve())
            p.kill('SIGTERM')
          }),
      ),
    )
  })
  for (const name of ['a', 'b']) {
    const socket = join(dir, `${name}.sock`)
    const file = join(dir, `${name}.json`)
    writeFileSync(file, JSON.stringify(configObject(name, `unix://${socket}`, { store: 'redis', redis: { url: redis.url, keyPrefix: 'two:' }, rules: RULES })))
    const child = spawn(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, MODELGATE_LOG_LEVEL: 'error' } })
    procs.push(child)
    await waitServing(`unix://${socket}`, child)
    clients.push(connectExtProc(`unix://${socket}`))
  }

  t.test('by requests: 9 of 50 (25 at each process, all at once)', async (t) => {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => admit(clients[i % 2]!, 'gpt-4.1-mini', 10)))
    t.equal(answers.filter((a) => a.outcome === 'continue').length, 9)
    t.equal(answers.filter((a) => a.outcome === '429').length, 41)
    for (const a of answers) a.release()
  })

  t.test('by tokens: 5 worst cases of 50', async (t) => {
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => admit(clients[i % 2]!, 'gpt-4o-mini', 1000)))
    t.equal(answers.filter((a) => a.outcome === 'continue').length, 5)
    t.equal(answers.filter((a) => a.outcome === '429').length, 45)
    for (const a of answers) a.release()
  })
})

t.test('onStoreError local: with Redis gone a replica counts against its share of each limit, then returns to Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const config = configFromObject(
    configObject('local', '127.0.0.1:0', {
      store: 'redis',
      redis: { url: redis.url, keyPrefix: 'local:', timeoutMs: 200 },
      onStoreError: 'local',
      localShare: 0.25,
      rules: [{ name: 'rpm', per: ['identity'], limit: { requests: 20 }, window: 'hour' }],
    }),
    'quotas.test',
  )
  const app = await startApp({ config, logger: silentLogger })
  const client = connectExtProc(app.address)
  t.teardown(async () => {
    client.close()
    await app.shutdown()
  })
  // Three through Redis.
  for (let i = 0; i < 3; i++) t.equal((await admit(client, 'gpt-4o-mini', 10)).outcome, 'continue')
  await redis.kill()
  // 25 % of 20: five more on this replica's own, then refusals; never unlimited.
  const down = await Promise.all(Array.from({ length: 12 }, () => admit(client, 'gpt-4o-mini', 10)))
  t.equal(down.filter((a) => a.outcome === 'continue').length, 5)
  t.equal(down.filter((a) => a.outcome === '429').length, 7)
  await redis.restart()
  const until = Date.now() + 10_000
  let back = ''
  while (Date.now() < until) {
    back = (await admit(client, 'gpt-4o-mini', 10)).outcome
    if (back === 'continue') break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(back, 'continue', 'Redis counts again once it is back (the restarted one is empty)')
})
