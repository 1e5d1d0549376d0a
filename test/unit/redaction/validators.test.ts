import t from 'tap'
import {
  cardInRun,
  looksLikePlaceholder,
  luhnValid,
  plausiblePassword,
  plausibleUrlPassword,
  shannonEntropy,
  validAbaRouting,
  validBirthDate,
  validCardNumber,
  validDea,
  validEmail,
  validIban,
  validIpv6,
  validJwt,
  validNpi,
  validSsn,
} from '../../../src/redaction/validators.ts'

t.test('Luhn and card numbers: checksum, issuer prefix and length, separators as cards are written', async (t) => {
  const cases: [string, boolean][] = [
    ['4111 1111 1111 1111', true],
    ['4111-1111-1111-1111', true],
    ['4111 1111-1111 1111', true],
    ['4111  1111\n1111.1111', true],
    ['4111 11-11 1111 1111', false],
    ['4111 1111 1111 1111 1', false],
    ['5555 5555 5555 4444', true],
    ['3056 9309 0259 04', true],
    ['6759 6498 2643 8453', true],
    ['4111 1111 1111 1112', false],
    ['3782 822463 10005', true],
    ['1234 5678 9012 3456', false],
    ['0000 0000 0000 0000', false],
  ]
  for (const [v, ok] of cases) t.equal(validCardNumber(v), ok, v)
  t.ok(luhnValid('79927398713'))
})

t.test('IBAN: mod-97 and country format; a run-on match is cut back to the valid prefix', async (t) => {
  t.equal(validIban('DE89 3704 0044 0532 0130 00'), true)
  t.equal(validIban('DE88 3704 0044 0532 0130 00'), false)
  t.equal(validIban('DE89 3704 0044 0532 0130 00 ABCD'), 'DE89 3704 0044 0532 0130 00'.length)
})

t.test('US SSN: SSA invalid ranges, advertising numbers and mixed delimiters are rejected', async (t) => {
  const cases: [string, boolean][] = [
    ['536-22-1234', true],
    ['000-22-1234', false],
    ['666-22-1234', false],
    ['912-22-1234', false],
    ['536-00-1234', false],
    ['536-22-0000', false],
    ['078-05-1120', false],
    ['536-22 1234', false],
    ['536221234', true],
  ]
  for (const [v, ok] of cases) t.equal(validSsn(v), ok, v)
})

t.test('entropy, placeholders and templates', async (t) => {
  t.ok(shannonEntropy('aaaaaaaa') === 0)
  t.ok(shannonEntropy('Zq8Xw2Lk9Vb4Nm7T') > 3.5)
  for (const v of ['${OPENAI_API_KEY}', '{{ secrets.TOKEN }}', 'YOUR_API_KEY', 'sk-proj-xxxxxxxxxxxx', 'AKIAIOSFODNN7EXAMPLE', '<token>', '[EMAIL_1]', '********']) t.ok(looksLikePlaceholder(v), v)
  t.notOk(looksLikePlaceholder('ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'))
})

t.test('passwords: code, types, paths and environment lookups are not passwords', async (t) => {
  for (const v of ['string', 'os.environ', 'process.env.DB_PASS', 'getPass()', '/home/app', 'null', '$DB_PASSWORD']) t.notOk(plausiblePassword(v), v)
  for (const v of ['hunter22', 'Tr0ub4dor&3', 'blue-horse-42!']) t.ok(plausiblePassword(v), v)
})

t.test('checksummed identifiers: ABA routing, NPI, DEA', async (t) => {
  t.ok(validAbaRouting('011000015'))
  t.notOk(validAbaRouting('011000016'))
  t.ok(validNpi('1234567893'))
  t.notOk(validNpi('1234567890'))
  t.ok(validDea('AB1234563'))
  t.notOk(validDea('AB1234564'))
})

t.test('dates of birth, IPv6 and JWT headers', async (t) => {
  const now = new Date('2025-06-01T00:00:00Z')
  t.ok(validBirthDate('1985-03-12', now))
  t.ok(validBirthDate('March 3, 1979', now))
  t.notOk(validBirthDate('1985-02-30', now))
  t.notOk(validBirthDate('2031-01-01', now))
  t.ok(validIpv6('2a01:4f8:c2c:123f::1'))
  t.notOk(validIpv6('::1'))
  t.notOk(validIpv6('2001:db8::1'))
  t.ok(validJwt('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig'))
  t.notOk(validJwt('eyJub3RoaW5nIjoxfQ.eyJzdWIiOiIxIn0.sig'))
})

t.test('a card inside a run of numbers: the whole run, the first line of a list, or an end with at most seven more digits', async (t) => {
  const cases: [string, boolean | { start: number; end: number }][] = [
    ['4111 1111 1111 1111', true],
    ['4111 1111 1111 1111 12 27', { start: 0, end: 19 }],
    ['2 4111 1111 1111 1111', { start: 2, end: 21 }],
    ['4111 1111 1111 1111\n5555 5555 5555 4444', { start: 0, end: 19 }],
    ['1234 5678 4111 1111 1111 1111', false],
    ['9400 1000 0000 0000 0000 00', false],
    ['1 '.repeat(200).trim(), false],
  ]
  for (const [v, want] of cases) t.same(cardInRun(v), want, JSON.stringify(v))
})

t.test('URL passwords: reserved characters are fine, a port followed by a path is not a password', async (t) => {
  for (const v of ['pa#ss', 'p@ss/w?rd', 'h#sh/k3y']) t.ok(plausibleUrlPassword(v), v)
  for (const v of ['443/', '8080/path/to', '5432']) t.notOk(plausibleUrlPassword(v), v)
})

t.test('e-mail: a Message-ID or an object id before the @ is not a mailbox, nor is URL userinfo', async (t) => {
  t.ok(validEmail('jane.roe@gmail.com'))
  t.notOk(validEmail('f4b2e042-169c-4cf7-be13-6a876c1384ce@mail.acme.io'))
  t.notOk(validEmail('9f86d081884c7d659a2feaa0c55ad015@objects.acme.io'))
  t.notOk(validEmail('ss@db.acme.io', { text: 'postgres://app:pa/ss@db.acme.io', start: 18 }))
})

t.test('vendors\' published sample credentials are placeholders', async (t) => {
  for (const v of ['AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'sk_test_BQokikJOvBiI2HlWgH4olfQ2']) t.ok(looksLikePlaceholder(v), v)
  t.notOk(looksLikePlaceholder('sk_test_Grxt3HqbkzASG8qP7TCa5Of1'))
})
