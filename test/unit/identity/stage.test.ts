import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import t from 'tap'
import { configFromObject } from '../../../src/config/config.ts'
import { createCa, issueCertificate } from '../../../src/dev/pki.ts'
import { GateError } from '../../../src/errors.ts'
import { createIdentityStage } from '../../../src/identity/stage.ts'
import { createUserVerifier, type UserVerifier } from '../../../src/identity/user.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { Stage } from '../../../src/pipeline/stage.ts'

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688'

function identityConfig(identity: Record<string, unknown> = {}) {
  return configFromObject({ identity: { trustDomains: [TD], ...identity } }, 'test').identity
}

function stageWith(identity: Record<string, unknown> = {}, users?: UserVerifier): Stage {
  return createIdentityStage({ config: identityConfig(identity), users })
}

function ctxWith(attributes: Record<string, unknown> = {}, headers: Record<string, string> = {}): RequestContext {
  const ctx = new RequestContext()
  for (const [k, v] of Object.entries(attributes)) ctx.attributes.set(k, v)
  for (const [k, v] of Object.entries(headers)) ctx.requestHeaders.set(k, v)
  ctx.method = 'POST'
  ctx.path = '/v1/chat/completions'
  return ctx
}

const mtls = (pem: string, uriSan?: string) => ({
  'connection.mtls': true,
  'connection.peer_certificate': encodeURIComponent(pem),
  ...(uriSan === undefined ? {} : { 'connection.uri_san_peer_certificate': uriSan }),
})

/** Runs the stage; returns the GateError it threw, or undefined. */
async function run(stage: Stage, ctx: RequestContext): Promise<GateError | undefined> {
  try {
    await stage.requestHeaders!(ctx)
    return undefined
  } catch (err) {
    if (err instanceof GateError) return err
    throw err
  }
}

t.test('identity from the mTLS peer certificate', async (t) => {
  const dir = t.testdir()
  const ca = await createCa(dir, 'ca')
  const issue = async (name: string, opts: { uris?: string[]; dns?: string[]; isCA?: boolean; extensions?: string[] }) =>
    readFileSync((await issueCertificate(dir, ca, { name, ...opts })).cert, 'utf8')
  const checkout = await issue('checkout', { uris: [CHECKOUT] })
  const plainPath = await issue('plain', { uris: [`spiffe://${TD}/billing/api`] })
  const tdOnly = await issue('td-only', { uris: [`spiffe://${TD}`] })
  const upper = await issue('upper', { uris: ['spiffe://EXAMPLE.org/ns/payments/sa/checkout'] })
  const upperScheme = await issue('upper-scheme', { uris: ['SPIFFE://EXAMPLE.ORG/ns/payments/sa/checkout'] })
  const leaf = (name: string, extensions: string[]) => issue(name, { uris: [CHECKOUT], extensions })
  const keyCertSign = await leaf('key-cert-sign', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign'])
  const crlSign = await leaf('crl-sign', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,cRLSign'])
  const noBasicConstraints = await leaf('no-basic-constraints', ['keyUsage=critical,digitalSignature'])
  const caNoKeyUsage = await leaf('ca-no-key-usage', ['basicConstraints=critical,CA:TRUE'])
  const noKeyUsage = await leaf('no-key-usage', ['basicConstraints=critical,CA:FALSE'])
  const twoUris = await issue('two', { uris: [CHECKOUT, `spiffe://${TD}/ns/payments/sa/other`] })
  const nonSpiffe = await issue('https', { uris: ['https://example.org/checkout'] })
  const dnsOnly = await issue('dns', { dns: ['checkout.local'] })
  const caCert = await issue('ca-like', { uris: [CHECKOUT], isCA: true })
  const foreign = await issue('foreign', { uris: ['spiffe://other.example/ns/payments/sa/checkout'] })
  const badSpiffe = await issue('bad-spiffe', { uris: [`spiffe://${TD}/ns/../sa/x`] })

  t.test('a Kubernetes SVID yields the full identity', async (t) => {
    const ctx = ctxWith(mtls(checkout, CHECKOUT))
    t.equal(await run(stageWith(), ctx), undefined)
    t.same(ctx.out.caller?.workload, {
      spiffeId: CHECKOUT,
      trustDomain: TD,
      path: '/ns/payments/sa/checkout',
      namespace: 'payments',
      serviceAccount: 'checkout',
      source: 'mtls',
      certificateSha256: ctx.out.caller?.workload?.certificateSha256,
    })
    t.match(ctx.out.caller?.workload?.certificateSha256, /^[0-9a-f]{64}$/)
    t.ok(Object.isFrozen(ctx.out.caller?.workload), 'the identity is frozen')
  })

  t.test('other path shapes have no namespace or service account', async (t) => {
    for (const [pem, path] of [
      [plainPath, '/billing/api'],
      [tdOnly, ''],
    ] as const) {
      const ctx = ctxWith(mtls(pem))
      t.equal(await run(stageWith(), ctx), undefined)
      t.equal(ctx.out.caller?.workload?.path, path)
      t.equal(ctx.out.caller?.workload?.namespace, undefined)
      t.equal(ctx.out.caller?.workload?.serviceAccount, undefined)
    }
  })


  t.test('a leaf with cA=false and no key usage extension is accepted (nothing in it may sign)', async (t) => {
    const ctx = ctxWith(mtls(noKeyUsage))
    t.equal(await run(stageWith(), ctx), undefined)
    t.equal(ctx.out.caller?.workload?.spiffeId, CHECKOUT)
  })

  t.test('the URI SAN attribute may be absent or empty; the certificate decides', async (t) => {
    for (const attr of [undefined, '']) {
      const ctx = ctxWith(mtls(checkout, attr))
      t.equal(await run(stageWith(), ctx), undefined)
      t.equal(ctx.out.caller?.workload?.spiffeId, CHECKOUT)
    }
  })

  const denials: [name: string, attrs: Record<string, unknown>, code: string, status: number, internal: string | RegExp][] = [
    ['no attributes at all', {}, 'MG_IDENTITY_MISSING', 401, 'no mTLS peer certificate'],
    ['connection.mtls false with a certificate', { ...mtls(checkout), 'connection.mtls': false }, 'MG_IDENTITY_MISSING', 401, 'no mTLS peer certificate'],
    ['connection.mtls given as a string', { ...mtls(checkout), 'connection.mtls': 'true' }, 'MG_IDENTITY_MISSING', 401, 'no mTLS peer certificate'],
    ['mTLS without the peer certificate attribute', { 'connection.mtls': true, 'connection.uri_san_peer_certificate': CHECKOUT }, 'MG_IDENTITY_INVALID', 403, 'connection is mTLS but Envoy sent no connection.peer_certificate attribute'],
    ['mTLS with an empty peer certificate', { 'connection.mtls': true, 'connection.peer_certificate': '' }, 'MG_IDENTITY_INVALID', 403, 'connection is mTLS but Envoy sent no connection.peer_certificate attribute'],
    ['two URI SANs', mtls(twoUris, CHECKOUT), 'MG_IDENTITY_INVALID', 403, 'peer certificate has 2 URI SANs; an X.509-SVID has exactly one'],
    ['no URI SAN', mtls(dnsOnly), 'MG_IDENTITY_INVALID', 403, 'peer certificate has 0 URI SANs; an X.509-SVID has exactly one'],
    ['a non-SPIFFE URI SAN', mtls(nonSpiffe, 'https://example.org/checkout'), 'MG_IDENTITY_INVALID', 403, 'SPIFFE ID rejected: scheme is not spiffe://'],
    ['an invalid SPIFFE ID', mtls(badSpiffe), 'MG_IDENTITY_INVALID', 403, 'SPIFFE ID rejected: path has a dot segment'],
    ['a CA certificate', mtls(caCert, CHECKOUT), 'MG_IDENTITY_INVALID', 403, 'peer certificate is a CA certificate (cA=true)'],
    ['a CA certificate without key usage', mtls(caNoKeyUsage, CHECKOUT), 'MG_IDENTITY_INVALID', 403, 'peer certificate is a CA certificate (cA=true)'],
    ['a leaf with keyCertSign', mtls(keyCertSign, CHECKOUT), 'MG_IDENTITY_INVALID', 403, 'peer certificate key usage includes keyCertSign; an X.509-SVID leaf must not'],
    ['a leaf with cRLSign', mtls(crlSign, CHECKOUT), 'MG_IDENTITY_INVALID', 403, 'peer certificate key usage includes cRLSign; an X.509-SVID leaf must not'],
    ['a leaf without basic constraints', mtls(noBasicConstraints, CHECKOUT), 'MG_IDENTITY_INVALID', 403, 'peer certificate has no basic constraints extension; an X.509-SVID leaf must have one with cA=false'],
    ['an upper-case trust domain', mtls(upper), 'MG_IDENTITY_INVALID', 403, 'SPIFFE ID rejected: trust domain is not in lower case'],
    ['an upper-case scheme and trust domain', mtls(upperScheme), 'MG_IDENTITY_INVALID', 403, 'SPIFFE ID rejected: scheme is not in lower case (spiffe://)'],
    ['a foreign trust domain', mtls(foreign), 'MG_IDENTITY_UNTRUSTED', 403, 'trust domain other.example is not in identity.trustDomains'],
    ['a URI SAN attribute that disagrees with the certificate', mtls(checkout, `spiffe://${TD}/ns/payments/sa/admin`), 'MG_IDENTITY_INVALID', 403, 'URI SAN attribute disagrees with the peer certificate'],
    ['a certificate that does not parse', { 'connection.mtls': true, 'connection.peer_certificate': 'garbage' }, 'MG_IDENTITY_INVALID', 403, /^peer certificate does not parse: /],
  ]
  for (const [name, attrs, code, status, internal] of denials) {
    t.test(`${name} is denied with ${code}`, async (t) => {
      const ctx = ctxWith(attrs)
      const err = await run(stageWith(), ctx)
      t.ok(err, 'denied')
      t.equal(err?.code, code)
      t.equal(err?.status, status)
      if (typeof internal === 'string') t.equal(err?.internal, internal)
      else t.match(err?.internal, internal)
      t.equal(ctx.out.caller?.workload, undefined, 'no identity is set')
    })
  }

  t.test('a trust domain added to the allow-list is accepted', async (t) => {
    const ctx = ctxWith(mtls(foreign))
    t.equal(await run(stageWith({ trustDomains: [TD, 'other.example'] }), ctx), undefined)
    t.equal(ctx.out.caller?.workload?.trustDomain, 'other.example')
  })

  t.test('a cached certificate is checked against each request\'s URI SAN attribute', async (t) => {
    const stage = stageWith()
    const first = ctxWith(mtls(checkout, CHECKOUT))
    t.equal(await run(stage, first), undefined, 'the first request agrees and is allowed')
    const second = ctxWith(mtls(checkout, `spiffe://${TD}/ns/payments/sa/admin`))
    t.equal((await run(stage, second))?.code, 'MG_IDENTITY_INVALID', 'a later disagreeing attribute is still denied')
    const third = ctxWith(mtls(checkout, CHECKOUT))
    t.equal(await run(stage, third), undefined, 'an agreeing request after a denied one is allowed')
  })

  t.test('the same certificate resolves to the same identity on repeated requests', async (t) => {
    const stage = stageWith()
    const a = ctxWith(mtls(checkout, CHECKOUT))
    const b = ctxWith(mtls(checkout, CHECKOUT))
    await run(stage, a)
    await run(stage, b)
    t.same(a.out.caller?.workload, b.out.caller?.workload)
  })

  t.test('mTLS wins over an XFCC header even when XFCC is trusted', async (t) => {
    const ctx = ctxWith(mtls(checkout, CHECKOUT), { 'x-forwarded-client-cert': `URI=spiffe://${TD}/ns/admin/sa/root` })
    t.equal(await run(stageWith({ trustXfcc: true }), ctx), undefined)
    t.equal(ctx.out.caller?.workload?.spiffeId, CHECKOUT)
    t.equal(ctx.out.caller?.workload?.source, 'mtls')
  })
})

t.test('identity from a sanitised x-forwarded-client-cert', async (t) => {
  const xfcc = (header: string) => ctxWith({}, { 'x-forwarded-client-cert': header })

  t.test('is ignored unless trustXfcc is set', async (t) => {
    const ctx = xfcc(`Hash=${HASH};URI=${CHECKOUT}`)
    const err = await run(stageWith(), ctx)
    t.equal(err?.code, 'MG_IDENTITY_MISSING')
    t.equal(err?.internal, 'no mTLS peer certificate')
    t.equal(ctx.out.caller?.workload, undefined)
  })

  t.test('gives the identity, with the certificate hash, when trusted', async (t) => {
    const ctx = xfcc(`By=spiffe://${TD}/ns/mesh/sa/envoy;Hash=${HASH.toUpperCase()};URI=${CHECKOUT}`)
    t.equal(await run(stageWith({ trustXfcc: true }), ctx), undefined)
    t.same(ctx.out.caller?.workload, {
      spiffeId: CHECKOUT,
      trustDomain: TD,
      path: '/ns/payments/sa/checkout',
      namespace: 'payments',
      serviceAccount: 'checkout',
      source: 'xfcc',
      certificateSha256: HASH,
    })
  })

  t.test('drops a Hash that is not a SHA-256 hex digest', async (t) => {
    const ctx = xfcc(`Hash=not-a-hash;URI=${CHECKOUT}`)
    t.equal(await run(stageWith({ trustXfcc: true }), ctx), undefined)
    t.equal(ctx.out.caller?.workload?.certificateSha256, undefined)
  })

  t.test('only the last element counts', async (t) => {
    const forgedFirst = xfcc(`URI=spiffe://evil.example/ns/x/sa/y,Hash=${HASH};URI=${CHECKOUT}`)
    t.equal(await run(stageWith({ trustXfcc: true }), forgedFirst), undefined)
    t.equal(forgedFirst.out.caller?.workload?.spiffeId, CHECKOUT)
    const foreignLast = xfcc(`URI=${CHECKOUT},URI=spiffe://evil.example/ns/x/sa/y`)
    t.equal((await run(stageWith({ trustXfcc: true }), foreignLast))?.code, 'MG_IDENTITY_UNTRUSTED')
  })

  const denials: [name: string, header: string, code: string, internal: string][] = [
    ['two URI pairs in the last element', `URI=${CHECKOUT};URI=spiffe://${TD}/b`, 'MG_IDENTITY_INVALID', 'x-forwarded-client-cert has 2 URI SANs; expected exactly one'],
    ['no URI pair', `Hash=${HASH}`, 'MG_IDENTITY_INVALID', 'x-forwarded-client-cert has 0 URI SANs; expected exactly one'],
    ['a malformed header', 'Subject="unterminated;URI=spiffe://example.org/a', 'MG_IDENTITY_INVALID', 'x-forwarded-client-cert: unterminated quoted value'],
    ['a non-SPIFFE URI', 'URI=https://example.org/a', 'MG_IDENTITY_INVALID', 'SPIFFE ID rejected: scheme is not spiffe://'],
    ['an empty URI', 'URI=', 'MG_IDENTITY_INVALID', 'SPIFFE ID rejected: empty'],
    ['a foreign trust domain', 'URI=spiffe://other.example/a', 'MG_IDENTITY_UNTRUSTED', 'trust domain other.example is not in identity.trustDomains'],
  ]
  for (const [name, header, code, internal] of denials) {
    t.test(`${name} is denied with ${code}`, async (t) => {
      const err = await run(stageWith({ trustXfcc: true }), xfcc(header))
      t.equal(err?.code, code)
      t.equal(err?.internal, internal)
    })
  }

  t.test('a missing header with trustXfcc set is MG_IDENTITY_MISSING naming both sources', async (t) => {
    const err = await run(stageWith({ trustXfcc: true }), ctxWith())
    t.equal(err?.code, 'MG_IDENTITY_MISSING')
    t.equal(err?.internal, 'no mTLS peer certificate and no x-forwarded-client-cert')
  })
})

t.test('client-supplied identity headers are removed before the request goes upstream', async (t) => {
  const forged = {
    'x-forwarded-client-cert': `URI=${CHECKOUT}`,
    'x-spiffe-id': CHECKOUT,
    'x-client-spiffe-id': CHECKOUT,
    'x-modelgate-identity': 'admin',
    'x-modelgate-principal': 'admin',
    'x-ssl-client-cert': 'pem',
    'x-client-cert': 'pem',
    'content-type': 'application/json',
  }

  t.test('every default strip header present is removed, others are left alone', async (t) => {
    const ctx = ctxWith({}, forged)
    await run(stageWith({ trustXfcc: true }), ctx)
    t.same(
      [...ctx.requestHeaderChanges.remove].sort(),
      ['x-client-cert', 'x-client-spiffe-id', 'x-forwarded-client-cert', 'x-modelgate-identity', 'x-modelgate-principal', 'x-spiffe-id', 'x-ssl-client-cert'],
    )
    t.same([...ctx.requestHeaderChanges.set], [])
  })

  t.test('headers are removed even when the request is denied', async (t) => {
    const ctx = ctxWith({}, { 'x-spiffe-id': CHECKOUT })
    t.equal((await run(stageWith(), ctx))?.code, 'MG_IDENTITY_MISSING')
    t.same([...ctx.requestHeaderChanges.remove], ['x-spiffe-id'])
  })

  t.test('absent headers are not listed', async (t) => {
    const ctx = ctxWith({}, { 'content-type': 'application/json' })
    await run(stageWith(), ctx)
    t.same([...ctx.requestHeaderChanges.remove], [])
  })

  t.test('a configured stripHeaders list replaces the default', async (t) => {
    const ctx = ctxWith({}, { ...forged, 'x-tenant': 'a' })
    await run(stageWith({ stripHeaders: ['x-tenant'] }), ctx)
    t.same([...ctx.requestHeaderChanges.remove], ['x-tenant'])
  })
})

t.test('delegated users from signed tokens', async (t) => {
  const dir = t.testdir()
  const ca = await createCa(dir, 'ca')
  const checkout = readFileSync((await issueCertificate(dir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8')
  const ISSUER = 'https://idp.example.org'
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const other = await generateKeyPair('ES256')
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }))

  const usersConfig = (over: Record<string, unknown> = {}) =>
    identityConfig({ users: { enabled: true, jwksFile: 'jwks.json', issuer: ISSUER, ...over } }).users
  const verifier = (over: Record<string, unknown> = {}) => createUserVerifier(usersConfig(over), (p) => join(dir, p))

  const now = Math.floor(Date.now() / 1000)
  const sign = (claims: Record<string, unknown>, opts: { key?: typeof privateKey; kid?: string; iss?: string; aud?: string; exp?: number | null; sub?: string | null } = {}) => {
    let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? 'k1' }).setIssuedAt(now)
    if (opts.iss !== undefined ? opts.iss !== '' : true) jwt = jwt.setIssuer(opts.iss ?? ISSUER)
    jwt = jwt.setAudience(opts.aud ?? 'modelgate')
    if (opts.sub !== null) jwt = jwt.setSubject(opts.sub ?? 'alice')
    if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? now + 300)
    return jwt.sign(opts.key ?? privateKey)
  }
  const request = (token?: string) => ctxWith(mtls(checkout, CHECKOUT), token === undefined ? {} : { 'x-modelgate-user-token': token })

  t.test('a valid token names the delegated user in the caller output', async (t) => {
    const users = verifier()
    const ctx = request(await sign({ email: 'alice@example.org', groups: ['ml', 'payments'] }))
    t.equal(await run(stageWith({}, users), ctx), undefined)
    t.same(ctx.out.caller?.user, { subject: 'alice', issuer: ISSUER, email: 'alice@example.org', groups: ['ml', 'payments'] })
    t.equal(ctx.out.caller?.workload?.spiffeId, CHECKOUT, 'the workload identity is still established')
    t.ok(ctx.requestHeaderChanges.remove.has('x-modelgate-user-token'), 'the token header is not forwarded upstream')
  })

  t.test('a Bearer prefix is accepted', async (t) => {
    const ctx = request('Bearer ' + (await sign({})))
    t.equal(await run(stageWith({}, verifier()), ctx), undefined)
    t.same(ctx.out.caller?.user, { subject: 'alice', issuer: ISSUER, email: undefined, groups: [] })
  })

  t.test('groups come from the configured claim and are capped at 64', async (t) => {
    const many = Array.from({ length: 100 }, (_, i) => `g${i}`)
    const ctx = request(await sign({ roles: many, groups: ['ignored'] }))
    t.equal(await run(stageWith({}, verifier({ groupsClaim: 'roles' })), ctx), undefined)
    t.equal(ctx.out.caller?.user?.groups.length, 64)
    t.equal(ctx.out.caller?.user?.groups[0], 'g0')
  })

  const rejected: [name: string, token: () => Promise<string> | string, why: string][] = [
    ['an expired token', () => sign({}, { exp: now - 3600 }), 'ERR_JWT_EXPIRED'],
    ['a wrong issuer', () => sign({}, { iss: 'https://evil.example' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['a wrong audience', () => sign({}, { aud: 'someone-else' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['no exp claim', () => sign({}, { exp: null }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['no sub claim', () => sign({}, { sub: null }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
    ['a key the JWKS does not have', () => sign({}, { key: other.privateKey, kid: 'k2' }), 'ERR_JWKS_NO_MATCHING_KEY'],
    ['another key under the trusted kid', () => sign({}, { key: other.privateKey }), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
    ['garbage', () => 'not.a.jwt', 'ERR_JWS_INVALID'],
    ['a sub that is an object', () => sign({ sub: { id: 'alice' } }, { sub: null }), 'claim "sub" is not a non-empty string (object)'],
    ['a sub that is a number', () => sign({ sub: 42 }, { sub: null }), 'claim "sub" is not a non-empty string (number)'],
    ['a sub that is an array', () => sign({ sub: ['alice'] }, { sub: null }), 'claim "sub" is not a non-empty string (array)'],
    ['an empty sub', () => sign({}, { sub: '' }), 'claim "sub" is not a non-empty string (string)'],
    ['an email that is not a string', () => sign({ email: { address: 'alice@example.org' } }), 'claim "email" is not a string (object)'],
    ['groups that are not an array', () => sign({ groups: 'payments' }), 'claim "groups" is not an array of strings (string)'],
    ['a group that is not a string', () => sign({ groups: ['ml', 42, 'payments'] }), 'claim "groups" item 1 is not a string (number)'],
    ['a group that is an object', () => sign({ groups: ['ml', { name: 'contractors' }] }), 'claim "groups" item 1 is not a string (object)'],
    ['an unsigned token', () => `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(`{"sub":"alice","iss":"${ISSUER}","aud":"modelgate","exp":${now + 300}}`).toString('base64url')}.`, 'ERR_JOSE_ALG_NOT_ALLOWED'],
  ]
  for (const [name, token, why] of rejected) {
    t.test(`${name} is denied with MG_USER_TOKEN_INVALID`, async (t) => {
      const ctx = request(await token())
      const err = await run(stageWith({}, verifier()), ctx)
      t.equal(err?.code, 'MG_USER_TOKEN_INVALID')
      t.equal(err?.status, 401)
      t.equal(err?.internal, `user token rejected: ${why}`)
      t.equal(ctx.out.caller?.user, undefined)
    })
  }

  t.test('a token within the clock tolerance is accepted', async (t) => {
    const ctx = request(await sign({}, { exp: now - 5 }))
    t.equal(await run(stageWith({}, verifier()), ctx), undefined)
  })

  t.test('a required token that is missing is denied', async (t) => {
    const err = await run(stageWith({}, verifier({ required: true })), request())
    t.equal(err?.code, 'MG_USER_TOKEN_INVALID')
    t.equal(err?.internal, 'no x-modelgate-user-token header')
  })

  t.test('an optional token may be absent', async (t) => {
    const ctx = request()
    t.equal(await run(stageWith({}, verifier()), ctx), undefined)
    t.equal(ctx.out.caller?.user, undefined)
  })

  t.test('the workload identity is checked before the user token', async (t) => {
    const ctx = ctxWith({}, { 'x-modelgate-user-token': await sign({}) })
    t.equal((await run(stageWith({}, verifier()), ctx))?.code, 'MG_IDENTITY_MISSING')
    t.equal(ctx.out.caller?.user, undefined)
  })

  t.test('a custom header name is read and stripped', async (t) => {
    const users = verifier({ header: 'x-user-jwt' })
    const ctx = ctxWith(mtls(checkout, CHECKOUT), { 'x-user-jwt': await sign({}) })
    t.equal(await run(stageWith({}, users), ctx), undefined)
    t.equal(ctx.out.caller?.user?.subject, 'alice')
    t.ok(ctx.requestHeaderChanges.remove.has('x-user-jwt'))
  })

  t.test('createUserVerifier refuses incomplete or unreadable configuration', async (t) => {
    t.throws(() => createUserVerifier(usersConfig({ jwksFile: '' }), (p) => p), { message: 'identity.users.jwksFile is required when identity.users.enabled is true' })
    t.throws(() => createUserVerifier(usersConfig({ issuer: '' }), (p) => p), { message: 'identity.users.issuer is required when identity.users.enabled is true' })
    const missing = join(dir, 'missing.json')
    t.throws(() => createUserVerifier(usersConfig({ jwksFile: 'missing.json' }), (p) => join(dir, p)), { message: new RegExp(`^identity\\.users\\.jwksFile ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`) })
    writeFileSync(join(dir, 'bad.json'), '{ not json')
    t.throws(() => createUserVerifier(usersConfig({ jwksFile: 'bad.json' }), (p) => join(dir, p)), { message: /^identity\.users\.jwksFile .*bad\.json: / })
    writeFileSync(join(dir, 'nokeys.json'), '{"keys": 1}')
    t.throws(() => createUserVerifier(usersConfig({ jwksFile: 'nokeys.json' }), (p) => join(dir, p)), { message: /^identity\.users\.jwksFile .*nokeys\.json: / })
  })
})
