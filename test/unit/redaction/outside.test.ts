import fc from 'fast-check'
import t from 'tap'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { canStrip, compileOutsideScanner, pathWithout, readings, type OutsideScan } from '../../../src/redaction/outside.ts'

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const EMAIL = 'dana.whitfield@gmail.com'
const config = redactionConfigFrom({})
const engine = compileRedaction(config)
const scanner = compileOutsideScanner(engine, config)
const partByPart = compileOutsideScanner(engine, config, { onePass: false })

function scan(path: string, headers: Record<string, string> = {}, replaced: string[] = [], s = scanner): OutsideScan {
  return s.scan({ path, headers: new Map(Object.entries(headers)), replaced: new Set(replaced), subject: undefined })
}
const where = (r: OutsideScan) => r.sites.map((s) => [s.location, s.detections.map((d) => d.detector)])

t.test('a token in a query value is found under the parameter name; the URL record keeps names only', async (t) => {
  const r = scan(`/v1/chat/completions?api_key=${TOKEN}&beta=true`)
  t.same(where(r), [['url.query.api_key', ['github-pat']]])
  t.same(r.sites[0]!.params, [0])
  t.same(r.url, { path: '/v1/chat/completions', queryNames: ['api_key', 'beta'] })
})

t.test('a token as a query parameter name is located without printing the name, and named by its label', async (t) => {
  const r = scan(`/v1/chat/completions?${TOKEN}=1&beta=true`)
  t.same(where(r), [['url.query.<name>', ['github-pat']]])
  t.same(r.url.queryNames, ['[GITHUB_TOKEN]', 'beta'])
  t.notOk(JSON.stringify(r.url).includes('ghp_'))
})

t.test('query values are read as a receiver decodes them', async (t) => {
  const cases: [name: string, query: string, detector: string][] = [
    ['percent-encoded', `t=${encodeURIComponent(TOKEN).replace('_', '%5F')}`, 'github-pat'],
    ['every character percent-encoded', `t=${[...TOKEN].map((c) => '%' + c.charCodeAt(0).toString(16)).join('')}`, 'github-pat'],
    ['percent-encoded twice', `t=${TOKEN.replace('_', '%255F')}`, 'github-pat'],
    ['a card with + for spaces', 't=4111+1111+1111+1111', 'credit-card'],
    ['an e-mail with an encoded @', `to=${EMAIL.replace('@', '%40')}`, 'email'],
    ['a key assignment that needs the parameter name for context', 'api_key=Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca', 'generic-secret'],
    ['full-width digits in UTF-8', `n=${encodeURIComponent('４１１１ １１１１ １１１１ １１１１')}`, 'credit-card'],
  ]
  for (const [name, query, detector] of cases) {
    const r = scan(`/v1/chat/completions?${query}`)
    t.same(r.sites.flatMap((s) => s.detections.map((d) => d.detector)), [detector], name)
  }
})

t.test('a value spread over two parameters is found in the raw query and touches both', async (t) => {
  const r = scan('/v1/chat/completions?a=x&b=postgres://app:pa&ss@db.example.net/x')
  const site = r.sites.find((s) => s.location === 'url.query')
  t.ok(site, 'found across the separator')
  t.same(site?.params, [1, 2])
})

t.test('a token in the Azure deployment segment is found, and the URL record shows its label there', async (t) => {
  const r = scan(`/openai/deployments/${TOKEN}/chat/completions`)
  t.same(where(r), [['url.path', ['github-pat']]])
  t.equal(r.url.path, '/openai/deployments/[GITHUB_TOKEN]/chat/completions')
  const encoded = scan(`/openai/deployments/${TOKEN.replace('_', '%5F')}/chat/completions`)
  t.equal(encoded.url.path, '/openai/deployments/[GITHUB_TOKEN]/chat/completions', 'also when it is percent-encoded')
})

t.test('headers are scanned as "name: value"; a finding in a name is located without printing it', async (t) => {
  const r = scan('/v1/chat/completions', { 'x-debug-note': `see ${TOKEN}`, 'x-auth-token': 'Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca', [TOKEN.toLowerCase()]: '1', 'x-trace': 'fine' })
  t.same(
    r.sites.map((s) => [s.location, s.header]),
    [
      ['header:x-debug-note', 'x-debug-note'],
      ['header:x-auth-token', 'x-auth-token'],
      ['header:<name>', TOKEN.toLowerCase()],
    ],
  )
})

t.test('UTF-8 in a header value (arriving as bytes read as Latin-1) is read as UTF-8 too', async (t) => {
  const latin1 = Buffer.from('card ４１１１ １１１１ １１１１ １１１１', 'utf8').toString('latin1')
  t.same(where(scan('/v1/chat/completions', { 'x-note': latin1 })), [['header:x-note', ['credit-card']]])
})

t.test('the caller\'s credential headers (the credentials stage removes every one), pseudo-headers, Envoy\'s headers and headers another stage replaces are not scanned', async (t) => {
  const r = scan(
    '/v1/chat/completions',
    {
      authorization: `Bearer ${TOKEN}`,
      'x-api-key': TOKEN,
      'api-key': TOKEN,
      ':authority': `${TOKEN}.example.net`,
      'x-forwarded-for': '203.0.113.9, 10.0.0.5',
      'x-envoy-external-address': '203.0.113.9',
      'x-request-id': TOKEN,
      'x-modelgate-user-token': TOKEN,
      'accept-encoding': TOKEN,
    },
    ['x-modelgate-user-token', 'accept-encoding'],
  )
  t.same(r.sites, [])
  for (const h of ['authorization', 'x-api-key', 'api-key', 'cookie', 'proxy-authorization', 'openai-organization', ':authority', 'x-forwarded-for', 'x-envoy-anything', 'content-length']) t.notOk(scanner.scans(h), h)
  for (const h of ['user-agent', 'content-type', 'x-debug-note', 'traceparent']) t.ok(scanner.scans(h), h)
})

t.test('redaction.headers.scan and skip select headers by name or pattern', async (t) => {
  const cfg = redactionConfigFrom({ headers: { scan: ['x-*', 'user-agent'], skip: ['x-trace-*'] } })
  const s = compileOutsideScanner(compileRedaction(cfg), cfg)
  t.same(
    ['x-debug-note', 'user-agent', 'x-trace-id', 'cookie', 'x-api-key'].map((h) => s.scans(h)),
    [true, true, false, false, false],
  )
  const none = redactionConfigFrom({ headers: { scan: [] } })
  t.notOk(compileOutsideScanner(compileRedaction(none), none).scans('x-debug-note'), 'an empty scan list scans no header')
})

t.test('the ordinary headers of the official SDKs hold nothing', async (t) => {
  const r = scan('/v1/messages?beta=true', {
    'user-agent': 'Anthropic/JS 0.71.0',
    'x-stainless-os': 'Linux',
    'x-stainless-arch': 'x64',
    'x-stainless-runtime-version': 'v24.11.1',
    'x-stainless-package-version': '0.71.0',
    'x-stainless-retry-count': '0',
    'x-stainless-timeout': '600',
    'anthropic-version': '2023-06-01',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    accept: 'application/json',
    'content-type': 'application/json',
    'idempotency-key': 'stainless-node-retry-8f6c1c9e-3f0a-4b6e-9e3e-2d9b2f7b7f1a',
  })
  t.same(r.sites, [])
  t.same(r.url, { path: '/v1/messages', queryNames: ['beta'] })
})

t.test('query names that are not plain text are recorded as [*]', async (t) => {
  t.same(scan('/v1/chat/completions?a%20b=1&&=2&ok=3&x').url.queryNames, ['[*]', '[*]', 'ok', 'x'])
})

t.test('the one-pass check finds whatever the part-by-part scan finds', async (t) => {
  const planted = fc.constantFrom(TOKEN, EMAIL, '4111 1111 1111 1111', 'postgres://app:pa#ss@db.example.net/x', 'AKIAIOSFODNN7EXAMPLF', 'GB82 WEST 1234 5698 7654 32')
  const piece = fc.oneof(fc.string({ maxLength: 12 }), planted, planted.map((p) => encodeURIComponent(p)))
  const input = fc.record({
    query: fc.array(fc.tuple(piece, piece), { maxLength: 4 }),
    headers: fc.dictionary(fc.stringMatching(/^x-[a-z]{1,8}$/), piece, { maxKeys: 4 }),
  })
  fc.assert(
    fc.property(input, ({ query, headers }) => {
      const path = `/v1/chat/completions${query.length ? '?' + query.map(([k, v]) => `${k.replace(/[&=?#]/g, '')}=${v.replace(/[&?#]/g, '')}`).join('&') : ''}`
      const latin1 = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Buffer.from(v, 'utf8').toString('latin1')]))
      const a = scan(path, latin1)
      const b = scan(path, latin1, [], partByPart)
      return JSON.stringify(where(a)) === JSON.stringify(where(b)) && JSON.stringify(a.url) === JSON.stringify(b.url)
    }),
    { numRuns: 500, seed: 7 },
  )
  t.pass('500 random paths and header sets agree')
})

t.test('pathWithout removes parameters and keeps the rest byte for byte', async (t) => {
  t.equal(pathWithout('/v1/x?a=1&b=%20&c', new Set([0])), '/v1/x?b=%20&c')
  t.equal(pathWithout('/v1/x?a=1&b=2', new Set([0, 1])), '/v1/x')
  t.equal(pathWithout('/v1/x', new Set([0])), '/v1/x')
  t.ok(canStrip('x-debug-note'))
  for (const h of [':path', 'host', 'x-envoy-foo']) t.notOk(canStrip(h), h)
})

t.test('readings: as sent first, then UTF-8 and percent-decoded forms, without duplicates', async (t) => {
  t.same(readings('plain', true), ['plain'])
  t.same(readings('a%2Bb+c', true), ['a%2Bb+c', 'a+b c', 'a+b+c'])
  t.same(readings('a%2Bb', false), ['a%2Bb'])
})

t.test('a query value is also scanned alone: a match on the name must not swallow the one in the value', async (t) => {
  const r = scan('/v1/chat/completions?beta=true&api_key=config.auth_token%3A%20C4Lpx1AAVdQStMCh1Z2zJBQBXcojCgRN')
  t.same(where(r), [['url.query.api_key', ['generic-secret']]])
  t.same(where(scan('/v1/chat/completions', { 'x-api-key-note': 'config.auth_token: C4Lpx1AAVdQStMCh1Z2zJBQBXcojCgRN' })), [['header:x-api-key-note', ['generic-secret']]])
})
