/**
 * Cedar authorisation through a real Envoy, with the shipped policies:
 * an identity allowed for a model gets through; the same identity asking for
 * a model its team may not use gets a 403 with the error code; a forbid on a
 * data class refuses a body carrying it; a policy change on disk takes effect
 * without a restart, and a broken change is refused while traffic flows.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { configFromObject } from '../../src/config/config.ts'
import { DEV_TRUST_DOMAIN } from '../../src/dev/identities.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { silentLogger } from '../../src/log.ts'
import type { ReloadStatus } from '../../src/policy/engine.ts'
import { createPolicyStage, type PolicyStage } from '../../src/policy/stage.ts'
import { redactionConfigFrom } from '../../src/redaction/engine.ts'
import { createRedactionStages } from '../../src/redaction/stage.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { copyShipped } from '../unit/policy/fixtures.ts'

const GITHUB = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const EMAIL = 'dana.whitfield@gmail.com'
const chat = (model: string, content = 'Summarise our refund policy in one line.') => ({ model, messages: [{ role: 'user' as const, content }] })

function nextReload(policy: PolicyStage, pred: (s: ReloadStatus) => boolean, timeoutMs = 10_000): Promise<ReloadStatus> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`no matching policy reload within ${timeoutMs} ms`))
    }, timeoutMs)
    const off = policy.engine.onReload((s) => {
      if (!pred(s)) return
      clearTimeout(timer)
      off()
      resolve(s)
    })
  })
}

t.test('policy through Envoy', async (t) => {
  // A copy of the shipped policy directory, so the reload tests can edit it.
  const dir = copyShipped(join(t.testdir(), 'policies'))
  const policyConfig = { dir, watch: true, reloadDebounceMs: 50, pollIntervalSeconds: 0 }
  const stack: Stack = await startStack({ config: { policy: policyConfig } })
  t.teardown(() => stack.close())

  let policy = stack.app?.pipeline.stages.find((s) => s.name === 'policy') as PolicyStage | undefined
  if (!policy) {
    // The application does not build the policy stage itself: run it after the
    // provider stage, between the redaction scan (whose data classes it reads)
    // and the redaction apply (which asks it about unredacted classes).
    const config = configFromObject({ identity: { trustDomains: [DEV_TRUST_DOMAIN] }, policy: policyConfig }, 'e2e-policy', REPO_ROOT)
    const own = createPolicyStage(config, { logger: silentLogger })
    t.teardown(() => own.engine.close())
    const redaction = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger, permitsUnredacted: (ctx, cls) => own.engine.permitsUnredacted(ctx, cls) })
    await stack.stopModelgate()
    await stack.startModelgate({ extraStages: { last: [redaction.scan, own, redaction.apply] } })
    policy = own
  }
  const engine = policy.engine
  t.beforeEach(() => stack.provider.clear())

  t.test('an identity allowed for a model gets through', async (t) => {
    const answer = await stack.openai('checkout').chat.completions.create(chat('gpt-4o-mini'))
    t.ok(answer.choices[0]?.message.content, 'the stand-in provider answered')
    t.equal(stack.provider.requests.length, 1)
    const msg = await stack.anthropic('notebook').messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, messages: [{ role: 'user', content: 'hello' }] })
    t.equal(msg.type, 'message')
  })

  t.test('the same identity asking for a model its team may not use gets 403 with the error code', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-4o') })
    t.equal(res.status, 403)
    t.equal(res.headers['x-modelgate-error'], 'MG_POLICY_DENIED')
    const body = res.json()
    t.match(body, { error: { type: 'modelgate_error', code: 'MG_POLICY_DENIED', request_id: String, decision_id: /^[0-9a-f-]{36}$/ } })
    t.notMatch(res.text(), /premium|forbid|finops|ModelGate/, 'no policy text in the body')
    t.equal(stack.provider.requests.length, 0, 'the provider saw nothing')

    const viaSdk = await stack
      .openai('checkout')
      .chat.completions.create(chat('gpt-4o'))
      .then(
        () => undefined,
        (e: { status?: number; error?: { code?: string } }) => e,
      )
    t.match(viaSdk, { status: 403, error: { code: 'MG_POLICY_DENIED' } }, 'the OpenAI SDK sees the same error')

    const anthropic = await stack.request('checkout', { path: '/v1/messages', body: { model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] } })
    t.equal(anthropic.status, 403, 'claude-sonnet-4-5 is research-only')
  })

  t.test('a forbid on a data class denies a request whose body carries that class', async (t) => {
    const res = await stack.request('notebook', { path: '/v1/chat/completions', body: chat('gpt-4o-mini', `Why does ${GITHUB} not work?`) })
    t.equal(res.status, 403)
    t.match(res.json(), { error: { code: 'MG_POLICY_DENIED' } })
    t.notOk(res.text().includes(GITHUB))
    t.equal(stack.provider.requests.length, 0, 'the provider saw nothing')
  })

  t.test('policy decides what is redacted: checkout personal data leaves redacted', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-4o-mini', `Write to ${EMAIL} about the refund`) })
    t.equal(res.status, 200)
    const upstream = stack.provider.requests[0]!.body.toString('utf8')
    t.notOk(upstream.includes(EMAIL), 'the provider never saw the address')
  })

  t.test('a policy change on disk takes effect without restart', async (t) => {
    t.equal((await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-5-nano') })).status, 403, 'no policy permits gpt-5-nano yet')
    const reloaded = nextReload(policy, (s) => s.changed)
    writeFileSync(
      join(dir, 'trial.cedar'),
      '@id("payments-trial-gpt-5-nano")\n@owner("payments-platform@example.com")\npermit (\n  principal in ModelGate::Team::"payments",\n  action == ModelGate::Action::"chat",\n  resource == ModelGate::Model::"openai/gpt-5-nano"\n);\n',
    )
    const status = await reloaded
    t.equal(status.ok, true)
    t.equal(engine.policySetHash, status.hash)
    t.equal((await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-5-nano') })).status, 200)
  })

  t.test('a broken change is refused while traffic keeps flowing under the last good set', async (t) => {
    const good = engine.policySetHash
    const refused = nextReload(policy, (s) => !s.ok)
    const traffic = (async () => {
      const statuses: number[] = []
      for (let i = 0; i < 20; i++) statuses.push((await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-5-nano') })).status)
      return statuses
    })()
    writeFileSync(join(dir, 'trial.cedar'), '@id("payments-trial-gpt-5-nano")\npermit (principal, action, resource) when { principal.team == "payments" };\n')
    const status = await refused
    t.match(status.problems.find((p) => p.severity === 'error'), { file: join(dir, 'trial.cedar'), line: 2, message: /attribute `team`/ })
    t.same(new Set(await traffic), new Set([200]), 'every request during the broken change was served')
    t.equal(engine.policySetHash, good, 'the last good set is still active')
    t.equal((await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-5-nano') })).status, 200)
    t.equal((await stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-4o') })).status, 403)
  })
})
