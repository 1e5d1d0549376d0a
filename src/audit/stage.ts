/**
 * The audit stage: one OpenTelemetry span per request, the evidence of who
 * sent which data to which model under which policy.
 *
 * It is first in the stage order, so its requestHeaders runs before identity
 * (the span gets its ids there, joined to the caller's trace) and its close() runs
 * last, after every other stage has written what it decided. The span ends
 * exactly once, in close(), however the stream ended (completed, denied,
 * cancelled by Envoy, failed). Child spans per stage are laid out from the
 * pipeline's stage timings (see timeline.ts). Every span is a finished fact
 * when it is recorded, so it is built as its record (record.ts) directly and
 * handed to delivery.ts, without the SDK's live-span machinery; the exporter
 * gets ReadableSpans made of the records.
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
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type SpanContext } from '@opentelemetry/api'
import { parseTraceParent, TraceState } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { SpanExporter } from '@opentelemetry/sdk-trace'
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
import type { RecordValue, SpanRecord } from './record.ts'
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
const STATE = Symbol('audit')

/** The request span's place in its trace, fixed when the request headers arrive. */
interface RequestIds {
  readonly traceId: string
  readonly spanId: string
  /** The caller's span, when the request came with a valid trace context. */
  readonly parent: SpanContext | undefined
  /** The caller's trace state, serialised; the request span and its stage spans carry it. */
  readonly traceState: string | undefined
}

interface RequestState {
  ids: RequestIds | undefined
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
    resource,
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
  try {
    metrics = createAuditMetrics({
      resource,
      otlp: settings.metrics,
      prometheusListen: config.server.metricsListen,
      logger,
      spoolBytes: () => delivery.stats().spoolBytes,
    })
  } catch (err) {
    void delivery.shutdown()
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
      ids: undefined,
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

  const start = (ctx: RequestContext, st: RequestState): RequestIds => {
    if (st.ids) return st.ids
    // Every request is recorded, whatever the caller's sampling flag says.
    const parent = parentSpanContext(ctx)
    st.ids = { traceId: parent?.traceId ?? newTraceId(), spanId: newSpanId(), parent, traceState: parent?.traceState?.serialize() || undefined }
    return st.ids
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
    const ids = start(ctx, st)
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
    if (cfg.stageSpans) {
      // Stage spans are finished facts with attributes of known types: they are built as
      // records directly, children of the request span in its trace.
      const asParent = { spanId: ids.spanId, isRemote: false }
      for (const s of st.timeline.slices()) {
        // A stage that had nothing to do for this request has no span of its own.
        if (ctx.idleStages !== undefined && ctx.idleStages.has(s.stage)) continue
        delivery.add(
          spanRecord(ids.traceId, newSpanId(), asParent, ids.traceState, `${A.SPAN_STAGE} ${s.stage} ${s.direction}`, SpanKind.INTERNAL, wall(ctx, s.startNs).toString(), wall(ctx, s.endNs).toString(), UNSET, {
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
    const startText = st.startNs.toString()
    const endText = endNs.toString()
    chain.append({ traceId: ids.traceId, spanId: ids.spanId, start: startText, end: endText }, attrs)
    const status = isFailure(ctx, outcome) ? { code: SpanStatusCode.ERROR, message: ctx.denial?.code ?? outcome.kind } : UNSET
    delivery.add(spanRecord(ids.traceId, ids.spanId, ids.parent, ids.traceState, spanName(ctx), SpanKind.SERVER, startText, endText, status, attrs))
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
          const at = (BigInt(Date.now()) * 1_000_000n).toString()
          const attrs: Record<string, RecordValue> = { [A.MG_AUDIT_FINAL]: true }
          const traceId = newTraceId()
          const spanId = newSpanId()
          chain.append({ traceId, spanId, start: at, end: at }, attrs)
          delivery.add(spanRecord(traceId, spanId, undefined, undefined, A.SPAN_CHAIN_END, SpanKind.INTERNAL, at, at, UNSET, attrs))
        } catch (err) {
          logger.error('audit chain-end record failed', { error: (err as Error).message })
        }
        logger.info('audit chain closed', { chain_id: chain.id, seq: chain.seq, head: chain.head })
        await delivery.shutdown()
        await m.shutdown()
      })()
      return shuttingDown
    },
  }
}

/** Random ids (hex, never all zeros), cut from a pool of random hex digits refilled as it runs out. */
const ID_POOL_BYTES = 8 * 512
const idBytes = Buffer.alloc(ID_POOL_BYTES)
let idHex = ''
let idNext = 0
function randomId(bytes: number): string {
  const digits = bytes * 2
  for (;;) {
    if (idNext + digits > idHex.length) {
      randomFillSync(idBytes)
      idHex = idBytes.toString('hex')
      idNext = 0
    }
    const id = idHex.slice(idNext, (idNext += digits))
    if (id !== '0'.repeat(digits)) return id
  }
}
/** A span id: 16 hex digits. */
const newSpanId = (): string => randomId(8)
/** A trace id: 32 hex digits. */
const newTraceId = (): string => randomId(16)

const UNSET: SpanRecord['status'] = { code: SpanStatusCode.UNSET }

/**
 * The record of an ended span, as spanToRecord would make it of the SDK's
 * span: fields in the record's key order, optional ones only when present.
 */
function spanRecord(
  traceId: string,
  spanId: string,
  parent: { readonly spanId: string; readonly isRemote?: boolean | undefined } | undefined,
  traceState: string | undefined,
  name: string,
  kind: SpanKind,
  start: string,
  end: string,
  status: SpanRecord['status'],
  attributes: Record<string, RecordValue>,
): SpanRecord {
  const r: { -readonly [K in keyof SpanRecord]: SpanRecord[K] } = { traceId, spanId } as SpanRecord
  if (parent) r.parentSpanId = parent.spanId
  if (parent?.isRemote) r.remoteParent = true
  if (traceState) r.traceState = traceState
  r.name = name
  r.kind = kind
  r.start = start
  r.end = end
  r.status = status
  r.attributes = attributes
  return r
}

/** True when a value found in that direction was let through unredacted (so the bytes hold it). */
function passedUnredacted(ctx: RequestContext, direction: 'request' | 'response'): boolean {
  return ctx.findings.some((f) => f.direction === direction && f.action === 'allow')
}

/** The caller's trace: the gRPC metadata of the Process call first, then the request's traceparent header. */
export function parentContext(ctx: RequestContext): Context {
  const sc = parentSpanContext(ctx)
  return sc ? trace.setSpanContext(ROOT_CONTEXT, sc) : ROOT_CONTEXT
}

/** The caller's span (remote), or undefined when the request carries no valid trace context. */
function parentSpanContext(ctx: RequestContext): SpanContext | undefined {
  let traceparent = ctx.trace.traceparent
  let tracestate = ctx.trace.tracestate
  if (!traceparent) {
    traceparent = ctx.requestHeaders.get('traceparent')
    tracestate = ctx.requestHeaders.get('tracestate')
  }
  if (!traceparent) return undefined
  const sc = parseTraceParent(traceparent)
  if (!sc || !trace.isSpanContextValid(sc)) return undefined
  sc.isRemote = true
  if (tracestate) {
    try {
      sc.traceState = new TraceState(tracestate)
    } catch {
      /* an unreadable tracestate is dropped; the parent still holds */
    }
  }
  return sc
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
