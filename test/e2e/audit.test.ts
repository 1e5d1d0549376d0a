/**
 * The audit trail through a real Envoy and the full pipeline (audit →
 * identity → provider → redaction-scan → policy → redaction-apply), exporting
 * to a real OTLP/HTTP receiver: the spans carry who sent which data to which
 * model under which policy; a secret in the prompt appears in no exported
 * byte; with the collector down for N requests all N records arrive once it is
 * back; `modelgate audit verify` accepts what arrived and catches a deleted or
 * an edited record.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { createAuditStage, type AuditTrail } from '../../src/audit/stage.ts'
import { run as auditCli } from '../../src/cli/audit.ts'
import { configFromObject } from '../../src/config/config.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { silentLogger } from '../../src/log.ts'
import type { Stage } from '../../src/pipeline/stage.ts'
import { createPolicyStage } from '../../src/policy/stage.ts'
import { redactionConfigFrom } from '../../src/redaction/engine.ts'
import { createRedactionStages } from '../../src/redaction/stage.ts'
import { OtlpReceiver, writeRecords } from '../helpers/otlp-receiver.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { loadAuditExporters } from '../../src/audit/exporters.ts'

// Every exporter this file's audit stages may be configured with.
await loadAuditExporters()

const EMAIL = 'dana.whitfield@gmail.com'
const GITHUB = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const TRACE = '5b8efff798038103d269b633813fc60c'
const CALLER = 'eee19b7ec3c1b174'
const CHECKOUT = 'spiffe://modelgate.local/ns/payments/sa/checkout'
const NOTEBOOK = 'spiffe://modelgate.local/ns/research/sa/notebook'

const chat = (model: string, content: string) => ({ model, messages: [{ role: 'user' as const, content }] })

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough()
  let out = ''
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  const code = await auditCli(args, { stdout, stderr: stdout, stdin: new PassThrough(), cwd: process.cwd(), env: {} })
  return { code, out }
}

t.test('the audit trail through Envoy', async (t) => {
  const rx = await OtlpReceiver.start()
  t.teardown(() => rx.close())
  // The trail reads the standard OTEL_* variables of the process, as in production.
  Object.assign(process.env, {
    OTEL_EXPORTER_OTLP_ENDPOINT: rx.url,
    OTEL_BSP_SCHEDULE_DELAY: '20',
    OTEL_EXPORTER_OTLP_TIMEOUT: '500',
    OTEL_METRIC_EXPORT_INTERVAL: '3600000',
  })
  const auditConfig = { spool: { dir: join(t.testdir(), 'spool'), retryInitialMs: 50, retryMaxMs: 200 }, content: { enabled: true }, stageSpans: true }
  const stack: Stack = await startStack({ config: { audit: auditConfig } })
  let own: AuditTrail | undefined
  t.teardown(async () => {
    await stack.close()
    await own?.shutdown()
  })

  // Until the application wires every stage itself, build the missing ones here, in the fixed order.
  const has = (name: string) => stack.app?.pipeline.stages.some((s) => s.name === name && Object.keys(s).length > 1) === true
  if (!has('audit') || !has('policy') || !has('redaction-apply')) {
    const config = configFromObject(stack.configObject, 'e2e-audit', REPO_ROOT)
    const first: Stage[] = []
    const last: Stage[] = []
    if (!has('audit')) {
      own = createAuditStage(config, { logger: silentLogger })
      first.push(own.stage)
    }
    if (!has('policy') || !has('redaction-apply')) {
      const policy = createPolicyStage(config, { logger: silentLogger })
      t.teardown(() => policy.engine.close())
      const redaction = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger, permitsUnredacted: (ctx, cls) => policy.engine.permitsUnredacted(ctx, cls) })
      last.push(redaction.scan, policy, redaction.apply)
    }
    await stack.stopModelgate()
    await stack.startModelgate({ extraStages: { first, last } })
  }
  t.beforeEach(() => stack.provider.clear())

  t.test('an allowed request with personal data: who, which data, which model, which policy, and no byte of the value', async (t) => {
    const res = await stack.request('checkout', {
      path: '/v1/chat/completions',
      headers: { traceparent: `00-${TRACE}-${CALLER}-01` },
      body: chat('gpt-4o-mini', `Write to ${EMAIL} about the refund`),
    })
    t.equal(res.status, 200)
    // The record is filed under the request id Envoy returned to the caller.
    const id = String(res.headers['x-request-id'])
    t.notOk(stack.provider.requests[0]!.body.includes(EMAIL), 'the provider never saw the address')
    await rx.waitFor(() => rx.recordFor(id) !== undefined, 10000, 'the allowed request')
    const s = rx.recordFor(id)!
    t.equal(s.traceId, TRACE, "joined to the caller's trace")
    t.equal(s.parentSpanId, CALLER)
    t.match(s.attributes, {
      'modelgate.identity.spiffe_id': CHECKOUT,
      'modelgate.identity.namespace': 'payments',
      'modelgate.identity.service_account': 'checkout',
      'gen_ai.provider.name': 'openai',
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.response.model': String,
      'gen_ai.usage.input_tokens': Number,
      'gen_ai.usage.output_tokens': Number,
      'gen_ai.request.stream': false,
      'modelgate.decision.effect': 'allow',
      'modelgate.decision.policies': Array,
      'modelgate.decision.policy_owners': Array,
      'modelgate.decision.policy_set_hash': String,
      'modelgate.decision.id': String,
      'modelgate.redaction.action': 'redact',
      'modelgate.redaction.body_rewritten': true,
      'http.response.status_code': 200,
      'modelgate.upstream.reached': true,
      'modelgate.response.complete': true,
      'modelgate.outcome': 'allowed',
    })
    const classes = s.attributes['modelgate.data.classes'] as string[]
    t.ok(classes.length >= 1, `data classes ${classes.join(', ')}`)
    t.ok((s.attributes['modelgate.decision.policies'] as string[]).length >= 1, 'the determining policies')
    t.ok((s.attributes['modelgate.decision.policy_owners'] as string[]).some((o) => o.length > 0), 'with their @owner')
    t.match(s.attributes['modelgate.request.content'], /Write to \[EMAIL_1\] about the refund/, 'only the redacted body is recorded')
    const children = rx.spans.filter((c) => c.parentSpanId === s.spanId)
    const stageNames = new Set(children.map((c) => c.attributes['modelgate.stage.name']))
    for (const name of ['identity', 'provider', 'redaction-scan', 'policy', 'redaction-apply']) t.ok(stageNames.has(name), `child span for ${name}`)
  })

  let deniedId = ''
  t.test('a request denied for its data records the decision, and the token appears in no exported byte', async (t) => {
    const res = await stack.request('notebook', { path: '/v1/chat/completions', body: chat('gpt-4o-mini', `Why does ${GITHUB} not work?`) })
    t.equal(res.status, 403)
    t.equal(stack.provider.requests.length, 0)
    const id = res.json().error.request_id as string
    deniedId = id
    t.equal(res.headers['x-request-id'], id, 'the same id in the header and the error body')
    await rx.waitFor(() => rx.recordFor(id) !== undefined, 10000, 'the denied request')
    const s = rx.recordFor(id)!
    t.match(s.attributes, {
      'modelgate.identity.spiffe_id': NOTEBOOK,
      'modelgate.outcome': 'denied',
      'modelgate.denial.code': 'MG_POLICY_DENIED',
      'modelgate.denial.status': 403,
      'modelgate.decision.effect': 'deny',
      'modelgate.upstream.reached': false,
      'gen_ai.request.model': 'gpt-4o-mini',
    })
    t.ok((s.attributes['modelgate.decision.policies'] as string[]).length >= 1, 'the forbidding policy is named')
    t.notOk('modelgate.request.content' in s.attributes, 'a denied body is never recorded')
    t.equal(s.attributes['modelgate.decision.id'], res.json().error.decision_id, 'the decision id the caller saw')
    // Policy refused it before redaction applied: the token was withheld, not redacted.
    t.match(s.attributes, { 'modelgate.redaction.action': 'withheld', 'modelgate.redaction.withheld_classes': ['secret'] })
    t.notOk('modelgate.redaction.redacted_classes' in s.attributes, 'nothing is recorded as redacted')
    const file = join(t.testdir(), 'records.jsonl')
    writeRecords(rx.spans, file)
    const story = await cli(['show', id, file])
    t.match(story.out, /  data      secret ×1 \(withheld: not sent, the request was refused\)\n/)
    t.notMatch(story.out, /redacted/)
    const summary = JSON.parse((await cli(['summary', '--json', file])).out)
    t.match(summary.dataClasses.find((c: { dataClass: string }) => c.dataClass === 'secret'), { withheld: 1, redacted: 0, blocked: 0 })
  })

  t.test('a request that timed out while modelgate was stalled is recorded from Envoy\'s start, with its real duration', async (t) => {
    // The stack's modelgate runs in this process: blocking the event loop stops it as SIGSTOP
    // would, while Envoy (its own process) times the stream out after message_timeout (2 s).
    const ca = readFileSync(stack.pki.ca.cert)
    const tls = { ca, cert: readFileSync(stack.clients.checkout.cert), key: readFileSync(stack.clients.checkout.key) }
    const body = JSON.stringify(chat('gpt-4o-mini', 'are you there?'))
    const sentAt = Date.now()
    const answer = await new Promise<{ status: number; id: string }>((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', port: stack.envoy.listenPort, servername: 'localhost', method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }, ...tls, agent: false, timeout: 20_000 },
        (res) => {
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode ?? 0, id: String(res.headers['x-request-id']) }))
        },
      )
      req.on('error', reject)
      // Once the request is on the wire, stop everything in this process for 2.6 s.
      req.end(body, () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2600))
    })
    t.equal(answer.status, 504, 'Envoy gave up on the stalled processor')
    await rx.waitFor(() => rx.recordFor(answer.id) !== undefined, 10000, 'the timed-out request')
    const s = rx.recordFor(answer.id)!
    const startMs = Number(BigInt(s.startTimeUnixNano) / 1_000_000n)
    t.ok(startMs >= sentAt - 5 && startMs < sentAt + 1000, `the record starts when the request was sent (${startMs - sentAt} ms after), not at wake-up`)
    const duration = s.attributes['modelgate.duration_ms'] as number
    t.ok(duration >= 2000 && duration < 10000, `the duration is the time that passed (${duration} ms)`)
    t.ok((s.attributes['modelgate.stream.wait_ms'] as number) >= 2000, `modelgate saw the stream ${s.attributes['modelgate.stream.wait_ms']} ms after Envoy started the request`)
    t.equal(s.attributes['modelgate.upstream.reached'], false)
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a streamed answer is recorded as a stream', async (t) => {
    const { data: stream, response: http } = await stack.openai('checkout').chat.completions.create({ ...chat('gpt-4o-mini', 'stream please'), stream: true }).withResponse()
    for await (const _ of stream) void _
    const id = String(http.headers.get('x-request-id'))
    await rx.waitFor(() => rx.recordFor(id) !== undefined, 10000, 'the streamed request')
    const s = rx.recordFor(id)!
    t.equal(s.attributes['gen_ai.request.stream'], true)
    t.equal(s.attributes['modelgate.outcome'], 'allowed')
    t.equal(s.attributes['modelgate.response.complete'], true)
    const response = rx.spans.filter((c) => c.parentSpanId === s.spanId && c.attributes['modelgate.stage.direction'] === 'response')
    t.ok(response.some((c) => (c.attributes['modelgate.stage.phases'] as string[]).includes('responseBody')), 'the response work (every chunk) has one span per stage')
  })

  t.test('no exported byte holds either value', async (t) => {
    const bytes = rx.allBytes()
    t.ok(bytes.length > 0)
    t.notOk(bytes.includes(Buffer.from(EMAIL)), 'the e-mail address')
    t.notOk(bytes.includes(Buffer.from(GITHUB)), 'the token')
  })

  t.test('collector down for N requests through Envoy, then up: all N arrive; verify accepts them and catches a deletion and an edit', async (t) => {
    await rx.down('refuse')
    const N = 12
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => stack.request('checkout', { path: '/v1/chat/completions', body: chat('gpt-4o-mini', `request ${i}`) })))
    t.same(new Set(answers.map((r) => r.status)), new Set([200]), 'requests are served while the records wait in the spool')
    const ids = answers.map((r) => String(r.headers['x-request-id']))
    t.equal(new Set(ids).size, N, 'each request has its own id')
    await rx.up()
    await rx.waitFor(() => ids.every((id) => rx.recordFor(id)), 20000, `all ${N} records`)
    t.pass(`all ${N} records arrived`)

    const file = join(t.testdir(), 'received.jsonl')
    writeRecords(rx.spans, file)
    const ok = await cli(['verify', file])
    t.equal(ok.code, 0, ok.out)

    const roots = rx.records()
    const victim = rx.recordFor(ids[3]!)!.attributes['modelgate.audit.seq']
    writeRecords(roots.filter((r) => r.attributes['modelgate.audit.seq'] !== victim), file)
    const deleted = await cli(['verify', file])
    t.equal(deleted.code, 1)
    t.match(deleted.out, new RegExp(`FAIL seq ${victim}\\.\\.${victim}: 1 record missing`))

    const edited = roots.map((r) => (r.attributes['modelgate.request.id'] === deniedId ? { ...r, attributes: { ...r.attributes, 'modelgate.outcome': 'allowed' } } : r))
    writeRecords(edited, file)
    const changed = await cli(['verify', file])
    t.equal(changed.code, 1)
    t.match(changed.out, /content does not match its hash \(record edited\)/)

    writeRecords(rx.spans, file)
    const story = await cli(['show', deniedId, file])
    t.match(story.out, /who       spiffe:\/\/modelgate\.local\/ns\/research\/sa\/notebook/)
  })
})
