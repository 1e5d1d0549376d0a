import t from 'tap'
import { parseXfcc, type XfccElement } from '../../../src/identity/xfcc.ts'

const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688'

/** Elements as plain objects, for comparison. */
function plain(elements: readonly XfccElement[]): Record<string, string[]>[] {
  return elements.map((e) => Object.fromEntries([...e].map(([k, v]) => [k, [...v]])))
}

t.test('well-formed headers parse into elements of lower-case keys and ordered values', async (t) => {
  const cases: [name: string, header: string, expected: Record<string, string[]>[]][] = [
    [
      "Envoy's SANITIZE_SET output with URI",
      `By=spiffe://modelgate.local/ns/mesh/sa/envoy;Hash=${HASH};URI=spiffe://modelgate.local/ns/payments/sa/checkout`,
      [{ by: ['spiffe://modelgate.local/ns/mesh/sa/envoy'], hash: [HASH], uri: ['spiffe://modelgate.local/ns/payments/sa/checkout'] }],
    ],
    [
      'only Hash and URI (no By when the server certificate has no URI SAN)',
      `Hash=${HASH};URI=spiffe://td/a`,
      [{ hash: [HASH], uri: ['spiffe://td/a'] }],
    ],
    [
      "the Envoy documentation's example with a quoted Subject",
      `By=http://frontend.lyft.com;Hash=${HASH};Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
      [{ by: ['http://frontend.lyft.com'], hash: [HASH], subject: ['/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client'], uri: ['http://testclient.lyft.com'] }],
    ],
    [
      'two elements (a proxy chain with APPEND_FORWARD)',
      'By=spiffe://td/b1;URI=spiffe://td/first,By=spiffe://td/b2;URI=spiffe://td/second',
      [
        { by: ['spiffe://td/b1'], uri: ['spiffe://td/first'] },
        { by: ['spiffe://td/b2'], uri: ['spiffe://td/second'] },
      ],
    ],
    [
      'a quoted value with escaped quotes',
      'Subject="CN=a \\"quoted\\" name";URI=spiffe://td/a',
      [{ subject: ['CN=a "quoted" name'], uri: ['spiffe://td/a'] }],
    ],
    [
      'an escaped backslash inside quotes',
      'Subject="C:\\\\dir";URI=spiffe://td/a',
      [{ subject: ['C:\\dir'], uri: ['spiffe://td/a'] }],
    ],
    [
      'commas and semicolons inside quotes stay in the value',
      'Subject="CN=x,OU=a;b,O=c";URI=spiffe://td/a',
      [{ subject: ['CN=x,OU=a;b,O=c'], uri: ['spiffe://td/a'] }],
    ],
    [
      'a quoted URL-encoded Cert',
      'Cert="-----BEGIN%20CERTIFICATE-----%0AMIIB%2B%0A-----END%20CERTIFICATE-----%0A";URI=spiffe://td/a',
      [{ cert: ['-----BEGIN%20CERTIFICATE-----%0AMIIB%2B%0A-----END%20CERTIFICATE-----%0A'], uri: ['spiffe://td/a'] }],
    ],
    [
      'several URI= pairs, one per URI SAN',
      'Hash=abc;URI=spiffe://td/one;URI=spiffe://td/two',
      [{ hash: ['abc'], uri: ['spiffe://td/one', 'spiffe://td/two'] }],
    ],
    [
      'case-insensitive keys',
      'BY=x;hAsH=y;uri=spiffe://td/a;URI=spiffe://td/b',
      [{ by: ['x'], hash: ['y'], uri: ['spiffe://td/a', 'spiffe://td/b'] }],
    ],
    [
      'spaces around separators',
      ' By=a ; URI=spiffe://td/a , By=b;URI=spiffe://td/b ',
      [
        { by: ['a'], uri: ['spiffe://td/a'] },
        { by: ['b'], uri: ['spiffe://td/b'] },
      ],
    ],
    ['an empty unquoted value', 'URI=;By=x', [{ uri: [''], by: ['x'] }]],
    ['an empty quoted value', 'Subject="";URI=spiffe://td/a', [{ subject: [''], uri: ['spiffe://td/a'] }]],
    ['a DNS SAN key', 'DNS=svc.local;DNS=other.local', [{ dns: ['svc.local', 'other.local'] }]],
  ]
  for (const [name, header, expected] of cases) {
    const r = parseXfcc(header)
    t.equal(r.ok, true, `${name}: parses`)
    if (r.ok) t.same(plain(r.elements), expected, name)
  }
})

t.test('malformed headers are errors with a clear reason', async (t) => {
  const cases: [name: string, header: string, reason: string][] = [
    ['an empty header', '', 'empty header'],
    ['an over-long header', 'URI=' + 'a'.repeat(64 * 1024), 'header too long'],
    ['an unterminated quote', 'Subject="CN=a;URI=spiffe://td/a', 'unterminated quoted value'],
    ['a dangling escape at the end', 'Subject="CN=a\\', 'dangling escape'],
    ['a key without "="', 'URI', 'pair without "=" at offset 0'],
    ['a second pair without "="', 'By=a;URI', 'pair without "=" at offset 5'],
    ['a trailing semicolon', 'By=a;', 'trailing separator'],
    ['a trailing comma', 'By=a,', 'trailing separator'],
    ['a trailing separator with spaces', 'By=a ;  ', 'trailing separator'],
    ['a key starting with a digit', '1By=a', 'invalid key at offset 0'],
    ['an empty key', '=a', 'invalid key at offset 0'],
    ['a key with a space inside', 'U RI=spiffe://td/a', 'invalid key at offset 0'],
    ['two semicolons in a row', 'By=a;;URI=b', 'invalid key at offset 5'],
    ['two commas in a row', 'By=a,,URI=b', 'invalid key at offset 5'],
    ['a quote inside an unquoted value', 'By=a"b;URI=c', 'unexpected quote at offset 4'],
    ['text after a closing quote', 'Subject="a"b;URI=c', 'unexpected character at offset 11'],
    ['a value continuing after a closing quote and space', 'Subject="a" b', 'unexpected character at offset 12'],
    ['a key holding a separator', 'By;URI=x', 'invalid key at offset 0'],
  ]
  for (const [name, header, reason] of cases) t.same(parseXfcc(header), { ok: false, reason }, name)
})

t.test('a header of exactly the size limit is still parsed', async (t) => {
  const header = 'URI=' + 'a'.repeat(64 * 1024 - 4)
  t.equal(header.length, 64 * 1024)
  const r = parseXfcc(header)
  t.equal(r.ok, true)
})

t.test('control characters and NUL bytes are kept in values for the SPIFFE parser to reject', async (t) => {
  const r = parseXfcc('URI=spiffe://td/a\u0000b;By=x\u0001')
  t.equal(r.ok, true)
  if (r.ok) t.same(plain(r.elements), [{ uri: ['spiffe://td/a\u0000b'], by: ['x\u0001'] }])
})

t.test('random and adversarial input never throws', async (t) => {
  // A small deterministic PRNG so failures reproduce.
  let seed = 0x9e3779b9
  const rand = () => {
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    return (seed >>> 0) / 0x100000000
  }
  const alphabet = ['=', ';', ',', '"', '\\', ' ', 'U', 'R', 'I', 'By', 'x', '\u0000', '\n', 'é', 'spiffe://td/a']
  let ok = 0
  let failed = 0
  for (let i = 0; i < 3000; i++) {
    const len = Math.floor(rand() * 40)
    let s = ''
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(rand() * alphabet.length)]
    const r = parseXfcc(s)
    if (r.ok) {
      ok++
      if (r.elements.length === 0) t.fail(`an ok result without elements for ${JSON.stringify(s)}`)
    } else {
      failed++
      if (typeof r.reason !== 'string' || r.reason === '') t.fail(`no reason for ${JSON.stringify(s)}`)
    }
  }
  t.equal(ok + failed, 3000)
  t.ok(failed > 0, 'some inputs are rejected')
})

t.test('many pairs and elements up to the size limit parse without trouble', async (t) => {
  const element = 'By=spiffe://td/b;URI=spiffe://td/a'
  const header = Array.from({ length: 1800 }, () => element).join(',')
  t.ok(header.length < 64 * 1024)
  const r = parseXfcc(header)
  t.equal(r.ok, true)
  if (r.ok) t.equal(r.elements.length, 1800)
  const longQuoted = 'Subject="' + '\\"'.repeat(30_000) + '"'
  const q = parseXfcc(longQuoted)
  t.equal(q.ok, true)
  if (q.ok) t.equal(q.elements[0]!.get('subject')![0]!.length, 30_000)
})
