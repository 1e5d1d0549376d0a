/**
 * The audit trail behind the real gRPC server on loopback, with the
 * application's real stages (identity, provider, redaction, Cedar policy),
 * exporting to a real OTLP/HTTP receiver: fields of the span, a secret in no exported byte, cancellation,
 * the collector down for N requests, the spool-full refusal, and
 * `modelgate audit verify` over what the collector received.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t, { type Test } from 'tap'
import { buildStages } from '../../src/app.ts'
import { createAuditStage, type AuditTrail } from '../../src/audit/stage.ts'
import { run as auditCli } from '../../src/cli/audit.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { silentLogger } from '../../src/log.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { Pipeline } from '../../src/pipeline/pipeline.ts'
import { startServer, type RunningServer } from '../../src/server/server.ts'
import { answerKind, connectExtProc, denialJson, msg, mtlsAttributes, type ExtProcClient, type Headers } from '../helpers/grpc-client.ts'
import { OtlpReceiver, writeRecords } from '../helpers/otlp-receiver.ts'
import { loadAuditExporters } from '../../src/audit/exporters.ts'

// Every exporter this file's audit stages may be configured with.
await loadAuditExporters()

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
/** An AWS access key id: the redaction stage replaces it before anything leaves. */
const SECRET = 'AKIAZ7Q3KXN4WP2RTB5M'
const CALLER_TRACE = '0af7651916cd43dd8448eb211c80319c'
const CALLER_SPAN = 'b7ad6b7169203331'

const dir = t.testdir()
const ca = await createCa(dir, 'ca')
const PEM = readFileSync((await issueCertificate(dir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8')
const ATTRS = mtlsAttributes(PEM, CHECKOUT)

/** A policy set that permits everything, with an @owner, on the shipped schema and entities, plus `extra` policies. */
function policyDir(root: string, extra = ''): string {
  const d = join(root, 'policies')
  cpSync(join(REPO_ROOT, 'policies'), d, { recursive: true, filter: (src) => !src.includes('/tests') && !src.endsWith('.cedar') })
  // Models only: no `send_unredacted` permit, so every detected value is redacted.
  writeFileSync(join(d, 'allow.cedar'), '@id("payments-may-chat")\n@owner("team-payments")\npermit (principal, action in ModelGate::Action::"use_model", resource);\n' + extra)
  return d
}

interface Harness {
  root: string
  server: RunningServer
  audit: AuditTrail
  rx: OtlpReceiver
  client: ExtProcClient
}

/**
 * The application's own stages (identity, provider, redaction, policy) behind
 * this test's audit trail, first, as in production. The trail is built here so
 * the test can reach it (flush, status) whatever the application wires itself.
 */
async function harness(tt: Test, opts: { spool?: Record<string, unknown>; policies?: string; redaction?: Record<string, unknown>; file?: string } = {}): Promise<Harness> {
  const root = tt.testdir()
  const rx = await OtlpReceiver.start()
  tt.teardown(() => rx.close())
  const base = {
    server: { listen: '127.0.0.1:0', phaseTimeoutMs: 2000, drainTimeoutMs: 2000 },
    identity: { trustDomains: [TD] },
    providers: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'none', none: true }] } } },
    policy: { dir: policyDir(root, opts.policies), watch: false },
    ...(opts.redaction ? { redaction: opts.redaction } : {}),
  }
  const auditConfig = { spool: { dir: join(root, 'spool'), retryInitialMs: 50, retryMaxMs: 200, ...opts.spool }, content: { enabled: true }, stageSpans: true, ...(opts.file ? { file: opts.file } : {}) }
  const config = configFromObject({ ...base, audit: auditConfig }, 'audit.integration')
  const audit = createAuditStage(config, {
    logger: silentLogger,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_BSP_SCHEDULE_DELAY: '20', OTEL_EXPORTER_OTLP_TIMEOUT: '500', OTEL_METRIC_EXPORT_INTERVAL: '3600000' },
  })
  // Any audit trail the application builds itself stays without an exporter (no spool to share).
  const { stages, closers } = await buildStages(configFromObject({ ...base, audit: { otlp: 'off', metrics: { otlp: 'off' } } }, 'audit.integration'), silentLogger)
  const pipeline = new Pipeline([audit.stage, ...stages.filter((s) => s.name !== 'audit')], { phaseTimeoutMs: 2000 })
  const server = await startServer({ listen: '127.0.0.1:0', maxBodyBytes: 1048576, drainTimeoutMs: 2000, pipeline, logger: silentLogger })
  const client = connectExtProc(server.address)
  tt.teardown(async () => {
    client.close()
    await server.shutdown()
    for (const c of closers) await c()
    await audit.shutdown()
  })
  return { root, server, audit, rx, client }
}

function headers(id: string, extra: Record<string, string> = {}): Headers {
  return { ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'llm.internal', ':scheme': 'https', 'content-type': 'application/json', 'x-request-id': id, ...extra }
}

const body = (text: string) => JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: text }], max_tokens: 32 })
const answer = JSON.stringify({ id: 'c1', model: 'gpt-4o-mini-2024-07-18', choices: [{ message: { role: 'assistant', content: 'done' } }], usage: { prompt_tokens: 21, completion_tokens: 2 } })

/** One full exchange as Envoy drives it. */
async function exchange(h: Harness, id: string, opts: { text?: string; metadata?: Record<string, string> } = {}): Promise<void> {
  const s = h.client.open(opts.metadata)
  const first = await s.exchange(msg.requestHeaders(headers(id), { attributes: ATTRS }))
  if (answerKind(first) === 'immediate_response') {
    await s.end()
    throw Object.assign(new Error('denied'), { code: denialJson(first).error.code, status: first.immediate_response!.status.code })
  }
  const second = await s.exchange(msg.requestBody(body(opts.text ?? 'hello')))
  if (answerKind(second) === 'immediate_response') {
    await s.end()
    throw Object.assign(new Error('denied'), { code: denialJson(second).error.code, status: second.immediate_response!.status.code })
  }
  await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))
  await s.exchange(msg.responseBody(answer, true))
  await s.end()
}

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough()
  let out = ''
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  const code = await auditCli(args, { stdout, stderr: new PassThrough(), stdin: new PassThrough(), cwd: process.cwd(), env: {} })
  return { code, out }
}

const verify = (file: string) => cli(['verify', file])

t.test('the collector receives the span of a request through the server, and no byte of the secret', async (t) => {
  const h = await harness(t)
  await exchange(h, 'int-1', { text: `deploy with key ${SECRET} please`, metadata: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` } })
  await h.audit.flush()
  await h.rx.waitFor(() => h.rx.recordFor('int-1') !== undefined, 5000, 'the request span')
  const root = h.rx.recordFor('int-1')!
  t.equal(root.traceId, CALLER_TRACE, 'joined to the trace in the Process metadata')
  t.equal(root.parentSpanId, CALLER_SPAN)
  t.match(root.attributes, {
    'modelgate.identity.spiffe_id': CHECKOUT,
    'modelgate.identity.namespace': 'payments',
    'modelgate.identity.service_account': 'checkout',
    'modelgate.identity.source': 'mtls',
    'gen_ai.provider.name': 'openai',
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
    'gen_ai.request.max_tokens': 32,
    'gen_ai.usage.input_tokens': 21,
    'gen_ai.usage.output_tokens': 2,
    'modelgate.decision.effect': 'allow',
    'modelgate.decision.policies': ['payments-may-chat'],
    'modelgate.decision.policy_owners': ['team-payments'],
    'modelgate.decision.policy_set_hash': String,
    'modelgate.decision.id': String,
    'modelgate.redaction.action': 'redact',
    'modelgate.redaction.body_rewritten': true,
    'http.response.status_code': 200,
    'modelgate.upstream.reached': true,
    'modelgate.outcome': 'allowed',
  })
  t.ok((root.attributes['modelgate.data.classes'] as string[]).length > 0, 'data classes recorded')
  t.ok((root.attributes['modelgate.data.detectors'] as string[]).length > 0, 'detectors recorded')
  t.match(root.attributes['modelgate.request.content'], /deploy with key \[[A-Z_]+_1\] please/, 'the content recorded is the redacted body')
  for (const stage of ['audit', 'identity', 'provider', 'redaction-scan', 'policy', 'redaction-apply']) {
    t.type(root.attributes[`modelgate.stage.${stage}.duration_ms`], 'number', `timing of ${stage}`)
  }
  const children = h.rx.spans.filter((s) => s.parentSpanId === root.spanId)
  t.ok(children.some((c) => c.attributes['modelgate.stage.name'] === 'redaction-apply'), 'child span per stage')
  t.notOk(h.rx.allBytes().includes(Buffer.from(SECRET)), 'the secret is in no exported byte')
})

t.test('a stream Envoy resets still ends its span, once', async (t) => {
  const h = await harness(t)
  const s = h.client.open()
  await s.exchange(msg.requestHeaders(headers('int-reset'), { attributes: ATTRS }))
  s.cancel()
  await s.ended
  await h.rx.waitFor(() => h.rx.recordFor('int-reset') !== undefined, 5000, 'the reset span')
  await h.audit.flush()
  t.equal(h.rx.records().filter((r) => r.attributes['modelgate.request.id'] === 'int-reset').length, 1)
  t.equal(h.rx.recordFor('int-reset')!.attributes['modelgate.outcome'], 'cancelled')
})

t.test('collector down for N requests, then up: all N arrive and the chain verifies; a deletion or an edit does not', async (t) => {
  const h = await harness(t)
  await h.rx.down('refuse')
  const N = 30
  await Promise.all(Array.from({ length: N }, (_, i) => exchange(h, `down-${i}`)))
  await h.audit.flush()
  t.ok(h.audit.status().spoolBytes > 0, 'the records wait on disk')
  t.equal(h.rx.records().length, 0)
  await h.rx.up()
  await h.rx.waitFor(() => h.rx.records().length >= N, 15000, `${N} records`)
  const got = new Set(h.rx.records().map((r) => r.attributes['modelgate.request.id']))
  t.equal(got.size, N)
  for (let i = 0; i < N; i++) t.ok(got.has(`down-${i}`), `down-${i}`)

  const file = join(h.root, 'received.jsonl')
  writeRecords(h.rx.spans, file)
  const ok = await verify(file)
  t.equal(ok.code, 0, ok.out)
  t.match(ok.out, new RegExp(`: ${N} records, seq 1\\.\\.${N}, open`))

  const roots = h.rx.records()
  writeRecords(roots.filter((r) => r.attributes['modelgate.audit.seq'] !== 7), file)
  const deleted = await verify(file)
  t.equal(deleted.code, 1)
  t.match(deleted.out, /FAIL seq 7\.\.7: 1 record missing/)

  writeRecords(
    roots.map((r) => (r.attributes['modelgate.audit.seq'] === 11 ? { ...r, attributes: { ...r.attributes, 'modelgate.identity.spiffe_id': `spiffe://${TD}/ns/other/sa/x` } } : r)),
    file,
  )
  const edited = await verify(file)
  t.equal(edited.code, 1)
  t.match(edited.out, /FAIL seq 11: content does not match its hash \(record edited\)/)
})

t.test('with the spool full the server refuses new requests with 503 MG_AUDIT_UNAVAILABLE', async (t) => {
  const h = await harness(t, { spool: { maxBytes: 8192, retryMaxMs: 100 } })
  await h.rx.down('refuse')
  let refusal: { code?: string; status?: number } | undefined
  for (let i = 0; i < 100 && !refusal; i++) {
    try {
      await exchange(h, `fill-${i}`)
    } catch (err) {
      refusal = err as { code: string; status: number }
    }
    await h.audit.flush()
  }
  t.same(refusal && { code: refusal.code, status: refusal.status }, { code: 'MG_AUDIT_UNAVAILABLE', status: 503 })
  await h.rx.up()
  await h.rx.waitFor(() => h.audit.status().spoolBytes === 0, 15000, 'the spool to drain')
  await exchange(h, 'after-drain')
  await h.audit.flush()
  await h.rx.waitFor(() => h.rx.recordFor('after-drain') !== undefined, 5000, 'the request after the drain')
  t.ok(h.rx.records().some((r) => r.attributes['modelgate.denial.code'] === 'MG_AUDIT_UNAVAILABLE'), 'the refusal has its own record')
})

t.test('what the record says happened to the data is what happened: blocked, withheld, redacted, sent as is', async (t) => {
  const file = join(t.testdir(), 'audit.jsonl')
  const h = await harness(t, {
    file,
    // Health data is refused by policy; internal host names may leave as is; secrets block.
    policies:
      '@id("no-health-data")\n@owner("privacy")\nforbid (principal, action, resource) when { context.dataClasses.contains("health") };\n' +
      '@id("internal-as-is")\n@owner("security")\npermit (principal, action == ModelGate::Action::"send_unredacted", resource == ModelGate::DataClass::"internal");\n',
    redaction: { actions: { secret: 'block' } },
  })
  const EMAIL = 'dana.whitfield@gmail.com'
  const cases = [
    { id: 'o-redact', text: `write to ${EMAIL}`, code: undefined, action: 'redact', data: 'pii ×1 (redacted)' },
    { id: 'o-allow', text: 'restart billing-db.corp', code: undefined, action: 'allow', data: 'internal ×1 (allowed: sent as is)' },
    { id: 'o-block', text: `key ${SECRET} for ${EMAIL}`, code: 'MG_DATA_BLOCKED', action: 'block', data: 'pii ×1 (withheld: not sent, the request was refused), secret ×1 (blocked)' },
    { id: 'o-policy', text: `patient MRN: 48213957, mail ${EMAIL}`, code: 'MG_POLICY_DENIED', action: 'withheld', data: 'health ×1 (withheld: not sent, the request was refused), pii ×1 (withheld: not sent, the request was refused)' },
  ] as const
  for (const c of cases) {
    const refused = await exchange(h, c.id, { text: c.text }).then(
      () => undefined,
      (e: { code: string }) => e.code,
    )
    t.equal(refused, c.code, `${c.id}: ${c.code ?? 'allowed'}`)
  }
  await h.audit.flush()
  await h.rx.waitFor(() => cases.every((c) => h.rx.recordFor(c.id)), 5000, 'the four records')
  for (const c of cases) {
    const a = h.rx.recordFor(c.id)!.attributes
    t.equal(a['modelgate.redaction.action'], c.action, `${c.id}: redaction.action ${c.action}`)
    const story = await cli(['show', c.id, file])
    t.match(story.out, `  data      ${c.data}\n`, `${c.id}: audit show says ${c.data}`)
  }
  const summary = await cli(['summary', '--json', file])
  const byClass = Object.fromEntries((JSON.parse(summary.out).dataClasses as { dataClass: string }[]).map((c) => [c.dataClass, c]))
  t.same(byClass.pii, { dataClass: 'pii', detections: 3, requests: 3, blocked: 0, withheld: 2, redacted: 1, allowed: 0 }, 'pii left redacted once and was not sent twice')
  t.same(byClass.secret, { dataClass: 'secret', detections: 1, requests: 1, blocked: 1, withheld: 0, redacted: 0, allowed: 0 })
  t.same(byClass.health, { dataClass: 'health', detections: 1, requests: 1, blocked: 0, withheld: 1, redacted: 0, allowed: 0 })
  t.same(byClass.internal, { dataClass: 'internal', detections: 1, requests: 1, blocked: 0, withheld: 0, redacted: 0, allowed: 1 })
})
