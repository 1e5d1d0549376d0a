/**
 * The OTLP and Prometheus exporter packages, loaded at start-up only when the
 * configuration (or the OpenTelemetry environment) asks for them: together
 * they hold about 15 MB of a process's memory, which a process writing its
 * audit records to a file and serving no metrics should not carry.
 *
 * `loadAuditExporters` runs before the audit stage is built; the stage then
 * takes the classes synchronously. Asking for one that was not loaded is a
 * programming error, reported as such.
 */
import type { OTLPMetricExporter as OtlpMetricExporterClass } from '@opentelemetry/exporter-metrics-otlp-proto'
import type { PrometheusExporter as PrometheusExporterClass } from '@opentelemetry/exporter-prometheus'
import type { OTLPTraceExporter as OtlpTraceExporterClass } from '@opentelemetry/exporter-trace-otlp-proto'

export interface ExporterNeeds {
  readonly traces?: boolean
  readonly metrics?: boolean
  readonly prometheus?: boolean
}

const loaded: {
  OTLPTraceExporter?: typeof OtlpTraceExporterClass
  OTLPMetricExporter?: typeof OtlpMetricExporterClass
  PrometheusExporter?: typeof PrometheusExporterClass
} = {}

/** Loads the exporters named (all of them when nothing is named). */
export async function loadAuditExporters(needs: ExporterNeeds = { traces: true, metrics: true, prometheus: true }): Promise<void> {
  if (needs.traces && !loaded.OTLPTraceExporter) loaded.OTLPTraceExporter = (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter
  if (needs.metrics && !loaded.OTLPMetricExporter) loaded.OTLPMetricExporter = (await import('@opentelemetry/exporter-metrics-otlp-proto')).OTLPMetricExporter
  if (needs.prometheus && !loaded.PrometheusExporter) loaded.PrometheusExporter = (await import('@opentelemetry/exporter-prometheus')).PrometheusExporter
}

export function exporterClass<K extends keyof typeof loaded>(name: K): NonNullable<(typeof loaded)[K]> {
  const c = loaded[name]
  if (!c) throw new Error(`${name} was not loaded: loadAuditExporters() runs before the audit stage is built`)
  return c as NonNullable<(typeof loaded)[K]>
}
