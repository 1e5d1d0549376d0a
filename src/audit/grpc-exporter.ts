/**
 * OTLP/gRPC span export (OTEL_EXPORTER_OTLP_PROTOCOL=grpc): one unary call to
 * `opentelemetry.proto.collector.trace.v1.TraceService/Export` per batch, the
 * body encoded by OpenTelemetry's own protobuf serializer. Headers from
 * OTEL_EXPORTER_OTLP_HEADERS become gRPC metadata; TLS follows the endpoint
 * scheme (https) and the OTEL_EXPORTER_OTLP_*CERTIFICATE / *CLIENT_KEY files.
 */
import { readFileSync } from 'node:fs'
import * as grpc from '@grpc/grpc-js'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace'
import type { OtlpTarget } from './otel-env.ts'

export const TRACE_EXPORT_METHOD = '/opentelemetry.proto.collector.trace.v1.TraceService/Export'

const passThrough = (b: Buffer): Buffer => b

export class OtlpGrpcSpanExporter implements SpanExporter {
  readonly #client: grpc.Client
  readonly #metadata: grpc.Metadata
  readonly #timeoutMs: number
  #closed = false

  constructor(target: OtlpTarget) {
    const url = new URL(target.url)
    const address = `${url.hostname.includes(':') ? `[${url.hostname}]` : url.hostname}:${url.port || '4317'}`
    const read = (f: string | undefined) => (f ? readFileSync(f) : null)
    const creds = target.insecure
      ? grpc.credentials.createInsecure()
      : grpc.credentials.createSsl(read(target.certificateFile), read(target.clientKeyFile), read(target.clientCertificateFile))
    this.#client = new grpc.Client(address, creds, {
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      ...(target.gzip ? { 'grpc.default_compression_algorithm': 2 } : {}),
    })
    this.#metadata = new grpc.Metadata()
    for (const [k, v] of Object.entries(target.headers)) this.#metadata.set(k.toLowerCase(), v)
    this.#timeoutMs = target.timeoutMs
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.#closed) return resultCallback({ code: ExportResultCode.FAILED, error: new Error('exporter is shut down') })
    // The serializer is typed against its own copy of sdk-trace; ReadableSpan is the same interface.
    const body = ProtobufTraceSerializer.serializeRequest(spans as unknown as Parameters<typeof ProtobufTraceSerializer.serializeRequest>[0])
    if (!body) return resultCallback({ code: ExportResultCode.FAILED, error: new Error('spans could not be serialised') })
    this.#client.makeUnaryRequest(
      TRACE_EXPORT_METHOD,
      passThrough,
      passThrough,
      Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      this.#metadata,
      { deadline: Date.now() + this.#timeoutMs },
      (err) => resultCallback(err ? { code: ExportResultCode.FAILED, error: err } : { code: ExportResultCode.SUCCESS }),
    )
  }

  async forceFlush(): Promise<void> {}

  async shutdown(): Promise<void> {
    this.#closed = true
    this.#client.close()
  }
}
