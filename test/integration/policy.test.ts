/**
 * The policy stage behind the real gRPC server on loopback, driven the way
 * Envoy drives it: identity from mTLS attributes, the provider stage parsing
 * the body, a data-class scan before policy, then Cedar. Also hot reload
 * while traffic flows.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { configFromObject } from '../../src/config/config.ts'
import { createIdentityStage } from '../../src/identity/stage.ts'
import { silentLogger } from '../../src/log.ts'
import { Pipeline } from '../../src/pipeline/pipeline.ts'
import type { Stage } from '../../src/pipeline/stage.ts'
import type { PolicyDecision } from '../../src/pipeline/context.ts'
import type { PolicyEngine } from '../../src/policy/engine.ts'
import { createPolicyStage } from '../../src/policy/stage.ts'
import { createProviderStage } from '../../src/providers/stage.ts'
import { redactionConfigFrom } from '../../src/redaction/engine.ts'
import { createRedactionStages } from '../../src/redaction/stage.ts'
import { startServer, type RunningServer } from '../../src/server/server.ts'
import { answerKind, connectExtProc, denialJson, msg, mtlsAttributes, type ExtProcClient } from '../helpers/grpc-client.ts'
import { sharedTestPki } from '../helpers/pki.ts'
import { ALLOW_ALL, copyShipped } from '../unit/policy/fixtures.ts'

/** Stands in for the redaction scan: reports the `secret` class for an AWS-style key id in the body. */
const scanStage: Stage = {
  name: 'redaction-scan',
  requestBody(ctx) {
    if (/AKIA[0-9A-Z]{16}/.test(ctx.requestBody.toString('utf8'))) {
      ctx.addFinding({ detector: 'aws-access-key-id', dataClass: 'secret', confidence: 'high', direction: 'request', location: 'messages[0].content', start: 0, length: 20, hash: 'h', action: 'block' })
    }
  },
}

interface Harness {
  client: ExtProcClient
  server: RunningServer
  policyDir: string
  engine: PolicyEngine
  ask(who: 'checkout' | 'notebook', body: Record<string, unknown>, path?: string): Promise<{ kind: string; status?: number; error?: Record<string, unknown> }>
  close(): Promise<void>
}

async function harness(t: Test, policy: Record<string, unknown> = {}): Promise<Harness> {
  const { clients } = await sharedTestPki()
  const policyDir = copyShipped(join(t.testdir(), 'policies'))
  const config = configFromObject({ identity: { trustDomains: ['modelgate.local'] }, policy: { dir: policyDir, watch: false, ...policy } }, 'integration', policyDir)
  const policyStage = createPolicyStage(config, { logger: silentLogger })
  const pipeline = new Pipeline(
    [createIdentityStage({ config: config.identity, users: undefined }), createProviderStage({ config: config.providers, maxBodyBytes: config.server.maxBodyBytes }), scanStage, policyStage],
    { phaseTimeoutMs: 2000 },
  )
  const server = await startServer({ listen: '127.0.0.1:0', maxBodyBytes: config.server.maxBodyBytes, drainTimeoutMs: 1000, pipeline, logger: silentLogger })
  const client = connectExtProc(server.address)
  const pem = { checkout: readFileSync(clients.checkout.cert, 'utf8'), notebook: readFileSync(clients.notebook.cert, 'utf8') }
  const h: Harness = {
    client,
    server,
    policyDir,
    engine: policyStage.engine,
    async ask(who, body, path = '/v1/chat/completions') {
      const stream = client.open()
      const spiffe = who === 'checkout' ? 'spiffe://modelgate.local/ns/payments/sa/checkout' : 'spiffe://modelgate.local/ns/research/sa/notebook'
      const headers = await stream.exchange(msg.requestHeaders({ ':method': 'POST', ':path': path, ':authority': 'localhost', 'content-type': 'application/json' }, { attributes: mtlsAttributes(pem[who], spiffe) }))
      if (headers.immediate_response) {
        stream.cancel()
        return { kind: 'immediate_response', status: headers.immediate_response.status?.code, error: denialJson(headers).error }
      }
      const answer = await stream.exchange(msg.requestBody(JSON.stringify(body)))
      const kind = answerKind(answer)
      if (answer.immediate_response) {
        await stream.end()
        return { kind, status: answer.immediate_response.status?.code, error: denialJson(answer).error }
      }
      stream.cancel()
      return { kind }
    },
    async close() {
      client.close()
      await server.shutdown()
      policyStage.engine.close()
    },
  }
  return h
}

const chat = (model: string, content = 'Summarise our refund policy.') => ({ model, messages: [{ role: 'user', content }] })

t.test('through the ext_proc server', async (t) => {
  const h = await harness(t)
  t.teardown(() => h.close())

  t.test('an identity allowed for a model gets through', async (t) => {
    t.match(await h.ask('checkout', chat('gpt-4o-mini')), { kind: 'request_body' })
    t.match(await h.ask('notebook', { model: 'claude-sonnet-4-5', max_tokens: 512, messages: [{ role: 'user', content: 'hi' }] }, '/v1/messages'), { kind: 'request_body' })
  })

  t.test('a model the team may not use is refused with 403, the error code, the request id and a decision id', async (t) => {
    const r = await h.ask('checkout', chat('gpt-4o'))
    t.equal(r.status, 403)
    t.match(r.error, { code: 'MG_POLICY_DENIED', message: 'The request is not permitted by policy.', request_id: String, decision_id: /^[0-9a-f-]{36}$/ })
    t.notMatch(JSON.stringify(r.error), /premium|forbid|finops|ModelGate|principal/, 'no policy text or ids in the body')
  })

  t.test('a forbid on a data class refuses a body that carries it', async (t) => {
    const r = await h.ask('checkout', chat('gpt-4o-mini', 'my key is AKIAIOSFODNN7EXAMPLE, debug this'))
    t.match(r, { status: 403, error: { code: 'MG_POLICY_DENIED' } })
  })

  t.test('declaring a tool the team has no permit for is refused', async (t) => {
    const body = { ...chat('gpt-4o-mini'), tools: [{ type: 'function', function: { name: 'web_search', parameters: { type: 'object' } } }] }
    t.match(await h.ask('checkout', body), { status: 403, error: { code: 'MG_POLICY_DENIED' } })
    const allowed = { ...chat('gpt-4o-mini'), tools: [{ type: 'function', function: { name: 'lookup_order', parameters: { type: 'object' } } }] }
    t.match(await h.ask('checkout', allowed), { kind: 'request_body' })
  })
})

t.test('policy decides once which data classes may leave unredacted, and the redaction stage reads it from the decision', async (t) => {
  const { clients } = await sharedTestPki()
  const policyDir = copyShipped(join(t.testdir(), 'policies'))
  writeFileSync(
    join(policyDir, 'pii.cedar'),
    '@id("payments-pii-unredacted")\n@owner("privacy@example.com")\npermit (\n  principal in ModelGate::Team::"payments",\n  action == ModelGate::Action::"send_unredacted",\n  resource == ModelGate::DataClass::"pii"\n);\n',
  )
  const config = configFromObject({ identity: { trustDomains: ['modelgate.local'] }, policy: { dir: policyDir, watch: false } }, 'integration', policyDir)
  const policyStage = createPolicyStage(config, { logger: silentLogger })
  const redaction = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger, permitsUnredacted: (ctx, cls) => policyStage.engine.permitsUnredacted(ctx, cls) })
  const decisions: PolicyDecision[] = []
  const record: Stage = { name: 'record', requestBody: (ctx) => void decisions.push(ctx.out.decision!) }
  const pipeline = new Pipeline(
    [createIdentityStage({ config: config.identity, users: undefined }), createProviderStage({ config: config.providers, maxBodyBytes: config.server.maxBodyBytes }), redaction.scan, policyStage, redaction.apply, record],
    { phaseTimeoutMs: 2000 },
  )
  const server = await startServer({ listen: '127.0.0.1:0', maxBodyBytes: config.server.maxBodyBytes, drainTimeoutMs: 1000, pipeline, logger: silentLogger })
  const client = connectExtProc(server.address)
  t.teardown(async () => {
    client.close()
    await server.shutdown()
    policyStage.engine.close()
  })
  const email = 'dana.whitfield@gmail.com'
  const send = async (who: 'checkout' | 'notebook') => {
    const spiffe = who === 'checkout' ? 'spiffe://modelgate.local/ns/payments/sa/checkout' : 'spiffe://modelgate.local/ns/research/sa/notebook'
    const stream = client.open()
    await stream.exchange(msg.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'localhost', 'content-type': 'application/json' }, { attributes: mtlsAttributes(readFileSync(clients[who].cert, 'utf8'), spiffe) }))
    const answer = await stream.exchange(msg.requestBody(JSON.stringify(chat('gpt-4o-mini', `Write to ${email} about the refund`))))
    stream.cancel()
    t.equal(answerKind(answer), 'request_body')
    return (answer.request_body?.response?.body_mutation as { body?: Buffer } | undefined)?.body?.toString('utf8')
  }

  t.equal(await send('checkout'), undefined, 'payments may send personal data as is: the body goes upstream unchanged')
  t.match(decisions.at(-1), { effect: 'allow', unredactedClasses: ['pii'] })

  const rewritten = await send('notebook')
  t.ok(rewritten && !rewritten.includes(email), 'research may not (its permit is for internal providers): the address is redacted')
  t.match(decisions.at(-1), { effect: 'allow', unredactedClasses: [] })
})

t.test('a policy change on disk takes effect without restart; a broken one is refused while traffic flows', async (t) => {
  const h = await harness(t, { watch: true, reloadDebounceMs: 20, pollIntervalSeconds: 0 })
  t.teardown(() => h.close())
  t.match(await h.ask('checkout', chat('gpt-5-nano')), { status: 403 })

  // No policy permits gpt-5-nano yet; a new file permits everything not forbidden.
  writeFileSync(join(h.policyDir, 'open.cedar'), ALLOW_ALL.replace('allow-all', 'temporary-open'))
  let opened = false
  for (let i = 0; i < 100 && !opened; i++) {
    await new Promise((r) => setTimeout(r, 50))
    opened = (await h.ask('checkout', chat('gpt-5-nano'))).kind === 'request_body'
  }
  t.ok(opened, 'the new policy took effect')

  // A broken change: refused, and the last good set keeps answering.
  const good = h.engine.policySetHash
  const refused = new Promise<void>((resolve) => {
    const off = h.engine.onReload((s) => {
      if (!s.ok) {
        off()
        resolve()
      }
    })
  })
  writeFileSync(join(h.policyDir, 'open.cedar'), '@id("temporary-open")\npermit (principal, action, resource) when { context.nope };\n')
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 30))
    t.match(await h.ask('checkout', chat('gpt-5-nano')), { kind: 'request_body' }, 'still the last good set')
  }
  await refused
  t.equal(h.engine.policySetHash, good)
  t.match(h.engine.lastReload, { ok: false, problems: [{ line: 2, message: /attribute `nope`/ }] })
  t.match(await h.ask('checkout', chat('gpt-5-nano')), { kind: 'request_body' })
})
