/**
 * Provider credentials through a real Envoy, with the official SDKs: the
 * caller never holds a provider key and cannot choose one. The stand-in
 * provider accepts only the configured keys (401 otherwise), so every answered
 * request proves the key modelgate attached.
 *
 * - A caller's own key (the SDKs always send one) is removed; the provider's
 *   is set in its API's header.
 * - A key in a Secret volume (the kubelet's `..data` symlink swap) is rotated
 *   under a steady, bounded load: requests switch to the new key, none fails.
 * - The payments team's key goes to payments workloads only; research's key is
 *   chosen by a `@credential` annotation on the permit that allowed the model;
 *   everyone else gets the default key.
 * - Azure OpenAI through an OAuth 2.0 client-credentials token (RFC 6749 §4.4)
 *   from a local token endpoint that checks the gateway's client certificate
 *   (RFC 8705): one token request for many callers, a refresh before expiry,
 *   the endpoint down (the token is used until it expires, then requests are
 *   refused with 503, nothing reaches the provider) and back.
 * - Nothing written during the run (modelgate's log, the audit records and
 *   spool, the metrics, Envoy's access log) holds any provider key or token.
 */
import { randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI, { AzureOpenAI } from 'openai'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { Agent, fetch as undiciFetch } from 'undici'
import { run as auditCli } from '../../src/cli/audit.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { DEV_TRUST_DOMAIN } from '../../src/dev/identities.ts'
import { issueCertificate } from '../../src/dev/pki.ts'
import { sharedTestPki } from '../helpers/pki.ts'
import { SecretVolume } from '../helpers/secret-volume.ts'
import { startStack } from '../helpers/stack.ts'
import { TokenEndpoint } from '../helpers/token-endpoint.ts'

const GATEWAY = `spiffe://${DEV_TRUST_DOMAIN}/ns/ai/sa/gateway`
const EVALUATOR = `spiffe://${DEV_TRUST_DOMAIN}/ns/platform/sa/evaluator`
const key = (prefix: string) => `${prefix}-${randomBytes(24).toString('base64url')}`
const KEYS = {
  anthropicOld: key('sk-ant-api03-old'),
  anthropicNew: key('sk-ant-api03-new'),
  openaiDefault: key('sk-proj-default'),
  openaiPayments: key('sk-proj-payments'),
  openaiResearch: key('sk-proj-research'),
}
/** What callers send as their own key: the SDKs' own, and headers a caller might add. */
const CALLER_KEYS = { openai: 'sk-test-not-a-real-key', anthropic: 'test-not-a-real-key', azure: key('callers-azure-key'), cookie: key('session') }

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

t.test('provider credentials through a real Envoy', async (t) => {
  const { pki } = await sharedTestPki()
  const scratch = mkdtempSync(join(tmpdir(), 'modelgate-credentials-e2e-'))
  process.once('exit', () => rmSync(scratch, { recursive: true, force: true }))

  // The Anthropic key in a Secret volume; the OpenAI keys in plain files.
  const volume = new SecretVolume(join(scratch, 'anthropic-secret'), { 'api-key': KEYS.anthropicOld + '\n' })
  for (const [name, value] of Object.entries({ default: KEYS.openaiDefault, payments: KEYS.openaiPayments, research: KEYS.openaiResearch })) writeFileSync(join(scratch, `openai-${name}.key`), value + '\n', { mode: 0o600 })

  // The policy set as shipped, with research's permit naming its credential.
  const policyDir = join(scratch, 'policies')
  mkdirSync(policyDir)
  for (const f of readdirSync(join(REPO_ROOT, 'policies'))) if (/\.(cedar|cedarschema|json)$/.test(f)) copyFileSync(join(REPO_ROOT, 'policies', f), join(policyDir, f))
  const models = readFileSync(join(policyDir, 'models.cedar'), 'utf8')
  const annotated = models.replace('@id("research-approved-models")', '@id("research-approved-models")\n@credential("research")')
  t.not(annotated, models, 'the research permit carries @credential("research")')
  writeFileSync(join(policyDir, 'models.cedar'), annotated)

  // The token endpoint (mutual TLS) and the gateway's SVID it knows the client by.
  const certs = join(scratch, 'certs')
  const gatewaySvid = await issueCertificate(certs, pki.ca, { name: 'gateway', uris: [GATEWAY] })
  const evaluator = await issueCertificate(certs, pki.ca, { name: 'evaluator', uris: [EVALUATOR] })
  const endpoint = new TokenEndpoint({ ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key, clients: { 'modelgate-gw': GATEWAY } })
  endpoint.lifetime = 6
  await endpoint.start()
  t.teardown(() => endpoint.stop())

  const logFile = join(scratch, 'modelgate.log')
  const envoyLogFile = join(scratch, 'envoy.log')
  const metricsPort = await freePort()
  const stack = await startStack({
    logFile,
    envoyLogFile,
    config: {
      server: { metricsListen: `127.0.0.1:${metricsPort}` },
      policy: { dir: policyDir },
      providers: {
        catalog: {
          openai: {
            credentials: [
              { name: 'payments', when: { teams: ['payments'] }, file: join(scratch, 'openai-payments.key') },
              { name: 'research', policyOnly: true, file: join(scratch, 'openai-research.key') },
              { name: 'default', file: join(scratch, 'openai-default.key') },
            ],
          },
          anthropic: { models: ['claude-haiku-4-5', 'claude-sonnet-4-5'], aliases: { haiku: 'claude-haiku-4-5' }, credentials: [{ name: 'default', file: volume.path('api-key') }] },
          azure: {
            credentials: [
              {
                name: 'entra',
                oauth: {
                  tokenUrl: endpoint.url,
                  clientId: 'modelgate-gw',
                  scope: 'https://cognitiveservices.azure.com/.default',
                  certFile: gatewaySvid.cert,
                  keyFile: gatewaySvid.key,
                  caFile: pki.ca.cert,
                  refreshBeforeSeconds: 2,
                  timeoutMs: 1000,
                },
              },
            ],
          },
        },
      },
    },
  })
  t.teardown(() => stack.close())
  const provider = stack.provider
  // The stand-in accepts exactly the configured keys, and the tokens the endpoint issued (a live list).
  provider.requireKeys({ openai: [KEYS.openaiDefault, KEYS.openaiPayments, KEYS.openaiResearch], anthropic: [KEYS.anthropicOld], azure: endpoint.issued })

  const dispatchers: Agent[] = []
  t.teardown(async () => {
    for (const d of dispatchers) await d.close()
  })
  /** SDK options for a workload holding `pair` (an SVID of the development CA). */
  function sdkOptions(pair: { cert: string; key: string }) {
    const dispatcher = new Agent({ connect: { ca: readFileSync(pki.ca.cert), cert: readFileSync(pair.cert), key: readFileSync(pair.key), servername: 'localhost' } })
    dispatchers.push(dispatcher)
    return { maxRetries: 0, timeout: 20_000, fetch: undiciFetch as unknown as typeof fetch, fetchOptions: { dispatcher } as never }
  }
  const evaluatorOpenAI = new OpenAI({ apiKey: CALLER_KEYS.openai, baseURL: `${stack.url}/v1`, ...sdkOptions(evaluator) })
  const evaluatorAzure = new AzureOpenAI({ apiKey: CALLER_KEYS.azure, endpoint: stack.url, apiVersion: '2024-10-21', deployment: 'gpt-4o-mini', ...sdkOptions(evaluator) })

  const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'Hello' }] }
  const message = { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user' as const, content: 'Hello' }] }

  /** The requests the stand-in received while `fn` ran. */
  async function received<T>(fn: () => Promise<T>): Promise<{ value: T; seen: typeof provider.requests }> {
    if (provider.requests.length > 500) provider.clear()
    const before = provider.requests.length
    const value = await fn()
    return { value, seen: provider.requests.slice(before) }
  }

  t.test("a caller's own key never reaches the provider: the configured key does, in the provider's header", async (t) => {
    const direct = await fetch(`http://127.0.0.1:${provider.port}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${CALLER_KEYS.openai}`, 'content-type': 'application/json' }, body: JSON.stringify(chat) })
    t.equal(direct.status, 401, 'the stand-in itself refuses the caller’s key')
    const refusedBefore = provider.refused

    const openai = await received(() => evaluatorOpenAI.chat.completions.create(chat, { headers: { cookie: `session=${CALLER_KEYS.cookie}`, 'x-api-key': CALLER_KEYS.openai } }))
    t.ok(openai.value.choices[0]?.message.content, 'OpenAI SDK: answered')
    t.equal(openai.seen.length, 1)
    t.equal(openai.seen[0]!.headers.authorization, `Bearer ${KEYS.openaiDefault}`, 'authorization: Bearer with the default key')
    for (const h of ['x-api-key', 'cookie', 'api-key']) t.equal(openai.seen[0]!.headers[h], undefined, `no ${h}`)

    const anthropic = await received(() => stack.anthropic('checkout').messages.create(message))
    t.equal(anthropic.value.type, 'message', 'Anthropic SDK: answered')
    t.equal(anthropic.seen[0]!.headers['x-api-key'], KEYS.anthropicOld, 'x-api-key with the configured key')
    t.ok(anthropic.seen[0]!.headers['anthropic-version'], 'and the API version')
    t.equal(anthropic.seen[0]!.headers.authorization, undefined)

    const azure = await received(() => evaluatorAzure.chat.completions.create(chat))
    t.ok(azure.value.choices[0]?.message.content, 'Azure OpenAI SDK: answered')
    t.match(azure.seen[0]!.path, /^\/openai\/deployments\/gpt-4o-mini\/chat\/completions/)
    t.equal(azure.seen[0]!.headers['api-key'], undefined, "the caller's api-key is gone")
    t.equal(azure.seen[0]!.headers.authorization, `Bearer ${endpoint.issued[0]}`, 'the access token from the token endpoint instead')
    t.equal(provider.refused, refusedBefore, 'the stand-in refused nothing that came through the gateway')
  })

  t.test('Azure OpenAI through a client-credentials token over mutual TLS: cached, refreshed before expiry, used until expiry while the endpoint is down, refused after, and back', async (t) => {
    // One token serves many callers: modelgate asked for it at start-up, in the background.
    t.same(endpoint.requests[0]!.form, { grant_type: 'client_credentials', client_id: 'modelgate-gw', scope: 'https://cognitiveservices.azure.com/.default' })
    t.equal(endpoint.requests[0]!.clientUri, GATEWAY, "the gateway's SVID was the TLS client certificate")
    const tokenRequests = endpoint.requests.length
    const burst = await received(() => Promise.all(Array.from({ length: 8 }, () => evaluatorAzure.chat.completions.create(chat))))
    t.equal(burst.value.length, 8)
    const used = new Set(burst.seen.map((r) => r.headers.authorization))
    t.ok(burst.seen.length === 8 && [...used].every((a) => endpoint.issued.some((tok) => a === `Bearer ${tok}`)), 'eight concurrent requests, each with an issued token')
    // At most the scheduled refresh falls into the burst: no token request per request.
    const meanwhile = endpoint.requests.length - tokenRequests
    t.ok(meanwhile <= 1 && used.size <= meanwhile + 1, `${used.size} token(s) for eight requests, ${meanwhile} token request(s) meanwhile`)

    // Refreshed in the background before it expires (lifetime 6 s, refreshed 2 s before).
    await until('the refresh', () => (endpoint.issued.length >= 2 ? true : undefined), 6000)
    const refreshed = await received(() => evaluatorAzure.chat.completions.create(chat))
    t.equal(refreshed.seen[0]!.headers.authorization, `Bearer ${endpoint.issued.at(-1)}`, 'the next request uses the new token')

    // The endpoint goes away: the current token is used while it is valid, then requests are refused.
    await endpoint.stop()
    const stoppedAt = performance.now()
    const whileValid = await received(() => evaluatorAzure.chat.completions.create(chat))
    t.equal(whileValid.seen.length, 1, 'right after the endpoint went down: still answered with the valid token')
    const refusal = await until(
      'a refusal once the token expired',
      async () => {
        const before = provider.requests.length
        const err = await evaluatorAzure.chat.completions.create(chat).then(
          () => undefined,
          (e: unknown) => e,
        )
        return err ? { err: err as InstanceType<typeof OpenAI.APIError>, reached: provider.requests.length - before } : undefined
      },
      8000,
      200,
    )
    t.ok(performance.now() - stoppedAt < 8000)
    t.equal(refusal.err.status, 503, '503')
    t.equal(refusal.err.code, 'MG_CREDENTIAL_UNAVAILABLE', 'MG_CREDENTIAL_UNAVAILABLE, in the OpenAI error shape')
    t.equal(refusal.err.headers?.get('x-modelgate-error'), 'MG_CREDENTIAL_UNAVAILABLE')
    t.equal(refusal.reached, 0, 'nothing reached the provider')
    t.notOk(endpoint.issued.some((tok) => JSON.stringify(refusal.err.error).includes(tok)), 'the error body names no token')

    // Back: the next attempt (after a bounded back-off) gets a token, and requests pass again.
    const issuedBefore = endpoint.issued.length
    await endpoint.start()
    const back = await until(
      'requests answered again',
      async () => {
        const r = await received(() => evaluatorAzure.chat.completions.create(chat).then(() => true, () => undefined))
        return r.value ? r.seen : undefined
      },
      20_000,
      250,
    )
    t.ok(endpoint.issued.length > issuedBefore, 'a new token was issued')
    t.equal(back[0]!.headers.authorization, `Bearer ${endpoint.issued.at(-1)}`, 'and is used')
  })

  t.test("a model the provider does not serve is a 404 in the route's dialect before anything leaves; an alias reaches its target", async (t) => {
    const client = stack.anthropic('checkout')
    const refused = await received(() =>
      client.messages.create({ ...message, model: 'claude-opus-4-1' }).then(
        () => undefined,
        (e: unknown) => e as InstanceType<typeof Anthropic.APIError>,
      ),
    )
    t.equal(refused.value?.status, 404)
    t.equal(refused.value?.headers?.get('x-modelgate-error'), 'MG_MODEL_NOT_SERVED')
    t.match(refused.value?.error, { type: 'error', error: { type: 'not_found_error', code: 'MG_MODEL_NOT_SERVED' } }, "Anthropic's error shape")
    t.notMatch(JSON.stringify(refused.value?.error), /claude-opus/, 'without repeating the name')
    t.equal(refused.seen.length, 0, 'the provider saw nothing')
    const aliased = await received(() => client.messages.create({ ...message, model: 'haiku' }))
    t.equal(aliased.value.type, 'message')
    t.equal((aliased.seen[0]!.json as { model: string }).model, 'claude-haiku-4-5', 'the alias went upstream as its target')
  })

  t.test("a team's credential is used for that team's workloads only; a @credential permit chooses research's", async (t) => {
    const cases = [
      { who: 'checkout (team payments, by its namespace)', send: () => stack.openai('checkout').chat.completions.create(chat), key: KEYS.openaiPayments },
      { who: 'notebook (team research: the permit that allowed it names "research")', send: () => stack.openai('notebook').chat.completions.create(chat), key: KEYS.openaiResearch },
      { who: 'evaluator (team platform: no rule, no annotation)', send: () => evaluatorOpenAI.chat.completions.create(chat), key: KEYS.openaiDefault },
    ]
    for (const c of cases) {
      for (let i = 0; i < 3; i++) {
        const { seen } = await received(c.send)
        t.equal(seen[0]?.headers.authorization, `Bearer ${c.key}`, `${c.who}, request ${i + 1}`)
      }
    }
  })

  t.test('a key rotated in its Secret volume (the ..data swap) is used from the next request on, with no failed request under steady load', async (t) => {
    const WORKERS = 4
    const client = stack.anthropic('checkout')
    const results: { status: number; key: string | undefined; at: number }[] = []
    let stop = false
    let sent = 0
    provider.clear()
    const worker = async () => {
      // Bounded: at most 900 requests in all (the stand-in keeps the last 1000), for about two seconds.
      while (!stop && sent < 900) {
        const id = `load-${++sent}`
        const status = await client.messages.create(message, { headers: { 'x-load-id': id } }).then(
          () => 200,
          (err: { status?: number }) => err.status ?? 0,
        )
        const seen = provider.requests.findLast((r) => r.headers['x-load-id'] === id)
        results.push({ status, key: seen?.headers['x-api-key'] as string | undefined, at: performance.now() })
      }
    }
    const load = Array.from({ length: WORKERS }, worker)
    await new Promise((r) => setTimeout(r, 800))

    // The provider takes both keys for a while (as providers do), the Secret changes, then the old key is revoked.
    provider.requireKeys({ openai: [KEYS.openaiDefault, KEYS.openaiPayments, KEYS.openaiResearch], anthropic: [KEYS.anthropicOld, KEYS.anthropicNew], azure: endpoint.issued })
    const swappedAt = performance.now()
    volume.update({ 'api-key': KEYS.anthropicNew + '\n' })
    const firstNew = await until('a request with the new key', () => provider.requests.find((r) => r.headers['x-api-key'] === KEYS.anthropicNew), 5000, 5)
    const switchMs = performance.now() - swappedAt
    await new Promise((r) => setTimeout(r, 300))
    provider.requireKeys({ openai: [KEYS.openaiDefault, KEYS.openaiPayments, KEYS.openaiResearch], anthropic: [KEYS.anthropicNew], azure: endpoint.issued })
    const revokedAt = performance.now()
    await new Promise((r) => setTimeout(r, 1000))
    stop = true
    await Promise.all(load)

    const failed = results.filter((r) => r.status !== 200)
    t.ok(results.length >= 20, `a steady load: ${results.length} requests from ${WORKERS} workers`)
    t.same(failed, [], 'no request failed, before, during or after the swap')
    t.ok(firstNew, `the new key was in use ${switchMs.toFixed(0)} ms after the swap (the file watch, not the 10 s periodic read)`)
    t.ok(switchMs < 2000)
    const afterRevocation = results.filter((r) => r.at > revokedAt + 50)
    t.ok(afterRevocation.length > 0, `${afterRevocation.length} requests after the old key was revoked`)
    t.ok(afterRevocation.every((r) => r.key === KEYS.anthropicNew), 'every one of them with the new key')
    const lastOld = results.findLastIndex((r) => r.key === KEYS.anthropicOld)
    const firstNewIndex = results.findIndex((r) => r.key === KEYS.anthropicNew)
    t.ok(lastOld < firstNewIndex + WORKERS, 'no request went back to the old key once the new one was in use (beyond those already in flight)')
  })

  t.test('no provider key or token, and no caller key, is in any log, audit record, metric or the Envoy access log', async (t) => {
    const { response } = await evaluatorOpenAI.chat.completions.create(chat).withResponse()
    const requestId = response.headers.get('x-request-id')!
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
    t.match(metrics, /modelgate_/, 'the metrics endpoint answered')
    await stack.stopModelgate()
    await new Promise((r) => setTimeout(r, 500)) // Envoy flushes its access log every 250 ms
    const files: string[] = []
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name)
        if (e.isDirectory()) walk(p)
        else if (e.isFile()) files.push(p)
      }
    }
    if (existsSync(join(stack.dir, 'spool'))) walk(join(stack.dir, 'spool'))
    const cli = async (args: string[]) => {
      const out = new PassThrough()
      let text = ''
      out.on('data', (c: Buffer) => (text += c.toString()))
      const code = await auditCli(args, { stdout: out, stderr: out, stdin: new PassThrough(), cwd: process.cwd(), env: {} })
      return { code, text }
    }
    const shown = await cli(['show', requestId, join(stack.dir, 'audit.jsonl')])
    t.equal(shown.code, 0)
    t.match(shown.text, /credential\s+openai\/default \(file\)/, '`modelgate audit show` names the credential a request used, by name and source')
    const summary = await cli(['summary', '--json', join(stack.dir, 'audit.jsonl')])
    t.equal(summary.code, 0)
    const written: Record<string, string> = {
      'modelgate audit show and summary': shown.text + summary.text,
      'modelgate log': readFileSync(logFile, 'utf8'),
      'Envoy log (access log)': readFileSync(envoyLogFile, 'utf8'),
      'audit records': readFileSync(join(stack.dir, 'audit.jsonl'), 'utf8'),
      'audit spool': files.map((f) => readFileSync(f, 'latin1')).join('\n'),
      metrics,
    }
    t.ok(written['modelgate log']!.includes('credential file changed'), 'the log has the rotation (by name, without the value)')
    t.ok(written['modelgate log']!.includes('token request failed'), 'and the token endpoint outage')
    t.ok(written['Envoy log (access log)']!.includes('"route":"openai"') || written['Envoy log (access log)']!.includes('"route": "openai"'), 'the access log has the requests')
    t.ok(written['audit records']!.split('\n').filter(Boolean).length > 50, 'the audit file has the records')
    const secrets = { ...KEYS, ...CALLER_KEYS, ...Object.fromEntries(endpoint.issued.map((tok, i) => [`token ${i + 1}`, tok])) }
    for (const [where, text] of Object.entries(written)) {
      const found = Object.entries(secrets).filter(([, v]) => text.includes(v)).map(([k]) => k)
      t.same(found, [], `${where}: none of ${Object.keys(secrets).length} keys and tokens`)
    }
  })
})
