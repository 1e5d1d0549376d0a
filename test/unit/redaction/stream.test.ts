import t from 'tap'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { PlaceholderBook } from '../../../src/redaction/placeholders.ts'
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
