import t from 'tap'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { PlaceholderBook } from '../../../src/redaction/placeholders.ts'
import { SseFramer } from '../../../src/redaction/sse.ts'
import { SseRedactor } from '../../../src/redaction/stream.ts'
import type { RedactionAction } from '../../../src/redaction/types.ts'

const engine = compileRedaction(redactionConfigFrom({}))
const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'

function redactor(opts: { restore?: boolean; book?: PlaceholderBook; action?: RedactionAction } = {}) {
  const findings: string[] = []
  const r = new SseRedactor({
    scanner: engine.scanner,
    subject: undefined,
    book: opts.book ?? new PlaceholderBook(),
    restore: opts.restore ?? false,
    action: () => opts.action ?? 'redact',
    onDetection: (d, loc, start) => findings.push(`${d.detector}@${loc}:${start}`),
  })
  return { r, findings }
}

const chat = (content: string) => `data: ${JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content } }] })}\n\n`

/** Feeds the stream in byte-sized pieces and returns the concatenated output. */
function feed(r: SseRedactor, text: string, piece: number): { out: string; releasedBeforeEnd: number } {
  const bytes = Buffer.from(text)
  const outs: Buffer[] = []
  for (let i = 0; i < bytes.length; i += piece) outs.push(r.push(bytes.subarray(i, i + piece), false).out)
  const before = Buffer.concat(outs).length
  outs.push(r.push(Buffer.alloc(0), true).out)
  return { out: Buffer.concat(outs).toString('utf8'), releasedBeforeEnd: before }
}

function contents(sse: string): string {
  return sse
    .split('\n\n')
    .filter((e) => e.startsWith('data: {'))
    .map((e) => JSON.parse(e.slice(6)).choices[0].delta.content as string)
    .join('')
}

t.test('a token split across events and across byte chunks comes out redacted, for any chunk size', async (t) => {
  const stream = [chat('Here: ' + TOKEN.slice(0, 11)), chat(TOKEN.slice(11, 30)), chat(TOKEN.slice(30) + ' ok. é'), 'data: [DONE]\n\n'].join('')
  for (const piece of [1, 3, 7, 64, 4096]) {
    const { r, findings } = redactor()
    const { out } = feed(r, stream, piece)
    t.equal(contents(out), 'Here: [GITHUB_TOKEN_1] ok. é', `chunks of ${piece} bytes`)
    t.ok(out.endsWith('data: [DONE]\n\n'))
    t.same(findings, ['github-pat@sse:chat.0.content:6'])
  }
})

t.test('text is released as it becomes safe: only the hold-back stays behind', async (t) => {
  const { r } = redactor()
  const events = Array.from({ length: 200 }, () => chat('word ')).join('')
  const { out, releasedBeforeEnd } = feed(r, events, 10_000)
  const perEvent = Buffer.byteLength(chat('word '))
  const held = Buffer.byteLength(out) - releasedBeforeEnd
  t.ok(releasedBeforeEnd > 0, 'events left before the stream ended')
  t.ok(held <= perEvent * Math.ceil(engine.scanner.holdback / 5 + 1), `held back ${held} bytes: no more than the hold-back of text`)
})

t.test('placeholders split across deltas are restored, and JSON fragments stay valid', async (t) => {
  const book = new PlaceholderBook()
  book.placeholder('EMAIL', 'dana@corp.io')
  book.placeholder('PASSWORD', 'a"b\\c')
  const { r } = redactor({ restore: true, book })
  const { out } = feed(r, chat('write to [EMA') + chat('IL_1] now') + 'data: [DONE]\n\n', 5)
  t.equal(contents(out), 'write to dana@corp.io now')

  const { r: r2 } = redactor({ restore: true, book })
  const ev = (partial_json: string) => `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 1, delta: { type: 'input_json_delta', partial_json } })}\n\n`
  const { out: out2 } = feed(r2, ev('{"pw": "[PASS') + ev('WORD_1]"}'), 9)
  const json = out2
    .split('\n\n')
    .filter((e) => e.includes('data: '))
    .map((e) => JSON.parse(e.split('data: ')[1]!).delta.partial_json)
    .join('')
  t.same(JSON.parse(json), { pw: 'a"b\\c' })
})

t.test('a block mid-stream releases nothing of the blocked text', async (t) => {
  const { r } = redactor({ action: 'block' })
  const first = r.push(Buffer.from(chat('hello ') + chat(TOKEN)), false)
  const second = r.push(Buffer.from(chat(' '.repeat(600))), false)
  t.notOk(first.out.toString().includes('ghp_'))
  t.same(second.blocked, ['secret'])
  t.equal(second.out.length, 0)
  t.ok(r.terminated)
  t.equal(r.push(Buffer.from(chat('more')), true).out.length, 0)
})

t.test('Anthropic text deltas, CRLF framing and non-delta strings are all scanned', async (t) => {
  const { r } = redactor()
  const ev = (o: unknown, name: string) => `event: ${name}\r\ndata: ${JSON.stringify(o)}\r\n\r\n`
  const stream =
    ev({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start') +
    ev({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'mail jane.roe@' } }, 'content_block_delta') +
    ev({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'gmail.com thanks' } }, 'content_block_delta') +
    ev({ type: 'response.completed', response: { output: [{ content: [{ text: 'again jane.roe@gmail.com' }] }] } }, 'response.completed')
  const { out } = feed(r, stream, 11)
  t.notOk(out.includes('jane.roe'), 'no address left')
  t.ok(out.includes('mail [EMAIL_1]'))
  t.ok(out.includes('again [EMAIL_1]'))
})

/** The events of an SSE output, read by the framer, each data parsed as JSON when it is JSON. */
function events(out: string): { type: string | undefined; data: string | undefined; json: unknown }[] {
  const f = new SseFramer()
  const evs = f.push(Buffer.from(out))
  const rest = f.flush()
  if (rest) evs.push(rest)
  return evs.map((e) => {
    let json: unknown
    try {
      json = e.data === undefined ? undefined : JSON.parse(e.data)
    } catch {
      json = undefined
    }
    return { type: e.type, data: e.data, json }
  })
}

const CARD = '4539578763621486'
const IBAN = 'DE89370400440532013000'
/** `ghp_` written with a JSON escape for the `g`. */
const ESCAPED_TOKEN = '\\u0067' + TOKEN.slice(1)

t.test('every key, string and number of an event is scanned, structural or not', async (t) => {
  const cases: [name: string, data: string, check: (json: any) => void][] = [
    ['a key is renamed', `{"id":"c","choices":[],"meta":{"${TOKEN}":1}}`, (j) => t.same(Object.keys(j.meta), ['[GITHUB_TOKEN_1]'])],
    ['a number becomes a string placeholder', `{"id":"c","choices":[],"n":${CARD}}`, (j) => t.equal(j.n, '[CARD_NUMBER_1]')],
    ['a value under a structural key', `{"id":"${TOKEN}","model":"${TOKEN}","object":"chat.completion.chunk","choices":[]}`, (j) => t.same([j.id, j.model, j.object], ['[GITHUB_TOKEN_1]', '[GITHUB_TOKEN_1]', 'chat.completion.chunk'])],
    ['a data: URL that is not an image', `{"choices":[],"x":"data:;base64,${TOKEN}"}`, (j) => t.equal(j.x, 'data:;base64,[GITHUB_TOKEN_1]')],
    ['an enumerated field with a value it cannot take', `{"choices":[],"role":"${TOKEN}"}`, (j) => t.equal(j.role, '[GITHUB_TOKEN_1]')],
    ['a string written with \\u escapes', `{"choices":[],"x":"${ESCAPED_TOKEN}"}`, (j) => t.equal(j.x, '[GITHUB_TOKEN_1]')],
    ['every occurrence of a duplicate key (JSON.parse keeps the last)', `{"choices":[],"x":"${TOKEN}","x":"${IBAN}"}`, (j) => t.equal(j.x, '[IBAN_1]')],
    ['data that is a JSON string', `"${ESCAPED_TOKEN}"`, (j) => t.equal(j, '[GITHUB_TOKEN_1]')],
  ]
  for (const [name, data, check] of cases) {
    const { r } = redactor()
    const { out } = feed(r, `data: ${data}\n\n`, 7)
    t.notOk(out.includes(TOKEN) || out.includes(CARD) || out.includes(IBAN) || out.includes(ESCAPED_TOKEN), `${name}: nothing planted left`)
    check(events(out)[0]!.json)
  }
})

t.test('a shadowed duplicate is scanned too, and the delta a client sees is the last one', async (t) => {
  const { r } = redactor()
  const ev = `data: {"choices":[{"index":0,"delta":{"content":"${TOKEN}"}}],"choices":[{"index":0,"delta":{"content":"mail ${'jane.roe@'}"}}]}\n\n` + chat('gmail.com ok')
  const { out } = feed(r, ev, 5)
  t.notOk(out.includes(TOKEN))
  t.equal(contents(out), 'mail [EMAIL_1] ok', 'the visible deltas form one channel')
})

t.test('an image payload is left alone; binary-looking text is not', async (t) => {
  const png = 'data:image/png;base64,' + Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(40, 7)]).toString('base64')
  const text = 'data:text/plain;base64,' + Buffer.from(`token ${TOKEN} here`).toString('base64')
  const { r } = redactor()
  const { out } = feed(r, `data: ${JSON.stringify({ choices: [], png, text })}\n\n`, 64)
  const j = events(out)[0]!.json as { png: string; text: string }
  t.equal(j.png, png)
  t.not(j.text, text)
})

t.test('framing the SDKs accept is read as they read it: every form reaches the scanner decoded', async (t) => {
  const json = (c: string) => JSON.stringify({ choices: [{ index: 0, delta: { content: c } }] }).replace('ghp_', '\\u0067hp_')
  const cases: [name: string, stream: string][] = [
    ['two spaces after data:', `data:  ${json(TOKEN)}\n\n`],
    ['no space after data:', `data:${json(TOKEN)}\n\n`],
    ['the JSON continued on a second data line', `data: {"choices":[{"index":0,"delta":\ndata: {"content":"${ESCAPED_TOKEN}"}}]}\n\n`],
    ['a byte-order mark before the first event', `\ufeffdata: ${json(TOKEN)}\n\n`],
    ['a byte-order mark before a later line', `: hi\n\n\ufeffdata: ${json(TOKEN)}\n\n`],
    ['CR line endings', `data: ${json(TOKEN)}\r\r`],
    ['CRLF line endings', `data: ${json(TOKEN)}\r\n\r\n`],
    ['a field line without a colon before the data', `data\ndata: ${json(TOKEN)}\n\n`],
    ['a comment holding the value', `: ${TOKEN}\ndata: ${json('ok')}\n\n`],
    ['the value in the event name and id', `event: ${TOKEN}\nid: ${TOKEN}\ndata: ${json('ok')}\n\n`],
    ['data that is not JSON', `data: token ${TOKEN}\n\n`],
    ['an event the stream never ends', `data: ${json(TOKEN)}`],
  ]
  for (const [name, stream] of cases) {
    for (const piece of [1, 3, 1000]) {
      const { r, findings } = redactor()
      const { out } = feed(r, stream, piece)
      t.notOk(out.includes(TOKEN) || out.includes(ESCAPED_TOKEN), `${name} (${piece}-byte chunks): redacted`)
      t.ok(findings.length > 0, `${name}: found`)
      t.notOk(out.includes('\ufeff') || out.includes('\r'), `${name}: written back in canonical form`)
    }
  }
})

t.test('an emoji split into two escaped surrogates across deltas is joined exactly, and nothing beside it hides', async (t) => {
  const stream = `data: {"choices":[{"index":0,"delta":{"content":"hi \\ud83d"}}]}\n\n` + `data: {"choices":[{"index":0,"delta":{"content":"\\ude00 ${TOKEN.slice(0, 9)}"}}]}\n\n` + chat(TOKEN.slice(9) + ' \ud83d\ude00 end') + 'data: [DONE]\n\n'
  for (const piece of [1, 2, 5, 4096]) {
    const { r } = redactor()
    const { out } = feed(r, stream, piece)
    t.equal(contents(out), 'hi 😀 [GITHUB_TOKEN_1] 😀 end', `${piece}-byte chunks`)
  }
  const { r } = redactor()
  const lone = feed(r, chat(`\ud83d ${TOKEN} \ude00`), 4096).out
  t.equal(contents(lone), '\ud83d [GITHUB_TOKEN_1] \ude00', 'a lone surrogate next to a value does not hide it')
})

t.test('a PEM block streamed in 4-byte deltas is redacted whole, and text before it is released before it closes', async (t) => {
  const pem = `-----BEGIN PRIVATE KEY-----\n${'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7'.repeat(40)}\n-----END PRIVATE KEY-----`
  const answer = 'word '.repeat(100) + 'key: ' + pem + ' done'
  const { r, findings } = redactor()
  const outs: string[] = []
  for (let i = 0; i < answer.length; i += 4) outs.push(r.push(Buffer.from(chat(answer.slice(i, i + 4))), false).out.toString())
  outs.push(r.push(Buffer.from('data: [DONE]\n\n'), true).out.toString())
  const beforeClose = outs.slice(0, Math.floor((answer.length - 40) / 4)).join('')
  t.ok(contents(beforeClose).startsWith('word word'), 'the text before the block left while the block was open')
  t.equal(contents(outs.join('')), 'word '.repeat(100) + 'key: [PRIVATE_KEY_1] done')
  t.same(findings, [`private-key-pem@sse:chat.0.content:${505}`])
})

t.test('finding locations never quote response text', async (t) => {
  const { r, findings } = redactor()
  const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`
  feed(
    r,
    ev({ meta: { [TOKEN]: { [TOKEN.replace('ghp_', 'gho_')]: 'x' } } }) + ev({ type: `${TOKEN}.delta`, item_id: TOKEN, delta: TOKEN }) + ev({ choices: [{ index: Number(CARD), delta: { content: TOKEN } }] }),
    4096,
  )
  t.ok(findings.length >= 4)
  for (const f of findings) t.notOk(/ghp_|gho_|4539/.test(f), f)
})

t.test('restored values never add lines to an event: data keeps its meaning, other lines are not restored', async (t) => {
  const book = new PlaceholderBook()
  book.placeholder('SECRET', 'a\rdata: injected\nb')
  const { r } = redactor({ restore: true, book })
  const { out } = feed(r, ': note [SECRET_1]\ndata: plain [SECRET_1] text\n\n', 4096)
  const evs = events(out)
  t.equal(evs.length, 1)
  t.equal(evs[0]!.data, 'plain a\ndata: injected\nb text', 'every reader splits the restored value into data lines and joins them back')
  t.match(out, /^: note \[SECRET_1\]\n/, 'the comment keeps its placeholder')
})

t.test('a JWT in tool-call arguments whose marker is written with an escape is held until it ends, then redacted whole', async (t) => {
  const b64 = (v: string) => Buffer.from(v).toString('base64url')
  const jwt = `${b64('{"alg":"HS256","typ":"JWT"}')}.${b64(JSON.stringify({ sub: '1234567890', pad: 'x'.repeat(1500) }))}.${b64('a-signature-of-thirty-two-bytes!')}`
  // The fragment as a provider may write it: the JWT's first letter escaped, so `eyJ` appears only decoded.
  const args = JSON.stringify({ token: jwt, note: 'ok' }).replace('"eyJ', '"\\u0065yJ')
  const ev = (a: string) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: a } }] } }] })}\n\n`
  const { r, findings } = redactor()
  const outs: string[] = []
  for (let i = 0; i < args.length; i += 3) outs.push(r.push(Buffer.from(ev(args.slice(i, i + 3))), false).out.toString())
  outs.push(r.push(Buffer.alloc(0), true).out.toString())
  const joined = events(outs.join(''))
    .map((e) => (e.json as any)?.choices?.[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '')
    .join('')
  t.same(JSON.parse(joined), { token: '[JWT_1]', note: 'ok' })
  t.notOk(outs.join('').includes(jwt.slice(40, 80)), 'no part of the token left before it ended')
  t.same(findings, ['jwt@sse:chat.0.tool.0:10'])
})
