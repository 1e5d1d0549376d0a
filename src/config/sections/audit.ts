/**
 * `audit`: the audit trail. One OpenTelemetry span per request, chained by
 * hash, exported over OTLP (endpoints, headers, protocol and resource come from
 * the standard OTEL_* variables) and/or written to a JSON-lines file.
 */
export interface AuditConfig {
  /** false: no spans, no records, no metrics. Every request still passes through the other stages. */
  enabled: boolean
  /**
   * OTLP trace export. `auto`: on when OTEL_EXPORTER_OTLP_ENDPOINT or
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER=otlp.
   * `on`: always (default endpoint http://localhost:4318). `off`: never.
   */
  otlp: 'auto' | 'on' | 'off'
  /** JSON-lines file every record is appended to ('' = no file). Relative to the configuration file. */
  file: string
  /**
   * What happens when a record cannot be kept (the spool is full, the file cannot be written):
   * `deny` refuses new requests with MG_AUDIT_UNAVAILABLE (503); `allow` lets them pass unrecorded.
   */
  whenUnavailable: 'deny' | 'allow'
  /** Records the collector has not accepted yet wait here, on disk, and are re-sent when it is back. */
  spool: {
    /** Directory ('' = `<tmpdir>/modelgate-audit-spool`). Relative to the configuration file. Use a persistent volume in production. */
    dir: string
    /** The spool is full at this size; see `whenUnavailable`. */
    maxBytes: number
    /** First retry delay after a failed export; doubles up to `retryMaxMs`. */
    retryInitialMs: number
    retryMaxMs: number
  }
  /** Prompt and response content. Off by default; when on, only what left modelgate (after redaction) is recorded. */
  content: {
    enabled: boolean
    /** Cap per direction, in bytes (UTF-8); longer content is cut and marked truncated. */
    maxBytes: number
  }
  /** One child span per stage and phase, laid out from the pipeline's stage timings. */
  stageSpans: boolean
  /** Metrics (requests, denials, redactions, quota refusals, stage latency, tokens). */
  metrics: {
    /** OTLP metric export; `auto` as for traces (OTEL_METRICS_EXPORTER=otlp or an OTLP endpoint variable). */
    otlp: 'auto' | 'on' | 'off'
  }
}

export const auditSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    enabled: { type: 'boolean', default: true },
    otlp: { enum: ['auto', 'on', 'off'], default: 'auto' },
    file: { type: 'string', default: '' },
    whenUnavailable: { enum: ['deny', 'allow'], default: 'deny' },
    spool: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        dir: { type: 'string', default: '' },
        maxBytes: { type: 'integer', minimum: 1024, maximum: 1099511627776, default: 268435456 },
        retryInitialMs: { type: 'integer', minimum: 10, maximum: 600000, default: 1000 },
        retryMaxMs: { type: 'integer', minimum: 10, maximum: 3600000, default: 30000 },
      },
    },
    content: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        maxBytes: { type: 'integer', minimum: 0, maximum: 1048576, default: 8192 },
      },
    },
    stageSpans: { type: 'boolean', default: false },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        otlp: { enum: ['auto', 'on', 'off'], default: 'auto' },
      },
    },
  },
} as const
