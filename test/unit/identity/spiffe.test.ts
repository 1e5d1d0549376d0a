import t from 'tap'
import { kubernetesParts, MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES, parseSpiffeId } from '../../../src/identity/spiffe.ts'

t.test('valid SPIFFE IDs parse into trust domain, path and segments', async (t) => {
  const cases: { name: string; input: string; id: string; trustDomain: string; path: string; segments: string[] }[] = [
    {
      name: 'the Kubernetes form',
      input: 'spiffe://example.org/ns/payments/sa/checkout',
      id: 'spiffe://example.org/ns/payments/sa/checkout',
      trustDomain: 'example.org',
      path: '/ns/payments/sa/checkout',
      segments: ['ns', 'payments', 'sa', 'checkout'],
    },
    { name: 'a one-segment path', input: 'spiffe://example.org/web', id: 'spiffe://example.org/web', trustDomain: 'example.org', path: '/web', segments: ['web'] },
    {
      name: 'every allowed character in segments',
      input: 'spiffe://td-1_x.y/A.b-C_9/..x/.hidden/x..',
      id: 'spiffe://td-1_x.y/A.b-C_9/..x/.hidden/x..',
      trustDomain: 'td-1_x.y',
      path: '/A.b-C_9/..x/.hidden/x..',
      segments: ['A.b-C_9', '..x', '.hidden', 'x..'],
    },
    { name: 'a trust-domain-only ID', input: 'spiffe://example.org', id: 'spiffe://example.org', trustDomain: 'example.org', path: '', segments: [] },
    { name: 'an upper-case path (the path is case-sensitive)', input: 'spiffe://example.org/NS/Payments', id: 'spiffe://example.org/NS/Payments', trustDomain: 'example.org', path: '/NS/Payments', segments: ['NS', 'Payments'] },
  ]
  for (const c of cases) {
    const r = parseSpiffeId(c.input)
    t.same(r, { ok: true, value: { id: c.id, trustDomain: c.trustDomain, path: c.path, segments: c.segments } }, c.name)
  }
})

t.test('IDs at the length limits are accepted', async (t) => {
  const td = 'a'.repeat(MAX_TRUST_DOMAIN_BYTES)
  const r1 = parseSpiffeId(`spiffe://${td}/x`)
  t.equal(r1.ok, true, 'a 255-byte trust domain')
  const prefix = 'spiffe://td/'
  const id = prefix + 'a'.repeat(MAX_SPIFFE_ID_BYTES - prefix.length)
  t.equal(Buffer.byteLength(id), 2048)
  t.equal(parseSpiffeId(id).ok, true, 'a 2048-byte ID')
})

t.test('invalid SPIFFE IDs are rejected with the reason', async (t) => {
  const cases: [name: string, input: string, reason: string][] = [
    ['empty string', '', 'empty'],
    ['another scheme', 'https://example.org/ns/a/sa/b', 'scheme is not spiffe://'],
    ['a scheme with one slash', 'spiffe:/example.org/a', 'scheme is not spiffe://'],
    ['no scheme', 'example.org/a', 'scheme is not spiffe://'],
    ['leading whitespace', ' spiffe://example.org/a', 'scheme is not spiffe://'],
    ['a scheme prefix only', 'spiffe:', 'scheme is not spiffe://'],
    ['an upper-case scheme and trust domain', 'SPIFFE://MODELGATE.LOCAL/ns/payments/sa/checkout', 'scheme is not in lower case (spiffe://)'],
    ['a mixed-case scheme', 'SpIfFe://td/x', 'scheme is not in lower case (spiffe://)'],
    ['an upper-case trust domain', 'spiffe://MODELGATE.LOCAL/ns/payments/sa/checkout', 'trust domain is not in lower case'],
    ['one upper-case letter in the trust domain', 'spiffe://Example.org/a', 'trust domain is not in lower case'],
    ['a query', 'spiffe://example.org/a?x=1', 'contains a query'],
    ['a query on the trust domain', 'spiffe://example.org?x', 'contains a query'],
    ['a fragment', 'spiffe://example.org/a#frag', 'contains a fragment'],
    ['percent-encoding in the path', 'spiffe://example.org/a%2Fb', 'contains a percent-encoding'],
    ['percent-encoding in the trust domain', 'spiffe://ex%61mple.org/a', 'contains a percent-encoding'],
    ['user info', 'spiffe://user@example.org/a', 'contains user info'],
    ['user info with password', 'spiffe://user:pw@example.org/a', 'contains user info'],
    ['a port', 'spiffe://example.org:8443/a', 'contains a port'],
    ['an empty trust domain', 'spiffe:///ns/a', 'trust domain is empty'],
    ['nothing after the scheme', 'spiffe://', 'trust domain is empty'],
    ['a space in the trust domain', 'spiffe://exa mple.org/a', 'trust domain has characters outside [a-z0-9._-]'],
    ['a plus in the trust domain', 'spiffe://a+b/a', 'trust domain has characters outside [a-z0-9._-]'],
    ['brackets (IPv6 literal) in the trust domain', 'spiffe://[::1]/a', 'contains a port'],
    ['unicode in the trust domain', 'spiffe://exämple.org/a', 'trust domain has characters outside [a-z0-9._-]'],
    ['a trust domain over 255 bytes', `spiffe://${'a'.repeat(256)}/a`, 'trust domain longer than 255 bytes'],
    ['an ID over 2048 bytes', `spiffe://td/${'a'.repeat(2048)}`, 'longer than 2048 bytes'],
    ['multi-byte characters counted in bytes', `spiffe://td/${'é'.repeat(1020)}`, 'longer than 2048 bytes'],
    ['an empty segment', 'spiffe://example.org/ns//sa/b', 'path has an empty segment'],
    ['a double slash after the trust domain', 'spiffe://example.org//a', 'path has an empty segment'],
    ['a dot segment', 'spiffe://example.org/ns/./b', 'path has a dot segment'],
    ['a dot-dot segment', 'spiffe://example.org/ns/../b', 'path has a dot segment'],
    ['a final dot segment', 'spiffe://example.org/a/.', 'path has a dot segment'],
    ['a trailing slash', 'spiffe://example.org/ns/a/', 'path has a trailing slash'],
    ['a lone slash path', 'spiffe://example.org/', 'path has a trailing slash'],
    ['a space in a segment', 'spiffe://example.org/ns/a b', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a colon in a segment', 'spiffe://example.org/a:b', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['an at sign in a segment', 'spiffe://example.org/a@b', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a backslash in a segment', 'spiffe://example.org/a\\b', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['unicode in a segment', 'spiffe://example.org/ns/zürich', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a look-alike Cyrillic letter', 'spiffe://example.org/ns/\u0430dmin', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a NUL byte in a segment', 'spiffe://example.org/ns/a\u0000', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a NUL byte in the trust domain', 'spiffe://example.org\u0000.evil/a', 'trust domain has characters outside [a-z0-9._-]'],
    ['a newline in a segment', 'spiffe://example.org/a\nb', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a carriage return in the trust domain', 'spiffe://example.org\r/a', 'trust domain has characters outside [a-z0-9._-]'],
    ['a tab in a segment', 'spiffe://example.org/a\tb', 'path segment has characters outside [A-Za-z0-9._-]'],
    ['a DEL character', 'spiffe://example.org/a\u007f', 'path segment has characters outside [A-Za-z0-9._-]'],
  ]
  for (const [name, input, reason] of cases) {
    t.same(parseSpiffeId(input), { ok: false, reason }, name)
  }
})

t.test('non-string inputs are rejected as empty, never thrown on', async (t) => {
  for (const v of [undefined, null, 42, {}, ['spiffe://td/a']]) {
    t.same(parseSpiffeId(v as unknown as string), { ok: false, reason: 'empty' }, `input ${JSON.stringify(v)}`)
  }
})

t.test('huge hostile inputs are rejected on length without scanning them', async (t) => {
  const huge = 'spiffe://example.org/' + 'a/'.repeat(5_000_000)
  t.same(parseSpiffeId(huge), { ok: false, reason: 'longer than 2048 bytes' })
  const manySegments = 'spiffe://example.org' + '/a'.repeat(1000)
  const r = parseSpiffeId(manySegments)
  t.equal(r.ok, true, '1000 short segments within 2048 bytes are fine')
  if (r.ok) t.equal(r.value.segments.length, 1000)
})

t.test('the path is case-sensitive; the trust domain has one spelling, in lower case', async (t) => {
  const a = parseSpiffeId('spiffe://example.org/ns/Prod/sa/Api')
  const b = parseSpiffeId('spiffe://example.org/ns/prod/sa/api')
  t.ok(a.ok && b.ok)
  if (a.ok && b.ok) {
    t.equal(a.value.trustDomain, b.value.trustDomain)
    t.not(a.value.id, b.value.id)
  }
  t.same(parseSpiffeId('spiffe://EXAMPLE.org/ns/prod/sa/api'), { ok: false, reason: 'trust domain is not in lower case' }, 'no second spelling of the same ID')
})

t.test('kubernetesParts reads /ns/<namespace>/sa/<service-account> and nothing else', async (t) => {
  const cases: [name: string, segments: string[], expected: { namespace: string; serviceAccount: string } | undefined][] = [
    ['the convention', ['ns', 'payments', 'sa', 'checkout'], { namespace: 'payments', serviceAccount: 'checkout' }],
    ['a trust-domain-only ID', [], undefined],
    ['too short', ['ns', 'payments', 'sa'], undefined],
    ['too long', ['ns', 'payments', 'sa', 'checkout', 'extra'], undefined],
    ['wrong first keyword', ['namespace', 'payments', 'sa', 'checkout'], undefined],
    ['wrong third keyword', ['ns', 'payments', 'serviceaccount', 'checkout'], undefined],
    ['keywords are case-sensitive', ['NS', 'payments', 'SA', 'checkout'], undefined],
    ['swapped order', ['sa', 'checkout', 'ns', 'payments'], undefined],
  ]
  for (const [name, segments, expected] of cases) t.same(kubernetesParts(segments), expected, name)
})
