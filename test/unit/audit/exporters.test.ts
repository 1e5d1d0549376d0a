import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { auditExporterNeeds } from '../../../src/audit/stage.ts'
import { testConfig } from './fixtures.ts'

t.test('a process recording to a file and serving no metrics needs no exporter package', async (t) => {
  t.same(auditExporterNeeds(testConfig({ file: '/tmp/audit.jsonl' }), {}), { traces: false, metrics: false, prometheus: false })
})

t.test('OTLP traces over HTTP, OTLP metrics and a metrics endpoint each need their package', async (t) => {
  const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }
  t.same(auditExporterNeeds(testConfig({}), endpoint), { traces: true, metrics: true, prometheus: false })
  t.same(auditExporterNeeds(testConfig({ otlp: 'off', metrics: { otlp: 'off' } }), endpoint), { traces: false, metrics: false, prometheus: false }, 'turned off in the configuration')
  t.same(auditExporterNeeds(testConfig({}, { metricsListen: '127.0.0.1:9464' }), {}), { traces: false, metrics: false, prometheus: true })
  t.same(auditExporterNeeds(testConfig({}), { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' }).traces, true, 'a traces endpoint alone')
})

t.test('with audit records off, only the metrics exporters can be needed', async (t) => {
  t.same(auditExporterNeeds(testConfig({ enabled: false }, { metricsListen: '127.0.0.1:9464' }), { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), { traces: false, metrics: true, prometheus: true })
})

t.test('an exporter asked for before it was loaded is reported as a start-up ordering error', async (t) => {
  // A fresh process: this file's imports have not loaded any exporter.
  const src = fileURLToPath(new URL('../../../src/audit/exporters.ts', import.meta.url))
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(src)}); try { m.exporterClass('PrometheusExporter') } catch (e) { console.log(e.message) }`], { encoding: 'utf8' })
  t.match(out, /PrometheusExporter was not loaded: loadAuditExporters\(\) runs before the audit stage is built/)
})
