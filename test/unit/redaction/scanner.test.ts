import t from 'tap'
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
