/**
 * modelgate's metrics, on a MeterProvider of its own: requests, denials by
 * reason, redactions by data class, quota refusals, stage latency, request
 * latency, token usage, and the audit trail's own health. Exported over OTLP
 * (periodically) and/or served to Prometheus at `server.metricsListen`.
 *
 * Metric attributes are bounded sets (outcomes, error codes, data classes,
 * stage names, providers); identities never become metric labels.
 */
import { createServer, type Server } from 'node:http'
import type { Counter, Histogram, Meter } from '@opentelemetry/api'
import type { Resource } from '@opentelemetry/resources'
import { MeterProvider, PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from '@opentelemetry/sdk-metrics'
import type { Logger } from '../log.ts'
import { exporterClass } from './exporters.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { TransportEvent } from '../server/transport.ts'
import {
  GEN_AI_OPERATION_NAME,
  GEN_AI_PROVIDER_NAME,
  GEN_AI_REQUEST_MODEL,
  GEN_AI_TOKEN_TYPE,
  METRIC_ATTR_CLOSED_BY,
  METRIC_ATTR_DATA_CLASS,
  METRIC_ATTR_DIRECTION,
  METRIC_ATTR_QUOTA_RULE,
  METRIC_ATTR_STREAM_ANSWERED,
  METRIC_AUDIT_DROPPED,
  METRIC_AUDIT_EXPORT_FAILURES,
  METRIC_AUDIT_SPOOL_SIZE,
  METRIC_DENIALS,
  METRIC_EXTPROC_CONNECTIONS_CLOSED,
  METRIC_EXTPROC_STREAM_RESETS,
  METRIC_QUOTA_REFUSALS,
  METRIC_QUOTA_STORE_ERRORS,
  METRIC_QUOTA_TOKENS,
  METRIC_ATTR_QUOTA_PHASE,
  METRIC_ATTR_QUOTA_STORE_OUTCOME,
  METRIC_REDACTIONS,
  METRIC_REQUEST_DURATION,
  METRIC_REQUESTS,
  METRIC_STAGE_DURATION,
  METRIC_TOKEN_USAGE,
  MG_DENIAL_CODE,
  MG_OUTCOME,
  MG_REDACTION_ACTION,
  MG_STAGE_NAME,
} from './attributes.ts'
import type { OtlpTarget } from './otel-env.ts'
import { genAiOperation, genAiProvider, type Outcome } from './span-attributes.ts'

/** Seconds: stage work is sub-millisecond to tens of milliseconds. */
const STAGE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
/** Seconds: requests include the model's time. */
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
/** GenAI semconv advice for gen_ai.client.token.usage. */
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

export interface MetricsOptions {
  readonly resource: Resource
  /** OTLP/HTTP metrics target, or undefined. */
  readonly otlp: (OtlpTarget & { readonly intervalMs: number }) | undefined
  /** `host:port` for a Prometheus scrape endpoint (`/metrics`), or ''. */
  readonly prometheusListen: string
  readonly logger: Logger
  /** Observed on every collection: bytes in the audit spool. */
  readonly spoolBytes: () => number
}

export interface AuditMetrics {
  /** Records one finished request. */
  record(ctx: RequestContext, outcome: Outcome, durationMs: number): void
  recordDropped(count: number): void
  recordExportFailure(): void
  /** Counts an ext_proc stream reset or a connection that ended with streams open. */
  recordTransport(event: TransportEvent): void
  /** Resolves once the Prometheus endpoint listens (immediately when there is none). */
  ready(): Promise<void>
  /** The Prometheus endpoint actually bound (`host:port`), if any. */
  prometheusAddress(): string | undefined
  forceFlush(): Promise<void>
  shutdown(): Promise<void>
}

/** Parses `host:port` (IPv6 in brackets). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(listen.trim())
  if (!m) throw new Error(`server.metricsListen ${JSON.stringify(listen)}: expected host:port`)
  const port = Number(m[3])
  if (port > 65535) throw new Error(`server.metricsListen ${JSON.stringify(listen)}: port out of range`)
  return { host: (m[1] ?? m[2])!, port }
}

export function createAuditMetrics(opts: MetricsOptions): AuditMetrics {
  const readers: IMetricReader[] = []
  let server: Server | undefined
  let promReady: Promise<void> = Promise.resolve()
  if (opts.prometheusListen) {
    const { host, port } = parseListen(opts.prometheusListen)
    // The exporter serialises; the HTTP server is ours, so it binds exactly where configured.
    const prometheus = new (exporterClass('PrometheusExporter'))({ preventServerStart: true, withoutScopeInfo: true })
    server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]
      if (req.method === 'GET' && path === '/metrics') return prometheus.getMetricsRequestHandler(req, res)
      res.statusCode = 404
      res.end('not found\n')
    })
    const srv = server
    promReady = new Promise<void>((resolve, reject) => {
      srv.once('error', (err) => {
        opts.logger.error('metrics endpoint cannot listen', { listen: opts.prometheusListen, error: err.message })
        reject(err)
      })
      srv.listen(port, host, () => resolve())
    })
    // Logged above; callers that await ready() still see the failure.
    promReady.catch(() => {})
    // The exporter's MetricReader comes from its own copy of sdk-metrics; the interface is the same.
    readers.push(prometheus as unknown as IMetricReader)
  }
  if (opts.otlp) {
    const exporter = new (exporterClass('OTLPMetricExporter'))({
      url: opts.otlp.url,
      headers: { ...opts.otlp.headers },
      timeoutMillis: opts.otlp.timeoutMs,
    })
    readers.push(
      new PeriodicExportingMetricReader({
        exporter: exporter as unknown as PushMetricExporter,
        exportIntervalMillis: opts.otlp.intervalMs,
        exportTimeoutMillis: Math.min(opts.otlp.timeoutMs, opts.otlp.intervalMs),
      }),
    )
  }
  const provider = new MeterProvider({ resource: opts.resource, readers })
  const meter: Meter = provider.getMeter('modelgate')

  const requests: Counter = meter.createCounter(METRIC_REQUESTS, { description: 'Requests modelgate finished, by outcome.', unit: '{request}' })
  const denials: Counter = meter.createCounter(METRIC_DENIALS, { description: 'Requests refused, by error code.', unit: '{request}' })
  const redactions: Counter = meter.createCounter(METRIC_REDACTIONS, { description: 'Detections, by data class, action and direction.', unit: '{finding}' })
  const quotaRefusals: Counter = meter.createCounter(METRIC_QUOTA_REFUSALS, { description: 'Requests refused, or streams ended, by a quota rule.', unit: '{request}' })
  const quotaTokens: Counter = meter.createCounter(METRIC_QUOTA_TOKENS, { description: 'Tokens reserved and settled, by quota rule.', unit: '{token}' })
  const quotaStoreErrors: Counter = meter.createCounter(METRIC_QUOTA_STORE_ERRORS, { description: 'Requests whose quota store could not be reached, by what happened to them.', unit: '{request}' })
  const stageDuration: Histogram = meter.createHistogram(METRIC_STAGE_DURATION, {
    description: 'Time one stage spent on one request.',
    unit: 's',
    advice: { explicitBucketBoundaries: STAGE_BUCKETS },
  })
  const requestDuration: Histogram = meter.createHistogram(METRIC_REQUEST_DURATION, {
    description: 'Time modelgate held a request open (the model included).',
    unit: 's',
    advice: { explicitBucketBoundaries: REQUEST_BUCKETS },
  })
  const tokenUsage: Histogram = meter.createHistogram(METRIC_TOKEN_USAGE, {
    description: 'Tokens per request, as the provider reported them.',
    unit: '{token}',
    advice: { explicitBucketBoundaries: TOKEN_BUCKETS },
  })
  const dropped: Counter = meter.createCounter(METRIC_AUDIT_DROPPED, { description: 'Audit records lost because the spool was past its hard limit.', unit: '{record}' })
  const exportFailures: Counter = meter.createCounter(METRIC_AUDIT_EXPORT_FAILURES, { description: 'Failed OTLP exports of audit records.', unit: '{export}' })
  const streamResets: Counter = meter.createCounter(METRIC_EXTPROC_STREAM_RESETS, { description: 'ext_proc streams reset before modelgate ended them.', unit: '{stream}' })
  const connectionsClosed: Counter = meter.createCounter(METRIC_EXTPROC_CONNECTIONS_CLOSED, { description: 'ext_proc connections ended with streams open, or ended by modelgate.', unit: '{connection}' })
  meter
    .createObservableGauge(METRIC_AUDIT_SPOOL_SIZE, { description: 'Bytes of audit records waiting in the spool.', unit: 'By' })
    .addCallback((r) => r.observe(opts.spoolBytes()))

  return {
    record(ctx, outcome, durationMs) {
      const provider = ctx.out.request ? genAiProvider(ctx.out.request.provider) : undefined
      const operation = ctx.out.request ? genAiOperation(ctx.out.request.operation) : undefined
      const base: Record<string, string> = {}
      if (provider) base[GEN_AI_PROVIDER_NAME] = provider
      if (operation) base[GEN_AI_OPERATION_NAME] = operation
      requests.add(1, { ...base, [MG_OUTCOME]: outcome })
      requestDuration.record(durationMs / 1000, { [MG_OUTCOME]: outcome })
      if (ctx.denial) {
        denials.add(1, { [MG_DENIAL_CODE]: ctx.denial.code })
        if (ctx.denial.code === 'MG_QUOTA_EXCEEDED') {
          const rule = ctx.denial.details.rule
          quotaRefusals.add(1, typeof rule === 'string' ? { [METRIC_ATTR_QUOTA_RULE]: rule.slice(0, 64) } : {})
        }
      }
      // Rule names come from the configuration: a bounded set of label values.
      const q = ctx.out.quota
      if (q) {
        if (q.storeError !== undefined) quotaStoreErrors.add(1, { [METRIC_ATTR_QUOTA_STORE_OUTCOME]: q.store === 'local' ? 'local' : 'denied' })
        for (const rule of q.rules) {
          if (q.reservedTokens) quotaTokens.add(q.reservedTokens, { [METRIC_ATTR_QUOTA_RULE]: rule, [METRIC_ATTR_QUOTA_PHASE]: 'reserved' })
          if (q.settledTokens !== undefined && q.reservedTokens) quotaTokens.add(q.settledTokens, { [METRIC_ATTR_QUOTA_RULE]: rule, [METRIC_ATTR_QUOTA_PHASE]: 'settled' })
        }
      }
      for (const f of ctx.findings) {
        redactions.add(1, { [METRIC_ATTR_DATA_CLASS]: f.dataClass, [MG_REDACTION_ACTION]: f.action, [METRIC_ATTR_DIRECTION]: f.direction })
      }
      for (const [stage, ms] of ctx.timings) stageDuration.record(ms / 1000, { [MG_STAGE_NAME]: stage })
      if (ctx.out.request) {
        const tokenAttrs = { ...base, [GEN_AI_REQUEST_MODEL]: ctx.recordableModel(ctx.out.request.model)!.slice(0, 128) }
        const usage = ctx.out.reply?.usage
        if (usage?.input !== undefined) tokenUsage.record(usage.input, { ...tokenAttrs, [GEN_AI_TOKEN_TYPE]: 'input' })
        if (usage?.output !== undefined) tokenUsage.record(usage.output, { ...tokenAttrs, [GEN_AI_TOKEN_TYPE]: 'output' })
      }
    },
    recordDropped(count) {
      dropped.add(count)
    },
    recordExportFailure() {
      exportFailures.add(1)
    },
    recordTransport(e) {
      if (e.kind === 'stream_reset') streamResets.add(1, { [METRIC_ATTR_STREAM_ANSWERED]: String(e.answered) })
      else connectionsClosed.add(1, { [METRIC_ATTR_CLOSED_BY]: e.by })
    },
    ready: () => promReady,
    prometheusAddress() {
      const a = server?.address()
      if (!a || typeof a === 'string') return undefined
      return `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`
    },
    async forceFlush() {
      try {
        await provider.forceFlush()
      } catch (err) {
        opts.logger.warn('metrics export failed', { error: (err as Error).message })
      }
    },
    async shutdown() {
      if (server?.listening) {
        const srv = server
        const closed = new Promise<void>((resolve) => srv.close(() => resolve()))
        srv.closeAllConnections()
        await closed
      }
      try {
        await provider.shutdown()
      } catch (err) {
        opts.logger.warn('metrics shutdown failed', { error: (err as Error).message })
      }
    },
  }
}
