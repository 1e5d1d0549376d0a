import t from 'tap'
import { createServer } from 'node:net'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { createAuditMetrics, parseListen } from '../../../src/audit/metrics.ts'
import { createAuditStage } from '../../../src/audit/stage.ts'
import { OtlpReceiver } from '../../helpers/otlp-receiver.ts'
import { allowedContext, deniedContext, drive, memoryLogger, tempDir, testConfig } from './fixtures.ts'
import { join } from 'node:path'
import { loadAuditExporters } from '../../../src/audit/exporters.ts'

// Every exporter this file's audit stages may be configured with.
await loadAuditExporters()

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

async function scrape(address: string): Promise<string> {
  const res = await fetch(`http://${address}/metrics`)
  t.equal(res.status, 200)
  return res.text()
}

t.test('requests, denials, redactions, quota refusals, stage latency and tokens are served to Prometheus', async (t) => {
  const port = await freePort()
  const audit = createAuditStage(testConfig({}, { metricsListen: `127.0.0.1:${port}` }), { logger: memoryLogger(), env: {} })
  t.teardown(() => audit.shutdown())
  await audit.ready()
  t.equal(audit.metricsAddress(), `127.0.0.1:${port}`)
  drive(audit.stage, allowedContext())
  drive(audit.stage, deniedContext('MG_POLICY_DENIED'))
  drive(audit.stage, deniedContext('MG_QUOTA_EXCEEDED', { details: { rule: 'team-daily-tokens' } }))
  const text = await scrape(audit.metricsAddress()!)
  const line = (re: RegExp) => text.split('\n').find((l) => re.test(l))
  t.equal(line(/^modelgate_requests_total\{.*modelgate_outcome="allowed"/), 'modelgate_requests_total{gen_ai_provider_name="openai",gen_ai_operation_name="chat",modelgate_outcome="allowed"} 1')
  t.match(line(/^modelgate_requests_total\{.*modelgate_outcome="denied"/), / 2$/)
  t.equal(line(/^modelgate_denials_total\{modelgate_denial_code="MG_POLICY_DENIED"\}/), 'modelgate_denials_total{modelgate_denial_code="MG_POLICY_DENIED"} 1')
  t.equal(line(/^modelgate_quota_refusals_total/), 'modelgate_quota_refusals_total{modelgate_quota_rule="team-daily-tokens"} 1')
  // Only the allowed request sent the key (redacted); the two refused requests sent nothing.
  t.equal(line(/^modelgate_redactions_total\{modelgate_data_class="secret.cloud_key",modelgate_redaction_action="redact"/), 'modelgate_redactions_total{modelgate_data_class="secret.cloud_key",modelgate_redaction_action="redact",modelgate_data_direction="request"} 1')
  t.equal(line(/^modelgate_redactions_total\{modelgate_data_class="secret.cloud_key",modelgate_redaction_action="withheld"/), 'modelgate_redactions_total{modelgate_data_class="secret.cloud_key",modelgate_redaction_action="withheld",modelgate_data_direction="request"} 2')
  t.equal(line(/^modelgate_stage_duration_bucket\{modelgate_stage_name="policy",le="0.0005"\}/), 'modelgate_stage_duration_bucket{modelgate_stage_name="policy",le="0.0005"} 3', 'stage latency histogram')
  t.match(line(/^gen_ai_client_token_usage_sum\{.*gen_ai_token_type="input"/), / 12$/)
  t.match(line(/^gen_ai_client_token_usage_sum\{.*gen_ai_token_type="output"/), / 34$/)
  t.equal(line(/^modelgate_request_duration_count\{modelgate_outcome="allowed"\}/), 'modelgate_request_duration_count{modelgate_outcome="allowed"} 1')
  t.equal(line(/^modelgate_audit_spool_size/), 'modelgate_audit_spool_size 0', 'spool gauge')
  t.notMatch(text, 'spiffe://', 'identities are never metric labels')
  const notFound = await fetch(`http://${audit.metricsAddress()}/other`)
  t.equal(notFound.status, 404)
  await notFound.text()
})

t.test('metrics are pushed over OTLP to the collector', async (t) => {
  const rx = await OtlpReceiver.start()
  t.teardown(() => rx.close())
  const dir = tempDir(t)
  const audit = createAuditStage(testConfig({ spool: { dir: join(dir, 'spool') } }), {
    logger: memoryLogger(),
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url, OTEL_METRIC_EXPORT_INTERVAL: '3600000', OTEL_BSP_SCHEDULE_DELAY: '10' },
  })
  t.teardown(() => audit.shutdown())
  drive(audit.stage, allowedContext())
  drive(audit.stage, deniedContext('MG_DATA_BLOCKED'))
  await audit.flush()
  await rx.waitFor(() => rx.metrics.length > 0, 5000, 'metrics')
  const names = new Set(rx.metrics.map((m) => m.name))
  for (const n of ['modelgate.requests', 'modelgate.denials', 'modelgate.redactions', 'modelgate.stage.duration', 'modelgate.request.duration', 'gen_ai.client.token.usage', 'modelgate.audit.spool.size']) {
    t.ok(names.has(n), n)
  }
  const denials = rx.metric('modelgate.denials').at(-1)!
  t.same(denials.points.map((p) => [p.attributes['modelgate.denial.code'], p.value]), [['MG_DATA_BLOCKED', 1]])
  const stage = rx.metric('modelgate.stage.duration').at(-1)!
  t.equal(stage.type, 'histogram')
  t.equal(stage.unit, 's')
})

t.test('a metrics address that cannot be bound is reported by ready()', async (t) => {
  const taken = createServer()
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => taken.close(() => r())))
  const port = (taken.address() as { port: number }).port
  const log = memoryLogger()
  const m = createAuditMetrics({ resource: resourceFromAttributes({}), otlp: undefined, prometheusListen: `127.0.0.1:${port}`, logger: log, spoolBytes: () => 0 })
  await t.rejects(m.ready(), { code: 'EADDRINUSE' })
  t.ok(log.lines.some((l) => l.msg === 'metrics endpoint cannot listen'))
  await m.shutdown()
})

t.test('listen addresses are host:port, IPv6 in brackets', async (t) => {
  t.same(parseListen('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 })
  t.same(parseListen('[::1]:9464'), { host: '::1', port: 9464 })
  t.same(parseListen('localhost:0'), { host: 'localhost', port: 0 })
  t.throws(() => parseListen('9464'), { message: 'server.metricsListen "9464": expected host:port' })
  t.throws(() => parseListen('h:99999'), { message: 'server.metricsListen "h:99999": port out of range' })
})
