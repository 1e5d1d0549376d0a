import t, { type Test } from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { verifyRecords } from '../../../src/audit/chain.ts'
import type { SpanRecord } from '../../../src/audit/record.ts'
import { createAuditStage, parentContext, type AuditTrail } from '../../../src/audit/stage.ts'
import type { Config } from '../../../src/config/config.ts'
import { GateError } from '../../../src/errors.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { BodyChunk } from '../../../src/pipeline/stage.ts'
import { trace } from '@opentelemetry/api'
import { OtlpReceiver, toRecord } from '../../helpers/otlp-receiver.ts'
import { allowedContext, auditSection, deniedContext, drive, memoryLogger, SECRET, tempDir, testConfig, type DeepPartial } from './fixtures.ts'
import type { AuditConfig } from '../../../src/config/sections/audit.ts'
import { loadAuditExporters } from '../../../src/audit/exporters.ts'

// Every exporter this file's audit stages may be configured with.
await loadAuditExporters()

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const CALLER_SPAN = '00f067aa0ba902b7'
const TRACEPARENT = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`


interface Setup {
  rx: OtlpReceiver
  audit: AuditTrail
  dir: string
  config: Config
  log: ReturnType<typeof memoryLogger>
}

async function setup(
  t: Test,
  opts: { audit?: DeepPartial<AuditConfig>; env?: Record<string, string>; metricsListen?: string; redaction?: boolean; grpc?: boolean; rx?: OtlpReceiver } = {},
): Promise<Setup> {
  const rx = opts.rx ?? (await OtlpReceiver.start({ grpc: opts.grpc === true }))
  if (!opts.rx) t.teardown(() => rx.close())
  const dir = tempDir(t)
  const config = testConfig({ spool: { dir: join(dir, 'spool'), retryInitialMs: 50, retryMaxMs: 100 }, stageSpans: true, ...opts.audit }, { metricsListen: opts.metricsListen, redaction: opts.redaction })
  const log = memoryLogger()
  const audit = createAuditStage(config, {
    logger: log,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_BSP_SCHEDULE_DELAY: '10', OTEL_EXPORTER_OTLP_TIMEOUT: '400', OTEL_METRIC_EXPORT_INTERVAL: '3600000', ...opts.env },
  })
  t.teardown(() => audit.shutdown())
  await audit.ready()
  return { rx, audit, dir, config, log }
}

t.test('a real OTLP receiver gets one span per request with who, what data, which model and which policy', async (t) => {
  const { rx, audit } = await setup(t)
  const ctx = allowedContext({ traceparent: TRACEPARENT })
  drive(audit.stage, ctx)
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1, 5000, 'the record')
  const [root] = rx.records()
  t.equal(root!.traceId, CALLER_TRACE, "joined to the caller's trace")
  t.equal(root!.parentSpanId, CALLER_SPAN, 'child of the span Envoy propagated')
  t.equal(root!.kind, 2, 'SERVER')
  t.equal(root!.name, 'chat gpt-4o-mini')
  t.equal(root!.scope.name, 'modelgate')
  t.equal(root!.resource['service.name'], 'modelgate')
  t.equal(root!.resource['service.instance.id'], audit.status().chainId)
  t.match(root!.attributes, {
    'modelgate.request.id': 'req-allowed-1',
    'modelgate.identity.spiffe_id': 'spiffe://example.org/ns/payments/sa/checkout',
    'modelgate.identity.namespace': 'payments',
    'modelgate.identity.service_account': 'checkout',
    'modelgate.user.email': 'alice@example.org',
    'gen_ai.provider.name': 'openai',
    'gen_ai.operation.name': 'chat',
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
    'gen_ai.request.stream': false,
    'gen_ai.usage.input_tokens': 12,
    'gen_ai.usage.output_tokens': 34,
    'modelgate.decision.effect': 'allow',
    'modelgate.decision.policies': ['allow-payments-chat', 'baseline'],
    'modelgate.decision.policy_owners': ['team-payments', ''],
    'modelgate.decision.policy_set_hash': 'ps-3af2',
    'modelgate.decision.shadow.effect': 'deny',
    'modelgate.data.classes': ['pii.email', 'secret.cloud_key'],
    'modelgate.data.class.secret.cloud_key.count': 1,
    'modelgate.data.detector.aws-access-key.count': 1,
    'modelgate.redaction.action': 'redact',
    'modelgate.quota.rules': ['team-daily-tokens'],
    'modelgate.quota.remaining.team-daily-tokens': 9000,
    'http.response.status_code': 200,
    'modelgate.outcome': 'allowed',
    'modelgate.audit.seq': 1,
    'modelgate.audit.chain_id': audit.status().chainId,
  })
  t.type(root!.attributes['modelgate.stage.policy.duration_ms'], 'number')
  // Child spans per stage and phase, under the request span.
  const children = rx.spans.filter((s) => s.parentSpanId === root!.spanId)
  t.same(
    children.map((c) => [c.name, c.attributes['modelgate.stage.name'], c.attributes['modelgate.stage.direction'], c.attributes['modelgate.stage.phases']]).sort(),
    [
      ['modelgate.stage identity request', 'identity', 'request', ['requestHeaders']],
      ['modelgate.stage policy request', 'policy', 'request', ['requestBody']],
      ['modelgate.stage provider request', 'provider', 'request', ['requestBody']],
      ['modelgate.stage provider response', 'provider', 'response', ['responseHeaders']],
    ],
    'one span per stage and direction; the audit stage is not its own child',
  )
  for (const c of children) {
    t.equal(c.traceId, CALLER_TRACE)
    t.equal(c.kind, 1, 'INTERNAL')
    t.ok(BigInt(c.startTimeUnixNano) >= BigInt(root!.startTimeUnixNano), 'starts within the request')
  }
})

/** Every detection redacted (none let through as is), so the recorded content may be kept. */
function allRedacted(ctx: RequestContext): RequestContext {
  ctx.findings.forEach((f, i) => (ctx.findings[i] = { ...f, action: f.action === 'allow' ? 'redact' : f.action }))
  return ctx
}

t.test('a secret in the prompt appears in no exported byte, content recording on or off', async (t) => {
  for (const content of [false, true]) {
    const { rx, audit } = await setup(t, { audit: { content: { enabled: content } } })
    const ctx = allRedacted(allowedContext({ secret: SECRET }))
    t.notMatch(JSON.stringify(ctx.out.request), SECRET, 'the parsed request is a summary without the prompt')
    drive(audit.stage, ctx)
    await audit.flush()
    await rx.waitFor(() => rx.records().length === 1)
    t.notOk(rx.allBytes().includes(Buffer.from(SECRET)), `content ${content}: no exported byte holds the secret`)
    const [root] = rx.records()
    if (content) t.equal(root!.attributes['modelgate.request.content'], ctx.requestBody.toString(), 'the redacted body is recorded')
    else t.notOk('modelgate.request.content' in root!.attributes, 'no content by default')
  }
})

t.test('content a policy let through unredacted is never recorded', async (t) => {
  const { rx, audit } = await setup(t, { audit: { content: { enabled: true } } })
  // The fixture's request carries an e-mail address policy allowed as is.
  const ctx = allowedContext({ id: 'as-is' })
  ctx.replaceRequestBody(Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'write to dana@example.org' }] })))
  ctx.addFinding({ detector: 'email', dataClass: 'pii.email', confidence: 'high', direction: 'response', location: '$', start: 0, length: 3, hash: 'h', action: 'allow' })
  audit.stage.requestHeaders!(ctx)
  audit.stage.requestBody!(ctx)
  audit.stage.responseHeaders!(ctx)
  audit.stage.responseBody!(ctx, { data: Buffer.from('{"reply":"dana@example.org"}'), end: true })
  audit.stage.close!(ctx, { kind: 'completed' })
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  const a = rx.records()[0]!.attributes
  t.equal(a['modelgate.request.content_omitted'], 'unredacted_data')
  t.equal(a['modelgate.response.content_omitted'], 'unredacted_data')
  t.notOk('modelgate.request.content' in a)
  t.notOk('modelgate.response.content' in a)
  t.notOk(rx.allBytes().includes(Buffer.from('dana@example.org')))
})

t.test('a denied request body is not recorded: it never left', async (t) => {
  const { rx, audit } = await setup(t, { audit: { content: { enabled: true } } })
  drive(audit.stage, allRedacted(deniedContext('MG_POLICY_DENIED')))
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  const a = rx.records()[0]!.attributes
  t.notOk('modelgate.request.content' in a)
  t.notOk('modelgate.request.content_omitted' in a)
})

t.test('response content is what left modelgate after later stages rewrote the chunks', async (t) => {
  const { rx, audit } = await setup(t, { audit: { content: { enabled: true, maxBytes: 24 } } })
  const ctx = allRedacted(allowedContext())
  audit.stage.requestHeaders!(ctx)
  audit.stage.requestBody!(ctx)
  audit.stage.responseHeaders!(ctx)
  const chunks = ['data: {"x":"my key AKIA', 'Z7Q3EXAMPLEKEY42"}\n\n', 'data: [DONE]\n\n']
  for (const [i, text] of chunks.entries()) {
    const chunk: BodyChunk = { data: Buffer.from(text), end: i === chunks.length - 1 }
    audit.stage.responseBody!(ctx, chunk)
    // A later stage (redaction) replaces the bytes in place.
    chunk.data = Buffer.from(text.replace(/AKIA|Z7Q3EXAMPLEKEY42/g, '[X]'))
  }
  audit.stage.close!(ctx, { kind: 'completed' })
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  const a = rx.records()[0]!.attributes
  // 24 bytes of the rewritten stream: the first chunk and the start of the second.
  t.equal(a['modelgate.response.content'], 'data: {"x":"my key [X][X')
  t.equal(a['modelgate.response.content_truncated'], true)
  t.equal(a['modelgate.request.content_truncated'], true, 'the request body is over the 24-byte cap')
  t.notOk(rx.allBytes().includes(Buffer.from('EXAMPLEKEY42')))
})

t.test('content recording needs redaction', async (t) => {
  t.throws(() => createAuditStage(testConfig({ content: { enabled: true } }, { redaction: false }), { logger: memoryLogger(), env: {} }), {
    message: 'audit.content.enabled needs redaction.enabled: content is only recorded after redaction',
  })
})

t.test('the span ends exactly once, however the stream ends', async (t) => {
  const { rx, audit } = await setup(t)
  const completed = allowedContext({ id: 'done' })
  drive(audit.stage, completed)
  audit.stage.close!(completed, { kind: 'completed' })
  const cancelled = allowedContext({ id: 'reset' })
  audit.stage.requestHeaders!(cancelled)
  audit.stage.close!(cancelled, { kind: 'cancelled' })
  const failed = allowedContext({ id: 'broken' })
  audit.stage.requestHeaders!(failed)
  audit.stage.close!(failed, { kind: 'error', error: Object.assign(new Error('x'), { code: 13 }) })
  // Denied before the audit stage ran (e.g. the server is draining): close alone still records it.
  const early = new RequestContext()
  early.id = 'early'
  early.denial = new GateError('MG_SHUTTING_DOWN')
  audit.stage.close!(early, { kind: 'completed' })
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 4)
  const byId = Object.fromEntries(rx.records().map((s) => [s.attributes['modelgate.request.id'], s]))
  t.same(Object.keys(byId).sort(), ['broken', 'done', 'early', 'reset'])
  t.equal(byId.done!.attributes['modelgate.outcome'], 'allowed')
  t.equal(byId.reset!.attributes['modelgate.outcome'], 'cancelled')
  t.equal(byId.broken!.attributes['modelgate.outcome'], 'error')
  t.equal(byId.broken!.status.code, 2, 'ERROR status')
  t.equal(byId.broken!.attributes['error.type'], '13')
  t.equal(byId.early!.attributes['modelgate.denial.code'], 'MG_SHUTTING_DOWN')
  t.equal(byId.early!.name, 'modelgate.request')
})

t.test('a request Envoy started while modelgate was stopped is recorded from Envoy\'s start, with its real duration', async (t) => {
  const { rx, audit } = await setup(t)
  // modelgate saw the stream now; Envoy had started the request 2.5 s earlier (modelgate was stopped).
  const late = allowedContext({ id: 'late' })
  const envoyStartMs = late.startedAt - 2500
  late.attributes.set('request.time', `${new Date(envoyStartMs).toISOString().slice(0, 23)}250+00:00`)
  audit.stage.requestHeaders!(late)
  audit.stage.close!(late, { kind: 'cancelled' })
  // An ordinary request: Envoy's start and modelgate's are a moment apart.
  const prompt = allowedContext({ id: 'prompt' })
  prompt.attributes.set('request.time', new Date(prompt.startedAt).toISOString())
  drive(audit.stage, prompt)
  // No attribute (an Envoy not configured to send it): the stream's start.
  const plain = allowedContext({ id: 'plain' })
  drive(audit.stage, plain)
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 3)
  const byId = Object.fromEntries(rx.records().map((s) => [s.attributes['modelgate.request.id'], s]))
  const l = toRecord(byId.late!)
  t.equal(l.start, String(BigInt(envoyStartMs) * 1_000_000n + 250_000n), 'the span starts at Envoy\'s request start')
  const duration = l.attributes['modelgate.duration_ms'] as number
  // Envoy's start is 2499.75 ms before modelgate saw the stream (request.time carries 250 µs).
  t.ok(duration >= 2499.75 && duration < 4000, `the duration covers the pause (${duration} ms)`)
  t.equal(Math.round(Number(BigInt(l.end) - BigInt(l.start)) / 1e3) / 1e3, duration, 'the span\'s end minus its start is the recorded duration (to the µs)')
  const wait = l.attributes['modelgate.stream.wait_ms'] as number
  t.ok(wait > 2499 && wait < 2501, `the wait before modelgate saw the stream is recorded (${wait} ms)`)
  t.equal(l.attributes['modelgate.outcome'], 'cancelled')
  t.ok((byId.prompt!.attributes['modelgate.stream.wait_ms'] as number) < 1, 'no wait for a prompt stream')
  t.equal(toRecord(byId.plain!).start, String(BigInt(plain.startedAt) * 1_000_000n), 'without request.time: when modelgate saw the stream')
  t.notOk('modelgate.stream.wait_ms' in byId.plain!.attributes)
})

t.test('a refused request records its findings as withheld, a sent one as redaction left them', async (t) => {
  const { rx, audit } = await setup(t)
  // A stage after redaction refused the request: the redacted and the allowed value never left.
  const late = allowedContext({ id: 'quota' })
  late.findings.splice(2, 1)
  late.denial = new GateError('MG_QUOTA_EXCEEDED')
  late.responseStatus = undefined
  audit.stage.requestHeaders!(late)
  audit.stage.requestBody!(late)
  audit.stage.close!(late, { kind: 'completed' })
  drive(audit.stage, allowedContext({ id: 'sent' }))
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 2)
  const byId = Object.fromEntries(rx.records().map((s) => [s.attributes['modelgate.request.id'], s]))
  t.match(byId.quota!.attributes, { 'modelgate.redaction.action': 'withheld', 'modelgate.redaction.withheld_classes': ['pii.email', 'secret.cloud_key'] })
  t.notOk('modelgate.redaction.redacted_classes' in byId.quota!.attributes)
  t.match(byId.sent!.attributes, { 'modelgate.redaction.action': 'redact', 'modelgate.redaction.redacted_classes': ['pii.email', 'secret.cloud_key'], 'modelgate.redaction.allowed_classes': ['pii.email'] })
})

t.test('the caller trace comes from the Process metadata, else the traceparent header', async (t) => {
  const fromHeader = allowedContext()
  fromHeader.requestHeaders.set('traceparent', `00-${'1'.repeat(32)}-${'2'.repeat(16)}-00`)
  fromHeader.requestHeaders.set('tracestate', 'vendor=a')
  const sc = trace.getSpanContext(parentContext(fromHeader))!
  t.equal(sc.traceId, '1'.repeat(32))
  t.equal(sc.spanId, '2'.repeat(16))
  t.equal(sc.isRemote, true)
  t.equal(sc.traceState?.get('vendor'), 'a')
  const both = allowedContext({ traceparent: TRACEPARENT })
  both.requestHeaders.set('traceparent', `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`)
  t.equal(trace.getSpanContext(parentContext(both))!.traceId, CALLER_TRACE, 'metadata first')
  for (const bad of ['garbage', `00-${'0'.repeat(32)}-${'2'.repeat(16)}-01`, `00-${'1'.repeat(32)}-${'0'.repeat(16)}-01`]) {
    const ctx = allowedContext({ traceparent: bad })
    t.equal(trace.getSpanContext(parentContext(ctx)), undefined, `ignored: ${bad}`)
  }
  t.equal(trace.getSpanContext(parentContext(allowedContext())), undefined, 'none: a new trace')
})

t.test('an unsampled caller trace is still recorded', async (t) => {
  const { rx, audit } = await setup(t)
  drive(audit.stage, allowedContext({ traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-00` }))
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  t.equal(rx.records()[0]!.traceId, CALLER_TRACE)
})

t.test('collector down for N requests, then up: all N records arrive, chained, none lost', async (t) => {
  for (const mode of ['refuse', 'unavailable', 'hang'] as const) {
    const { rx, audit } = await setup(t)
    drive(audit.stage, allowedContext({ id: `${mode}-before` }))
    await audit.flush()
    await rx.waitFor(() => rx.records().length === 1)
    await rx.down(mode)
    const N = 25
    for (let i = 0; i < N; i++) drive(audit.stage, i % 5 === 0 ? deniedContext('MG_POLICY_DENIED', { id: `${mode}-${i}` }) : allowedContext({ id: `${mode}-${i}` }))
    await audit.flush()
    t.ok(audit.status().collectorDown, `${mode}: the trail noticed`)
    t.ok(audit.status().spoolBytes > 0, `${mode}: records are on disk`)
    await rx.up()
    await rx.waitFor(() => new Set(rx.records().map((s) => s.attributes['modelgate.request.id'])).size === N + 1, 15000, `${mode}: every record`)
    const ids = new Set(rx.records().map((s) => s.attributes['modelgate.request.id']))
    for (let i = 0; i < N; i++) t.ok(ids.has(`${mode}-${i}`), `${mode}-${i} arrived`)
    await audit.shutdown()
    await rx.waitFor(() => rx.spans.some((s) => s.name === 'modelgate.audit.chain_end'), 5000, 'the chain end')
    const result = verifyRecords(rx.spans.map(toRecord))
    t.same(result.problems, [], `${mode}: the chain is complete`)
    t.equal(result.chains[0]!.records, N + 2)
    t.ok(result.chains[0]!.ended)
    t.equal(audit.status().spoolBytes, 0, `${mode}: the spool is empty`)
  }
})

t.test('when the spool is full new requests are refused, and admitted again once it drains', async (t) => {
  const { rx, audit, log } = await setup(t, { audit: { spool: { maxBytes: 4096 } } })
  await rx.down('refuse')
  let refused: unknown
  for (let i = 0; i < 200 && !refused; i++) {
    const ctx = allowedContext({ id: `fill-${i}` })
    try {
      drive(audit.stage, ctx)
    } catch (err) {
      refused = err
      // The pipeline records the denial and closes the stream.
      ctx.denial = err as GateError
      audit.stage.close!(ctx, { kind: 'completed' })
    }
    await audit.flush()
  }
  t.type(refused, GateError)
  t.equal((refused as GateError).code, 'MG_AUDIT_UNAVAILABLE')
  t.equal((refused as GateError).status, 503)
  t.ok(audit.status().refusing)
  t.ok(log.lines.some((l) => l.msg === 'audit trail cannot keep records: refusing requests'))
  await rx.up()
  await rx.waitFor(() => audit.status().spoolBytes === 0, 15000, 'the spool to drain')
  const again = allowedContext({ id: 'after' })
  t.doesNotThrow(() => drive(audit.stage, again), 'admitted again')
  await audit.flush()
  await rx.waitFor(() => rx.records().some((s) => s.attributes['modelgate.request.id'] === 'after'))
  // The refusal itself was recorded too: no decision without a record.
  t.ok(rx.records().some((s) => s.attributes['modelgate.denial.code'] === 'MG_AUDIT_UNAVAILABLE'))
  // Every record arrives, a batch retried from before the outage possibly after the newest one.
  await rx.waitFor(() => verifyRecords(rx.records().map(toRecord)).problems.length === 0, 15000, 'every record of the chain').catch(() => {})
  t.same(verifyRecords(rx.records().map(toRecord)).problems, [])
})

t.test('whenUnavailable: allow lets requests through when the spool is full', async (t) => {
  const { rx, audit } = await setup(t, { audit: { whenUnavailable: 'allow', spool: { maxBytes: 2048 } } })
  await rx.down('refuse')
  for (let i = 0; i < 50; i++) {
    drive(audit.stage, allowedContext({ id: `a-${i}` }))
    await audit.flush()
  }
  t.ok(audit.status().dropped > 0, 'records beyond the spool are dropped')
  t.notOk(audit.status().refusing)
})

t.test('without stage spans, the default, a request is one span', async (t) => {
  const { rx, audit } = await setup(t, { audit: { stageSpans: auditSection().stageSpans } })
  drive(audit.stage, allowedContext())
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  t.equal(rx.spans.length, 1)
})

t.test('shutdown writes the chain-end record and logs the chain head', async (t) => {
  const { rx, audit, log } = await setup(t)
  drive(audit.stage, allowedContext())
  await audit.shutdown()
  await audit.shutdown()
  await rx.waitFor(() => rx.records().length === 2)
  const end = rx.records().find((s) => s.name === 'modelgate.audit.chain_end')!
  t.equal(end.attributes['modelgate.audit.seq'], 2)
  t.equal(end.attributes['modelgate.audit.final'], true)
  const closed = log.lines.find((l) => l.msg === 'audit chain closed')!
  t.equal(closed.head, end.attributes['modelgate.audit.hash'])
  t.equal(closed.seq, 2)
})

t.test('records also go to the file sink', async (t) => {
  const dir = tempDir(t)
  const { audit } = await setup(t, { audit: { file: join(dir, 'log', 'audit.jsonl') } })
  drive(audit.stage, allowedContext())
  drive(audit.stage, deniedContext('MG_QUOTA_EXCEEDED'))
  await audit.shutdown()
  const records = readFileSync(join(dir, 'log', 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as SpanRecord)
  const result = verifyRecords(records)
  t.same(result.problems, [])
  t.equal(result.chains[0]!.records, 3)
  t.ok(result.chains[0]!.ended)
})

t.test('OTLP/gRPC export reaches a gRPC receiver', async (t) => {
  const rx = await OtlpReceiver.start({ grpc: true })
  t.teardown(() => rx.close())
  const { audit } = await setup(t, { rx, env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: rx.grpcUrl, OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=acme', OTEL_METRICS_EXPORTER: 'none' } })
  drive(audit.stage, allowedContext({ traceparent: TRACEPARENT }))
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  t.equal(rx.records()[0]!.traceId, CALLER_TRACE)
  t.ok(rx.requests.every((r) => r.transport === 'grpc'))
  t.equal(rx.requests[0]!.headers['x-tenant'], 'acme')
})

t.test('headers from OTEL_EXPORTER_OTLP_HEADERS reach the collector', async (t) => {
  const { rx, audit } = await setup(t, { env: { OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20t0ken' } })
  drive(audit.stage, allowedContext())
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1)
  t.equal(rx.requests.find((r) => r.path === '/v1/traces')!.headers.authorization, 'Bearer t0ken')
})

t.test('an unusable OTEL environment stops start-up with every problem listed', async (t) => {
  t.throws(() => createAuditStage(testConfig(), { logger: memoryLogger(), env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://x', OTEL_EXPORTER_OTLP_TIMEOUT: 'x' } }), {
    message: /^audit: the OpenTelemetry environment cannot be used:\n {2}OTEL_EXPORTER_OTLP_TIMEOUT="x": must be an integer from 1 to 600000\n {2}OTEL_EXPORTER_OTLP_ENDPOINT="ftp:\/\/x\/v1\/traces": must start with http:\/\/ or https:\/\//,
  })
})

t.test('a disabled trail without metrics configured is a stage without phases', async (t) => {
  const log = memoryLogger()
  const audit = createAuditStage(testConfig({ enabled: false }), { logger: log, env: {} })
  t.same(Object.keys(audit.stage), ['name'])
  t.equal(audit.status().seq, 0)
  await audit.flush()
  await audit.shutdown()
  t.ok(log.lines.some((l) => l.level === 'warn' && String(l.msg).startsWith('audit trail disabled')))
})

t.test('with audit records off, the metrics endpoint still counts every request', async (t) => {
  const log = memoryLogger()
  const audit = createAuditStage(testConfig({ enabled: false }, { metricsListen: '127.0.0.1:0' }), { logger: log, env: {} })
  t.teardown(() => audit.shutdown())
  await audit.ready()
  const address = audit.metricsAddress()
  t.ok(address, 'the Prometheus endpoint listens')
  const ctx = new RequestContext()
  ctx.denial = new GateError('MG_POLICY_DENIED')
  audit.stage.close!(ctx, { kind: 'completed' })
  const text = await (await fetch(`http://${address}/metrics`)).text()
  t.match(text, /modelgate_requests_total\{[^}]*outcome="denied"[^}]*\} 1/, 'the denied request is counted')
  t.match(text, /modelgate_denials_total\{[^}]*MG_POLICY_DENIED[^}]*\} 1/, 'with its code')
  t.equal(audit.status().seq, 0, 'and no record is kept')
})

t.test('with no OTLP endpoint and no file the operator is warned', async (t) => {
  const log = memoryLogger()
  const dir = tempDir(t)
  const audit = createAuditStage(testConfig({ spool: { dir: join(dir, 's') } }), { logger: log, env: {} })
  t.ok(log.lines.some((l) => String(l.msg).startsWith('audit records go nowhere')))
  t.notOk(existsSync(join(dir, 's')), 'no spool without an exporter')
  await audit.shutdown()
})

t.test('a stage that had nothing to do for the request has no span of its own; its time stays on the request span', async (t) => {
  const { rx, audit } = await setup(t)
  const ctx = allowedContext({ traceparent: TRACEPARENT })
  ctx.markIdle('policy')
  drive(audit.stage, ctx)
  await audit.flush()
  await rx.waitFor(() => rx.records().length === 1, 5000, 'the record')
  const [root] = rx.records()
  t.type(root!.attributes['modelgate.stage.policy.duration_ms'], 'number')
  const children = rx.spans.filter((s) => s.parentSpanId === root!.spanId).map((c) => c.name)
  t.same(children.sort(), ['modelgate.stage identity request', 'modelgate.stage provider request', 'modelgate.stage provider response'])
})
