/**
 * Reading the standard OpenTelemetry environment variables once, at start-up,
 * into plain settings. Every problem is collected and reported together.
 *
 * Honoured (see https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/
 * and https://opentelemetry.io/docs/specs/otel/protocol/exporter/):
 *   OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
 *   OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
 *   OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,INSECURE,
 *     CERTIFICATE,CLIENT_KEY,CLIENT_CERTIFICATE,COMPRESSION},
 *   OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE,
 *   OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT.
 */
import type { AuditConfig } from '../config/sections/audit.ts'

export type OtlpProtocol = 'http/protobuf' | 'grpc'

export interface OtlpTarget {
  readonly protocol: OtlpProtocol
  /** Full URL: for HTTP the signal path included (…/v1/traces); for gRPC scheme://host:port. */
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly timeoutMs: number
  /** gRPC only: plaintext (http:// endpoint or OTEL_EXPORTER_OTLP_INSECURE=true). */
  readonly insecure: boolean
  /** gRPC only: PEM file paths for TLS. */
  readonly certificateFile: string | undefined
  readonly clientKeyFile: string | undefined
  readonly clientCertificateFile: string | undefined
  readonly gzip: boolean
}

export interface OtelSettings {
  readonly sdkDisabled: boolean
  readonly serviceName: string
  readonly resourceAttributes: Readonly<Record<string, string>>
  /** Where spans go, or undefined when OTLP trace export is off. */
  readonly traces: OtlpTarget | undefined
  /** Where metrics go over OTLP, or undefined. */
  readonly metrics: (OtlpTarget & { readonly intervalMs: number }) | undefined
  readonly batch: { readonly delayMs: number; readonly maxBatch: number; readonly maxQueue: number }
  /** Problems that make the settings unusable (start-up must fail). */
  readonly problems: readonly string[]
  /** Things worth a warning (ignored values). */
  readonly warnings: readonly string[]
}

type Env = Readonly<Record<string, string | undefined>>

const HTTP_DEFAULT = 'http://localhost:4318'
const GRPC_DEFAULT = 'http://localhost:4317'

function str(env: Env, name: string): string | undefined {
  const v = env[name]
  if (v === undefined) return undefined
  const t = v.trim()
  return t === '' ? undefined : t
}

function bool(env: Env, name: string): boolean | undefined {
  const v = str(env, name)
  if (v === undefined) return undefined
  return v.toLowerCase() === 'true'
}

function int(env: Env, name: string, problems: string[], fallback: number, min: number, max: number): number {
  const v = str(env, name)
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) {
    problems.push(`${name}=${JSON.stringify(v)}: must be an integer from ${min} to ${max}`)
    return fallback
  }
  return n
}

/** `key=value,key2=value2` with percent-encoded values (W3C baggage-like, as the spec says for headers and resources). */
export function parseKeyValueList(raw: string | undefined, name: string, problems: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  if (!raw) return out
  for (const part of raw.split(',')) {
    const item = part.trim()
    if (!item) continue
    const eq = item.indexOf('=')
    if (eq <= 0) {
      problems.push(`${name}: entry ${JSON.stringify(item.slice(0, 40))} is not key=value`)
      continue
    }
    const key = item.slice(0, eq).trim()
    let value = item.slice(eq + 1).trim()
    try {
      value = decodeURIComponent(value)
    } catch {
      problems.push(`${name}: the value of ${JSON.stringify(key)} is not valid percent-encoding`)
      continue
    }
    out[key] = value
  }
  return out
}

function exporterList(env: Env, name: string): string[] | undefined {
  const v = str(env, name)
  if (v === undefined) return undefined
  return v
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
}

function target(
  env: Env,
  signal: 'TRACES' | 'METRICS',
  path: string,
  problems: string[],
): OtlpTarget | undefined {
  const rawProtocol = str(env, `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`) ?? str(env, 'OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf'
  if (rawProtocol !== 'http/protobuf' && rawProtocol !== 'grpc') {
    problems.push(`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL=${JSON.stringify(rawProtocol)}: modelgate exports with "http/protobuf" or "grpc"`)
    return undefined
  }
  const protocol: OtlpProtocol = rawProtocol
  if (protocol === 'grpc' && signal === 'METRICS') {
    problems.push('OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=grpc: metrics are exported with "http/protobuf" only; set OTEL_EXPORTER_OTLP_METRICS_PROTOCOL=http/protobuf or OTEL_METRICS_EXPORTER=none')
    return undefined
  }
  const headers = {
    ...parseKeyValueList(str(env, 'OTEL_EXPORTER_OTLP_HEADERS'), 'OTEL_EXPORTER_OTLP_HEADERS', problems),
    ...parseKeyValueList(str(env, `OTEL_EXPORTER_OTLP_${signal}_HEADERS`), `OTEL_EXPORTER_OTLP_${signal}_HEADERS`, problems),
  }
  const generalTimeout = int(env, 'OTEL_EXPORTER_OTLP_TIMEOUT', problems, 10000, 1, 600000)
  const timeoutMs = int(env, `OTEL_EXPORTER_OTLP_${signal}_TIMEOUT`, problems, generalTimeout, 1, 600000)
  const insecureFlag = bool(env, `OTEL_EXPORTER_OTLP_${signal}_INSECURE`) ?? bool(env, 'OTEL_EXPORTER_OTLP_INSECURE')
  const compression = (str(env, `OTEL_EXPORTER_OTLP_${signal}_COMPRESSION`) ?? str(env, 'OTEL_EXPORTER_OTLP_COMPRESSION') ?? 'none').toLowerCase()
  if (compression !== 'none' && compression !== 'gzip') problems.push(`OTEL_EXPORTER_OTLP_COMPRESSION=${JSON.stringify(compression)}: must be "gzip" or "none"`)
  const specific = str(env, `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`)
  const general = str(env, 'OTEL_EXPORTER_OTLP_ENDPOINT')
  let url: string
  if (specific !== undefined) url = specific
  else {
    const base = general ?? (protocol === 'grpc' ? GRPC_DEFAULT : HTTP_DEFAULT)
    // The spec: the general endpoint gets the signal path appended for HTTP; gRPC uses it as is.
    url = protocol === 'grpc' ? base : base.replace(/\/+$/, '') + '/' + path
  }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    problems.push(`OTEL_EXPORTER_OTLP_${specific !== undefined ? signal + '_' : ''}ENDPOINT=${JSON.stringify(url)}: not a URL`)
    return undefined
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    problems.push(`OTEL_EXPORTER_OTLP_${specific !== undefined ? signal + '_' : ''}ENDPOINT=${JSON.stringify(url)}: must start with http:// or https://`)
    return undefined
  }
  return {
    protocol,
    url: parsed.toString(),
    headers,
    timeoutMs,
    insecure: parsed.protocol === 'http:' || insecureFlag === true,
    certificateFile: str(env, `OTEL_EXPORTER_OTLP_${signal}_CERTIFICATE`) ?? str(env, 'OTEL_EXPORTER_OTLP_CERTIFICATE'),
    clientKeyFile: str(env, `OTEL_EXPORTER_OTLP_${signal}_CLIENT_KEY`) ?? str(env, 'OTEL_EXPORTER_OTLP_CLIENT_KEY'),
    clientCertificateFile: str(env, `OTEL_EXPORTER_OTLP_${signal}_CLIENT_CERTIFICATE`) ?? str(env, 'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE'),
    gzip: compression === 'gzip',
  }
}

/** Decides, from the audit configuration and the environment, what is exported where. */
export function readOtelSettings(cfg: Pick<AuditConfig, 'otlp' | 'metrics'>, env: Env): OtelSettings {
  const problems: string[] = []
  const warnings: string[] = []
  const sdkDisabled = bool(env, 'OTEL_SDK_DISABLED') === true
  const serviceName = str(env, 'OTEL_SERVICE_NAME')
  const resourceAttributes = parseKeyValueList(str(env, 'OTEL_RESOURCE_ATTRIBUTES'), 'OTEL_RESOURCE_ATTRIBUTES', problems)
  const endpointSet = (signal: string) => str(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined || str(env, `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`) !== undefined

  const tracesExporters = exporterList(env, 'OTEL_TRACES_EXPORTER')
  for (const e of tracesExporters ?? []) if (e !== 'otlp' && e !== 'none') warnings.push(`OTEL_TRACES_EXPORTER: "${e}" is not supported by modelgate and is ignored`)
  let tracesOn: boolean
  if (sdkDisabled || cfg.otlp === 'off' || tracesExporters?.includes('none')) tracesOn = false
  else if (cfg.otlp === 'on') tracesOn = true
  else tracesOn = tracesExporters?.includes('otlp') === true || endpointSet('TRACES')

  const metricsExporters = exporterList(env, 'OTEL_METRICS_EXPORTER')
  for (const e of metricsExporters ?? []) if (e !== 'otlp' && e !== 'none' && e !== 'prometheus') warnings.push(`OTEL_METRICS_EXPORTER: "${e}" is not supported by modelgate and is ignored`)
  let metricsOn: boolean
  if (sdkDisabled || cfg.metrics.otlp === 'off' || metricsExporters?.includes('none')) metricsOn = false
  else if (cfg.metrics.otlp === 'on') metricsOn = true
  else metricsOn = metricsExporters?.includes('otlp') === true || endpointSet('METRICS')

  const traces = tracesOn ? target(env, 'TRACES', 'v1/traces', problems) : undefined
  const metricsTarget = metricsOn ? target(env, 'METRICS', 'v1/metrics', problems) : undefined
  const intervalMs = int(env, 'OTEL_METRIC_EXPORT_INTERVAL', problems, 60000, 100, 3600000)
  const metricsTimeout = int(env, 'OTEL_METRIC_EXPORT_TIMEOUT', problems, 30000, 1, 600000)

  const maxBatch = int(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', problems, 512, 1, 100000)
  const maxQueue = int(env, 'OTEL_BSP_MAX_QUEUE_SIZE', problems, 8192, 1, 10000000)
  const delayMs = int(env, 'OTEL_BSP_SCHEDULE_DELAY', problems, 500, 0, 600000)
  if (maxBatch > maxQueue) problems.push(`OTEL_BSP_MAX_EXPORT_BATCH_SIZE (${maxBatch}) must not exceed OTEL_BSP_MAX_QUEUE_SIZE (${maxQueue})`)

  return {
    sdkDisabled,
    serviceName: serviceName ?? resourceAttributes['service.name'] ?? 'modelgate',
    resourceAttributes,
    traces,
    metrics: metricsTarget ? { ...metricsTarget, timeoutMs: Math.min(metricsTarget.timeoutMs, metricsTimeout), intervalMs } : undefined,
    batch: { delayMs, maxBatch, maxQueue },
    problems: [...new Set(problems)],
    warnings,
  }
}

/** A printable endpoint without credentials (userinfo and query removed). */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.host}${u.pathname}`
  } catch {
    return '(invalid URL)'
  }
}
