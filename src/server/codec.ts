/**
 * Loading the ext_proc protos and translating between their decoded form and
 * modelgate's own types. Nothing here decides anything.
 */
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { encodable, encodeProcessingResponse } from './wire.ts'

export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url))
export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor'

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
  includeDirs: [PROTO_DIR],
}

/**
 * The ExternalProcessor service definition, loaded once. The server writes its
 * answers with the direct encoder of wire.ts (same bytes, less work); pass
 * `{ generic: true }` for proto-loader's serializers throughout.
 */
export function loadExtProcService(opts: { generic?: boolean } = {}): grpc.ServiceDefinition {
  const def = protoLoader.loadSync('envoy/service/ext_proc/v3/external_processor.proto', LOADER_OPTIONS)
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } } }
  }
  const service = pkg.envoy.service.ext_proc.v3.ExternalProcessor.service
  if (opts.generic) return service
  const process = service.Process!
  const generic = process.responseSerialize
  return {
    ...service,
    Process: { ...process, responseSerialize: (m: ProcessingResponseMsg) => (encodable(m) ? encodeProcessingResponse(m) : generic(m)) },
  }
}

// ---- decoded message shapes (keepCase, oneofs) -------------------------------

export interface HeaderValueMsg {
  key?: string
  value?: string
  raw_value?: Buffer
}
export interface HeaderMapMsg {
  headers?: HeaderValueMsg[]
}
export interface HttpHeadersMsg {
  headers?: HeaderMapMsg
  end_of_stream?: boolean
}
export interface HttpBodyMsg {
  body?: Buffer
  end_of_stream?: boolean
}
export interface HttpTrailersMsg {
  trailers?: HeaderMapMsg
}
export interface StructMsg {
  fields?: Record<string, ValueMsg>
}
export interface ValueMsg {
  kind?: string
  nullValue?: unknown
  null_value?: unknown
  numberValue?: number
  number_value?: number
  stringValue?: string
  string_value?: string
  boolValue?: boolean
  bool_value?: boolean
  structValue?: StructMsg
  struct_value?: StructMsg
  listValue?: { values?: ValueMsg[] }
  list_value?: { values?: ValueMsg[] }
}

export interface ProcessingRequestMsg {
  request?: 'request_headers' | 'response_headers' | 'request_body' | 'response_body' | 'request_trailers' | 'response_trailers'
  request_headers?: HttpHeadersMsg
  response_headers?: HttpHeadersMsg
  request_body?: HttpBodyMsg
  response_body?: HttpBodyMsg
  request_trailers?: HttpTrailersMsg
  response_trailers?: HttpTrailersMsg
  attributes?: Record<string, StructMsg>
  observability_mode?: boolean
  protocol_config?: { request_body_mode?: string; response_body_mode?: string }
}

export interface HeaderMutationMsg {
  set_headers?: { header: { key: string; raw_value: Buffer }; append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' | 'APPEND_IF_EXISTS_OR_ADD' }[]
  remove_headers?: string[]
}
export interface CommonResponseMsg {
  status?: 'CONTINUE' | 'CONTINUE_AND_REPLACE'
  header_mutation?: HeaderMutationMsg
  body_mutation?: { body: Buffer } | { clear_body: true }
}
export interface ImmediateResponseMsg {
  status: { code: number }
  headers?: HeaderMutationMsg
  body?: Buffer
  details?: string
}
export interface ProcessingResponseMsg {
  request_headers?: { response?: CommonResponseMsg }
  response_headers?: { response?: CommonResponseMsg }
  request_body?: { response?: CommonResponseMsg }
  response_body?: { response?: CommonResponseMsg }
  request_trailers?: { header_mutation?: HeaderMutationMsg }
  response_trailers?: { header_mutation?: HeaderMutationMsg }
  immediate_response?: ImmediateResponseMsg
  mode_override?: { response_body_mode?: string }
  dynamic_metadata?: StructMsg
}

// ---- conversions ------------------------------------------------------------

/** Header map to a Map with lower-case keys. Values come from raw_value (bytes, latin1), else value. */
export function headersToMap(map: HeaderMapMsg | undefined, into: Map<string, string>): void {
  for (const h of map?.headers ?? []) {
    if (!h.key) continue
    const key = h.key.toLowerCase()
    const value = h.raw_value && h.raw_value.length > 0 ? h.raw_value.toString('latin1') : (h.value ?? '')
    const prev = into.get(key)
    // Repeated headers are joined as HTTP allows; identity headers are checked for repetition by their stage.
    into.set(key, prev === undefined ? value : `${prev},${value}`)
  }
}

/** google.protobuf.Value (decoded with oneofs) to a plain JS value. */
export function valueToJs(v: ValueMsg | undefined): unknown {
  if (!v) return undefined
  switch (v.kind) {
    case 'stringValue':
    case 'string_value':
      return v.stringValue ?? v.string_value
    case 'numberValue':
    case 'number_value':
      return v.numberValue ?? v.number_value
    case 'boolValue':
    case 'bool_value':
      return v.boolValue ?? v.bool_value
    case 'structValue':
    case 'struct_value':
      return structToJs(v.structValue ?? v.struct_value)
    case 'listValue':
    case 'list_value':
      return ((v.listValue ?? v.list_value)?.values ?? []).map(valueToJs)
    case 'nullValue':
    case 'null_value':
      return null
    default:
      return undefined
  }
}

export function structToJs(s: StructMsg | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = valueToJs(v)
  return out
}

/** Plain JSON-like value to google.protobuf.Struct (for dynamic metadata). */
export function jsToStruct(obj: Record<string, unknown>): StructMsg {
  const fields: Record<string, ValueMsg> = {}
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) fields[k] = jsToValue(v)
  return { fields }
}

function jsToValue(v: unknown): ValueMsg {
  if (v === null) return { kind: 'nullValue', nullValue: 'NULL_VALUE' }
  if (typeof v === 'string') return { kind: 'stringValue', stringValue: v }
  if (typeof v === 'number') return { kind: 'numberValue', numberValue: v }
  if (typeof v === 'boolean') return { kind: 'boolValue', boolValue: v }
  if (Array.isArray(v)) return { kind: 'listValue', listValue: { values: v.map(jsToValue) } }
  if (typeof v === 'object') return { kind: 'structValue', structValue: jsToStruct(v as Record<string, unknown>) }
  return { kind: 'stringValue', stringValue: String(v) }
}

/** Header changes to an Envoy HeaderMutation, values in raw_value only. */
export function headerMutation(set: ReadonlyMap<string, string>, remove: ReadonlySet<string>): HeaderMutationMsg | undefined {
  if (set.size === 0 && remove.size === 0) return undefined
  const m: HeaderMutationMsg = {}
  if (set.size) {
    m.set_headers = [...set].map(([key, value]) => ({
      header: { key, raw_value: Buffer.from(value, 'latin1') },
      append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' as const,
    }))
  }
  if (remove.size) m.remove_headers = [...remove]
  return m
}
