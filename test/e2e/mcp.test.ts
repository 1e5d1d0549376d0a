/**
 * MCP through a real Envoy: the official MCP SDK client (2025-11-25, with
 * sessions and SSE results) and plain 2026-07-28 requests against a stand-in
 * server built with the official SDK server. Tool calls are Cedar
 * `call_tool` decisions on the same Tool entity model requests use;
 * tools/list is filtered; arguments and results are redacted; the agent
 * session's data flow is in the context; a delegated user without rights
 * stops the agent acting for them.
 */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { refusal, textOf } from '../helpers/mcp.ts'
import { startStack } from '../helpers/stack.ts'
import { STAND_IN_SECRET } from '../../src/dev/mcp-server.ts'

const EMAIL = 'dana.whitfield@gmail.com'
const ISSUER = 'https://idp.example.com'

t.test('MCP through Envoy', async (t) => {
  const keyDir = mkdtempSync(join(tmpdir(), 'modelgate-mcp-jwks-'))
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  writeFileSync(join(keyDir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] }))
  const token = (sub: string, groups: string[], actor?: string) =>
    new SignJWT({ groups, ...(actor ? { act: { sub: actor } } : {}) }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISSUER).setSubject(sub).setAudience('modelgate').setIssuedAt().setExpirationTime('5m').sign(privateKey)
  const stack = await startStack({ config: { identity: { users: { enabled: true, jwksFile: join(keyDir, 'jwks.json'), issuer: ISSUER } } } })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.mcpServer.clear())

  t.test('tools/list is filtered to the tools the caller may call', async (t) => {
    const research = await stack.mcp('notebook')
    t.teardown(() => research.close())
    const all = (await research.listTools()).tools.map((x) => x.name).sort()
    t.same(all, ['delete_record', 'echo', 'read_config', 'web_fetch'], 'research sees every tool but the administrative one')
    const payments = await stack.mcp('checkout')
    t.teardown(() => payments.close())
    const some = (await payments.listTools()).tools.map((x) => x.name).sort()
    t.same(some, ['echo', 'read_config'], 'payments sees the read-only, closed-world tools only')
  })

  t.test('an allowed tool works; a forbidden one, and a more sensitive second call in a chain, are refused with an error the SDK surfaces', async (t) => {
    const c = await stack.mcp('checkout')
    t.teardown(() => c.close())
    await c.listTools()
    t.equal(textOf(await c.callTool({ name: 'echo', arguments: { text: 'hello' } })), 'echo: hello')
    const open = await refusal(c.callTool({ name: 'web_fetch', arguments: { url: 'https://example.org' } }))
    t.equal(open.code, -32001)
    t.equal((open.data as { code: string }).code, 'MG_POLICY_DENIED')
    t.match((open.data as { request_id: string }).request_id, /.+/, 'the refusal names the request id')
    const second = await refusal(c.callTool({ name: 'delete_record', arguments: { id: '7' } }))
    t.equal((second.data as { code: string }).code, 'MG_POLICY_DENIED', 'the destructive step of the chain is refused at that step')
    t.notOk(stack.mcpServer.calls.some((x) => x.method === 'tools/call' && (x.params?.name === 'web_fetch' || x.params?.name === 'delete_record')), 'no refused call reached the server')
  })

  t.test('policy reads the arguments: the same tool with other arguments is refused', async (t) => {
    const c = await stack.mcp('notebook')
    t.teardown(() => c.close())
    await c.listTools()
    const e = await refusal(c.callTool({ name: 'web_fetch', arguments: { url: 'http://169.254.169.254/latest/meta-data/' } }))
    t.equal((e.data as { code: string }).code, 'MG_POLICY_DENIED')
    const records = await stack.auditRecords((rs) => rs.some((r) => /no-fetch-of-cloud-metadata/.test(JSON.stringify(r))))
    t.ok(records.some((r) => JSON.stringify(r).includes('no-fetch-of-cloud-metadata')), 'the determining policy is in the audit record')
  })

  t.test('arguments reach the server redacted and results reach the client redacted', async (t) => {
    const c = await stack.mcp('notebook')
    t.teardown(() => c.close())
    const r = await c.callTool({ name: 'echo', arguments: { text: `mail ${EMAIL}` } })
    const seen = stack.mcpServer.calls.find((x) => x.method === 'tools/call')!
    t.equal((seen.params!.arguments as { text: string }).text, 'mail [EMAIL_1]', 'the server got the placeholder')
    t.notOk(textOf(r).includes(EMAIL))
    const secret = textOf(await c.callTool({ name: 'read_config', arguments: {} }))
    t.notOk(secret.includes(STAND_IN_SECRET), 'the credential in the result never reached the client')
    t.match(secret, /\[GITHUB_TOKEN_1\]/)
  })

  t.test('a session that read a secret is refused an open-world tool; a fresh session is not', async (t) => {
    const c = await stack.mcp('notebook')
    t.teardown(() => c.close())
    await c.listTools()
    await c.callTool({ name: 'read_config', arguments: {} })
    const refused = await refusal(c.callTool({ name: 'web_fetch', arguments: { url: 'https://example.org' } }))
    t.equal((refused.data as { code: string }).code, 'MG_POLICY_DENIED')
    const fresh = await stack.mcp('notebook')
    t.teardown(() => fresh.close())
    await fresh.listTools()
    t.match(textOf(await fresh.callTool({ name: 'web_fetch', arguments: { url: 'https://example.org' } })), /^fetched https:\/\/example.org/)
    const records = await stack.auditRecords((rs) => rs.some((r) => /session-no-open-world-after-sensitive-data/.test(JSON.stringify(r))))
    const denied = records.find((r) => JSON.stringify(r).includes('session-no-open-world-after-sensitive-data'))
    t.ok(denied, 'the refusal is in the audit trail')
    t.match(JSON.stringify(denied), /"modelgate.mcp.session.data_classes":\["secret"\]/, 'with the session data classes the decision saw')
  })

  t.test('the session header ties model requests and MCP calls into one agent session, bound to the caller', async (t) => {
    const session = { 'x-modelgate-session': 'agent-run-1' }
    const model = await stack.request('notebook', { path: '/v1/chat/completions', headers: session, body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `write to ${EMAIL}` }] } })
    t.equal(model.status, 200, 'the prompt with personal data goes out redacted')
    const fetch = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'web_fetch', arguments: { url: 'https://example.org' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'web_fetch' }
    const refused = await stack.request('notebook', { path: '/mcp/tools', headers: { ...headers, ...session }, body: fetch })
    t.equal(refused.json().error?.data?.code, 'MG_POLICY_DENIED', 'an open-world tool is refused once personal data entered the session')
    const other = await stack.request('assistant', { path: '/mcp/tools', headers: { ...headers, ...session }, body: fetch })
    t.match(textOf(other.json().result), /^fetched/, 'another caller naming the same session id has a session of its own')
    const fresh = await stack.request('notebook', { path: '/mcp/tools', headers: { ...headers, 'x-modelgate-session': 'agent-run-2' }, body: fetch })
    t.match(textOf(fresh.json().result), /^fetched/, 'a fresh session is not affected')
  })

  t.test('a destructive call needs an approval: refused with an approval id and the reason', async (t) => {
    const c = await stack.mcp('notebook')
    t.teardown(() => c.close())
    await c.listTools()
    const e = await refusal(c.callTool({ name: 'delete_record', arguments: { id: '42' } }))
    const data = e.data as { code: string; approval_id: string; reason: string }
    t.equal(data.code, 'MG_APPROVAL_REQUIRED')
    t.match(data.approval_id, /^apr_/)
    t.equal(data.reason, 'a destructive tool: a person confirms this exact call')
  })

  t.test('a delegated user without rights stops the agent although the workload alone may call the tool; the audit names user, actor and workload', async (t) => {
    const alone = await stack.mcp('assistant')
    t.teardown(() => alone.close())
    t.equal(textOf(await alone.callTool({ name: 'echo', arguments: { text: 'alone' } })), 'echo: alone')
    const forAlice = await stack.mcp('assistant', { headers: { 'x-modelgate-user-token': await token('alice', ['staff'], 'agent:assistant') } })
    t.teardown(() => forAlice.close())
    const e = await refusal(forAlice.callTool({ name: 'echo', arguments: { text: 'for alice' } }))
    t.equal((e.data as { code: string }).code, 'MG_POLICY_DENIED')
    const forBob = await stack.mcp('assistant', { headers: { 'x-modelgate-user-token': await token('bob', ['tool-users'], 'agent:assistant') } })
    t.teardown(() => forBob.close())
    t.equal(textOf(await forBob.callTool({ name: 'echo', arguments: { text: 'for bob' } })), 'echo: for bob')
    const records = await stack.auditRecords((rs) => rs.some((r) => /mcp-tools-need-tool-users/.test(JSON.stringify(r))))
    const rec = JSON.stringify(records.find((r) => JSON.stringify(r).includes('mcp-tools-need-tool-users')))
    t.match(rec, /"modelgate.user.subject":"alice"/)
    t.match(rec, /"modelgate.user.actor":"agent:assistant"/)
    t.match(rec, /"modelgate.identity.spiffe_id":"spiffe:\/\/modelgate.local\/ns\/research\/sa\/agent-assistant"/)
    t.match(rec, /"modelgate.caller.class":"agent"/)
  })

  t.test('one policy governs a tool whether an MCP client or a model request asks for it', async (t) => {
    const c = await stack.mcp('notebook')
    t.teardown(() => c.close())
    const viaMcp = await refusal(c.callTool({ name: 'admin_reset', arguments: {} }))
    t.equal((viaMcp.data as { code: string }).code, 'MG_POLICY_DENIED')
    const model = stack.openai('notebook')
    const tools = (name: string) => [{ type: 'mcp' as const, server_label: 'tools', server_url: 'http://mcp.tools.example.com/mcp', allowed_tools: [name], require_approval: 'never' as const }]
    const viaModel = await model.responses.create({ model: 'gpt-4o-mini', input: 'reset it', tools: tools('admin_reset') }).then(
      () => undefined,
      (err: { status?: number; code?: string }) => err,
    )
    t.equal(viaModel?.status, 403)
    t.equal(viaModel?.code, 'MG_POLICY_DENIED')
    const allowed = await model.responses.create({ model: 'gpt-4o-mini', input: 'say hi', tools: tools('echo') })
    t.ok(allowed.id, 'the tool the same permit allows over MCP is allowed for the model too')
    const records = await stack.auditRecords((rs) => rs.some((r) => /"modelgate.api":"openai.responses"[^\n]*no-mcp-admin-tools/.test(JSON.stringify(r))))
    const denials = records.filter((r) => JSON.stringify(r).includes('"no-mcp-admin-tools"'))
    t.ok(denials.some((r) => JSON.stringify(r).includes('"modelgate.mcp.method":"tools/call"')), 'the MCP call was denied by no-mcp-admin-tools')
    t.ok(denials.some((r) => JSON.stringify(r).includes('"modelgate.api":"openai.responses"')), 'the model request was denied by the same policy')
  })

  t.test('2025-06-18: initialize opens a session, and its calls are decided like any other', async (t) => {
    const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }
    const sse = (text: string) => JSON.parse(text.split('\n').find((l) => l.startsWith('data: '))!.slice(6))
    const init = await stack.request('checkout', {
      path: '/mcp/tools',
      headers: base,
      body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } },
    })
    t.equal(init.status, 200)
    t.equal(sse(init.text()).result.protocolVersion, '2025-06-18')
    const session = init.headers['mcp-session-id'] as string
    t.ok(session, 'the server named the session')
    const headers = { ...base, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' }
    t.equal((await stack.request('checkout', { path: '/mcp/tools', headers, body: { jsonrpc: '2.0', method: 'notifications/initialized' } })).status, 202)
    const list = await stack.request('checkout', { path: '/mcp/tools', headers, body: { jsonrpc: '2.0', id: 2, method: 'tools/list' } })
    t.same(sse(list.text()).result.tools.map((x: { name: string }) => x.name).sort(), ['echo', 'read_config'])
    const echo = await stack.request('checkout', { path: '/mcp/tools', headers, body: { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'old' } } } })
    t.equal(textOf(sse(echo.text()).result), 'echo: old')
    const refused = await stack.request('checkout', { path: '/mcp/tools', headers, body: { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'web_fetch', arguments: { url: 'https://example.org' } } } })
    t.equal(refused.status, 200)
    t.same(refused.json(), { jsonrpc: '2.0', id: 4, error: { code: -32001, message: 'The request is not permitted by policy.', data: refused.json().error.data } })
    t.equal(refused.json().error.data.code, 'MG_POLICY_DENIED')
    const batch = await stack.request('checkout', { path: '/mcp/tools', headers, body: [{ jsonrpc: '2.0', id: 5, method: 'ping' }] })
    t.equal(batch.status, 400, 'batches are refused in this generation too')
  })

  t.test('2026-07-28: headers that match the body pass; a mismatch is refused with -32020; a batch is refused', async (t) => {
    const call = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo', arguments: { text: 'new' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' }
    // The tools' hints are what modelgate saw listed; unlisted tools get the protocol's worst-case defaults.
    const list = { jsonrpc: '2.0', id: 6, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }
    t.equal((await stack.request('notebook', { path: '/mcp/tools', headers: { ...headers, 'mcp-method': 'tools/list' }, body: list })).status, 400, 'an Mcp-Name on a method that names nothing is a mismatch')
    const { 'mcp-name': _, ...listHeaders } = headers
    t.equal((await stack.request('notebook', { path: '/mcp/tools', headers: { ...listHeaders, 'mcp-method': 'tools/list' }, body: list })).status, 200)
    const ok = await stack.request('notebook', { path: '/mcp/tools', headers, body: call })
    t.equal(ok.status, 200)
    t.equal(ok.json().id, 7, ok.text())
    t.equal(textOf(ok.json().result), 'echo: new', ok.text())
    const wrong = await stack.request('notebook', { path: '/mcp/tools', headers: { ...headers, 'mcp-name': 'web_fetch' }, body: call })
    t.equal(wrong.status, 400)
    t.equal(wrong.json().error.code, -32020)
    t.equal(wrong.json().id, 7)
    const missing = await stack.request('notebook', { path: '/mcp/tools', headers: { ...headers, 'mcp-method': '' }, body: call })
    t.equal(missing.json().error.code, -32020, 'a missing or empty Mcp-Method is a mismatch too')
    const encoded = await stack.request('notebook', { path: '/mcp/tools', headers: { ...headers, 'mcp-name': `=?base64?${Buffer.from('echo').toString('base64')}?=` }, body: call })
    t.equal(encoded.status, 200, 'a base64-encoded header value is compared decoded')
    const batch = await stack.request('notebook', { path: '/mcp/tools', headers, body: [call, { ...call, id: 8 }] })
    t.equal(batch.status, 400)
    t.equal(batch.json().error.code, -32600)
    t.equal(stack.mcpServer.calls.filter((x) => x.method === 'tools/call').length, 2, 'only the two matching calls reached the server')
  })

  t.test('2026-07-28: a JSON tools/list result is filtered too', async (t) => {
    const list = { jsonrpc: '2.0', id: 'l1', method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' }
    const res = await stack.request('checkout', { path: '/mcp/tools', headers, body: list })
    t.equal(res.status, 200)
    t.match(res.headers['content-type'], /application\/json/)
    t.same(res.json().result.tools.map((x: { name: string }) => x.name).sort(), ['echo', 'read_config'])
  })
})

t.test('a tool result that may not be returned ends the call with an error the SDK surfaces, not a hang', async (t) => {
  const stack = await startStack({ config: { redaction: { responses: { actions: { secret: 'block' } } } } })
  t.teardown(() => stack.close())
  const c = await stack.mcp('notebook')
  t.teardown(() => c.close())
  await c.listTools()
  const e = await refusal(c.callTool({ name: 'read_config', arguments: {} }, undefined, { timeout: 10_000 }))
  t.equal(e.code, -32001)
  t.equal((e.data as { code: string }).code, 'MG_RESPONSE_BLOCKED')
  t.notOk(JSON.stringify(e).includes(STAND_IN_SECRET), 'the credential never reached the client')
})
