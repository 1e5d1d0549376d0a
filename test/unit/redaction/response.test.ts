/**
 * Buffered responses are classified by what they contain, not by the type
 * they declare: SSE frames are redacted as a stream, JSON and text by the
 * document scan, binary bodies are withheld unless the provider may send them.
 */
import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { silentLogger } from '../../../src/log.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { BodyChunk } from '../../../src/pipeline/stage.ts'
import { parseProviderRequest } from '../../../src/providers/parse.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { BINARY_CLASS, BINARY_DETECTOR, classifyBody } from '../../../src/redaction/response.ts'
import { createRedactionStages } from '../../../src/redaction/stage.ts'

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const ESCAPED = '\\u0067' + TOKEN.slice(1)
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), Buffer.from('IHDR'), Buffer.alloc(64, 0xff)])

function ctxFor(provider = 'openai'): RequestContext {
  const ctx = new RequestContext()
  const body = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }
  ctx.requestBody = Buffer.from(JSON.stringify(body))
  ctx.put('request', parseProviderRequest(matchRoute('/v1/chat/completions')!, body, provider))
  return ctx
}

async function respond(config: Record<string, unknown>, headers: Record<string, string>, body: Buffer | string, provider?: string): Promise<{ ctx: RequestContext; out: Buffer }> {
  const stages = createRedactionStages(redactionConfigFrom(config), { logger: silentLogger })
  const ctx = ctxFor(provider)
  await stages.scan.requestBody!(ctx)
  await stages.apply.requestBody!(ctx)
  for (const [k, v] of Object.entries(headers)) ctx.responseHeaders.set(k, v)
  ctx.responseStreaming = (headers['content-type'] ?? '').startsWith('text/event-stream')
  await stages.apply.responseHeaders!(ctx)
  const chunk: BodyChunk = { data: Buffer.isBuffer(body) ? body : Buffer.from(body), end: true }
  await stages.apply.responseBody!(ctx, chunk)
  return { ctx, out: chunk.data }
}

const sse = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${ESCAPED}"}}]}\n\ndata: [DONE]\n\n`

t.test('classifyBody decides by content', async (t) => {
  const cases: [name: string, body: Buffer | string, type: string, kind: ReturnType<typeof classifyBody>][] = [
    ['empty', '', 'application/json', 'empty'],
    ['JSON', '{"a":1}', 'application/json', 'document'],
    ['JSON declared as octet-stream', '{"a":1}', 'application/octet-stream', 'document'],
    ['plain text declared as an image', 'hello', 'image/png', 'document'],
    ['SSE frames declared as text/plain', sse, 'text/plain', 'sse'],
    ['SSE frames declared as JSON', sse, 'application/json; charset=utf-8', 'sse'],
    ['SSE after a byte-order mark and CR line ends', '\ufeffevent: x\rdata: y\r\r', '', 'sse'],
    ['a PNG', PNG, 'image/png', 'binary'],
    ['a PNG declared as JSON', PNG, 'application/json', 'binary'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), 'application/json', 'binary'],
    ['a NUL byte (UTF-16 text reads as ASCII plus NULs)', Buffer.from('{"a":1}', 'utf16le'), 'application/json', 'binary'],
    ['mostly control characters', Buffer.from([1, 2, 3, 4, 5, 0x41, 0x42]), 'text/plain', 'binary'],
    ['a charset other than UTF-8', 'hello', 'text/plain; charset=utf-7', 'binary'],
    ['a quoted UTF-8 charset', 'hello', 'text/plain; charset="utf-8"', 'document'],
  ]
  for (const [name, body, type, kind] of cases) t.equal(classifyBody(Buffer.isBuffer(body) ? body : Buffer.from(body), type), kind, name)
})

t.test('a buffered body that carries SSE frames is redacted as a stream, whatever it declares', async (t) => {
  for (const type of ['text/plain', 'application/json', 'application/octet-stream', '']) {
    const { ctx, out } = await respond({}, type ? { 'content-type': type } : {}, sse)
    const text = out.toString()
    t.notOk(text.includes(ESCAPED) || text.includes(TOKEN), `${type || 'no type'}: the escaped token is gone`)
    t.match(text, /"content":"\[GITHUB_TOKEN_1\]"/, `${type || 'no type'}: the SDK decodes the placeholder`)
    t.ok(ctx.findings.some((f) => f.direction === 'response' && f.detector === 'github-pat' && f.location.startsWith('sse:')))
  }
})

t.test('the stream pass is followed by a text pass for a client that reads the body as text', async (t) => {
  // A value that only exists across the SSE structure (here: an event's name, a blank line and the next event's data).
  const custom = [{ id: 'across-events', dataClass: 'internal', confidence: 'high', pattern: 'alpha\n\ndata: omega', keywords: ['alpha'], maxLength: 64 }]
  const { out, ctx } = await respond({ custom }, { 'content-type': 'text/plain' }, 'event: alpha\n\ndata: omega\n\n')
  t.notOk(out.toString().includes('omega'), 'redacted in the text a plain-text reader sees')
  t.ok(ctx.findings.some((f) => f.detector === 'across-events' && f.location === '$body'))
})

t.test('JSON and text are scanned whatever they declare', async (t) => {
  for (const type of ['application/octet-stream', 'image/png', 'text/html']) {
    const { out } = await respond({}, { 'content-type': type }, JSON.stringify({ x: `${ESCAPED}` }).replace('\\\\u0067', '\\u0067'))
    t.same(JSON.parse(out.toString()), { x: '[GITHUB_TOKEN_1]' }, type)
  }
})

t.test('a binary body is withheld with a clear error unless the provider may send binary responses', async (t) => {
  const err = await respond({}, { 'content-type': 'image/png' }, PNG).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof GateError)
  t.equal((err as GateError).code, 'MG_RESPONSE_BINARY')
  t.equal((err as GateError).status, 502)
  t.same((err as GateError).details, { bytes: PNG.length })

  const { out, ctx } = await respond({ responses: { binaryProviders: ['images'] } }, { 'content-type': 'image/png' }, PNG, 'images')
  t.equal(out, PNG, 'passed as it came')
  t.same(ctx.findings, [{ detector: BINARY_DETECTOR, dataClass: BINARY_CLASS, confidence: 'high', direction: 'response', location: '$body', start: 0, length: PNG.length, hash: ctx.findings[0]!.hash, action: 'allow' }])
  t.ok(ctx.dataClasses.has('binary'), 'the audit record lists the binary class as allowed')

  await t.rejects(respond({ responses: { binaryProviders: ['images'] } }, { 'content-type': 'image/png' }, PNG, 'openai'), { code: 'MG_RESPONSE_BINARY' }, 'another provider is still refused')
})

t.test('a streamed response is framed per event whatever its chunks, and a block ends it with an error event', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ responses: { actions: { secret: 'block' } } }), { logger: silentLogger })
  const ctx = ctxFor()
  ctx.responseHeaders.set('content-type', 'text/event-stream')
  ctx.responseStreaming = true
  await stages.apply.responseHeaders!(ctx)
  const bytes = Buffer.from(`data: {"choices":[{"index":0,"delta":{"content":"hello "}}]}\r\n\r\ndata:  {"choices":[{"index":0,"delta":{"content":"${ESCAPED}"}}]}\r\n\r\n` + `data: {"choices":[{"index":0,"delta":{"content":"${' '.repeat(600)}"}}]}\r\n\r\n`)
  const outs: Buffer[] = []
  for (let i = 0; i < bytes.length && !ctx.responseTerminated; i += 9) {
    const chunk: BodyChunk = { data: bytes.subarray(i, i + 9), end: i + 9 >= bytes.length }
    await stages.apply.responseBody!(ctx, chunk)
    outs.push(chunk.data)
  }
  const out = Buffer.concat(outs).toString()
  t.notOk(out.includes('hp_Zq8'))
  t.match(out, /event: error\ndata: \{"error":\{"type":"modelgate_error","code":"MG_RESPONSE_BLOCKED"/)
  t.ok(ctx.responseTerminated)
})

t.test('a streamed event that never ends is not held without bound: the stream ends with an error event', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ responses: { maxDecodedBytes: 4096 } }), { logger: silentLogger })
  const ctx = ctxFor()
  ctx.responseHeaders.set('content-type', 'text/event-stream')
  ctx.responseStreaming = true
  await stages.apply.responseHeaders!(ctx)
  const outs: Buffer[] = []
  for (let i = 0; i < 10 && !ctx.responseTerminated; i++) {
    const chunk: BodyChunk = { data: Buffer.from(i === 0 ? 'data: ' : 'x'.repeat(1000)), end: false }
    await stages.apply.responseBody!(ctx, chunk)
    outs.push(chunk.data)
  }
  t.ok(ctx.responseTerminated)
  t.match(Buffer.concat(outs).toString(), /"code":"MG_RESPONSE_UNREADABLE"/)
})
