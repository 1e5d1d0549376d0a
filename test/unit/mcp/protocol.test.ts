import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { canonicalJson, checkMcpHeaders, decodeHeaderValue, parseMcpMessage, sha256Hex } from '../../../src/mcp/protocol.ts'
import { ToolHintsCache } from '../../../src/mcp/guard.ts'
import { memoryApprovalStore, memorySessionStore } from '../../../src/mcp/store.ts'
import { lastEventEnd } from '../../../src/mcp/governance.ts'

const code = (fn: () => unknown): string | undefined => {
  try {
    fn()
  } catch (err) {
    return err instanceof GateError ? `${err.code}${err.details.header ? ` ${String(err.details.header)}` : ''}` : 'thrown'
  }
  return undefined
}

t.test('a JSON-RPC message is read into its kind, method, name and argument digest', async (t) => {
  const m = parseMcpMessage({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { b: 1, a: [2, { d: 3, c: 4 }] } } })
  t.same(m, { kind: 'request', id: 3, method: 'tools/call', name: 'echo', arguments: '{"a":[2,{"c":4,"d":3}],"b":1}', argumentsDigest: sha256Hex('{"a":[2,{"c":4,"d":3}],"b":1}') })
  t.equal(parseMcpMessage({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'x' } }).arguments, '{}', 'no arguments are the empty object')
  t.same(parseMcpMessage({ jsonrpc: '2.0', id: 'r', method: 'resources/read', params: { uri: 'config://app' } }), { kind: 'request', id: 'r', method: 'resources/read', name: 'config://app' })
  t.same(parseMcpMessage({ jsonrpc: '2.0', method: 'notifications/initialized' }), { kind: 'notification', method: 'notifications/initialized' })
  t.same(parseMcpMessage({ jsonrpc: '2.0', id: 9, result: {} }), { kind: 'response', id: 9 })
  t.equal(parseMcpMessage({ jsonrpc: '2.0', id: 1, method: 'ping', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }).protocolVersion, '2026-07-28')
})

t.test('the same arguments in another key order have the same digest; one changed byte does not', async (t) => {
  t.equal(canonicalJson({ a: 1, b: 'x' }), canonicalJson({ b: 'x', a: 1 }))
  t.not(sha256Hex(canonicalJson({ id: '42' })), sha256Hex(canonicalJson({ id: '43' })))
})

t.test('batches and malformed messages are refused', async (t) => {
  const cases: [string, unknown, string][] = [
    ['a batch', [{ jsonrpc: '2.0', id: 1, method: 'ping' }], 'MG_MCP_BATCH'],
    ['not an object', 'ping', 'MG_MCP_INVALID'],
    ['another JSON-RPC version', { jsonrpc: '1.0', id: 1, method: 'ping' }, 'MG_MCP_INVALID'],
    ['an object id', { jsonrpc: '2.0', id: {}, method: 'ping' }, 'MG_MCP_INVALID'],
    ['a response with neither result nor error', { jsonrpc: '2.0', id: 1 }, 'MG_MCP_INVALID'],
    ['tools/call without a name', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }, 'MG_MCP_INVALID'],
    ['tools/call with array arguments', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', arguments: [1] } }, 'MG_MCP_INVALID'],
    ['params that are not an object', { jsonrpc: '2.0', id: 1, method: 'ping', params: [] }, 'MG_MCP_INVALID'],
  ]
  for (const [name, body, want] of cases) t.equal(code(() => parseMcpMessage(body)), want, name)
})

t.test('2026-07-28 requests carry headers that match the body; others may, and must match when they do', async (t) => {
  const call = parseMcpMessage({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } })
  const full = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' }
  const check = (h: Record<string, string>, m = call) => code(() => checkMcpHeaders(new Map(Object.entries(h)), m))
  t.equal(check(full), undefined)
  t.equal(check({ ...full, 'mcp-name': '=?base64?ZWNobw==?=' }), undefined, 'a base64 header value is compared decoded')
  t.equal(check({ ...full, 'mcp-name': 'web_fetch' }), 'MG_MCP_HEADER_MISMATCH Mcp-Name')
  t.equal(check({ ...full, 'mcp-method': 'tools/list' }), 'MG_MCP_HEADER_MISMATCH Mcp-Method')
  t.equal(check({ 'mcp-protocol-version': '2026-07-28', 'mcp-name': 'echo' }), 'MG_MCP_HEADER_MISMATCH Mcp-Method', 'Mcp-Method is required')
  t.equal(check({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call' }), 'MG_MCP_HEADER_MISMATCH Mcp-Name', 'Mcp-Name is required for a named method')
  t.equal(check({ 'mcp-method': 'tools/call', 'mcp-name': 'echo' }), 'MG_MCP_HEADER_MISMATCH MCP-Protocol-Version', 'the version header is required when the body names 2026-07-28')
  t.equal(check({ ...full, 'mcp-protocol-version': '2025-11-25' }), 'MG_MCP_HEADER_MISMATCH MCP-Protocol-Version', 'the version header must match _meta')
  const old = parseMcpMessage({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo' } })
  t.equal(check({ 'mcp-protocol-version': '2025-11-25' }, old), undefined, '2025-11-25 needs none of them')
  t.equal(check({ 'mcp-protocol-version': '2025-11-25', 'mcp-name': 'other' }, old), 'MG_MCP_HEADER_MISMATCH Mcp-Name', 'but one that is sent must match')
  const list = parseMcpMessage({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } })
  t.equal(check({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list', 'mcp-name': 'x' }, list), 'MG_MCP_HEADER_MISMATCH Mcp-Name', 'a name on a method that names nothing')
  t.equal(decodeHeaderValue('=?base64?//79?='), undefined, 'a value that is not UTF-8 does not decode')
})

t.test('hints a server left out take the protocol defaults; a read-only tool is never destructive', async (t) => {
  const cache = new ToolHintsCache(2)
  t.same(cache.get('s', 'unseen'), { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true })
  t.same(cache.learn('s', 'r', { readOnlyHint: true }), { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true })
  t.same(cache.learn('s', 'w', { destructiveHint: false, openWorldHint: false, readOnlyHint: 'yes' }), { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false })
  cache.learn('s', 'third', {})
  t.same(cache.get('s', 'r'), { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true }, 'the cache is bounded: the oldest is forgotten')
})

t.test('sessions merge what entered them and expire; approvals are single use by id and binding', async (t) => {
  const now = 0
  const sessions = memorySessionStore({ maxSessions: 10, ttlMs: 1000 })
  sessions.record('k', ['pii'], false)
  sessions.record('k', ['secret'], true)
  sessions.record('k', [], false)
  t.same(sessions.get('k'), { dataClasses: ['pii', 'secret'], untrusted: true })
  const approvals = memoryApprovalStore({ maxEntries: 2 })
  const r = { id: 'a1', binding: 'b', caller: 'c', user: undefined, actor: undefined, tool: 't', argumentsDigest: 'd', reasons: ['x'], policySetHash: 'h', createdAt: now, expiresAt: now + 10, state: 'pending' as const }
  approvals.put(r)
  t.equal((approvals.byBinding('b') as typeof r).id, 'a1')
  t.equal((approvals.take('a1') as typeof r).id, 'a1')
  t.equal(approvals.take('a1'), undefined, 'taken once')
  approvals.put({ ...r, id: 'a2' })
  approvals.put({ ...r, id: 'a3', binding: 'b3' })
  approvals.put({ ...r, id: 'a4', binding: 'b4' })
  t.equal(approvals.get('a2'), undefined, 'bounded: the oldest is dropped')
  t.equal(approvals.byBinding('b'), undefined, 'with its binding')
})

t.test('an SSE stream is cut after its last complete event', async (t) => {
  t.equal(lastEventEnd(Buffer.from('data: {"a":1}\n\ndata: {"b"')), 15)
  t.equal(lastEventEnd(Buffer.from('event: message\r\ndata: x\r\n\r\n')), 27)
  t.equal(lastEventEnd(Buffer.from('data: unfinished\n')), 0, 'no blank line yet: nothing is complete')
  t.equal(lastEventEnd(Buffer.alloc(0)), 0)
})
