/**
 * The audit stage: one OpenTelemetry span per request, the evidence of who
 * sent which data to which model under which policy.
 *
 * It is first in the stage order, so its requestHeaders runs before identity
 * (the span starts there, joined to the caller's trace) and its close() runs
 * last, after every other stage has written what it decided. The span ends
 * exactly once, in close(), however the stream ended (completed, denied,
 * cancelled by Envoy, failed). Child spans per stage are laid out from the
 * pipeline's stage timings (see timeline.ts).
 *
 * No decision without a record: before a request is admitted the stage checks
 * that its record can be kept (spool not full, file writable); if not, and
 * `audit.whenUnavailable` is `deny` (the default), the request is refused with
 * MG_AUDIT_UNAVAILABLE. Records are chained by hash (chain.ts) and delivered
 * by delivery.ts (OTLP with an on-disk spool, and/or a JSON-lines file).
 *
 * Wiring: `const audit = createAuditStage(config, { logger })`; put
 * `audit.stage` first in the pipeline; after the server has drained, await
 * `audit.shutdown()` (writes the chain-end record, flushes or spools every
 * record, stops the metrics endpoint).
 */
import { randomFillSync, randomUUID } from 'node:crypto'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type HrTime, type Span as ApiSpan, type SpanContext } from '@opentelemetry/api'
import { hrTimeDuration, parseTraceParent, TraceState, type InstrumentationScope } from '@opentelemetry/core'
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources'
import { AlwaysOnSampler, TracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace'
import type { Config } from '../config/config.ts'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { BodyChunk, Phase, Stage, StreamOutcome } from '../pipeline/stage.ts'
import type { TransportEvent } from '../server/transport.ts'
import * as A from './attributes.ts'
import { HashChain } from './chain.ts'
import { AuditDelivery, type DeliveryStats } from './delivery.ts'
import { exporterClass, type ExporterNeeds } from './exporters.ts'
import { FileSink } from './file-sink.ts'
import { OtlpGrpcSpanExporter } from './grpc-exporter.ts'
import { createAuditMetrics, type AuditMetrics } from './metrics.ts'
import { describeUrl, readOtelSettings, type OtelSettings } from './otel-env.ts'
import { auditPaths } from './paths.ts'
import { endedSpan, nanosToHrTime, type RecordValue } from './record.ts'
import { captureContent, isFailure, outcomeOf, requestAttributes, requestStart, roundMs, settleFindings, spanName, type CapturedContent } from './span-attributes.ts'
import { Spool } from './spool.ts'
import { Timeline } from './timeline.ts'

export interface AuditStageDeps {
  readonly logger: Logger
  /** The environment OTEL_* settings are read from (default: process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>
}

export interface AuditStatus extends DeliveryStats {
  readonly chainId: string
  readonly seq: number
  readonly head: string
  /** True when new requests are being refused because records cannot be kept. */
  readonly refusing: boolean
}

export interface AuditTrail {
  readonly stage: Stage
  /** Resolves once the metrics endpoint (if any) listens. */
  ready(): Promise<void>
  /** Sends (or spools) every finished record now, and pushes metrics. */
  flush(): Promise<void>
  status(): AuditStatus
  /** `host:port` of the Prometheus endpoint, if one is configured. */
  metricsAddress(): string | undefined
  /** Counts ext_proc stream resets and connections that ended with streams open (the server reports them). */
  recordTransport(event: TransportEvent): void
  /** Call after the server drained: chain-end record, flush or spool everything, stop metrics. Idempotent. */
  shutdown(): Promise<void>
}

const SCOPE = { name: 'modelgate', version: '0.1.0' }
/** Span attribute limit: comfortably above what one record can carry (lists are capped at 64 items). */
const ATTRIBUTE_LIMIT = 1024
const STATE = Symbol('audit')

interface RequestState {
  span: ApiSpan | undefined
  /** The request's start, wall clock ns since the epoch (see requestStart). */
  readonly startNs: bigint
  /** How long before modelgate saw the stream Envoy started the request, when Envoy said. */
  readonly waitNs: bigint | undefined
  readonly timeline: Timeline
  upstreamReached: boolean
  responseComplete: boolean
  responseParts: Buffer[]
  responseBytes: number
  responseTruncated: boolean
  pendingChunk: BodyChunk | undefined
  closed: boolean
}

/** Builds the audit trail from the validated configuration. Throws on unusable OTEL_* settings. */
/** The exporter packages the audit stage will need for this configuration and environment (see exporters.ts). */
export function auditExporterNeeds(config: Config, env: NodeJS.ProcessEnv = process.env): ExporterNeeds {
  const settings = readOtelSettings(config.audit, env)
  return {
    traces: config.audit.enabled && settings.traces !== undefined && settings.traces.protocol !== 'grpc',
    metrics: settings.metrics !== undefined,
    prometheus: config.server.metricsListen !== '',
  }
}

export function createAuditStage(config: Config, deps: AuditStageDeps): AuditTrail {
  const cfg = config.audit
  const logger = deps.logger
  const settings = readOtelSettings(cfg, deps.env ?? process.env)
  if (settings.problems.length > 0) {
    throw new Error(`audit: the OpenTelemetry environment cannot be used:\n  ${settings.problems.join('\n  ')}`)
  }
  for (const w of settings.warnings) logger.warn(w)
  if (!cfg.enabled) {
    logger.warn('audit trail disabled (audit.enabled: false): requests are not recorded')
    return metricsOnlyTrail(config, settings, logger)
  }
  if (settings.sdkDisabled) logger.warn('OTEL_SDK_DISABLED=true: audit spans and metrics are not exported over OTLP')
  if (cfg.content.enabled && !config.redaction.enabled) {
    throw new Error('audit.content.enabled needs redaction.enabled: content is only recorded after redaction')
  }

  const chain = new HashChain()
  const resourceAttrs: Record<string, RecordValue> = {
    ...settings.resourceAttributes,
    'service.name': settings.serviceName,
    'service.instance.id': settings.resourceAttributes['service.instance.id'] ?? chain.id,
  }
  const resource = resourceFromAttributes(resourceAttrs)

  let exporter: SpanExporter | undefined
  let spool: Spool | undefined
  const paths = auditPaths(cfg, config.baseDir)
  const traces = settings.traces
  if (traces) {
    exporter =
      traces.protocol === 'grpc'
        ? new OtlpGrpcSpanExporter(traces)
        : new (exporterClass('OTLPTraceExporter'))({ url: traces.url, headers: { ...traces.headers }, timeoutMillis: traces.timeoutMs })
    const maxBytes = cfg.spool.maxBytes
    spool = new Spool({
      dir: paths.spoolDir,
      maxBytes,
      // Room past "full" for requests already admitted and for the refusals (deny mode only).
      hardLimitBytes: cfg.whenUnavailable === 'deny' ? maxBytes + Math.max(64 * 1024, Math.floor(maxBytes / 8)) : maxBytes,
      segmentRecords: settings.batch.maxBatch,
      header: { spool: 1, resource: resourceAttrs, scope: SCOPE },
      logger,
    })
  }
  const file = paths.file ? new FileSink(paths.file, logger) : undefined
  if (!exporter && !file) {
    logger.warn('audit records go nowhere: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or audit.file')
  }

  let metrics: AuditMetrics | undefined
  const delivery = new AuditDelivery({
    exporter,
    spool,
    file,
    scope: SCOPE,
    delayMs: settings.batch.delayMs,
    maxBatch: settings.batch.maxBatch,
    maxQueue: settings.batch.maxQueue,
    retryInitialMs: cfg.spool.retryInitialMs,
    retryMaxMs: Math.max(cfg.spool.retryMaxMs, cfg.spool.retryInitialMs),
    exportTimeoutMs: traces?.timeoutMs ?? 10000,
    logger,
    onExportFailure: () => metrics?.recordExportFailure(),
    onDropped: (n) => metrics?.recordDropped(n),
  })
  const provider = new TracerProvider({
    resource,
    // Every request is recorded, whatever the caller's sampling flag says.
    sampler: new AlwaysOnSampler(),
    spanLimits: { attributeCountLimit: ATTRIBUTE_LIMIT, attributeValueLengthLimit: Infinity },
    spanProcessors: [delivery],
  })
  const tracer = provider.getTracer(SCOPE.name, SCOPE.version)
  try {
    metrics = createAuditMetrics({
      resource,
      otlp: settings.metrics,
      prometheusListen: config.server.metricsListen,
      logger,
      spoolBytes: () => delivery.stats().spoolBytes,
    })
  } catch (err) {
    void provider.shutdown()
    throw err
  }
  const m = metrics

  logger.info('audit trail ready', {
    chain_id: chain.id,
    otlp_traces: traces ? `${traces.protocol} ${describeUrl(traces.url)}` : 'off',
    otlp_metrics: settings.metrics ? describeUrl(settings.metrics.url) : 'off',
    file: file?.path ?? 'off',
    spool: spool?.dir ?? 'off',
    when_unavailable: cfg.whenUnavailable,
    content: cfg.content.enabled,
  })

  let refusing = false
  let shuttingDown: Promise<void> | undefined
  /**
   * Times on the wall clock, measured on the monotonic one: the wall-clock time
   * modelgate saw the stream, plus the monotonic time elapsed since. The
   * monotonic clock (CLOCK_MONOTONIC, process.hrtime) keeps counting while the
   * process is stopped (SIGSTOP, a debugger, CPU starvation) and never jumps
   * when the wall clock is set, so a duration is the real time that passed; the
   * wall clock is read once per request, for the anchor. What a pause does hide
   * is the wait before modelgate saw the stream at all: Envoy's request start
   * covers that (requestStart).
   */
  const wall = (ctx: RequestContext, mono: bigint): bigint => BigInt(ctx.startedAt) * 1_000_000n + (mono - ctx.startedNs)

  const state = (ctx: RequestContext): RequestState =>
    ctx.local<RequestState>(STATE, () => ({
      span: undefined,
      // First called when the request headers arrive, with Envoy's attributes (request.time) in place.
      ...requestStart(ctx),
      timeline: new Timeline('audit', { slicing: cfg.stageSpans }),
      upstreamReached: false,
      responseComplete: false,
      responseParts: [],
      responseBytes: 0,
      responseTruncated: false,
      pendingChunk: undefined,
      closed: false,
    }))

  const start = (ctx: RequestContext, st: RequestState): ApiSpan => {
    st.span ??= tracer.startSpan(A.SPAN_REQUEST, { kind: SpanKind.SERVER, startTime: nanosToHrTime(st.startNs) }, parentContext(ctx))
    return st.span
  }

  const mark = (ctx: RequestContext, phase: Phase): RequestState => {
    const st = state(ctx)
    st.timeline.mark(phase, ctx.timings, process.hrtime.bigint())
    return st
  }

  /** The response bytes that actually went to the client: a chunk is final once the next phase starts. */
  const takeChunk = (st: RequestState): void => {
    const c = st.pendingChunk
    st.pendingChunk = undefined
    if (!c || st.responseTruncated) return
    const room = cfg.content.maxBytes - st.responseBytes
    if (c.data.length > room) st.responseTruncated = true
    const part = c.data.length > room ? c.data.subarray(0, Math.max(0, room)) : c.data
    if (part.length > 0) {
      // Copy: the chunk's buffer belongs to the stream.
      st.responseParts.push(Buffer.from(part))
      st.responseBytes += part.length
    }
  }

  const finish = (ctx: RequestContext, outcome: StreamOutcome): void => {
    const st = state(ctx)
    if (st.closed) return
    st.closed = true
    const endMono = process.hrtime.bigint()
    st.timeline.settle(ctx.timings)
    const upstreamReached = st.upstreamReached || ctx.responseStatus !== undefined
    let requestContent: CapturedContent | 'omitted' | undefined
    let responseContent: CapturedContent | 'omitted' | undefined
    if (cfg.content.enabled) {
      takeChunk(st)
      // Content is what left modelgate: the request body once the request phases passed (the
      // upstream answered, or the stream completed without a denial), the response as sent on.
      // A value policy let through unredacted would be in those bytes, so then nothing is kept.
      const sent = upstreamReached || (!ctx.denial && outcome.kind === 'completed' && st.timeline.saw('requestBody'))
      if (sent) requestContent = passedUnredacted(ctx, 'request') ? 'omitted' : captureContent(ctx.requestBody, cfg.content.maxBytes)
      if (st.responseParts.length > 0 || st.responseTruncated) {
        if (passedUnredacted(ctx, 'response')) responseContent = 'omitted'
        else {
          const c = captureContent(Buffer.concat(st.responseParts), cfg.content.maxBytes)
          responseContent = { text: c.text, truncated: c.truncated || st.responseTruncated }
        }
      }
    }
    const span = start(ctx, st)
    let endNs = wall(ctx, endMono)
    if (endNs < st.startNs) endNs = st.startNs
    const durationMs = Number(endNs - st.startNs) / 1e6
    settleFindings(ctx, upstreamReached)
    const attrs = requestAttributes(ctx, outcome, {
      durationMs,
      streamWaitMs: st.waitNs === undefined ? undefined : Number(st.waitNs) / 1e6,
      upstreamReached,
      responseComplete: st.responseComplete,
      requestContent,
      responseContent,
    })
    const sc = span.spanContext()
    if (cfg.stageSpans) {
      // Stage spans are finished facts with attributes of known types: they go to the span
      // processor as ended spans directly, without the SDK's live-span machinery.
      const { resource, instrumentationScope } = span as unknown as ReadableSpan
      for (const s of st.timeline.slices()) {
        // A stage that had nothing to do for this request has no span of its own.
        if (ctx.idleStages !== undefined && ctx.idleStages.has(s.stage)) continue
        delivery.onEnd(
          stageSpan(sc, resource, instrumentationScope, `${A.SPAN_STAGE} ${s.stage} ${s.direction}`, nanosToHrTime(wall(ctx, s.startNs)), nanosToHrTime(wall(ctx, s.endNs)), {
            [A.MG_STAGE_NAME]: s.stage,
            [A.MG_STAGE_DIRECTION]: s.direction,
            [A.MG_STAGE_PHASES]: s.phases,
            [A.MG_STAGE_BUSY_MS]: roundMs(s.busyMs),
            [A.MG_STAGE_CALLS]: s.calls,
            [A.MG_REQUEST_ID]: ctx.id,
          }),
        )
      }
    }
    chain.append({ traceId: sc.traceId, spanId: sc.spanId, start: st.startNs.toString(), end: endNs.toString() }, attrs)
    span.updateName(spanName(ctx))
    span.setAttributes(attrs)
    if (isFailure(ctx, outcome)) span.setStatus({ code: SpanStatusCode.ERROR, message: ctx.denial?.code ?? outcome.kind })
    span.end(nanosToHrTime(endNs))
    m.record(ctx, outcomeOf(ctx, outcome, st.responseComplete), durationMs)
  }

  const stage: Stage = {
    name: 'audit',
    requestHeaders(ctx) {
      const st = mark(ctx, 'requestHeaders')
      start(ctx, st)
      if (cfg.whenUnavailable === 'deny') {
        const ok = delivery.accepting() && !shuttingDown
        if (ok !== !refusing) {
          refusing = !ok
          if (refusing) logger.error('audit trail cannot keep records: refusing requests', { ...delivery.stats() })
          else logger.info('audit trail keeps records again: admitting requests')
        }
        if (!ok) {
          const s = delivery.stats()
          throw new GateError('MG_AUDIT_UNAVAILABLE', {
            internal: shuttingDown ? 'audit trail is shutting down' : `audit records cannot be kept (spool ${s.spoolBytes} of ${cfg.spool.maxBytes} bytes${file && !file.available ? ', file not writable' : ''})`,
          })
        }
      }
    },
    requestBody(ctx) {
      mark(ctx, 'requestBody')
    },
    requestTrailers(ctx) {
      mark(ctx, 'requestTrailers')
    },
    responseHeaders(ctx) {
      mark(ctx, 'responseHeaders').upstreamReached = true
    },
    responseBody(ctx, chunk) {
      const st = mark(ctx, 'responseBody')
      if (chunk.end) st.responseComplete = true
      if (cfg.content.enabled) {
        takeChunk(st)
        st.pendingChunk = chunk
      }
    },
    responseTrailers(ctx) {
      mark(ctx, 'responseTrailers').responseComplete = true
    },
    close(ctx, outcome) {
      try {
        finish(ctx, outcome)
      } catch (err) {
        logger.error('audit record failed', { request_id: ctx.id, error: (err as Error).message })
      }
    },
  }

  return {
    stage,
    ready: () => m.ready(),
    flush: async () => {
      await delivery.forceFlush()
      await m.forceFlush()
    },
    status: () => ({ ...delivery.stats(), chainId: chain.id, seq: chain.seq, head: chain.head, refusing }),
    metricsAddress: () => m.prometheusAddress(),
    recordTransport: (e) => m.recordTransport(e),
    shutdown() {
      shuttingDown ??= (async () => {
        try {
          const startNs = BigInt(Date.now()) * 1_000_000n
          const span = tracer.startSpan(A.SPAN_CHAIN_END, { kind: SpanKind.INTERNAL, startTime: nanosToHrTime(startNs) }, ROOT_CONTEXT)
          const attrs: Record<string, RecordValue> = { [A.MG_AUDIT_FINAL]: true }
          const sc = span.spanContext()
          chain.append({ traceId: sc.traceId, spanId: sc.spanId, start: startNs.toString(), end: startNs.toString() }, attrs)
          span.setAttributes(attrs)
          span.end(nanosToHrTime(startNs))
        } catch (err) {
          logger.error('audit chain-end record failed', { error: (err as Error).message })
        }
        logger.info('audit chain closed', { chain_id: chain.id, seq: chain.seq, head: chain.head })
        await provider.shutdown()
        await m.shutdown()
      })()
      return shuttingDown
    },
  }
}

/** Random span ids (16 hex digits, never all zeros) from a pool of random bytes refilled as it runs out. */
const idPool = Buffer.alloc(8 * 512)
let idNext = idPool.length
function newSpanId(): string {
  for (;;) {
    if (idNext === idPool.length) {
      randomFillSync(idPool)
      idNext = 0
    }
    const id = idPool.toString('hex', idNext, (idNext += 8))
    if (id !== '0000000000000000') return id
  }
}

/**
 * An ended child span of the request span, as the SDK would have made it: same
 * trace, flags and trace state, the request span as parent, kind INTERNAL,
 * status unset.
 */
function stageSpan(parent: SpanContext, resource: Resource, scope: InstrumentationScope, name: string, startTime: HrTime, endTime: HrTime, attributes: Attributes): ReadableSpan {
  const ctx: SpanContext = { traceId: parent.traceId, spanId: newSpanId(), traceFlags: parent.traceFlags, ...(parent.traceState ? { traceState: parent.traceState } : {}) }
  return endedSpan({ name, kind: SpanKind.INTERNAL, context: ctx, parent, startTime, endTime, duration: hrTimeDuration(startTime, endTime), status: { code: SpanStatusCode.UNSET }, attributes, resource, scope })
}

/** True when a value found in that direction was let through unredacted (so the bytes hold it). */
function passedUnredacted(ctx: RequestContext, direction: 'request' | 'response'): boolean {
  return ctx.findings.some((f) => f.direction === direction && f.action === 'allow')
}

/** The caller's trace: the gRPC metadata of the Process call first, then the request's traceparent header. */
export function parentContext(ctx: RequestContext): Context {
  let traceparent = ctx.trace.traceparent
  let tracestate = ctx.trace.tracestate
  if (!traceparent) {
    traceparent = ctx.requestHeaders.get('traceparent')
    tracestate = ctx.requestHeaders.get('tracestate')
  }
  if (!traceparent) return ROOT_CONTEXT
  const sc = parseTraceParent(traceparent)
  if (!sc || !trace.isSpanContextValid(sc)) return ROOT_CONTEXT
  sc.isRemote = true
  if (tracestate) {
    try {
      sc.traceState = new TraceState(tracestate)
    } catch {
      /* an unreadable tracestate is dropped; the parent still holds */
    }
  }
  return trace.setSpanContext(ROOT_CONTEXT, sc)
}

/**
 * The trail when audit records are off: no spans, no chain, no spool, but the
 * metrics stay what the configuration asks for (`server.metricsListen`, OTLP
 * metrics): requests, denials, redactions, latency, tokens and the transport
 * counters are still counted. The stage only notes how each response ended.
 */
function metricsOnlyTrail(config: Config, settings: OtelSettings, logger: Logger): AuditTrail {
  const chainId = randomUUID()
  const wanted = config.server.metricsListen !== '' || settings.metrics !== undefined
  const metrics = wanted
    ? createAuditMetrics({
        resource: resourceFromAttributes({ ...settings.resourceAttributes, 'service.name': settings.serviceName }),
        otlp: settings.metrics,
        prometheusListen: config.server.metricsListen,
        logger,
        spoolBytes: () => 0,
      })
    : undefined
  const COMPLETE = Symbol('metrics.response-complete')
  const complete = (ctx: RequestContext) => ctx.local(COMPLETE, () => ({ done: false }))
  const stage: Stage = metrics
    ? {
        name: 'audit',
        responseBody(ctx, chunk) {
          if (chunk.end) complete(ctx).done = true
        },
        responseTrailers(ctx) {
          complete(ctx).done = true
        },
        close(ctx, outcome) {
          try {
            metrics.record(ctx, outcomeOf(ctx, outcome, complete(ctx).done), Number(process.hrtime.bigint() - ctx.startedNs) / 1e6)
          } catch (err) {
            logger.error('request metrics failed', { request_id: ctx.id, error: (err as Error).message })
          }
        },
      }
    : { name: 'audit' }
  return {
    stage,
    ready: async () => metrics?.ready(),
    flush: async () => metrics?.forceFlush(),
    status: () => ({
      queued: 0,
      inFlight: 0,
      spoolBytes: 0,
      spoolSegments: 0,
      collectorDown: false,
      exported: 0,
      spooled: 0,
      dropped: 0,
      exportFailures: 0,
      chainId,
      seq: 0,
      head: '',
      refusing: false,
    }),
    recordTransport: (e) => metrics?.recordTransport(e),
    metricsAddress: () => metrics?.prometheusAddress(),
    shutdown: async () => metrics?.shutdown(),
  }
}
