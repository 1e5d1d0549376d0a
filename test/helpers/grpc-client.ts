/**
 * An ext_proc client for integration tests: it plays Envoy's part against a
 * modelgate started in-process. It loads the same protos as the server, opens
 * `Process` streams, sends ProcessingRequest messages shaped the way Envoy
 * sends them (header values in `raw_value` bytes, attributes as a
 * google.protobuf.Struct under `envoy.filters.http.ext_proc`) and collects the
 * answers in order. Also a small grpc.health.v1 client.
 */
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { service as healthService } from 'grpc-health-check'
import { LOADER_OPTIONS } from '../../src/server/codec.ts'
import type {
  HeaderMutationMsg,
  ProcessingRequestMsg,
  ProcessingResponseMsg,
  StructMsg,
  ValueMsg,
} from '../../src/server/codec.ts'
import { ATTRIBUTES_NAMESPACE } from '../../src/server/process.ts'

/** How long `next()` waits for an answer before failing the test (a guard, not an assertion). */
const DEFAULT_WAIT_MS = 5000

type ProcessClient = grpc.Client & {
  Process(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>
}

let clientCtor: grpc.ServiceClientConstructor | undefined
function extProcClientCtor(): grpc.ServiceClientConstructor {
  if (!clientCtor) {
    const def = protoLoader.loadSync('envoy/service/ext_proc/v3/external_processor.proto', LOADER_OPTIONS)
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } }
    }
    clientCtor = pkg.envoy.service.ext_proc.v3.ExternalProcessor
  }
  return clientCtor
}

export type Headers = Record<string, string> | readonly (readonly [string, string])[]

/** Envoy's HeaderMap: every value in raw_value bytes, `value` left empty. */
export function headerMap(headers: Headers): { headers: { key: string; raw_value: Buffer }[] } {
  const list = Array.isArray(headers) ? headers : Object.entries(headers)
  return { headers: list.map(([key, value]) => ({ key, raw_value: Buffer.from(value, 'latin1') })) }
}

/** A plain value as google.protobuf.Value (protobufjs names the well-known types' fields in camelCase). */
export function toValue(v: unknown): ValueMsg {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' }
  if (typeof v === 'string') return { stringValue: v }
  if (typeof v === 'number') return { numberValue: v }
  if (typeof v === 'boolean') return { boolValue: v }
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } }
  return { structValue: toStruct(v as Record<string, unknown>) }
}

export function toStruct(obj: Record<string, unknown>): StructMsg {
  const fields: Record<string, ValueMsg> = {}
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v)
  return { fields }
}

/** google.protobuf.Struct as decoded by the client, back to plain values. */
export function fromStruct(s: StructMsg | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromValue(v)
  return out
}

function fromValue(v: ValueMsg): unknown {
  switch (v.kind) {
    case 'stringValue':
      return v.stringValue
    case 'numberValue':
      return v.numberValue
    case 'boolValue':
      return v.boolValue
    case 'nullValue':
      return null
    case 'structValue':
      return fromStruct(v.structValue)
    case 'listValue':
      return (v.listValue?.values ?? []).map(fromValue)
    default:
      return undefined
  }
}

/** The attributes Envoy attaches for an mTLS connection whose peer presented `pem`. */
export function mtlsAttributes(pem: string, uriSan?: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    'connection.mtls': true,
    'connection.peer_certificate': encodeURIComponent(pem),
    ...(uriSan === undefined ? {} : { 'connection.uri_san_peer_certificate': uriSan }),
    ...extra,
  }
}

export interface HeadersMessageOptions {
  readonly endOfStream?: boolean
  /** Attributes Envoy evaluated for this direction (sent with the first message of each direction). */
  readonly attributes?: Record<string, unknown>
}

function withAttributes(msg: ProcessingRequestMsg, attributes: Record<string, unknown> | undefined): ProcessingRequestMsg {
  if (attributes) msg.attributes = { [ATTRIBUTES_NAMESPACE]: toStruct(attributes) }
  return msg
}

/** Builders for the messages Envoy sends, one per phase. */
export const msg = {
  requestHeaders(headers: Headers, opts: HeadersMessageOptions = {}): ProcessingRequestMsg {
    return withAttributes({ request_headers: { headers: headerMap(headers), end_of_stream: opts.endOfStream ?? false } }, opts.attributes)
  },
  requestBody(body: Buffer | string, endOfStream = true): ProcessingRequestMsg {
    return { request_body: { body: Buffer.from(body), end_of_stream: endOfStream } }
  },
  requestTrailers(trailers: Headers): ProcessingRequestMsg {
    return { request_trailers: { trailers: headerMap(trailers) } }
  },
  responseHeaders(headers: Headers, opts: HeadersMessageOptions = {}): ProcessingRequestMsg {
    return withAttributes({ response_headers: { headers: headerMap(headers), end_of_stream: opts.endOfStream ?? false } }, opts.attributes)
  },
  responseBody(body: Buffer | string, endOfStream = true): ProcessingRequestMsg {
    return { response_body: { body: Buffer.from(body), end_of_stream: endOfStream } }
  },
  responseTrailers(trailers: Headers): ProcessingRequestMsg {
    return { response_trailers: { trailers: headerMap(trailers) } }
  },
}

/** How a stream ended, as the client saw it. */
export interface StreamEnd {
  readonly code: grpc.status
  readonly details: string
}

/**
 * One ext_proc stream. `send` writes a message; `next` resolves with the next
 * answer in order; `end` half-closes like Envoy does when the HTTP exchange is
 * over; `ended` resolves with the final gRPC status.
 */
export class ExtProcStream {
  readonly call: grpc.ClientDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>
  /** Every answer received, in order. */
  readonly received: ProcessingResponseMsg[] = []
  readonly ended: Promise<StreamEnd>
  #unread: ProcessingResponseMsg[] = []
  #waiters: { resolve: (m: ProcessingResponseMsg) => void; reject: (e: Error) => void }[] = []
  #finished: StreamEnd | undefined

  constructor(call: grpc.ClientDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>) {
    this.call = call
    call.on('data', (m: ProcessingResponseMsg) => {
      this.received.push(m)
      const w = this.#waiters.shift()
      if (w) w.resolve(m)
      else this.#unread.push(m)
    })
    this.ended = new Promise<StreamEnd>((resolve) => {
      call.on('status', (s: grpc.StatusObject) => {
        this.#finished = { code: s.code, details: s.details }
        for (const w of this.#waiters.splice(0)) w.reject(new Error(`stream ended (${grpc.status[s.code]}: ${s.details}) before an answer arrived`))
        resolve(this.#finished)
      })
    })
    // Non-OK statuses are also emitted as 'error'; `ended` reports them.
    call.on('error', () => {})
  }

  send(m: ProcessingRequestMsg): this {
    this.call.write(m)
    return this
  }

  /** The next answer, in order of arrival. */
  next(waitMs = DEFAULT_WAIT_MS): Promise<ProcessingResponseMsg> {
    const m = this.#unread.shift()
    if (m) return Promise.resolve(m)
    if (this.#finished) return Promise.reject(new Error(`stream already ended (${grpc.status[this.#finished.code]}: ${this.#finished.details})`))
    return new Promise<ProcessingResponseMsg>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(entry)
        if (i !== -1) this.#waiters.splice(i, 1)
        reject(new Error(`no ext_proc answer within ${waitMs} ms`))
      }, waitMs)
      const entry = {
        resolve: (r: ProcessingResponseMsg) => {
          clearTimeout(timer)
          resolve(r)
        },
        reject: (e: Error) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      this.#waiters.push(entry)
    })
  }

  /** Sends one message and waits for its answer. */
  async exchange(m: ProcessingRequestMsg, waitMs?: number): Promise<ProcessingResponseMsg> {
    this.send(m)
    return this.next(waitMs)
  }

  /** Half-close (Envoy is done sending) and wait for the server's final status. */
  async end(): Promise<StreamEnd> {
    this.call.end()
    return this.ended
  }

  /** Reset the stream from the client side, as Envoy does when the downstream goes away. */
  cancel(): void {
    this.call.cancel()
  }
}

export interface ExtProcClient {
  /** Opens a Process stream; `metadata` is the gRPC initial metadata (Envoy's grpc_initial_metadata). */
  open(metadata?: Record<string, string>): ExtProcStream
  close(): void
}

export interface ClientOptions {
  /** Largest message the client sends or accepts (default: grpc-js defaults, unlimited send). */
  readonly maxMessageBytes?: number
}

/** A client for `address` as the server reports it: `host:port` or `unix:///path`. */
export function connectExtProc(address: string, opts: ClientOptions = {}): ExtProcClient {
  const Ctor = extProcClientCtor()
  const channelOptions: grpc.ChannelOptions = opts.maxMessageBytes
    ? { 'grpc.max_receive_message_length': opts.maxMessageBytes, 'grpc.max_send_message_length': opts.maxMessageBytes }
    : {}
  const client = new Ctor(address, grpc.credentials.createInsecure(), channelOptions) as unknown as ProcessClient
  return {
    open(metadata = {}) {
      const md = new grpc.Metadata()
      for (const [k, v] of Object.entries(metadata)) md.set(k, v)
      return new ExtProcStream(client.Process(md))
    },
    close() {
      client.close()
    },
  }
}

// ---- grpc.health.v1 ---------------------------------------------------------

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN'

type HealthClient = grpc.Client & {
  Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: HealthStatus }) => void): grpc.ClientUnaryCall
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: HealthStatus }>
}

export interface HealthChecker {
  check(service?: string): Promise<HealthStatus>
  /** Streams status changes for a service; `next` resolves with the next one. */
  watch(service?: string): { next(waitMs?: number): Promise<HealthStatus>; cancel(): void }
  close(): void
}

export function connectHealth(address: string): HealthChecker {
  const Ctor = grpc.makeGenericClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health')
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as HealthClient
  return {
    check(service = '') {
      return new Promise((resolve, reject) => {
        client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res!.status)))
      })
    },
    watch(service = '') {
      const call = client.Watch({ service })
      const unread: HealthStatus[] = []
      const waiters: ((s: HealthStatus) => void)[] = []
      call.on('data', (m: { status: HealthStatus }) => {
        const w = waiters.shift()
        if (w) w(m.status)
        else unread.push(m.status)
      })
      call.on('error', () => {})
      return {
        next(waitMs = DEFAULT_WAIT_MS) {
          const s = unread.shift()
          if (s) return Promise.resolve(s)
          return new Promise<HealthStatus>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no health update within ${waitMs} ms`)), waitMs)
            waiters.push((st) => {
              clearTimeout(timer)
              resolve(st)
            })
          })
        },
        cancel() {
          call.cancel()
        },
      }
    },
    close() {
      client.close()
    },
  }
}

// ---- reading answers ----------------------------------------------------------

/** Header mutation as a plain record of set headers (decoded from raw_value) and the removed names. */
export function readMutation(m: HeaderMutationMsg | undefined): { set: Record<string, string>; remove: string[] } {
  const set: Record<string, string> = {}
  for (const h of m?.set_headers ?? []) set[h.header.key] = Buffer.from(h.header.raw_value ?? []).toString('latin1')
  return { set, remove: [...(m?.remove_headers ?? [])] }
}

/**
 * Every header value in every answer travels in raw_value only (Envoy rejects
 * a mutation with both set, and `value` alone can yield empty headers).
 * Returns the offending headers, so a test can assert the list is empty.
 */
export function headersWithValueField(responses: readonly ProcessingResponseMsg[]): string[] {
  const bad: string[] = []
  const check = (m: HeaderMutationMsg | undefined, where: string) => {
    for (const h of m?.set_headers ?? []) {
      const value = (h.header as { value?: string }).value
      if ((value !== undefined && value !== '') || !h.header.raw_value || h.header.raw_value.length === 0) bad.push(`${where}:${h.header.key}`)
    }
  }
  for (const r of responses) {
    check(r.request_headers?.response?.header_mutation, 'request_headers')
    check(r.request_body?.response?.header_mutation, 'request_body')
    check(r.response_headers?.response?.header_mutation, 'response_headers')
    check(r.response_body?.response?.header_mutation, 'response_body')
    check(r.request_trailers?.header_mutation, 'request_trailers')
    check(r.response_trailers?.header_mutation, 'response_trailers')
    check(r.immediate_response?.headers, 'immediate_response')
  }
  return bad
}

/** The JSON error body of an ImmediateResponse. */
export function denialJson(r: ProcessingResponseMsg): { error: Record<string, unknown> } {
  if (!r.immediate_response) throw new Error(`expected an immediate_response, got ${Object.keys(r).join(', ')}`)
  return JSON.parse(Buffer.from(r.immediate_response.body ?? []).toString('utf8'))
}

/** Which phase an answer is for. */
export function answerKind(r: ProcessingResponseMsg): string {
  return (r as { response?: string }).response ?? Object.keys(r).find((k) => k !== 'dynamic_metadata' && k !== 'mode_override') ?? 'none'
}
