/**
 * Bypasses the end-to-end property test (test/integration/redaction.property.test.ts)
 * found, each kept as the smallest case that showed it.
 */
import t from 'tap'
import { rewriteDocument, scanDocument } from '../../../src/redaction/document.ts'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { PlaceholderBook } from '../../../src/redaction/placeholders.ts'
import { SseRedactor } from '../../../src/redaction/stream.ts'

const engine = compileRedaction(redactionConfigFrom({}))
const b64 = (s: string) => Buffer.from(s).toString('base64')

function redactBody(value: unknown): unknown {
  const body = Buffer.from(JSON.stringify(value))
  const scan = scanDocument(engine, body, undefined, { direction: 'request' })
  const r = rewriteDocument(scan, body, () => 'redact', new PlaceholderBook(), false)
  return JSON.parse(r.changed ? r.raw : body.toString('utf8'))
}

function redactStream(text: string): string {
  const r = new SseRedactor({ scanner: engine.scanner, subject: undefined, book: new PlaceholderBook(), restore: false, action: () => 'redact', onDetection: () => {} })
  return Buffer.concat([r.push(Buffer.from(text), false).out, r.push(Buffer.alloc(0), true).out]).toString('utf8')
}

t.test('base64 of text that starts with lone surrogates (written as U+FFFD by a UTF-8 encoder) is looked into', async (t) => {
  const blob = b64('\ud800\ud800export CREDENTIAL=AKIAJ2KZSNUF636QDTW5')
  t.same(
    engine.scanner.scan(blob).map((d) => d.detector),
    ['aws-access-key-id'],
  )
  t.same(redactBody({ data: `data:text/plain;base64,${b64('\ud800\ud800Charge it to 5447-4495-2500-4825 please.\udc00')}` }), { data: 'data:text/plain;base64,[CARD_NUMBER_1]' })
})

t.test('a key assignment inside JSON held in tool arguments (escaped quotes) is found and redacted in place', async (t) => {
  const args = JSON.stringify({ q: 'api_key = "xW3bzlGoz98ldJ7Srj7FD0gVmls"' })
  const sent = redactBody({ arguments: args }) as { arguments: string }
  t.same(JSON.parse(sent.arguments), { q: 'api_key = "[SECRET_1]"' }, 'the arguments stay valid JSON')
  const twice = JSON.stringify({ q: JSON.stringify({ access_token: 'P77jT5lnhFOVA1GrBgYhirpUb79iJUdl\u200cwFVIqim5dHS', expires_in: 3600 }) })
  const out = redactBody({ arguments: twice }) as { arguments: string }
  t.notOk(out.arguments.includes('P77jT5ln'), 'also two levels deep, with a zero-width character inside')
  t.same(JSON.parse(JSON.parse(out.arguments).q), { access_token: '[SECRET_1]', expires_in: 3600 })
})

t.test('a base64 value of an SSE event is looked into when other values of the event are scanned with it', async (t) => {
  const out = redactStream(`data: {"id":"x","k":"${b64('Contact: Kennith36@outlook.com')}","choices":[]}\n\n`)
  t.match(out, /"k":"\[EMAIL_1\]"/)
  t.notOk(out.includes(b64('Contact: Kennith36@outlook.com')))
})

t.test('a password that merely contains a placeholder word ("fireplace" holds "replace") is still a password', async (t) => {
  const text = 'DATABASE_URL=postgres://app_user:delicious-fireplace-63!@db.example.net:5432/app'
  t.same(
    engine.scanner.scan(text).map((d) => [d.detector, d.value]),
    [['url-credentials', 'delicious-fireplace-63!']],
  )
  t.same(
    engine.scanner.scan('DATABASE_URL=postgres://app_user:replace-me@db.example.net/app').map((d) => d.detector),
    [],
    'a placeholder still is not',
  )
})

t.test('a password with a word that begins with a placeholder word ("replacement") is still a password', async (t) => {
  t.same(
    engine.scanner.scan('amqp://guest:smoggy-replacement-35!@rabbit/vhost').map((d) => [d.detector, d.value]),
    [['url-credentials', 'smoggy-replacement-35!']],
  )
  t.same(engine.scanner.scan('amqp://guest:replaceme@rabbit/vhost'), [], 'replaceme is a placeholder')
})
