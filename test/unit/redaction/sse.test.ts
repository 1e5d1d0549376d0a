/**
 * SSE framing: the WHATWG "Interpreting an event stream" rules, the places
 * where the official SDKs read more than the specification (a byte-order mark
 * on any line, the unterminated rest of a stream), and the canonical form the
 * output takes, checked against the SDKs' own decoders and eventsource-parser.
 */
import t from 'tap'
import { errorDocument } from '../../../src/errors.ts'
import fc from 'fast-check'
import { createParser } from 'eventsource-parser'
import { _iterSSEMessages as openaiEvents } from 'openai/streaming'
import { _iterSSEMessages as anthropicEvents } from '@anthropic-ai/sdk/streaming'
import { carriesSseFields, errorEvent, otherLines, parseEvent, parseField, serializeEvent, SseFramer, type SseEvent } from '../../../src/redaction/sse.ts'

/** Frames `input` cut at the given byte offsets. */
function frame(input: Buffer | string, cuts: number[] = []): SseEvent[] {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input)
  const f = new SseFramer()
  const out: SseEvent[] = []
  let at = 0
  for (const c of [...cuts, bytes.length]) {
    out.push(...f.push(bytes.subarray(at, c)))
    at = c
  }
  const rest = f.flush()
  if (rest) out.push(rest)
  return out
}

/** What a WHATWG reader dispatches: events with data. */
const dispatched = (evs: readonly SseEvent[]) => evs.filter((e) => e.data !== undefined && e.terminated).map((e) => ({ type: e.type, data: e.data }))

t.test('field lines follow the WHATWG rules', async (t) => {
  const cases: [name: string, line: string, field: { name: string; value: string } | undefined][] = [
    ['one space after the colon is dropped', 'data: x', { name: 'data', value: 'x' }],
    ['only one: a second space stays part of the value', 'data:  {"a":1}', { name: 'data', value: ' {"a":1}' }],
    ['no space', 'data:x', { name: 'data', value: 'x' }],
    ['a tab is not a space', 'data:\tx', { name: 'data', value: '\tx' }],
    ['no colon: the whole line is the name, the value is empty', 'data', { name: 'data', value: '' }],
    ['the value keeps later colons', 'data: a: b', { name: 'data', value: 'a: b' }],
    ['a comment', ': keep-alive', undefined],
    ['an unknown field', 'foo: bar', { name: 'foo', value: 'bar' }],
    ['field names are case-sensitive', 'Data: x', { name: 'Data', value: 'x' }],
  ]
  for (const [name, line, field] of cases) t.same(parseField(line), field, name)
})

t.test('events end at a blank line and join their data lines with a line feed', async (t) => {
  const evs = frame('data: a\ndata:\ndata:  b\n\nevent: e\n: c\ndata\n\n')
  t.same(
    evs.map((e) => e.data),
    ['a\n\n b', ''],
  )
  t.equal(evs[1]!.type, 'e')
  t.same(otherLines(evs[1]!), ['event: e', ': c'])
})

t.test('LF, CR and CRLF all end lines, also when a CRLF is split across chunks', async (t) => {
  const text = 'data: one\r\rdata: two\r\n\r\ndata: three\n\n'
  const whole = frame(text).map((e) => e.data)
  t.same(whole, ['one', 'two', 'three'])
  for (let cut = 1; cut < text.length; cut++) t.same(frame(text, [cut]).map((e) => e.data), whole, `cut at ${cut}`)
})

t.test('a byte-order mark is dropped at the start of the stream and of any line, as the SDKs drop it', async (t) => {
  const evs = frame('\ufeffdata: a\n\n\ufeffdata: b\n\ufeff\ufeffevent: x\n\n')
  t.same(
    evs.map((e) => [e.data, e.type]),
    [
      ['a', undefined],
      ['b', 'x'],
    ],
  )
  const out = Buffer.concat(evs.map((e) => serializeEvent(e))).toString()
  t.notOk(out.includes('\ufeff'), 'no mark reaches the output')
})

t.test('a UTF-8 character split across chunks is decoded whole; invalid bytes become U+FFFD', async (t) => {
  const bytes = Buffer.from('data: Grüße 🌍\n\n')
  for (let cut = 1; cut < bytes.length; cut++) t.equal(frame(bytes, [cut])[0]!.data, 'Grüße 🌍')
  t.equal(frame(Buffer.from([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xff, 0x41, 0x0a, 0x0a]))[0]!.data, '\ufffdA')
})

t.test('the rest of a stream that ends without a blank line is an event, marked unterminated', async (t) => {
  const evs = frame('data: a\n\ndata: b')
  t.same(
    evs.map((e) => [e.data, e.terminated, e.lineEnded]),
    [
      ['a', true, true],
      ['b', false, false],
    ],
  )
  t.equal(serializeEvent(evs[1]!).toString(), 'data: b', 'written back as it came: no blank line is added')
  t.same(frame('data: a\n'), [parseEvent(['data: a'], false, true)])
})

t.test('serializeEvent writes LF-only, mark-free input back byte for byte, and replaces data and other lines in place', async (t) => {
  const text = 'event: delta\ndata: {"a":1}\nid: 7\n\n\n: ping\n\ndata:x\ndata\n\n'
  t.equal(Buffer.concat(frame(text).map((e) => serializeEvent(e))).toString(), text)
  const ev = frame('event: e\ndata: a\ndata: b\nid: 1\n\n')[0]!
  t.equal(serializeEvent(ev, 'x\ny').toString(), 'event: e\ndata: x\ndata: y\nid: 1\n\n')
  t.equal(serializeEvent(ev, undefined, ['event: [SECRET_1]']).toString(), 'event: [SECRET_1]\ndata: a\ndata: b\n\n')
  t.equal(serializeEvent(parseEvent([': only a comment']), 'd').toString(), ': only a comment\ndata: d\n\n')
})

t.test('carriesSseFields recognises SSE field lines anywhere in a text, and nothing else', async (t) => {
  for (const s of ['data: x', 'event: a\n', 'x\r\nid: 3', '\ufeffretry: 10', 'hello\rdata', 'data']) t.ok(carriesSseFields(s), JSON.stringify(s))
  for (const s of ['{"data": 1}', 'metadata: x', 'the data: x', 'datum: 1', '']) t.notOk(carriesSseFields(s), JSON.stringify(s))
})

t.test('an error event carries the error document in the caller’s dialect, and both SDKs raise it', async (t) => {
  const facts = { code: 'MG_RESPONSE_BLOCKED', status: 502, message: 'm', details: { data_classes: ['secret'] } }
  const openai = errorEvent(errorDocument('openai', facts, { requestId: 'r' }))
  t.equal(openai.toString(), 'event: error\ndata: {"error":{"type":"modelgate_error","code":"MG_RESPONSE_BLOCKED","message":"m","request_id":"r","data_classes":["secret"]}}\n\n')
  const anthropic = errorEvent(errorDocument('anthropic', facts, { requestId: 'r' }))
  t.same(JSON.parse((await sdkEvents(anthropic, 'anthropic'))[0]!.data), {
    type: 'error',
    error: { type: 'api_error', message: 'm', code: 'MG_RESPONSE_BLOCKED', data_classes: ['secret'], details: { error_code: 'MG_RESPONSE_BLOCKED' } },
    request_id: 'r',
  })
  t.same((await sdkEvents(openai, 'openai')).map((e) => e.event), ['error'])
})

/** Events as the OpenAI and Anthropic SDKs decode a body. */
async function sdkEvents(body: Buffer, which: 'openai' | 'anthropic'): Promise<{ event: string | null; data: string }[]> {
  const iter = which === 'openai' ? openaiEvents : anthropicEvents
  const out: { event: string | null; data: string }[] = []
  for await (const e of iter(new Response(new Uint8Array(body)), new AbortController())) out.push({ event: e.event, data: e.data })
  return out
}

/** Events as eventsource-parser (a WHATWG implementation) dispatches them. */
function whatwgEvents(body: Buffer): { type: string | undefined; data: string }[] {
  const out: { type: string | undefined; data: string }[] = []
  const p = createParser({ onEvent: (e) => out.push({ type: e.event, data: e.data }) })
  p.feed(body.toString('utf8'))
  return out
}

const line = fc.oneof(
  fc.constantFrom('data: {"a":"b"}', 'data:  x', 'data:y', 'data', 'data:', 'event: e', 'event:f', ': c', 'id: 1', 'retry: 5', 'foo: bar', '\ufeffdata: m', '\ufeff\ufeffevent: n', '\ufeff', 'x'),
  fc.string({ maxLength: 6 }).map((s) => `data: ${s.replace(/[\r\n]/g, '')}`),
)
const terminator = fc.constantFrom('\n', '\r', '\r\n')
const streamArb = fc
  .array(fc.tuple(line, terminator, fc.boolean()), { maxLength: 12 })
  .map((parts) => parts.map(([l, term, blank]) => l + term + (blank ? term : '')).join(''))

t.test('every reader reads from the canonical output the events the framer read', async (t) => {
  await fc.assert(
    fc.asyncProperty(streamArb, fc.boolean(), async (text, bom) => {
      const input = Buffer.from((bom ? '\ufeff' : '') + text)
      const evs = frame(input)
      const out = Buffer.concat(evs.map((e) => serializeEvent(e)))
      // The framer reads its own output the same way.
      t.same(
        frame(out).map((e) => [e.data, e.type]),
        evs.map((e) => [e.data, e.type]),
      )
      // A WHATWG reader dispatches the framer's terminated events with data.
      t.same(whatwgEvents(out), dispatched(evs))
      // The SDKs decode the framer's events with data or a type; the OpenAI SDK also the unterminated rest.
      const sdk = (e: SseEvent) => ({ event: e.type ?? null, data: e.data ?? '' })
      const named = evs.filter((e) => e.data !== undefined || e.type !== undefined)
      t.same(await sdkEvents(out, 'openai'), named.map(sdk))
      t.same(await sdkEvents(out, 'anthropic'), named.filter((e) => e.terminated).map(sdk))
    }),
    { seed: 20251201, numRuns: 200 },
  )
})

t.test('the SDKs read no data from the input that the framer did not read', async (t) => {
  // Where a line starts with two marks the SDKs drop one and then ignore the line; the framer reads it
  // as the field it names, and the canonical output makes every reader agree (the test above).
  await fc.assert(
    fc.asyncProperty(streamArb, fc.boolean(), async (text, bom) => {
      const input = Buffer.from((bom && !text.startsWith('\ufeff') ? '\ufeff' : '') + text)
      const framed = frame(input)
      const data = new Set(framed.map((e) => e.data ?? ''))
      const lines = new Set(framed.flatMap((e) => (e.data ?? '').split('\n')))
      for (const which of ['openai', 'anthropic'] as const) for (const e of await sdkEvents(input, which)) t.ok(data.has(e.data), `${which} read ${JSON.stringify(e.data)} from ${JSON.stringify(input.toString())}`)
      // A WHATWG reader ignores a line that starts with a mark after the first: it reads a subset of the lines.
      for (const e of whatwgEvents(input)) for (const l of e.data.split('\n')) t.ok(lines.has(l), `WHATWG read ${JSON.stringify(l)}`)
    }),
    { seed: 20251202, numRuns: 100 },
  )
})
