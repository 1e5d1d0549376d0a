/**
 * Credential injection through the real gRPC server, message by message as
 * Envoy exchanges them: the caller's credential headers are removed in the
 * request-headers answer, the provider's credential is set in the
 * request-body answer (Envoy still holds the headers then), and every refusal
 * happens before anything is sent upstream, in the route's dialect.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { CALLER_CREDENTIAL_HEADERS } from '../../src/credentials/headers.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { createLogger } from '../../src/log.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'
import { answerKind, connectExtProc, denialJson, msg, mtlsAttributes, readMutation } from '../helpers/grpc-client.ts'

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const NOTEBOOK = `spiffe://${TD}/ns/research/sa/notebook`

const dir = t.testdir({ 'openai.key': 'sk-openai-default-0001\n', 'payments.key': 'sk-openai-payments-0002\n', 'anthropic.key': 'sk-ant-default-0003\n' })
const ca = await createCa(dir, 'ca')
const pem = async (name: string, uri: string) => readFileSync((await issueCertificate(dir, ca, { name, uris: [uri] })).cert, 'utf8')
const ATTRS = { checkout: mtlsAttributes(await pem('checkout', CHECKOUT), CHECKOUT), notebook: mtlsAttributes(await pem('notebook', NOTEBOOK), NOTEBOOK) }

const logLines: string[] = []
const config = configFromObject(
  {
    server: { listen: '127.0.0.1:0', phaseTimeoutMs: 1000 },
    identity: { trustDomains: [TD] },
    providers: {
      catalog: {
        openai: {
          kind: 'openai',
          upstream: 'https://api.openai.com',
          credentials: [
            { name: 'payments', when: { namespaces: ['payments'] }, file: join(dir, 'payments.key'), headers: { 'openai-project': 'proj_payments' } },
            { name: 'default', file: join(dir, 'openai.key') },
          ],
        },
        anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', credentials: [{ name: 'default', file: join(dir, 'anthropic.key') }] },
        azure: { kind: 'azure-openai', upstream: 'https://r.openai.azure.com' },
      },
    },
    audit: { enabled: false },
    redaction: { enabled: true },
    policy: { dir: permitAllPolicyDir(), watch: false },
  },
  'credentials.test',
)
const app = await startApp({ config, logger: createLogger({ level: 'debug', write: (l) => logLines.push(l) }) })
const client = connectExtProc(app.address)
t.teardown(async () => {
  client.close()
  await app.shutdown()
})

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] })
const MESSAGES = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'Hello' }] })
let n = 0
const headers = (path: string, extra: Record<string, string> = {}) => ({ ':method': 'POST', ':path': path, ':authority': 'gw', ':scheme': 'https', 'content-type': 'application/json', 'x-request-id': `cred-${++n}`, ...extra })
const CALLER = Object.fromEntries(CALLER_CREDENTIAL_HEADERS.map((h) => [h, h === 'authorization' ? 'Bearer sk-proj-callers-own-key' : `callers-${h}`]))

t.test("the caller's credential headers are removed with the headers, the provider's key is set with the body", async (t) => {
  const s = client.open({ 'x-modelgate-provider': 'openai' })
  const h = await s.exchange(msg.requestHeaders(headers('/v1/chat/completions', { ...CALLER, 'x-trace': 'keep' }), { attributes: ATTRS.notebook }))
  const hm = readMutation(h.request_headers?.response?.header_mutation)
  t.same(hm.remove.sort(), [...CALLER_CREDENTIAL_HEADERS].sort(), 'every credential-like header')
  t.notOk('authorization' in hm.set, 'nothing set yet: the credential may depend on the decision')
  const b = await s.exchange(msg.requestBody(CHAT))
  t.equal(answerKind(b), 'request_body')
  t.same(readMutation(b.request_body?.response?.header_mutation).set, { authorization: 'Bearer sk-openai-default-0001' })
  await s.end()
})

t.test('a credential for a namespace goes to its workloads only, with its fixed headers', async (t) => {
  const s = client.open({ 'x-modelgate-provider': 'openai' })
  await s.exchange(msg.requestHeaders(headers('/v1/chat/completions', { 'openai-project': 'proj_someone_else' }), { attributes: ATTRS.checkout }))
  const b = await s.exchange(msg.requestBody(CHAT))
  t.same(readMutation(b.request_body?.response?.header_mutation).set, { authorization: 'Bearer sk-openai-payments-0002', 'openai-project': 'proj_payments' }, "the team's key and its project, not the caller's")
  await s.end()
})

t.test('Anthropic: x-api-key and the API version, in the same answer', async (t) => {
  const s = client.open({ 'x-modelgate-provider': 'anthropic' })
  const h = await s.exchange(msg.requestHeaders(headers('/v1/messages', { 'x-api-key': 'sk-ant-callers-own' }), { attributes: ATTRS.checkout }))
  t.ok(readMutation(h.request_headers?.response?.header_mutation).remove.includes('x-api-key'))
  const b = await s.exchange(msg.requestBody(MESSAGES))
  t.same(readMutation(b.request_body?.response?.header_mutation).set, { 'x-api-key': 'sk-ant-default-0003', 'anthropic-version': '2023-06-01' })
  await s.end()
})

t.test('a provider without a credential: 403 MG_CREDENTIAL_MISSING in the route’s dialect, nothing sent', async (t) => {
  const s = client.open({ 'x-modelgate-provider': 'azure' })
  await s.exchange(msg.requestHeaders(headers('/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21', { 'api-key': 'callers-azure-key' }), { attributes: ATTRS.checkout }))
  const b = await s.exchange(msg.requestBody(JSON.stringify({ messages: [{ role: 'user', content: 'Hello' }] })))
  t.equal(answerKind(b), 'immediate_response')
  t.equal(b.immediate_response?.status.code, 403)
  t.match(denialJson(b).error, { code: 'MG_CREDENTIAL_MISSING', message: 'No provider credential is configured for this caller on this provider.' })
  await s.end()
})

t.test('a key file that loses its value refuses requests (503 MG_CREDENTIAL_UNAVAILABLE, Anthropic-shaped on /v1/messages) until it has one again', async (t) => {
  writeFileSync(join(dir, 'anthropic.key'), '')
  const refused = async () => {
    const s = client.open({ 'x-modelgate-provider': 'anthropic' })
    await s.exchange(msg.requestHeaders(headers('/v1/messages'), { attributes: ATTRS.checkout }))
    const b = await s.exchange(msg.requestBody(MESSAGES))
    await s.end()
    return b
  }
  let b = await refused()
  for (let i = 0; i < 100 && answerKind(b) !== 'immediate_response'; i++) {
    await new Promise((r) => setTimeout(r, 20))
    b = await refused()
  }
  t.equal(b.immediate_response?.status.code, 503)
  const body = denialJson(b) as { type?: string; error: Record<string, unknown> }
  t.equal(body.type, 'error')
  t.match(body.error, { type: 'overloaded_error', code: 'MG_CREDENTIAL_UNAVAILABLE' })
  writeFileSync(join(dir, 'anthropic.key'), 'sk-ant-default-0004')
  for (let i = 0; i < 100 && answerKind(b) !== 'request_body'; i++) {
    await new Promise((r) => setTimeout(r, 20))
    b = await refused()
  }
  t.same(readMutation(b.request_body?.response?.header_mutation).set, { 'x-api-key': 'sk-ant-default-0004', 'anthropic-version': '2023-06-01' }, 'the new key, without a restart')
})

t.test('no key, the caller’s or the provider’s, is in the log', async (t) => {
  const all = logLines.join('\n')
  for (const k of ['sk-openai-default-0001', 'sk-openai-payments-0002', 'sk-ant-default-0003', 'sk-ant-default-0004', 'sk-proj-callers-own-key', 'sk-ant-callers-own', 'callers-azure-key']) t.notMatch(all, k, k)
  t.ok(all.includes('provider credentials ready'))
})
