/**
 * A real OTLP receiver for tests: a loopback HTTP server accepting
 * OTLP/HTTP protobuf on /v1/traces and /v1/metrics (and, optionally, OTLP/gRPC
 * TraceService/Export), decoding ExportTraceServiceRequest and
 * ExportMetricsServiceRequest with protobufjs and a trimmed copy of the
 * published schema (test/fixtures/otlp/otlp.proto).
 *
 * It keeps the raw bytes of every request, so a test can assert that a secret
 * appears in no exported byte, and it can go down (refuse connections, answer
 * 503, or hang) and come back on the same port.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { gunzipSync } from 'node:zlib'
import * as grpc from '@grpc/grpc-js'
import protobuf from 'protobufjs'
import { writeFileSync } from 'node:fs'
import type { RecordValue, SpanRecord } from '../../src/audit/record.ts'

const PROTO = fileURLToPath(new URL('../fixtures/otlp/otlp.proto', import.meta.url))
const root = protobuf.loadSync(PROTO)
const TraceRequest = root.lookupType('otlp.ExportTraceServiceRequest')
const TraceResponse = root.lookupType('otlp.ExportTraceServiceResponse')
const MetricsRequest = root.lookupType('otlp.ExportMetricsServiceRequest')
const MetricsResponse = root.lookupType('otlp.ExportMetricsServiceResponse')
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, bytes: Buffer as unknown as typeof String, defaults: false, oneofs: true }

export type AttributeValue = string | number | boolean | AttributeValue[] | { [k: string]: AttributeValue } | Buffer

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly traceState: string | undefined
  readonly name: string
  /** OTLP SpanKind (1 internal, 2 server, …). */
  readonly kind: number
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly attributes: Readonly<Record<string, AttributeValue>>
  readonly status: { readonly code: number; readonly message: string | undefined }
  readonly flags: number | undefined
  readonly resource: Readonly<Record<string, AttributeValue>>
  readonly scope: { readonly name: string; readonly version: string | undefined }
}

export interface ReceivedPoint {
  readonly attributes: Readonly<Record<string, AttributeValue>>
  /** Sum and gauge points. */
  readonly value?: number
  /** Histogram points. */
  readonly count?: number
  readonly sum?: number
}

export interface ReceivedMetric {
  readonly name: string
  readonly unit: string
  readonly type: 'sum' | 'gauge' | 'histogram'
  readonly points: readonly ReceivedPoint[]
  readonly resource: Readonly<Record<string, AttributeValue>>
}

export interface RawRequest {
  readonly transport: 'http' | 'grpc'
  readonly path: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Bytes as they arrived on the wire (possibly gzip). */
  readonly body: Buffer
  /** Bytes after content decoding: the protobuf message. */
  readonly decoded: Buffer
  /** The answer given: 200, or the failure status while down. */
  readonly status: number
}

/** How the receiver behaves while down. */
export type DownMode = 'refuse' | 'unavailable' | 'hang'

export interface ReceiverOptions {
  /** Also serve OTLP/gRPC TraceService/Export on a second loopback port. */
  readonly grpc?: boolean
}

const MAX_BODY = 64 * 1024 * 1024

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = []
  readonly metrics: ReceivedMetric[] = []
  readonly requests: RawRequest[] = []
  /** Requests answered while down (503) or refused mid-way. */
  rejected = 0
  #server: Server | undefined
  #grpc: grpc.Server | undefined
  #port = 0
  #grpcPort = 0
  #mode: 'up' | DownMode = 'up'
  readonly #sockets = new Set<Socket>()
  readonly #hung = new Set<ServerResponse>()
  readonly #waiters = new Set<() => void>()

  static async start(opts: ReceiverOptions = {}): Promise<OtlpReceiver> {
    const r = new OtlpReceiver()
    await r.#listen(0)
    if (opts.grpc) await r.#startGrpc()
    return r
  }

  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT. */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`
  }

  get tracesUrl(): string {
    return `${this.url}/v1/traces`
  }

  get metricsUrl(): string {
    return `${this.url}/v1/metrics`
  }

  /** gRPC endpoint (when started with `grpc: true`). */
  get grpcUrl(): string {
    if (!this.#grpc) throw new Error('the receiver was started without gRPC')
    return `http://127.0.0.1:${this.#grpcPort}`
  }

  get mode(): 'up' | DownMode {
    return this.#mode
  }

  /** Every byte received, raw and decoded, concatenated. */
  allBytes(): Buffer {
    return Buffer.concat(this.requests.flatMap((r) => [r.body, r.decoded]))
  }

  /** Spans with `key` = `value` (default key: modelgate.request.id). */
  spansWith(value: AttributeValue, key = 'modelgate.request.id'): ReceivedSpan[] {
    return this.spans.filter((s) => s.attributes[key] === value)
  }

  /** Root audit records (those carrying a chain position). */
  records(): ReceivedSpan[] {
    return this.spans.filter((s) => typeof s.attributes['modelgate.audit.seq'] === 'number')
  }

  /** The root audit record of one request, by its request id. */
  recordFor(requestId: string): ReceivedSpan | undefined {
    return this.records().find((s) => s.attributes['modelgate.request.id'] === requestId)
  }

  /** Metric points by name, latest export last. */
  metric(name: string): ReceivedMetric[] {
    return this.metrics.filter((m) => m.name === name)
  }

  /** Waits until `pred` holds (checked after every request and every 20 ms), or fails after `timeoutMs`. */
  async waitFor(pred: () => boolean, timeoutMs = 10000, what = 'condition'): Promise<void> {
    if (pred()) return
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer)
        clearInterval(poll)
        this.#waiters.delete(check)
      }
      const check = () => {
        if (!pred()) return
        done()
        resolve()
      }
      const poll = setInterval(check, 20)
      const timer = setTimeout(() => {
        done()
        reject(new Error(`OTLP receiver: timed out after ${timeoutMs} ms waiting for ${what} (spans: ${this.spans.length})`))
      }, timeoutMs)
      this.#waiters.add(check)
    })
  }

  /** Go down: `refuse` closes the port; `unavailable` answers 503; `hang` never answers. */
  async down(mode: DownMode = 'refuse'): Promise<void> {
    this.#mode = mode
    if (mode === 'refuse') {
      await this.#closeHttp()
      if (this.#grpc) {
        this.#grpc.forceShutdown()
        this.#grpc = undefined
      }
    }
  }

  /** Come back on the same port(s). Requests held by `hang` are answered 503. */
  async up(): Promise<void> {
    const wasRefusing = this.#mode === 'refuse'
    this.#mode = 'up'
    for (const res of this.#hung) this.#fail(res, 503)
    this.#hung.clear()
    if (wasRefusing) {
      await this.#listen(this.#port)
      if (this.#grpcPort) await this.#startGrpc(this.#grpcPort)
    }
  }

  clear(): void {
    this.spans.length = 0
    this.metrics.length = 0
    this.requests.length = 0
    this.rejected = 0
  }

  async close(): Promise<void> {
    for (const res of this.#hung) res.destroy()
    this.#hung.clear()
    await this.#closeHttp()
    this.#grpc?.forceShutdown()
    this.#grpc = undefined
  }

  // ---- HTTP -------------------------------------------------------------------

  async #listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.#onRequest(req, res))
    server.on('connection', (s) => {
      this.#sockets.add(s)
      s.on('close', () => this.#sockets.delete(s))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    this.#server = server
    this.#port = (server.address() as AddressInfo).port
  }

  async #closeHttp(): Promise<void> {
    const server = this.#server
    if (!server) return
    this.#server = undefined
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
    await closed
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const path = (req.url ?? '').split('?')[0]!
      if (this.#mode === 'hang') {
        this.#hung.add(res)
        return
      }
      if (this.#mode !== 'up') {
        this.rejected++
        this.#record('http', path, req.headers, body, body, 503)
        return this.#fail(res, 503)
      }
      if (req.method !== 'POST' || (path !== '/v1/traces' && path !== '/v1/metrics')) return this.#fail(res, 404)
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-protobuf')) return this.#fail(res, 415)
      let decoded: Buffer
      try {
        decoded = req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body
        if (path === '/v1/traces') this.#takeTraces(decoded)
        else this.#takeMetrics(decoded)
      } catch (err) {
        this.#record('http', path, req.headers, body, body, 400)
        return this.#fail(res, 400, (err as Error).message)
      }
      this.#record('http', path, req.headers, body, decoded, 200)
      const answer = path === '/v1/traces' ? TraceResponse.encode(TraceResponse.create({})).finish() : MetricsResponse.encode(MetricsResponse.create({})).finish()
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': answer.length })
      res.end(Buffer.from(answer))
      this.#notify()
    })
  }

  #fail(res: ServerResponse, status: number, message = ''): void {
    if (res.writableEnded || res.destroyed) return
    res.writeHead(status, { 'content-type': 'text/plain' })
    res.end(message)
  }

  #record(transport: 'http' | 'grpc', path: string, headers: RawRequest['headers'], body: Buffer, decoded: Buffer, status: number): void {
    this.requests.push({ transport, path, headers, body, decoded, status })
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w()
  }

  // ---- gRPC --------------------------------------------------------------------

  async #startGrpc(port = 0): Promise<void> {
    const server = new grpc.Server()
    const id = (b: Buffer) => b
    server.addService(
      {
        Export: {
          path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
          requestStream: false,
          responseStream: false,
          requestSerialize: id,
          requestDeserialize: id,
          responseSerialize: id,
          responseDeserialize: id,
        },
      },
      {
        Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          const body = call.request
          const headers: Record<string, string> = {}
          for (const [k, v] of Object.entries(call.metadata.getMap())) headers[k] = String(v)
          if (this.#mode === 'hang') return // never answered; the client's deadline fires
          if (this.#mode !== 'up') {
            this.rejected++
            this.#record('grpc', 'TraceService/Export', headers, body, body, 503)
            return cb({ code: grpc.status.UNAVAILABLE, details: 'receiver is down' })
          }
          try {
            this.#takeTraces(body)
          } catch (err) {
            return cb({ code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message })
          }
          this.#record('grpc', 'TraceService/Export', headers, body, body, 200)
          cb(null, Buffer.from(TraceResponse.encode(TraceResponse.create({})).finish()))
          this.#notify()
        },
      },
    )
    this.#grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    )
    this.#grpc = server
  }

  // ---- decoding ------------------------------------------------------------------

  #takeTraces(buf: Buffer): void {
    const msg = TraceRequest.toObject(TraceRequest.decode(buf), TO_OBJECT) as TraceRequestObj
    for (const rs of msg.resourceSpans ?? []) {
      const resource = attributesOf(rs.resource?.attributes)
      for (const ss of rs.scopeSpans ?? []) {
        const scope = { name: ss.scope?.name ?? '', version: ss.scope?.version }
        for (const s of ss.spans ?? []) {
          this.spans.push({
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: s.parentSpanId && s.parentSpanId.length > 0 ? hex(s.parentSpanId) : undefined,
            traceState: s.traceState || undefined,
            name: s.name ?? '',
            kind: s.kind ?? 0,
            startTimeUnixNano: String(s.startTimeUnixNano ?? '0'),
            endTimeUnixNano: String(s.endTimeUnixNano ?? '0'),
            attributes: attributesOf(s.attributes),
            status: { code: s.status?.code ?? 0, message: s.status?.message || undefined },
            flags: s.flags,
            resource,
            scope,
          })
        }
      }
    }
  }

  #takeMetrics(buf: Buffer): void {
    const msg = MetricsRequest.toObject(MetricsRequest.decode(buf), TO_OBJECT) as MetricsRequestObj
    for (const rm of msg.resourceMetrics ?? []) {
      const resource = attributesOf(rm.resource?.attributes)
      for (const sm of rm.scopeMetrics ?? []) {
        for (const m of sm.metrics ?? []) {
          if (m.sum || m.gauge) {
            const dps = (m.sum ?? m.gauge)!.dataPoints ?? []
            this.metrics.push({
              name: m.name,
              unit: m.unit ?? '',
              type: m.sum ? 'sum' : 'gauge',
              resource,
              points: dps.map((p) => ({ attributes: attributesOf(p.attributes), value: p.asDouble ?? (p.asInt !== undefined ? Number(p.asInt) : 0) })),
            })
          } else if (m.histogram) {
            this.metrics.push({
              name: m.name,
              unit: m.unit ?? '',
              type: 'histogram',
              resource,
              points: (m.histogram.dataPoints ?? []).map((p) => ({ attributes: attributesOf(p.attributes), count: Number(p.count ?? 0), sum: p.sum ?? 0 })),
            })
          }
        }
      }
    }
  }
}

// ---- decoded shapes -------------------------------------------------------------

interface AnyValueObj {
  stringValue?: string
  boolValue?: boolean
  intValue?: string
  doubleValue?: number
  arrayValue?: { values?: AnyValueObj[] }
  kvlistValue?: { values?: KeyValueObj[] }
  bytesValue?: Buffer
}
interface KeyValueObj {
  key: string
  value?: AnyValueObj
}
interface TraceRequestObj {
  resourceSpans?: {
    resource?: { attributes?: KeyValueObj[] }
    scopeSpans?: {
      scope?: { name?: string; version?: string }
      spans?: {
        traceId?: Buffer
        spanId?: Buffer
        parentSpanId?: Buffer
        traceState?: string
        name?: string
        kind?: number
        startTimeUnixNano?: string
        endTimeUnixNano?: string
        attributes?: KeyValueObj[]
        status?: { code?: number; message?: string }
        flags?: number
      }[]
    }[]
  }[]
}
interface PointObj {
  attributes?: KeyValueObj[]
  asDouble?: number
  asInt?: string
  count?: string
  sum?: number
}
interface MetricsRequestObj {
  resourceMetrics?: {
    resource?: { attributes?: KeyValueObj[] }
    scopeMetrics?: {
      metrics?: {
        name: string
        unit?: string
        sum?: { dataPoints?: PointObj[] }
        gauge?: { dataPoints?: PointObj[] }
        histogram?: { dataPoints?: PointObj[] }
      }[]
    }[]
  }[]
}

function hex(b: Buffer | undefined): string {
  return b ? Buffer.from(b).toString('hex') : ''
}

function valueOf(v: AnyValueObj | undefined): AttributeValue {
  if (!v) return ''
  if (v.stringValue !== undefined) return v.stringValue
  if (v.boolValue !== undefined) return v.boolValue
  if (v.intValue !== undefined) return Number(v.intValue)
  if (v.doubleValue !== undefined) return v.doubleValue
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(valueOf)
  if (v.kvlistValue) return attributesOf(v.kvlistValue.values)
  if (v.bytesValue) return Buffer.from(v.bytesValue)
  return ''
}

function attributesOf(kvs: KeyValueObj[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {}
  for (const kv of kvs ?? []) out[kv.key] = valueOf(kv.value)
  return out
}

/** A received span as the record `modelgate audit` and the chain verifier read. */
export function toRecord(s: ReceivedSpan): SpanRecord {
  return {
    traceId: s.traceId,
    spanId: s.spanId,
    ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
    name: s.name,
    kind: Math.max(0, s.kind - 1),
    start: s.startTimeUnixNano,
    end: s.endTimeUnixNano,
    status: { code: s.status.code },
    attributes: s.attributes as Record<string, RecordValue>,
  }
}

/** Writes received spans as a JSON-lines record file. */
export function writeRecords(spans: readonly ReceivedSpan[], file: string): void {
  writeFileSync(file, spans.map((s) => JSON.stringify(toRecord(s))).join('\n') + '\n')
}
