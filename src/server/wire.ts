/**
 * The ProcessingResponse encoder the server writes every answer with: the
 * messages of codec.ts (ProcessingResponseMsg) straight to protobuf bytes.
 *
 * The generic serializer of @grpc/proto-loader first rebuilds each answer as
 * protobufjs message objects (converting enum names, checking every field),
 * then encodes those with a writer that grows chunk by chunk. Answers are
 * small and their shape is fixed by ProcessingResponseMsg, so this encoder
 * measures the message once and writes it into one buffer. It writes what the
 * generic one writes, byte for byte: every field present in the object (a
 * scalar set to its default included), in field-number order
 * (`test/unit/server/wire.test.ts` compares the two). A message with a field
 * it does not know goes to the generic serializer instead; an enum name it
 * does not know is an error (an answer it cannot encode exactly is not sent).
 *
 * Field numbers and enum values are those of the protos under `proto/`.
 */
import type { CommonResponseMsg, HeaderMutationMsg, ImmediateResponseMsg, ProcessingResponseMsg, StructMsg, ValueMsg } from './codec.ts'

/** CommonResponse.ResponseStatus. */
const RESPONSE_STATUS: Readonly<Record<string, number>> = { CONTINUE: 0, CONTINUE_AND_REPLACE: 1 }
/** HeaderValueOption.HeaderAppendAction. */
const APPEND_ACTION: Readonly<Record<string, number>> = { APPEND_IF_EXISTS_OR_ADD: 0, ADD_IF_ABSENT: 1, OVERWRITE_IF_EXISTS_OR_ADD: 2, OVERWRITE_IF_EXISTS: 3 }
/** ProcessingMode.BodySendMode. */
const BODY_SEND_MODE: Readonly<Record<string, number>> = { NONE: 0, STREAMED: 1, BUFFERED: 2, BUFFERED_PARTIAL: 3, FULL_DUPLEX_STREAMED: 4, GRPC: 5 }
/** google.protobuf.NullValue. */
const NULL_VALUE: Readonly<Record<string, number>> = { NULL_VALUE: 0 }

/** The top-level fields this encoder writes; any other sends the message to the generic serializer. */
const KNOWN = new Set(['request_headers', 'response_headers', 'request_body', 'response_body', 'request_trailers', 'response_trailers', 'immediate_response', 'dynamic_metadata', 'mode_override'])

/** True when every field of `msg` is one this encoder writes. */
export function encodable(msg: ProcessingResponseMsg): boolean {
  for (const k in msg) if (!KNOWN.has(k)) return false
  return true
}

function enumValue(table: Readonly<Record<string, number>>, name: string, v: string | number): number {
  if (typeof v === 'number') return v
  const n = table[v]
  if (n === undefined) throw new Error(`cannot encode ${name} "${v}"`)
  return n
}

// ---- sizes ------------------------------------------------------------------------

function varintSize(n: number): number {
  // Negative int32 values take ten bytes, as protobuf encodes them sign-extended.
  if (n < 0) return 10
  if (n < 0x80) return 1
  if (n < 0x4000) return 2
  if (n < 0x200000) return 3
  if (n < 0x10000000) return 4
  return 5
}

/** Tag plus length prefix plus payload of a length-delimited field. */
const delimited = (len: number): number => 1 + varintSize(len) + len

/**
 * Sizes of the nested messages, in the order the writer meets them (a
 * pre-order walk), so each is measured once.
 */
class Sizes {
  readonly list: number[] = []
  /** Reserves a slot for a message measured after its children; returns its index. */
  open(): number {
    this.list.push(0)
    return this.list.length - 1
  }
  close(slot: number, size: number): number {
    this.list[slot] = size
    return size
  }
}

function sizeStr(s: string): number {
  return delimited(Buffer.byteLength(s, 'utf8'))
}

function sizeHeaderMutation(m: HeaderMutationMsg, z: Sizes): number {
  const slot = z.open()
  let n = 0
  for (const o of m.set_headers ?? []) {
    const optSlot = z.open()
    let opt = 0
    if (o.header != null) {
      const hvSlot = z.open()
      let hv = 0
      if (o.header.key != null) hv += sizeStr(o.header.key)
      if (o.header.raw_value != null) hv += delimited(o.header.raw_value.length)
      opt += delimited(z.close(hvSlot, hv))
    }
    if (o.append_action != null) opt += 1 + varintSize(enumValue(APPEND_ACTION, 'append_action', o.append_action))
    n += delimited(z.close(optSlot, opt))
  }
  for (const r of m.remove_headers ?? []) n += sizeStr(r)
  return z.close(slot, n)
}

function sizeCommon(c: CommonResponseMsg, z: Sizes): number {
  const slot = z.open()
  let n = 0
  if (c.status != null) n += 1 + varintSize(enumValue(RESPONSE_STATUS, 'status', c.status))
  if (c.header_mutation != null) n += delimited(sizeHeaderMutation(c.header_mutation, z))
  if (c.body_mutation != null) {
    const bm = c.body_mutation
    const bmSlot = z.open()
    let b = 0
    if ('body' in bm && bm.body != null) b += delimited(bm.body.length)
    if ('clear_body' in bm && bm.clear_body != null) b += 2
    n += delimited(z.close(bmSlot, b))
  }
  return z.close(slot, n)
}

function sizeValue(v: ValueMsg, z: Sizes): number {
  const slot = z.open()
  let n = 0
  if (v.nullValue != null) n += 1 + varintSize(enumValue(NULL_VALUE, 'nullValue', v.nullValue as string))
  if (v.numberValue != null) n += 9
  if (v.stringValue != null) n += sizeStr(v.stringValue)
  if (v.boolValue != null) n += 2
  if (v.structValue != null) n += delimited(sizeStruct(v.structValue, z))
  if (v.listValue != null) {
    const lSlot = z.open()
    let l = 0
    for (const x of v.listValue.values ?? []) l += delimited(sizeValue(x, z))
    n += delimited(z.close(lSlot, l))
  }
  return z.close(slot, n)
}

function sizeStruct(s: StructMsg, z: Sizes): number {
  const slot = z.open()
  let n = 0
  const fields = s.fields
  if (fields != null) {
    for (const k of Object.keys(fields)) {
      const eSlot = z.open()
      n += delimited(z.close(eSlot, sizeStr(k) + delimited(sizeValue(fields[k]!, z))))
    }
  }
  return z.close(slot, n)
}

function sizeImmediate(r: ImmediateResponseMsg, z: Sizes): number {
  const slot = z.open()
  let n = 0
  if (r.status != null) {
    const sSlot = z.open()
    n += delimited(z.close(sSlot, r.status.code != null ? 1 + varintSize(r.status.code) : 0))
  }
  if (r.headers != null) n += delimited(sizeHeaderMutation(r.headers, z))
  if (r.body != null) n += delimited(r.body.length)
  if (r.details != null) n += sizeStr(r.details)
  return z.close(slot, n)
}

/** Sizes of a `{ response?: CommonResponse }` (headers and body answers) and of a trailers answer. */
function sizeWrapped(inner: CommonResponseMsg | undefined, z: Sizes): number {
  const slot = z.open()
  return z.close(slot, inner != null ? delimited(sizeCommon(inner, z)) : 0)
}
function sizeTrailers(hm: HeaderMutationMsg | undefined, z: Sizes): number {
  const slot = z.open()
  return z.close(slot, hm != null ? delimited(sizeHeaderMutation(hm, z)) : 0)
}

function sizeResponse(m: ProcessingResponseMsg, z: Sizes): number {
  let n = 0
  if (m.request_headers != null) n += delimited(sizeWrapped(m.request_headers.response, z))
  if (m.response_headers != null) n += delimited(sizeWrapped(m.response_headers.response, z))
  if (m.request_body != null) n += delimited(sizeWrapped(m.request_body.response, z))
  if (m.response_body != null) n += delimited(sizeWrapped(m.response_body.response, z))
  if (m.request_trailers != null) n += delimited(sizeTrailers(m.request_trailers.header_mutation, z))
  if (m.response_trailers != null) n += delimited(sizeTrailers(m.response_trailers.header_mutation, z))
  if (m.immediate_response != null) n += delimited(sizeImmediate(m.immediate_response, z))
  if (m.dynamic_metadata != null) n += delimited(sizeStruct(m.dynamic_metadata, z))
  if (m.mode_override != null) {
    const slot = z.open()
    const mo = m.mode_override
    n += delimited(z.close(slot, mo.response_body_mode != null ? 1 + varintSize(enumValue(BODY_SEND_MODE, 'response_body_mode', mo.response_body_mode)) : 0))
  }
  return n
}

// ---- writing ----------------------------------------------------------------------

class Out {
  readonly buf: Buffer
  pos = 0
  #slot = 0
  readonly #sizes: readonly number[]
  constructor(size: number, sizes: readonly number[]) {
    this.buf = Buffer.allocUnsafe(size)
    this.#sizes = sizes
  }
  varint(n: number): void {
    const b = this.buf
    if (n < 0) {
      // Sign-extended to 64 bits, as protobuf writes a negative int32.
      let lo = n >>> 0
      for (let i = 0; i < 4; i++) {
        b[this.pos++] = (lo & 0x7f) | 0x80
        lo >>>= 7
      }
      b[this.pos++] = (lo & 0x0f) | 0x70 | 0x80
      for (let i = 0; i < 4; i++) b[this.pos++] = 0xff
      b[this.pos++] = 0x01
      return
    }
    while (n >= 0x80) {
      b[this.pos++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    b[this.pos++] = n
  }
  byte(n: number): void {
    this.buf[this.pos++] = n
  }
  /** Tag and length of the next measured message. */
  message(tag: number): void {
    this.byte(tag)
    this.varint(this.#sizes[this.#slot++]!)
  }
  str(tag: number, s: string): void {
    this.byte(tag)
    const len = Buffer.byteLength(s, 'utf8')
    this.varint(len)
    this.pos += this.buf.write(s, this.pos, len, 'utf8')
  }
  bytes(tag: number, data: Uint8Array): void {
    this.byte(tag)
    this.varint(data.length)
    this.buf.set(data, this.pos)
    this.pos += data.length
  }
  double(tag: number, v: number): void {
    this.byte(tag)
    this.buf.writeDoubleLE(v, this.pos)
    this.pos += 8
  }
}

function writeHeaderMutation(o: Out, tag: number, m: HeaderMutationMsg): void {
  o.message(tag)
  for (const h of m.set_headers ?? []) {
    o.message(0x0a)
    if (h.header != null) {
      o.message(0x0a)
      if (h.header.key != null) o.str(0x0a, h.header.key)
      if (h.header.raw_value != null) o.bytes(0x1a, h.header.raw_value)
    }
    if (h.append_action != null) {
      o.byte(0x18)
      o.varint(enumValue(APPEND_ACTION, 'append_action', h.append_action))
    }
  }
  for (const r of m.remove_headers ?? []) o.str(0x12, r)
}

function writeCommon(o: Out, c: CommonResponseMsg): void {
  o.message(0x0a)
  if (c.status != null) {
    o.byte(0x08)
    o.varint(enumValue(RESPONSE_STATUS, 'status', c.status))
  }
  if (c.header_mutation != null) writeHeaderMutation(o, 0x12, c.header_mutation)
  if (c.body_mutation != null) {
    const bm = c.body_mutation
    o.message(0x1a)
    if ('body' in bm && bm.body != null) o.bytes(0x0a, bm.body)
    if ('clear_body' in bm && bm.clear_body != null) {
      o.byte(0x10)
      o.byte(bm.clear_body ? 1 : 0)
    }
  }
}

function writeValue(o: Out, tag: number, v: ValueMsg): void {
  o.message(tag)
  if (v.nullValue != null) {
    o.byte(0x08)
    o.varint(enumValue(NULL_VALUE, 'nullValue', v.nullValue as string))
  }
  if (v.numberValue != null) o.double(0x11, v.numberValue)
  if (v.stringValue != null) o.str(0x1a, v.stringValue)
  if (v.boolValue != null) {
    o.byte(0x20)
    o.byte(v.boolValue ? 1 : 0)
  }
  if (v.structValue != null) writeStruct(o, 0x2a, v.structValue)
  if (v.listValue != null) {
    o.message(0x32)
    for (const x of v.listValue.values ?? []) writeValue(o, 0x0a, x)
  }
}

function writeStruct(o: Out, tag: number, s: StructMsg): void {
  o.message(tag)
  const fields = s.fields
  if (fields == null) return
  for (const k of Object.keys(fields)) {
    o.message(0x0a)
    o.str(0x0a, k)
    writeValue(o, 0x12, fields[k]!)
  }
}

function writeImmediate(o: Out, r: ImmediateResponseMsg): void {
  o.message(0x3a)
  if (r.status != null) {
    o.message(0x0a)
    if (r.status.code != null) {
      o.byte(0x08)
      o.varint(r.status.code)
    }
  }
  if (r.headers != null) writeHeaderMutation(o, 0x12, r.headers)
  if (r.body != null) o.bytes(0x1a, r.body)
  if (r.details != null) o.str(0x2a, r.details)
}

function writeWrapped(o: Out, tag: number, inner: CommonResponseMsg | undefined): void {
  o.message(tag)
  if (inner != null) writeCommon(o, inner)
}

function writeTrailers(o: Out, tag: number, hm: HeaderMutationMsg | undefined): void {
  o.message(tag)
  if (hm != null) writeHeaderMutation(o, 0x0a, hm)
}

/** The protobuf bytes of one answer. Call only when `encodable(msg)`. */
export function encodeProcessingResponse(m: ProcessingResponseMsg): Buffer {
  const z = new Sizes()
  const size = sizeResponse(m, z)
  const o = new Out(size, z.list)
  if (m.request_headers != null) writeWrapped(o, 0x0a, m.request_headers.response)
  if (m.response_headers != null) writeWrapped(o, 0x12, m.response_headers.response)
  if (m.request_body != null) writeWrapped(o, 0x1a, m.request_body.response)
  if (m.response_body != null) writeWrapped(o, 0x22, m.response_body.response)
  if (m.request_trailers != null) writeTrailers(o, 0x2a, m.request_trailers.header_mutation)
  if (m.response_trailers != null) writeTrailers(o, 0x32, m.response_trailers.header_mutation)
  if (m.immediate_response != null) writeImmediate(o, m.immediate_response)
  if (m.dynamic_metadata != null) writeStruct(o, 0x42, m.dynamic_metadata)
  if (m.mode_override != null) {
    o.message(0x4a)
    const mode = m.mode_override.response_body_mode
    if (mode != null) {
      o.byte(0x20)
      o.varint(enumValue(BODY_SEND_MODE, 'response_body_mode', mode))
    }
  }
  if (o.pos !== size) throw new Error(`ProcessingResponse encoded to ${o.pos} bytes, measured ${size}`)
  return o.buf
}
