import { createHash, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { createCa, issueCertificate } from '../../../src/dev/pki.ts'
import { leafProblem, readPeerCertificate, splitSubjectAltName } from '../../../src/identity/certificate.ts'

t.test('splitSubjectAltName reads the entries of Node\'s subjectAltName string', async (t) => {
  const cases: [name: string, input: string, expected: { type: string; value: string }[] | undefined][] = [
    ['an empty string', '', []],
    ['one URI', 'URI:spiffe://td/a', [{ type: 'URI', value: 'spiffe://td/a' }]],
    [
      'mixed entries',
      'DNS:localhost, IP Address:127.0.0.1, URI:spiffe://td/a, email:a@b.c',
      [
        { type: 'DNS', value: 'localhost' },
        { type: 'IP Address', value: '127.0.0.1' },
        { type: 'URI', value: 'spiffe://td/a' },
        { type: 'email', value: 'a@b.c' },
      ],
    ],
    [
      'two URIs',
      'URI:spiffe://td/a, URI:spiffe://td/b',
      [
        { type: 'URI', value: 'spiffe://td/a' },
        { type: 'URI', value: 'spiffe://td/b' },
      ],
    ],
    ['a JSON-quoted value containing the separator', 'URI:"spiffe://td/a, URI:spiffe://td/b"', [{ type: 'URI', value: 'spiffe://td/a, URI:spiffe://td/b' }]],
    ['a JSON-quoted value with escapes', 'URI:"a\\"b\\u002cc", DNS:x', [{ type: 'URI', value: 'a"b,c' }, { type: 'DNS', value: 'x' }]],
    ['a quoted DirName', 'DirName:"CN=a,O=b"', [{ type: 'DirName', value: 'CN=a,O=b' }]],
    ['an empty value', 'URI:', [{ type: 'URI', value: '' }]],
    ['no colon', 'garbage', undefined],
    ['an unterminated quoted value', 'URI:"spiffe://td/a', undefined],
    ['text after a quoted value', 'URI:"a"b', undefined],
    ['a bad JSON escape', 'URI:"\\x41"', undefined],
    ['a separator without a space', 'URI:"a",URI:b', undefined],
  ]
  for (const [name, input, expected] of cases) t.same(splitSubjectAltName(input), expected, name)
})

t.test('readPeerCertificate on certificates from the development PKI', async (t) => {
  const dir = t.testdir()
  const ca = await createCa(dir, 'ca')
  const one = await issueCertificate(dir, ca, { name: 'one', uris: ['spiffe://example.org/ns/payments/sa/checkout'], dns: ['checkout.local'] })
  const two = await issueCertificate(dir, ca, { name: 'two', uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] })
  const https = await issueCertificate(dir, ca, { name: 'https', uris: ['https://example.org/a'] })
  const dnsOnly = await issueCertificate(dir, ca, { name: 'dns', dns: ['svc.local'] })
  const caLike = await issueCertificate(dir, ca, { name: 'ca-like', uris: ['spiffe://example.org/a'], isCA: true })
  const pem = (p: { cert: string }) => readFileSync(p.cert, 'utf8')

  t.test('a leaf with one URI SAN, URL-encoded the way Envoy forwards it', async (t) => {
    const text = pem(one)
    const r = readPeerCertificate(encodeURIComponent(text))
    t.equal(r.ok, true)
    if (!r.ok) return
    t.same(r.value.uris, ['spiffe://example.org/ns/payments/sa/checkout'])
    t.equal(r.value.isCA, false)
    const der = new X509Certificate(text).raw
    t.equal(r.value.sha256, createHash('sha256').update(der).digest('hex'), 'sha256 is the hex digest of the DER certificate')
    t.match(r.value.sha256, /^[0-9a-f]{64}$/)
    t.ok(r.value.notAfter instanceof Date && !Number.isNaN(r.value.notAfter.getTime()))
    t.ok(r.value.notAfter.getTime() > Date.now())
  })

  t.test('a plain (not URL-encoded) PEM reads the same', async (t) => {
    const a = readPeerCertificate(pem(one))
    const b = readPeerCertificate(encodeURIComponent(pem(one)))
    t.same(a, b)
  })

  t.test('every URI SAN is listed, in order', async (t) => {
    const r = readPeerCertificate(encodeURIComponent(pem(two)))
    t.same(r.ok && r.value.uris, ['spiffe://example.org/a', 'spiffe://example.org/b'])
  })

  t.test('a non-SPIFFE URI SAN is listed as it is (the identity stage rejects it)', async (t) => {
    const r = readPeerCertificate(encodeURIComponent(pem(https)))
    t.same(r.ok && r.value.uris, ['https://example.org/a'])
  })

  t.test('a certificate without URI SANs yields an empty list', async (t) => {
    const r = readPeerCertificate(encodeURIComponent(pem(dnsOnly)))
    t.same(r.ok && r.value.uris, [])
  })

  t.test('a CA certificate is reported as one', async (t) => {
    const r = readPeerCertificate(encodeURIComponent(pem(caLike)))
    t.equal(r.ok && r.value.isCA, true)
    const root = readPeerCertificate(pem(ca))
    t.equal(root.ok && root.value.isCA, true)
  })
})

t.test('the extensions an X.509-SVID leaf is judged by are read, and leafProblem says what is wrong', async (t) => {
  const dir = t.testdir()
  const ca = await createCa(dir, 'ca')
  const uris = ['spiffe://example.org/a']
  const cases: [name: string, extensions: string[] | undefined, bc: { ca: boolean } | undefined, usage: string[] | undefined, problem: string | undefined][] = [
    ['a proper leaf', undefined, { ca: false }, ['digitalSignature', 'keyEncipherment'], undefined],
    ['a leaf with keyAgreement', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyAgreement'], { ca: false }, ['digitalSignature', 'keyAgreement'], undefined],
    ['keyCertSign', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign'], { ca: false }, ['digitalSignature', 'keyCertSign'], 'peer certificate key usage includes keyCertSign; an X.509-SVID leaf must not'],
    ['cRLSign', ['basicConstraints=CA:FALSE', 'keyUsage=digitalSignature,cRLSign'], { ca: false }, ['digitalSignature', 'cRLSign'], 'peer certificate key usage includes cRLSign; an X.509-SVID leaf must not'],
    ['both', ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,keyCertSign,cRLSign'], { ca: false }, ['keyCertSign', 'cRLSign'], 'peer certificate key usage includes keyCertSign and cRLSign; an X.509-SVID leaf must not'],
    ['no basic constraints', ['keyUsage=critical,digitalSignature'], undefined, ['digitalSignature'], 'peer certificate has no basic constraints extension; an X.509-SVID leaf must have one with cA=false'],
    ['cA=true', ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,digitalSignature'], { ca: true }, ['digitalSignature'], 'peer certificate is a CA certificate (cA=true)'],
    ['no extensions at all', [], undefined, undefined, 'peer certificate has no basic constraints extension; an X.509-SVID leaf must have one with cA=false'],
  ]
  for (const [i, [name, extensions, bc, usage, problem]] of cases.entries()) {
    const pair = await issueCertificate(dir, ca, { name: `leaf-${i}`, uris, ...(extensions ? { extensions } : {}) })
    const r = readPeerCertificate(readFileSync(pair.cert, 'utf8'))
    t.equal(r.ok, true, `${name}: parses`)
    if (!r.ok) continue
    t.same(r.value.basicConstraints, bc, `${name}: basic constraints`)
    t.same(r.value.keyUsage, usage, `${name}: key usage`)
    t.equal(leafProblem(r.value), problem, `${name}: ${problem ?? 'a leaf'}`)
  }
})

t.test('readPeerCertificate reports unreadable input as a reason, never throws', async (t) => {
  const cases: [name: string, input: string, reason: RegExp][] = [
    ['broken URL-encoding', '-----BEGIN%20CERTIFICATE-----%E0%A4%A', /^peer certificate is not valid URL-encoding$/],
    ['a lone percent sign', '%', /^peer certificate is not valid URL-encoding$/],
    ['garbage', 'not a certificate', /^peer certificate does not parse: /],
    ['an empty string', '', /^peer certificate does not parse: /],
    ['a PEM with a corrupted body', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', /^peer certificate does not parse: /],
    ['a private key instead of a certificate', '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n', /^peer certificate does not parse: /],
    ['NUL bytes', '\u0000'.repeat(64), /^peer certificate does not parse: /],
  ]
  for (const [name, input, reason] of cases) {
    const r = readPeerCertificate(input)
    t.equal(r.ok, false, name)
    if (!r.ok) t.match(r.reason, reason, name)
  }
})
