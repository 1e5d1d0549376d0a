import t from 'tap'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import { GateError } from '../../../src/errors.ts'
import { silentLogger } from '../../../src/log.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { BodyChunk } from '../../../src/pipeline/stage.ts'
import { parseProviderRequest } from '../../../src/providers/parse.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { createRedactionStages } from '../../../src/redaction/stage.ts'

const EMAIL = 'jane.roe@gmail.com'
const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'

function requestCtx(body: unknown): RequestContext {
  const ctx = new RequestContext()
  ctx.requestBody = Buffer.from(JSON.stringify(body))
  ctx.put('request', parseProviderRequest(matchRoute('/v1/chat/completions')!, body, 'openai'))
  return ctx
}

async function runRequest(stages: ReturnType<typeof createRedactionStages>, ctx: RequestContext): Promise<void> {
  await stages.scan.requestBody!(ctx)
  await stages.apply.requestBody!(ctx)
}

const chatBody = {
  model: 'gpt-4o',
  seed: 12345678901234567890n.toString(),
  messages: [
    { role: 'user', content: `Mail ${EMAIL} my token ${TOKEN}; again ${EMAIL}. Already [EMAIL_1] here.` },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: JSON.stringify({ to: EMAIL }) } }] },
    { role: 'tool', tool_call_id: 'c1', content: `sent to ${EMAIL}` },
  ],
}

t.test('scan records findings and classes; apply rewrites every text field with stable placeholders', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger })
  const ctx = requestCtx(chatBody)
  await stages.scan.requestBody!(ctx)
  t.same([...ctx.dataClasses].sort(), ['pii', 'secret'])
  t.equal(ctx.findings.length, 5)
  t.same(ctx.findings[0], { detector: 'email', dataClass: 'pii', confidence: 'high', direction: 'request', location: 'messages[0].content', start: 5, length: EMAIL.length, hash: ctx.findings[0]!.hash, action: 'withheld' })
  t.match(ctx.findings[0]!.hash, /^[0-9a-f]{32}$/)
  t.notOk(JSON.stringify(ctx.findings).includes(EMAIL), 'findings never carry values')
  await stages.apply.requestBody!(ctx)
  const sent = JSON.parse(ctx.requestBody.toString('utf8'))
  // The caller's own "[EMAIL_1]" is left alone and the address gets the next free number.
  t.equal(sent.messages[0].content, 'Mail [EMAIL_2] my token [GITHUB_TOKEN_1]; again [EMAIL_2]. Already [EMAIL_1] here.')
  t.same(JSON.parse(sent.messages[1].tool_calls[0].function.arguments), { to: '[EMAIL_2]' })
  t.equal(sent.messages[2].content, 'sent to [EMAIL_2]')
  t.ok(ctx.requestBodyReplaced)
  t.equal(sent.seed, chatBody.seed, 'untouched values stay as they were')
  t.equal(ctx.out.request!.model, 'gpt-4o', 'the parsed request is a summary, unaffected by the rewrite')
})

t.test('block is decided per class and reports classes, never values', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ actions: { secret: 'block', pii: 'redact' } }), { logger: silentLogger })
  const ctx = requestCtx(chatBody)
  const err = await runRequest(stages, ctx).then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(err instanceof GateError)
  t.equal((err as GateError).code, 'MG_DATA_BLOCKED')
  t.same((err as GateError).details, { data_classes: ['secret'] })
  t.notOk(JSON.stringify(err).includes(TOKEN))
  t.equal(ctx.findings.find((f) => f.dataClass === 'secret')!.action, 'block')
  t.same(new Set(ctx.findings.filter((f) => f.dataClass === 'pii').map((f) => f.action)), new Set(['withheld']), 'the refused request sent the addresses neither: withheld, not redacted')
})

t.test('until redaction-apply decides, every request finding is withheld: a request refused in between sent nothing', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ actions: { secret: 'block', pii: 'redact' } }), { logger: silentLogger })
  const ctx = requestCtx(chatBody)
  await stages.scan.requestBody!(ctx)
  t.same(new Set(ctx.findings.map((f) => f.action)), new Set(['withheld']))
  const allowed = requestCtx(chatBody)
  const permissive = createRedactionStages(redactionConfigFrom({ actions: { secret: 'allow', pii: 'redact' } }), { logger: silentLogger })
  await runRequest(permissive, allowed)
  t.same(new Set(allowed.findings.filter((f) => f.dataClass === 'secret').map((f) => f.action)), new Set(['allow']), 'apply records allow')
  t.same(new Set(allowed.findings.filter((f) => f.dataClass === 'pii').map((f) => f.action)), new Set(['redact']), 'and redact')
})

t.test('policy permission sends a class unredacted and records allow', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ actions: { secret: 'block' } }), { logger: silentLogger, permitsUnredacted: (_ctx, cls) => cls === 'secret' })
  const ctx = requestCtx({ model: 'gpt-4o', messages: [{ role: 'user', content: `token ${TOKEN}` }] })
  await runRequest(stages, ctx)
  t.notOk(ctx.requestBodyReplaced)
  t.equal(ctx.findings[0]!.action, 'allow')
})

t.test('a request with nothing to redact is left byte for byte', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger })
  const ctx = requestCtx({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] })
  const before = ctx.requestBody
  await runRequest(stages, ctx)
  t.equal(ctx.requestBody, before)
  t.equal(ctx.findings.length, 0)
})

async function respond(stages: ReturnType<typeof createRedactionStages>, ctx: RequestContext, headers: Record<string, string>, chunks: Buffer[]): Promise<Buffer[]> {
  for (const [k, v] of Object.entries(headers)) ctx.responseHeaders.set(k, v)
  ctx.responseStreaming = (headers['content-type'] ?? '').startsWith('text/event-stream')
  await stages.apply.responseHeaders!(ctx)
  const out: Buffer[] = []
  for (let i = 0; i < chunks.length; i++) {
    const chunk: BodyChunk = { data: chunks[i]!, end: i === chunks.length - 1 }
    if (ctx.responseTerminated) break
    await stages.apply.responseBody!(ctx, chunk)
    out.push(chunk.data)
  }
  return out
}

t.test('buffered responses: gzip and br are decoded, redacted, restored, sent identity-encoded', async (t) => {
  for (const [enc, compress] of [['gzip', gzipSync], ['br', brotliCompressSync]] as const) {
    const stages = createRedactionStages(redactionConfigFrom({ restore: { enabled: true } }), { logger: silentLogger })
    const ctx = requestCtx({ model: 'gpt-4o', messages: [{ role: 'user', content: `write to ${EMAIL}` }] })
    await runRequest(stages, ctx)
    const answer = { choices: [{ message: { role: 'assistant', content: `Done, wrote to [EMAIL_1] using ${TOKEN}` } }] }
    const [out] = await respond(stages, ctx, { 'content-type': 'application/json', 'content-encoding': enc }, [compress(Buffer.from(JSON.stringify(answer)))])
    t.same(JSON.parse(out!.toString()).choices[0].message.content, `Done, wrote to ${EMAIL} using [GITHUB_TOKEN_1]`, enc)
    t.ok(ctx.responseHeaderChanges.remove.has('content-encoding'))
    t.ok(ctx.findings.some((f) => f.direction === 'response' && f.detector === 'github-pat'))
  }
})

t.test('responses with an encoding modelgate cannot read are refused, never forwarded', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger })
  const ctx = new RequestContext()
  ctx.responseHeaders.set('content-type', 'application/json')
  ctx.responseHeaders.set('content-encoding', 'zstd')
  await t.rejects(async () => stages.apply.responseHeaders!(ctx), { code: 'MG_RESPONSE_UNREADABLE' })
  const ctx2 = new RequestContext()
  await t.rejects(respond(stages, ctx2, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, [Buffer.from('not gzip')]), { code: 'MG_RESPONSE_UNREADABLE' })
})

t.test('a buffered response with a blocked class is refused with the classes', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ responses: { actions: { secret: 'block' } } }), { logger: silentLogger })
  const ctx = new RequestContext()
  await t.rejects(respond(stages, ctx, { 'content-type': 'application/json' }, [Buffer.from(JSON.stringify({ text: TOKEN }))]), {
    code: 'MG_RESPONSE_BLOCKED',
    details: { data_classes: ['secret'] },
  })
})

t.test('a gzip SSE stream is decoded chunk by chunk; a block ends it with an SSE error event', async (t) => {
  const stages = createRedactionStages(redactionConfigFrom({ responses: { actions: { secret: 'block' } } }), { logger: silentLogger })
  const ctx = new RequestContext()
  const ev = (content: string) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`
  const gz = gzipSync(Buffer.from(ev('hi there ') + ev(TOKEN.slice(0, 20)) + ev(TOKEN.slice(20)) + ev(' '.repeat(400))))
  const chunks = [gz.subarray(0, 20), gz.subarray(20, 40), gz.subarray(40)]
  const out = Buffer.concat(await respond(stages, ctx, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' }, chunks)).toString()
  t.notOk(out.includes('ghp_'))
  t.match(out, /event: error\ndata: \{"error":\{"type":"modelgate_error","code":"MG_RESPONSE_BLOCKED"/)
  t.ok(ctx.responseTerminated)
})

t.test('outside the body: the path, query and headers are scanned when the headers arrive and decided with the body', async (t) => {
  const headersCtx = (path: string, headers: Record<string, string> = {}) => {
    const ctx = requestCtx({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] })
    ctx.path = path
    ctx.method = 'POST'
    for (const [k, v] of Object.entries({ ':path': path, 'content-type': 'application/json', ...headers })) ctx.requestHeaders.set(k, v)
    return ctx
  }
  const run = async (stages: ReturnType<typeof createRedactionStages>, ctx: RequestContext) => {
    await stages.scan.requestHeaders!(ctx)
    try {
      await runRequest(stages, ctx)
      return undefined
    } catch (err) {
      return err as GateError
    }
  }

  t.test('by default a value to redact in a header or the query refuses the request, naming where', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger })
    const ctx = headersCtx(`/v1/chat/completions?api_key=${TOKEN}`, { 'x-debug-note': `mail ${EMAIL}` })
    await stages.scan.requestHeaders!(ctx)
    t.same([...ctx.dataClasses].sort(), ['pii', 'secret'], 'the classes reach policy before the body is read')
    t.same(ctx.out.url, { path: '/v1/chat/completions', queryNames: ['api_key'] })
    const err = await run(stages, headersCtx(`/v1/chat/completions?api_key=${TOKEN}`, { 'x-debug-note': `mail ${EMAIL}` }))
    t.equal(err?.code, 'MG_DATA_OUTSIDE_BODY')
    t.equal(err?.status, 400)
    t.same(err?.details, { locations: ['header:x-debug-note', 'url.query.api_key'], data_classes: ['pii', 'secret'] })
  })

  t.test('findings outside the body are recorded like body findings: type, location, position, salted hash, never the value', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger })
    const ctx = headersCtx(`/v1/chat/completions?api_key=${TOKEN}`)
    await run(stages, ctx)
    t.same(ctx.findings, [
      { detector: 'github-pat', dataClass: 'secret', confidence: 'high', direction: 'request', location: 'url.query.api_key', start: 8, length: TOKEN.length, hash: stages.engine.hash(TOKEN), action: 'block' },
    ])
    t.notOk(JSON.stringify(ctx.findings).includes(TOKEN))
  })

  t.test('with headers.action strip and query.action remove, the header is stripped and the parameter removed', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({ headers: { action: 'strip' }, query: { action: 'remove' } }), { logger: silentLogger })
    const ctx = headersCtx(`/v1/chat/completions?beta=true&api_key=${TOKEN}&x=%20`, { 'x-debug-note': TOKEN })
    t.equal(await run(stages, ctx), undefined)
    t.same([...ctx.requestHeaderChanges.remove], ['x-debug-note'])
    t.same([...ctx.requestHeaderChanges.set], [[':path', '/v1/chat/completions?beta=true&x=%20']])
    t.same(
      ctx.findings.map((f) => [f.location, f.action]),
      [
        ['url.query.api_key', 'redact'],
        ['header:x-debug-note', 'redact'],
      ],
    )
  })

  t.test('a value in the path cannot be taken out: the request is refused whatever the actions', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({ headers: { action: 'strip' }, query: { action: 'remove' } }), { logger: silentLogger })
    const ctx = headersCtx(`/openai/deployments/${TOKEN}/chat/completions`)
    t.same((await run(stages, ctx))?.details, { locations: ['url.path'], data_classes: ['secret'] })
    t.equal(ctx.out.url?.path, '/openai/deployments/[GITHUB_TOKEN]/chat/completions')
  })

  t.test('a class configured to block refuses with MG_DATA_BLOCKED, as in the body', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({ actions: { secret: 'block' }, headers: { action: 'strip' } }), { logger: silentLogger })
    const err = await run(stages, headersCtx('/v1/chat/completions', { 'x-debug-note': TOKEN }))
    t.equal(err?.code, 'MG_DATA_BLOCKED')
    t.same(err?.details, { data_classes: ['secret'] })
  })

  t.test('a class policy permits unredacted leaves as it is, in headers and query too', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger, permitsUnredacted: (_ctx, c) => c === 'secret' })
    const ctx = headersCtx(`/v1/chat/completions?api_key=${TOKEN}`, { 'x-debug-note': TOKEN })
    t.equal(await run(stages, ctx), undefined)
    t.ok(ctx.requestHeaderChanges.empty)
    t.same(
      ctx.findings.map((f) => f.action),
      ['allow', 'allow'],
    )
  })

  t.test('with redaction off nothing is scanned', async (t) => {
    const stages = createRedactionStages(redactionConfigFrom({ enabled: false }), { logger: silentLogger })
    const ctx = headersCtx(`/v1/chat/completions?api_key=${TOKEN}`)
    t.equal(await run(stages, ctx), undefined)
    t.same(ctx.findings, [])
    t.equal(ctx.out.url, undefined)
  })
})
