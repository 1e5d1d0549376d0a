/**
 * MCP over Streamable HTTP, as modelgate reads it: one JSON-RPC 2.0 message
 * per POST (batches were removed from the protocol in 2025-06-18 and are
 * refused), the method, the name it acts on and the digest of its arguments;
 * and the 2026-07-28 request headers (`MCP-Protocol-Version`, `Mcp-Method`,
 * `Mcp-Name`), which must say what the body says.
 *
 * Protocol generations:
 * - 2025-06-18 and 2025-11-25: `initialize` opens a session the server names
 *   in `Mcp-Session-Id`; later requests carry that header and
 *   `MCP-Protocol-Version`.
 * - 2026-07-28: no sessions and no `initialize`; every request carries
 *   `params._meta["io.modelcontextprotocol/protocolVersion"]` and the headers
 *   `MCP-Protocol-Version`, `Mcp-Method` (every POST) and `Mcp-Name`
 *   (tools/call and prompts/get: `params.name`; resources/read:
 *   `params.uri`). A request whose headers are missing or disagree with the
 *   body is refused with JSON-RPC error -32020 (HTTP 400). Header values that
 *   are not ASCII travel as `=?base64?<base64 of UTF-8>?=`.
 */
import { createHash } from 'node:crypto'
import { GateError } from '../errors.ts'
import type { McpMessage } from '../providers/types.ts'

/** The protocol generation without sessions, whose requests carry the method and name in headers. */
export const HEADERS_PROTOCOL_VERSION = '2026-07-28'
/** `params._meta` key of the protocol version (2026-07-28). */
export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion'
/** Longest method or name accepted. */
export const MAX_MCP_NAME = 1024

/** Methods whose `params` name what they act on, and which parameter that is. */
export const NAMED_METHODS: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function invalid(problem: string): GateError {
  return new GateError('MG_MCP_INVALID', { details: { problem }, internal: `MCP message: ${problem}` })
}

/** JSON with object keys sorted at every level: the same arguments give the same text, whatever order the client wrote. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`
  if (isObj(v)) {
    const keys = Object.keys(v).sort()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/**
 * Reads the one JSON-RPC message of an MCP POST. Refuses a batch
 * (MG_MCP_BATCH) and anything that is not a JSON-RPC 2.0 request,
 * notification or response (MG_MCP_INVALID).
 */
export function parseMcpMessage(value: unknown): McpMessage {
  if (Array.isArray(value)) throw new GateError('MG_MCP_BATCH', { internal: `a JSON-RPC batch of ${value.length} messages` })
  if (!isObj(value)) throw invalid('the body must be a JSON-RPC object')
  if (value.jsonrpc !== '2.0') throw invalid('"jsonrpc" must be "2.0"')
  const id = value.id
  if (id !== undefined && id !== null && typeof id !== 'string' && !(typeof id === 'number' && Number.isFinite(id))) throw invalid('"id" must be a string or a number')
  const method = value.method
  if (method === undefined) {
    // A client's answer to a server request (sampling, elicitation, roots).
    if (id === undefined || (value.result === undefined) === (value.error === undefined)) throw invalid('a message without "method" must be a response with "id" and one of "result" or "error"')
    return { kind: 'response', id }
  }
  if (typeof method !== 'string' || method === '' || method.length > MAX_MCP_NAME) throw invalid('"method" must be a non-empty string')
  const params = value.params
  if (params !== undefined && !isObj(params)) throw invalid('"params" must be an object')
  const meta = isObj(params) && isObj(params._meta) ? params._meta : undefined
  const version = meta?.[META_PROTOCOL_VERSION]
  if (version !== undefined && typeof version !== 'string') throw invalid(`"params._meta.${META_PROTOCOL_VERSION}" must be a string`)
  const base = {
    kind: id === undefined ? ('notification' as const) : ('request' as const),
    ...(id !== undefined ? { id } : {}),
    method,
    ...(version !== undefined ? { protocolVersion: version } : {}),
  }
  const named = Object.hasOwn(NAMED_METHODS, method) ? NAMED_METHODS[method] : undefined
  if (!named) return base
  const name = params?.[named]
  if (typeof name !== 'string' || name === '' || name.length > MAX_MCP_NAME) throw invalid(`"params.${named}" must be a non-empty string for ${method}`)
  if (named === 'uri') return { ...base, name }
  const args = params?.arguments
  if (args !== undefined && args !== null && !isObj(args)) throw invalid(`"params.arguments" must be an object for ${method}`)
  const text = canonicalJson(args ?? {})
  return { ...base, name, arguments: text, argumentsDigest: sha256Hex(text) }
}

/** A header value as the client meant it: `=?base64?…?=` decoded (UTF-8), else as sent. Undefined when it does not decode. */
export function decodeHeaderValue(raw: string): string | undefined {
  const m = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/.exec(raw)
  if (!m) return raw
  const bytes = Buffer.from(m[1]!, 'base64')
  const text = bytes.toString('utf8')
  return Buffer.from(text, 'utf8').equals(bytes) ? text : undefined
}

/** The protocol generation a request speaks: the headers generation when either the header or the body's `_meta` names 2026-07-28 or later. */
export function usesRequestHeaders(headers: ReadonlyMap<string, string>, msg: McpMessage): boolean {
  const v = headers.get('mcp-protocol-version') ?? msg.protocolVersion
  return v !== undefined && v >= HEADERS_PROTOCOL_VERSION
}

/**
 * Checks the request headers against the body. For the 2026-07-28
 * generation, `MCP-Protocol-Version` and `Mcp-Method` are required and
 * `Mcp-Name` is required for named methods; in every generation, a header
 * that is present must match the body. Throws MG_MCP_HEADER_MISMATCH naming
 * the header.
 */
export function checkMcpHeaders(headers: ReadonlyMap<string, string>, msg: McpMessage): void {
  const strict = usesRequestHeaders(headers, msg)
  const mismatch = (header: string, problem: string): GateError =>
    new GateError('MG_MCP_HEADER_MISMATCH', { details: { header }, internal: `${header} ${problem}` })
  const version = headers.get('mcp-protocol-version')
  if (msg.protocolVersion !== undefined && version !== undefined && version !== msg.protocolVersion) throw mismatch('MCP-Protocol-Version', 'differs from params._meta')
  if (strict && msg.kind !== 'response') {
    if (version === undefined) throw mismatch('MCP-Protocol-Version', 'is missing')
    if (msg.protocolVersion === undefined) throw mismatch('MCP-Protocol-Version', `has no params._meta["${META_PROTOCOL_VERSION}"] to match`)
  }
  const methodHeader = headers.get('mcp-method')
  if (msg.kind === 'response') {
    if (methodHeader !== undefined || headers.has('mcp-name')) throw mismatch(methodHeader !== undefined ? 'Mcp-Method' : 'Mcp-Name', 'is set on a response message')
    return
  }
  if (methodHeader === undefined) {
    if (strict) throw mismatch('Mcp-Method', 'is missing')
  } else if (decodeHeaderValue(methodHeader) !== msg.method) throw mismatch('Mcp-Method', 'differs from the body\'s "method"')
  const nameHeader = headers.get('mcp-name')
  if (msg.name === undefined) {
    if (nameHeader !== undefined) throw mismatch('Mcp-Name', `is set, but ${msg.method} names nothing`)
    return
  }
  if (nameHeader === undefined) {
    if (strict) throw mismatch('Mcp-Name', 'is missing')
  } else if (decodeHeaderValue(nameHeader) !== msg.name) throw mismatch('Mcp-Name', `differs from the body's "params.${NAMED_METHODS[msg.method!]}"`)
}
