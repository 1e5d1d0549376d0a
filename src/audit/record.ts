/**
 * The JSON form of one span, as written to the spool and the file sink and
 * read back by `modelgate audit`; and the conversions between it, the SDK's
 * ReadableSpan, and OTLP/JSON (what a collector's file exporter writes).
 */
import { SpanKind, SpanStatusCode, type Attributes, type AttributeValue, type HrTime, type SpanContext } from '@opentelemetry/api'
import { TraceState, type InstrumentationScope } from '@opentelemetry/core'
import type { Resource } from '@opentelemetry/resources'
import type { ReadableSpan } from '@opentelemetry/sdk-trace'

/** An attribute value as JSON: a scalar or a homogeneous array of scalars. */
export type RecordValue = string | number | boolean | readonly string[] | readonly number[] | readonly boolean[]

export interface SpanRecord {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  /** True when the parent came from the caller (another process). */
  readonly remoteParent?: boolean
  readonly traceState?: string
  readonly name: string
  /** OpenTelemetry API SpanKind (0 internal, 1 server, 2 client, 3 producer, 4 consumer). */
  readonly kind: number
  /** Unix time in nanoseconds, as a decimal string. */
  readonly start: string
  readonly end: string
  readonly status: { readonly code: number; readonly message?: string }
  readonly attributes: Readonly<Record<string, RecordValue>>
}

const NS_PER_S = 1_000_000_000n

export function hrTimeToNanos(t: HrTime): string {
  const [sec, ns] = t
  // The common case (whole seconds, normalised nanoseconds) as text; anything else through BigInt.
  if (sec > 0 && Number.isSafeInteger(sec) && Number.isInteger(ns) && ns >= 0 && ns < 1e9) return `${sec}${String(ns).padStart(9, '0')}`
  return (BigInt(sec) * NS_PER_S + BigInt(ns)).toString()
}

export function nanosToHrTime(ns: string | bigint): HrTime {
  const n = typeof ns === 'bigint' ? ns : BigInt(ns)
  return [Number(n / NS_PER_S), Number(n % NS_PER_S)]
}

/** Milliseconds since the epoch of a record's nanosecond time. */
export function nanosToMs(ns: string): number {
  return Number(BigInt(ns) / 1_000_000n)
}

/** Keeps only values OpenTelemetry can carry; drops undefined, null, NaN, mixed arrays. */
export function cleanValue(v: unknown): RecordValue | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return v
    case 'number':
      return Number.isFinite(v) ? v : undefined
    case 'object':
      if (Array.isArray(v)) {
        if (v.length === 0) return v as string[]
        const t = typeof v[0]
        if (t !== 'string' && t !== 'number' && t !== 'boolean') return undefined
        for (const x of v) if (typeof x !== t || (t === 'number' && !Number.isFinite(x))) return undefined
        return v as RecordValue
      }
      return undefined
    default:
      return undefined
  }
}

/** The JSON record of an ended span. */
export function spanToRecord(span: ReadableSpan): SpanRecord {
  const sc = span.spanContext()
  const attributes: Record<string, RecordValue> = {}
  const source = span.attributes
  for (const k in source) {
    const c = cleanValue(source[k])
    if (c !== undefined) attributes[k] = c
  }
  const parent = span.parentSpanContext
  const ts = sc.traceState?.serialize()
  // Built field by field in the record's key order (the JSON line keeps it).
  const r: { -readonly [K in keyof SpanRecord]: SpanRecord[K] } = { traceId: sc.traceId, spanId: sc.spanId } as SpanRecord
  if (parent?.spanId) r.parentSpanId = parent.spanId
  if (parent?.isRemote) r.remoteParent = true
  if (ts) r.traceState = ts
  r.name = span.name
  r.kind = span.kind
  r.start = hrTimeToNanos(span.startTime)
  r.end = hrTimeToNanos(span.endTime)
  r.status = span.status.message ? { code: span.status.code, message: span.status.message } : { code: span.status.code }
  r.attributes = attributes
  return r
}

/**
 * A ReadableSpan rebuilt from a record, so a spooled record can go through the
 * same OTLP exporter as a live one. `resource` and `scope` are shared by every
 * span of one spool segment (the exporter groups spans by object identity).
 */
export function recordToSpan(r: SpanRecord, resource: Resource, scope: InstrumentationScope): ReadableSpan {
  const ctx: SpanContext = { traceId: r.traceId, spanId: r.spanId, traceFlags: 1, ...(r.traceState ? { traceState: new TraceState(r.traceState) } : {}) }
  const parent: SpanContext | undefined = r.parentSpanId
    ? { traceId: r.traceId, spanId: r.parentSpanId, traceFlags: 1, isRemote: r.remoteParent === true }
    : undefined
  const startTime = nanosToHrTime(r.start)
  const endTime = nanosToHrTime(r.end)
  const d = BigInt(r.end) - BigInt(r.start)
  return endedSpan({
    name: r.name,
    kind: r.kind as SpanKind,
    context: ctx,
    parent,
    startTime,
    endTime,
    duration: nanosToHrTime(d < 0n ? 0n : d),
    status: r.status.message ? { code: r.status.code as SpanStatusCode, message: r.status.message } : { code: r.status.code as SpanStatusCode },
    attributes: r.attributes as Attributes,
    resource,
    scope,
  })
}

/** An ended span as span processors and exporters take it (no links, no events, nothing dropped). */
export function endedSpan(s: {
  name: string
  kind: SpanKind
  context: SpanContext
  parent: SpanContext | undefined
  startTime: HrTime
  endTime: HrTime
  duration: HrTime
  status: ReadableSpan['status']
  attributes: Attributes
  resource: Resource
  scope: InstrumentationScope
}): ReadableSpan {
  const context = s.context
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => context,
    ...(s.parent ? { parentSpanContext: s.parent } : {}),
    startTime: s.startTime,
    endTime: s.endTime,
    status: s.status,
    attributes: s.attributes,
    links: [],
    events: [],
    duration: s.duration,
    ended: true,
    resource: s.resource,
    instrumentationScope: s.scope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  }
}

/** True when a parsed JSON value looks like a SpanRecord. */
export function isSpanRecord(v: unknown): v is SpanRecord {
  if (!v || typeof v !== 'object') return false
  const o = v as Record<string, unknown>
  return (
    typeof o.traceId === 'string' &&
    typeof o.spanId === 'string' &&
    typeof o.name === 'string' &&
    typeof o.start === 'string' &&
    typeof o.end === 'string' &&
    !!o.attributes &&
    typeof o.attributes === 'object'
  )
}

// ---- OTLP/JSON ------------------------------------------------------------------

interface OtlpAnyValue {
  stringValue?: string
  boolValue?: boolean
  intValue?: string | number
  doubleValue?: number | string
  arrayValue?: { values?: OtlpAnyValue[] }
  kvlistValue?: unknown
  bytesValue?: string
}
interface OtlpKeyValue {
  key: string
  value?: OtlpAnyValue
}
interface OtlpSpan {
  traceId?: string
  spanId?: string
  parentSpanId?: string
  traceState?: string
  name?: string
  kind?: number | string
  startTimeUnixNano?: string | number
  endTimeUnixNano?: string | number
  attributes?: OtlpKeyValue[]
  status?: { code?: number | string; message?: string }
  flags?: number
}

const OTLP_KIND: Record<string, number> = {
  SPAN_KIND_UNSPECIFIED: 0,
  SPAN_KIND_INTERNAL: 1,
  SPAN_KIND_SERVER: 2,
  SPAN_KIND_CLIENT: 3,
  SPAN_KIND_PRODUCER: 4,
  SPAN_KIND_CONSUMER: 5,
}
const OTLP_STATUS: Record<string, number> = { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 }

/** OTLP ids are hex in OTLP/JSON; some encoders write base64. Returns lower-case hex. */
export function otlpId(id: string | undefined, bytes: number): string | undefined {
  if (!id) return undefined
  if (id.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(id)) return id.toLowerCase()
  const b = Buffer.from(id, 'base64')
  return b.length === bytes ? b.toString('hex') : undefined
}

export function otlpValue(v: OtlpAnyValue | undefined): RecordValue | undefined {
  if (!v) return undefined
  if (v.stringValue !== undefined) return v.stringValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return Number(v.doubleValue)
  if (v.arrayValue) {
    const out = (v.arrayValue.values ?? []).map((x) => otlpValue(x))
    return cleanValue(out)
  }
  return undefined
}

/** The spans of one OTLP/JSON ExportTraceServiceRequest (or TracesData) document. */
export function recordsFromOtlpJson(doc: unknown): SpanRecord[] {
  const out: SpanRecord[] = []
  const rs = (doc as { resourceSpans?: unknown[] } | undefined)?.resourceSpans
  if (!Array.isArray(rs)) return out
  for (const r of rs as { scopeSpans?: { spans?: OtlpSpan[] }[] }[]) {
    for (const ss of r.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const traceId = otlpId(s.traceId, 16)
        const spanId = otlpId(s.spanId, 8)
        if (!traceId || !spanId) continue
        const attributes: Record<string, RecordValue> = {}
        for (const kv of s.attributes ?? []) {
          const v = otlpValue(kv.value)
          if (v !== undefined) attributes[kv.key] = v
        }
        const parentSpanId = otlpId(s.parentSpanId, 8)
        const otlpKind = typeof s.kind === 'string' ? (OTLP_KIND[s.kind] ?? 0) : (s.kind ?? 0)
        const statusCode = typeof s.status?.code === 'string' ? (OTLP_STATUS[s.status.code] ?? 0) : (s.status?.code ?? 0)
        // OTLP kinds are the API kinds plus one (0 is "unspecified").
        const kind = otlpKind > 0 ? otlpKind - 1 : SpanKind.INTERNAL
        out.push({
          traceId,
          spanId,
          ...(parentSpanId ? { parentSpanId } : {}),
          ...(s.flags !== undefined && (s.flags & 0x300) === 0x300 ? { remoteParent: true } : {}),
          ...(s.traceState ? { traceState: s.traceState } : {}),
          name: s.name ?? '',
          kind,
          start: String(s.startTimeUnixNano ?? '0'),
          end: String(s.endTimeUnixNano ?? '0'),
          status: s.status?.message ? { code: statusCode, message: s.status.message } : { code: statusCode },
          attributes,
        })
      }
    }
  }
  return out
}

/** Attribute lookup helpers with types. */
export function attrString(r: SpanRecord, key: string): string | undefined {
  const v = r.attributes[key]
  return typeof v === 'string' ? v : undefined
}
export function attrNumber(r: SpanRecord, key: string): number | undefined {
  const v = r.attributes[key]
  return typeof v === 'number' ? v : undefined
}
export function attrBool(r: SpanRecord, key: string): boolean | undefined {
  const v = r.attributes[key]
  return typeof v === 'boolean' ? v : undefined
}
export function attrStrings(r: SpanRecord, key: string): readonly string[] {
  const v = r.attributes[key]
  return Array.isArray(v) ? (v as unknown[]).filter((x): x is string => typeof x === 'string') : []
}

export type { AttributeValue }
