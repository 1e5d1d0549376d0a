import t from 'tap'
import fc from 'fast-check'
import { ConfigError } from '../../../src/config/config.ts'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { Scanner } from '../../../src/redaction/scanner.ts'
import { BUILTIN_DETECTORS } from '../../../src/redaction/catalog.ts'

const engine = compileRedaction(redactionConfigFrom({}))
const scan = (text: string) => engine.scanner.scan(text).map((d) => [d.detector, text.slice(d.start, d.end)])

t.test('finds tokens whatever surrounds them, and only the value of key=value assignments', async (t) => {
  t.same(scan('x=ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2,ghp_Aq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue3'), [
    ['github-pat', 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'],
    ['github-pat', 'ghp_Aq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue3'],
  ])
  t.same(scan('DB_PASSWORD="Tr0ub4dor&3x" # prod'), [['password-assignment', 'Tr0ub4dor&3x']])
})

t.test('a token inside a longer run of token characters is not half-matched', async (t) => {
  t.same(scan('ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2_more-stuff'), [])
})

t.test('the more confident, longer detection wins an overlap', async (t) => {
  const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'
  t.same(scan(`Authorization: Bearer ${jwt}`), [['jwt', jwt]])
})

t.test('an e-mail in a URL userinfo is a password, not an address', async (t) => {
  t.same(scan('postgres://admin:Hunter22x@db.prod.internal:5432/app'), [
    ['url-credentials', 'Hunter22x'],
    ['internal-hostname', 'db.prod.internal'],
  ])
})

t.test('secrets inside base64 are found and the whole base64 run is reported', async (t) => {
  const inner = Buffer.from('config:\n  token: ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2\n').toString('base64')
  const found = engine.scanner.scan(`payload ${inner} end`)
  t.equal(found.length, 1)
  t.equal(found[0]!.detector, 'github-pat')
  t.equal(found[0]!.encoded, 'base64')
  t.equal(found[0]!.value, inner)
})

t.test('keyword windows and the full-text fallback find the same matches', async (t) => {
  const filler = 'lorem ipsum dolor sit amet '.repeat(400)
  const text = `${filler}AKIAZ2X3C4V5B6N7M2Q2 ${filler} sk_live_${'a1B2c3D4'.repeat(4)} ${filler}`
  const windowed = engine.scanner.scan(text).map((d) => d.detector)
  const many = engine.scanner.scan(`${'AKIA '.repeat(60)}${text}`).map((d) => d.detector)
  t.same(windowed, ['aws-access-key-id', 'stripe-secret-key'])
  t.same(many, ['aws-access-key-id', 'stripe-secret-key'])
})

t.test('custom detectors: RE2 patterns, dictionaries, scopes, and every configuration error at once', async (t) => {
  const e = compileRedaction(
    redactionConfigFrom({
      custom: [
        { id: 'acme-project', dataClass: 'internal', confidence: 'high', pattern: 'PRJ-[0-9]{6}', keywords: ['PRJ-'] },
        { id: 'codenames', dataClass: 'internal', confidence: 'medium', words: ['Bluebird', 'Project Falcon'] },
        { id: 'team-a-only', dataClass: 'pii', confidence: 'high', pattern: 'TA-[0-9]{4}', namespaces: ['team-a'] },
      ],
    }),
  )
  const text = 'See PRJ-123456 about project falcon and bluebirds; TA-1234'
  t.same(
    e.scanner.scan(text).map((d) => [d.detector, text.slice(d.start, d.end)]),
    [
      ['acme-project', 'PRJ-123456'],
      ['codenames', 'project falcon'],
    ],
  )
  t.same(
    e.scanner.scan(text, { subject: { namespace: 'team-a' } }).map((d) => d.detector),
    ['acme-project', 'codenames', 'team-a-only'],
  )
  let problems: readonly { field: string }[] = []
  try {
    compileRedaction(
        redactionConfigFrom({
          disabledDetectors: ['no-such'],
          custom: [
            { id: 'bad', dataClass: 'x', confidence: 'high', pattern: '(a)\\1' },
            { id: 'empty', dataClass: 'x', confidence: 'high', pattern: 'a*' },
            { id: 'email', dataClass: 'x', confidence: 'high', pattern: 'a' },
            { id: 'grp', dataClass: 'x', confidence: 'high', pattern: 'a(b)', group: 2 },
          ],
        }),
      )
  } catch (err) {
    t.ok(err instanceof ConfigError)
    problems = (err as ConfigError).problems
  }
  t.same(
    problems.map((p) => p.field),
    ['redaction.disabledDetectors[0]', 'redaction.custom[0].pattern', 'redaction.custom[1].pattern', 'redaction.custom[2].id', 'redaction.custom[3].group'],
  )
})

t.test('a backtracking-hostile pattern runs in linear time on RE2', async (t) => {
  const e = compileRedaction(redactionConfigFrom({ custom: [{ id: 'evil', dataClass: 'x', confidence: 'low', pattern: '(a+)+$' }] }))
  const text = 'a'.repeat(100_000) + '!'
  const t0 = performance.now()
  e.scanner.scan(text)
  t.ok(performance.now() - t0 < 2000, 'finished')
})

t.test('detector ids are unique and every spec compiles', async (t) => {
  t.doesNotThrow(() => new Scanner(BUILTIN_DETECTORS))
  t.throws(() => new Scanner([BUILTIN_DETECTORS[0]!, BUILTIN_DETECTORS[0]!]))
})

// ---------------------------------------------------------------- obfuscations

const GH = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
/** What the scanner reports, as [detector, reported text] pairs. */
const spans = (text: string) => engine.scanner.scan(text).map((d) => [d.detector, text.slice(d.start, d.end)])

t.test('lone surrogates before a token (an emoji cut in half) hide nothing and shift no offset', async (t) => {
  const text = `${'\ud800'.repeat(5)} token ${GH} and ${'😀'.slice(0, 1)}mail jane.roe@gmail.com`
  t.same(spans(text), [
    ['github-pat', GH],
    ['email', 'jane.roe@gmail.com'],
  ])
  const low = `${'\udc00'.repeat(40)} 4111 1111 1111 1111`
  t.same(spans(low), [['credit-card', '4111 1111 1111 1111']])
})

t.test('zero-width characters inside a token are removed for detection and redacted with it', async (t) => {
  const hidden = `${GH.slice(0, 8)}\u200b${GH.slice(8, 20)}\u200d\u2060${GH.slice(20)}`
  t.same(spans(`key: ${hidden}.`), [['github-pat', hidden]])
})

t.test('zero-width characters inside a card number are removed for detection and redacted with it', async (t) => {
  const hidden = '4111\u200b1111\u200c1111\ufeff1111'
  t.same(spans(`card ${hidden} thanks`), [['credit-card', hidden]])
})

t.test('full-width digits and letters are folded before detection', async (t) => {
  const card = '４１１１　１１１１　１１１１　１１１１'
  const mail = 'ｊａｎｅ．ｒｏｅ＠ｇｍａｉｌ．ｃｏｍ'
  t.same(spans(`pay with ${card}, receipt to ${mail}`), [
    ['credit-card', card],
    ['email', mail],
  ])
})

t.test('base64 without padding is decoded and scanned', async (t) => {
  const run = Buffer.from(`token: ${GH}\n\n`).toString('base64').replace(/=+$/, '')
  t.ok(run.length % 4 !== 0, 'the run is unpadded')
  t.same(
    engine.scanner.scan(`blob ${run} end`).map((d) => [d.detector, d.value, d.encoded]),
    [['github-pat', run, 'base64']],
  )
})

t.test('base64 glued to a preceding underscore or dash is decoded from where the encoding starts', async (t) => {
  const run = Buffer.from('send the invoice to jane.roe@gmail.com today').toString('base64')
  for (const glue of ['payload_', 'x-data-']) {
    const found = engine.scanner.scan(`${glue}${run}`)
    t.same(
      found.map((d) => [d.detector, d.value, d.encoded]),
      [['email', run, 'base64']],
      glue,
    )
  }
})

t.test('base64url text is decoded too', async (t) => {
  // Bytes chosen so that the encoding holds "-" and "_" (62 and 63 in the url alphabet).
  const inner = `ssn 536-22-1234 ~~~~ ???? >>>>`
  const run = Buffer.from(inner).toString('base64url')
  t.match(run, /[-_]/)
  t.same(
    engine.scanner.scan(`id=${run}`).map((d) => [d.detector, d.encoded]),
    [['us-ssn', 'base64']],
  )
})

t.test('every class is looked for inside base64, not only secrets: a card number', async (t) => {
  const run = Buffer.from('4111 1111 1111 1111').toString('base64')
  t.same(
    engine.scanner.scan(`ref ${run}`).map((d) => [d.detector, d.dataClass, d.value]),
    [['credit-card', 'financial', run]],
  )
})

t.test('card numbers with double spaces, dots, newlines, tabs or mixed separators are found', async (t) => {
  for (const card of ['4111  1111  1111  1111', '4111.1111.1111.1111', '4111\n1111\n1111\n1111', '4111\t1111\t1111\t1111', '4111 - 1111\r\n1111.1111', '3782  822463  10005']) {
    t.same(spans(`card: ${card} (exp 12/27)`), [['credit-card', card]], JSON.stringify(card))
  }
})

t.test('a Luhn-valid Visa, Mastercard or Amex number is found with no card keyword nearby', async (t) => {
  for (const n of ['4111111111111111', '5555555555554444', '378282246310005']) {
    t.same(spans(`Payment reference ${n} received, order number ${n} shipped`), [
      ['credit-card', n],
      ['credit-card', n],
    ])
  }
})

t.test('a list of card numbers, one per line, is found card by card', async (t) => {
  t.same(spans('cards:\n4111 1111 1111 1111\n5555 5555 5555 4444\n3782 822463 10005\n'), [
    ['credit-card', '4111 1111 1111 1111'],
    ['credit-card', '5555 5555 5555 4444'],
    ['credit-card', '3782 822463 10005'],
  ])
})

t.test('a URL password with reserved characters is found up to the last @ before the host', async (t) => {
  const cases: [string, string][] = [
    ['postgres://app:pa#ss@db/x', 'pa#ss'],
    ['mysql://root:s3cr?t!@10.1.2.3:3306/shop', 's3cr?t!'],
    ['mongodb+srv://admin:p@ss/w0rd@cluster0.mongodb.net/test', 'p@ss/w0rd'],
    ['redis://:h#sh/k3y@cache-1:6379/0', 'h#sh/k3y'],
    ['amqp://guest:g@@st?1@rabbit/vhost', 'g@@st?1'],
    ['https://deploy:Tr0ub4dor#3@git.example.net/repo.git', 'Tr0ub4dor#3'],
  ]
  for (const [url, password] of cases) {
    const found = spans(`DATABASE_URL=${url} # prod`)
    t.same(found.find((f) => f[0] === 'url-credentials'), ['url-credentials', password], url)
    t.notOk(found.some((f) => f[0] === 'email'), `${url}: the userinfo is not an address`)
  }
})

// ---------------------------------------------------------------- look-alikes that stay

t.test('order numbers, tracking numbers, timestamps, phone numbers, UUIDs, git SHAs and ISBNs are not cards', async (t) => {
  const lookAlikes = [
    'Amazon order 113-4567890-1234567 shipped',
    'Order #100234 and order ORD-2024-000123',
    'UPS 1Z 999 AA1 01 2345 678 4 and USPS 9400 1000 0000 0000 0000 00',
    'FedEx 7489 1234 5678 9012',
    'epoch_ms=1712345678901 at 2024-05-01T12:34:56.789Z (20240501123456)',
    'call +1 415 555 0132 or +44 20 7946 0958',
    'request 550e8400-e29b-41d4-a716-446655440000 commit 9fceb02d0ae598e95dc970b74767f19372d61af8',
    'ISBN 978-3-16-148410-0 and ISBN-10 0-306-40615-2',
    'version 4.1.1.1 build 4111',
    'tabular: 1234 5678 9012 3456 7890 1234 5678 9012',
  ]
  for (const text of lookAlikes) t.same(spans(text).filter((f) => f[0] === 'credit-card'), [], text)
})

t.test('a port and a path are not a URL password', async (t) => {
  t.same(spans('npm install from https://registry.npmjs.org:443/@scope/pkg and https://medium.com:443/@user/post'), [])
})

// ---------------------------------------------------------------- prefilter and gates

t.test('keyword hits and digit gates only decide where patterns run: the result equals running every pattern everywhere', async (t) => {
  const everywhere = new Scanner(BUILTIN_DETECTORS, { base64MinLength: 16, prefilter: false })
  const gated = new Scanner(BUILTIN_DETECTORS, { base64MinLength: 16 })
  const pieces = [
    GH,
    'AKIAZ2X3C4V5B6N7M2Q2',
    'jane.roe@gmail.com',
    '4111 1111 1111 1111',
    '4111\n1111\n1111\n1111',
    '536-22-1234',
    'SSN: 536 22 1234',
    'DE89 3704 0044 0532 0130 00',
    'GB82WEST12345698765432',
    'AB 12 34 56 C',
    '+44 20 7946 0958',
    '(415) 555-0132',
    'call 415-555-0132',
    'mobile 07700 900123',
    '8.8.4.4',
    '10.1.2.3',
    '2a01:4f8:c2c:123f::1',
    'postgres://app:pa#ss@db.prod.internal/x',
    'password = "Tr0ub4dor&3x"',
    'api_key=Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1',
    'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
    'born on 1985-03-12',
    'NPI 1234567893',
    'routing number 011000015',
    Buffer.from('mail jane.roe@gmail.com').toString('base64'),
    '1234',
    '12.5',
    '2024-05-01T12:00:00Z',
    'v1.2.3.4',
    '::',
    '12:30:45',
  ]
  const noise = ['lorem ipsum', ' ', '\n', ', ', '-', '.', '(', ')', '+', '0', '7', 'ab', 'XY', ':', '\u200b', '４', '\ud800', '😀', 'é']
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.constantFrom(...pieces), fc.constantFrom(...noise)), { maxLength: 30 }), (parts) => {
      const text = parts.join('')
      const a = gated.scan(text).map((d) => `${d.detector}@${d.start}-${d.end}`)
      const b = everywhere.scan(text).map((d) => `${d.detector}@${d.start}-${d.end}`)
      if (JSON.stringify(a) !== JSON.stringify(b)) t.fail(`${JSON.stringify(text)}: gated ${JSON.stringify(a)} everywhere ${JSON.stringify(b)}`)
    }),
    { seed: 20240614, numRuns: 600 },
  )
})

t.test('keyword conditions: a start-of-token keyword inside a word does not count, a start-of-part one after "_" does', async (t) => {
  const key = 'SK9f3b2c7d1e8a4f6b0c5d2e9a7b1c3d4e'
  t.same(spans(`twilio ${key}`), [['twilio-api-key', key]])
  t.same(spans(`TASK${key.slice(2)}`), [])
  t.same(spans('DB_PASSWORD=Tr0ub4dor!3x bypass=Tr0ub4dor!3x'), [['password-assignment', 'Tr0ub4dor!3x']])
})

// ---------------------------------------------------------------- streaming hold-back

t.test('holdbackStart: the fixed hold-back counts normalised characters, so removed characters never shorten it', async (t) => {
  const s = engine.scanner
  const plain = 'a b '.repeat(250)
  t.equal(s.holdbackStart(plain), 1000 - s.holdback)
  const padded = 'a\u200b b\u200b '.repeat(250)
  t.equal(s.holdbackStart(padded), 1500 - (s.holdback * 3) / 2, 'zero-width characters in the tail do not count')
  const wide = '𝟒 '.repeat(500)
  t.equal(s.holdbackStart(wide), 1500 - (s.holdback * 3) / 2, 'a surrogate pair counts as one character')
})

t.test('holdbackStart: an open marker written with zero-width characters still holds, and so does a base64 run reaching the end', async (t) => {
  const s = engine.scanner
  const before = 'lorem ipsum '.repeat(200)
  const jwt = `e\u200byJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.${'a'.repeat(600)}`
  t.equal(s.holdbackStart(`${before} ${jwt}`), before.length + 1)
  const run = Buffer.from('x'.repeat(900)).toString('base64')
  t.equal(s.holdbackStart(`${before} ${run}`), before.length + 1)
  t.equal(s.holdbackStart(`${before} ${run} done`), before.length + run.length + 6 - s.holdback, 'a closed run is released like any text')
})

t.test('a token that invisible characters only set apart from its neighbours is found', async (t) => {
  const v = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
  t.same(scan(`see\u200b${v}\u2060now`), [['github-pat', v]], 'zero-width space and word joiner read as separators')
  t.same(scan(`token: ghp_Zq8Xw2\u200bLk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2`), [['github-pat', 'ghp_Zq8Xw2\u200bLk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2']], 'and removed inside a token')
})

t.test('card numbers side by side are each found', async (t) => {
  t.same(scan('4539578763621486 5555555555554444'), [
    ['credit-card', '4539578763621486'],
    ['credit-card', '5555555555554444'],
  ])
  t.same(scan('cards: 4539 5787 6362 1486  4539 5787 6362 1486 on file'), [
    ['credit-card', '4539 5787 6362 1486'],
    ['credit-card', '4539 5787 6362 1486'],
  ])
})
