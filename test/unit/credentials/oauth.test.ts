/**
 * The client-credentials exchange against a real HTTPS token endpoint on
 * loopback that checks the client certificate (test/helpers/token-endpoint.ts):
 * caching until shortly before expiry, background refresh, one request for
 * many callers, what happens when the endpoint refuses or is gone, and the
 * gateway's SVID read again for every request.
 */
import t from 'tap'
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { TokenSource } from '../../../src/credentials/oauth.ts'
import { DEV_TRUST_DOMAIN } from '../../../src/dev/identities.ts'
import { issueCertificate } from '../../../src/dev/pki.ts'
import { GateError } from '../../../src/errors.ts'
import { createLogger } from '../../../src/log.ts'
import { sharedTestPki } from '../../helpers/pki.ts'
import { TokenEndpoint } from '../../helpers/token-endpoint.ts'

const { pki, dir: pkiDir } = await sharedTestPki()
const GATEWAY = `spiffe://${DEV_TRUST_DOMAIN}/ns/ai/sa/gateway`
const certs = join(pkiDir, 'oauth-unit')
const gateway = await issueCertificate(certs, pki.ca, { name: 'gateway', uris: [GATEWAY] })
const rotated = await issueCertificate(certs, pki.ca, { name: 'gateway-next', uris: [GATEWAY] })
const stranger = await issueCertificate(certs, pki.ca, { name: 'stranger', uris: [`spiffe://${DEV_TRUST_DOMAIN}/ns/ai/sa/other`] })

const endpoint = new TokenEndpoint({ ca: pki.ca.cert, cert: pki.server.cert, key: pki.server.key, clients: { 'modelgate-gw': GATEWAY } })
await endpoint.start()
t.teardown(() => endpoint.stop())

function source(t: { teardown(fn: () => unknown): void }, over: { certFile?: string; keyFile?: string; refreshBeforeSeconds?: number; timeoutMs?: number; scope?: string; audience?: string } = {}) {
  const lines: string[] = []
  const s = new TokenSource({
    config: {
      tokenUrl: endpoint.url,
      clientId: 'modelgate-gw',
      ...(over.audience ? { audience: over.audience } : { scope: over.scope ?? 'https://cognitiveservices.azure.com/.default' }),
      certFile: over.certFile ?? gateway.cert,
      keyFile: over.keyFile ?? gateway.key,
      caFile: pki.ca.cert,
      refreshBeforeSeconds: over.refreshBeforeSeconds ?? 300,
      timeoutMs: over.timeoutMs ?? 2000,
    },
    label: 'azure/entra',
    logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }),
    resolve: (p) => p,
  })
  t.teardown(() => s.close())
  return { s, lines }
}

async function value(s: TokenSource): Promise<string> {
  return await s.get()
}

async function refusal(s: TokenSource): Promise<GateError> {
  try {
    await s.get()
  } catch (err) {
    return err as GateError
  }
  throw new Error('a token was had')
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.beforeEach(() => {
  endpoint.requests.length = 0
  endpoint.lifetime = 3600
  endpoint.failWith = undefined
  endpoint.delayMs = 0
  endpoint.extra = {}
})

t.test('a token is fetched with the client certificate, Entra-style, and kept', async (t) => {
  const { s, lines } = source(t)
  const first = s.get()
  t.type(first, Promise, 'the first caller waits for the first token')
  const token = await first
  t.equal(token, endpoint.issued.at(-1))
  t.equal(s.get(), token, 'later callers get it at once')
  t.equal(endpoint.requests.length, 1)
  t.same(endpoint.requests[0]!.form, { grant_type: 'client_credentials', client_id: 'modelgate-gw', scope: 'https://cognitiveservices.azure.com/.default' })
  t.equal(endpoint.requests[0]!.clientUri, GATEWAY, 'the client is known by its certificate (tls_client_auth)')
  t.notMatch(lines.join('\n'), token)
})

t.test('a generic endpoint gets an audience instead of a scope; a numeric-string expires_in is read', async (t) => {
  endpoint.lifetime = '3599'
  const { s } = source(t, { audience: 'https://llm.internal.example' })
  await value(s)
  t.same(endpoint.requests[0]!.form, { grant_type: 'client_credentials', client_id: 'modelgate-gw', audience: 'https://llm.internal.example' })
})

t.test('many callers without a token share one request (single flight)', async (t) => {
  endpoint.delayMs = 100
  const { s } = source(t)
  const all = await Promise.all(Array.from({ length: 50 }, () => value(s)))
  t.equal(new Set(all).size, 1)
  t.equal(endpoint.requests.length, 1, 'one token request for 50 callers')
})

t.test('a token is replaced in the background before it expires; callers never wait for it', async (t) => {
  endpoint.lifetime = 1.2
  const { s } = source(t, { refreshBeforeSeconds: 1 })
  const first = await value(s)
  // Replaced from half its lifetime (0.6 s), used up to 1.08 s (a tenth of a short lifetime before expiry).
  const seen: string[] = []
  const deadline = Date.now() + 1500
  while (Date.now() < deadline) {
    const v = s.get()
    t.equal(typeof v, 'string', 'synchronous all along') || t.end()
    seen.push(v as string)
    await sleep(20)
  }
  t.ok(endpoint.requests.length >= 2, `refreshed (${endpoint.requests.length} requests)`)
  t.ok(seen.includes(first) && seen.some((v) => v !== first), 'the old token, then the new one')
  t.ok(endpoint.requests.length <= 4, 'about one request per half lifetime, not one per caller')
})

t.test('an expired token is never used, and with the endpoint down the request is refused: MG_CREDENTIAL_UNAVAILABLE', async (t) => {
  endpoint.lifetime = 0.5
  const { s, lines } = source(t, { refreshBeforeSeconds: 0 })
  const token = await value(s)
  await endpoint.stop()
  t.teardown(() => endpoint.start())
  await sleep(700)
  const err = await refusal(s)
  t.equal(err.code, 'MG_CREDENTIAL_UNAVAILABLE')
  t.equal(err.status, 503)
  t.match(err.internal, /^credential azure\/entra: no valid token \(the token endpoint cannot be reached \(ECONNREFUSED\)\)$/)
  // While the endpoint is down, refusals come at once: the next attempt waits its turn.
  const attempts = endpoint.requests.length
  const started = performance.now()
  for (let i = 0; i < 20; i++) t.equal((await refusal(s)).code, 'MG_CREDENTIAL_UNAVAILABLE')
  t.ok(performance.now() - started < 100, 'refused without waiting')
  t.equal(endpoint.requests.length, attempts)
  const failure = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'token request failed')
  t.match(failure, { level: 'error', credential: 'azure/entra', endpoint: endpoint.url, still_valid: false })
  t.notMatch(lines.join('\n'), token, 'no token in the log')
})

t.test('while the current token is valid, a failed refresh changes nothing for callers; the next success replaces it', async (t) => {
  endpoint.lifetime = 6
  const { s, lines } = source(t, { refreshBeforeSeconds: 6 })
  const first = await value(s)
  endpoint.failWith = { status: 500, error: 'server_error', description: 'database says hi to sk-should-not-appear' }
  await sleep(3300) // past the refresh point (half the lifetime, 3 s): the refresh failed; the retry comes a second later
  t.equal(s.get(), first, 'the valid token is still used')
  const failure = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'token request failed')
  t.match(failure, { level: 'warn', reason: 'the token endpoint answered 500 (server_error)', still_valid: true })
  t.notMatch(lines.join('\n'), /database says hi|sk-should-not-appear/, 'the error description is not repeated')
  endpoint.failWith = undefined
  t.ok(await (async () => {
    const end = Date.now() + 3000
    while (Date.now() < end) {
      const v = s.get()
      if (typeof v === 'string' && v !== first) return true
      await sleep(50)
    }
    return false
  })(), 'the retry replaced it')
})

t.test('the endpoint back up: a refused request is followed by a token once the pause is over', async (t) => {
  const { s } = source(t)
  await endpoint.stop()
  t.equal((await refusal(s)).code, 'MG_CREDENTIAL_UNAVAILABLE')
  await endpoint.start()
  await sleep(1100) // the first retry comes after a second
  t.type(await value(s), 'string')
})

t.test('unusable answers are refusals, each with its reason', async (t) => {
  const cases: [name: string, set: () => void, reason: RegExp][] = [
    ['an error answer', () => (endpoint.failWith = { status: 400, error: 'invalid_scope' }), /the token endpoint answered 400 \(invalid_scope\)/],
    ['a token of another type', () => (endpoint.extra = { token_type: 'DPoP' }), /not a bearer token/],
    ['a negative lifetime', () => (endpoint.lifetime = -5), /unusable expires_in/],
    ['no token', () => (endpoint.extra = { access_token: '' }), /no usable access_token/],
  ]
  for (const [name, set, reason] of cases) {
    endpoint.failWith = undefined
    endpoint.extra = {}
    endpoint.lifetime = 3600
    set()
    const { s } = source(t)
    const err = await refusal(s)
    t.equal(err.code, 'MG_CREDENTIAL_UNAVAILABLE', name)
    t.match(err.internal, reason, name)
  }
})

t.test('an endpoint that does not answer in time is given up on', async (t) => {
  endpoint.delayMs = 1000
  const { s } = source(t, { timeoutMs: 200 })
  const started = performance.now()
  const err = await refusal(s)
  t.match(err.internal, /no answer within 200 ms/)
  t.ok(performance.now() - started < 900)
})

t.test('a certificate the endpoint does not know for the client is refused by it (invalid_client)', async (t) => {
  const { s } = source(t, { certFile: stranger.cert, keyFile: stranger.key })
  t.match((await refusal(s)).internal, /the token endpoint answered 401 \(invalid_client\)/)
})

t.test('the SVID is read for every token request: a rotated certificate is used by the next one', async (t) => {
  const dir = t.testdir()
  const cert = join(dir, 'tls.crt')
  const key = join(dir, 'tls.key')
  copyFileSync(gateway.cert, cert)
  copyFileSync(gateway.key, key)
  endpoint.lifetime = 0.4
  const { s } = source(t, { certFile: cert, keyFile: key, refreshBeforeSeconds: 0 })
  await value(s)
  const before = endpoint.requests.at(-1)!.clientSerial
  copyFileSync(rotated.cert, cert)
  copyFileSync(rotated.key, key)
  await sleep(500)
  await value(s)
  t.not(endpoint.requests.at(-1)!.clientSerial, before, 'the new certificate')
  t.equal(endpoint.requests.at(-1)!.clientUri, GATEWAY)
})
