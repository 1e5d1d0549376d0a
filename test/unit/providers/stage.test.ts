import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib'
import t from 'tap'
import type { ProvidersConfig } from '../../../src/config/sections/providers.ts'
import { GateError } from '../../../src/errors.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { Stage } from '../../../src/pipeline/stage.ts'
import { createProviderStage, PROVIDER_METADATA_KEY, routeProviderName } from '../../../src/providers/stage.ts'

const ROUTES: ProvidersConfig = {
  catalog: {
    openai: { kind: 'openai', upstream: 'https://api.openai.com' },
    anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com' },
    'internal-llm': { kind: 'openai', upstream: 'http://vllm.ml.svc:8000', root: false, basePaths: ['/internal'] },
    'azure-east': { kind: 'azure-openai', upstream: 'https://east.openai.azure.com', basePaths: ['/openai'] },
  },
}
const MAX = 64 * 1024

const stage = (maxBodyBytes = MAX): Stage => createProviderStage({ config: ROUTES, maxBodyBytes })

const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Grüße' }], max_tokens: 20 })
const MESSAGES_BODY = JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] })

interface RequestOpts {
  method?: string
  path?: string
  headers?: Record<string, string>
  body?: Buffer | string
  provider?: string
}

function request(opts: RequestOpts = {}): RequestContext {
  const ctx = new RequestContext()
  ctx.method = opts.method ?? 'POST'
  ctx.path = opts.path ?? '/v1/chat/completions'
  for (const [k, v] of Object.entries(opts.headers ?? { 'content-type': 'application/json' })) ctx.requestHeaders.set(k, v)
  ctx.requestBody = Buffer.from(opts.body ?? CHAT_BODY)
  if (opts.provider !== undefined) ctx.streamMetadata.set(PROVIDER_METADATA_KEY, opts.provider)
  return ctx
}

/** Runs both request phases; returns the denial, if any. */
async function runRequest(s: Stage, ctx: RequestContext): Promise<GateError | undefined> {
  try {
    await s.requestHeaders!(ctx)
    await s.requestBody!(ctx)
    return undefined
  } catch (err) {
    if (err instanceof GateError) return err
    throw err
  }
}

t.test('request headers: the path and method decide whether the request is inspectable', async (t) => {
  t.test('a known API path asks the upstream for an uncompressed response', async (t) => {
    const ctx = request()
    await stage().requestHeaders!(ctx)
    t.same([...ctx.requestHeaderChanges.set], [['accept-encoding', 'identity']])
  })

  const denials: [name: string, opts: RequestOpts, code: string, status: number, details: Record<string, unknown>][] = [
    ['an unknown path', { path: '/v1/models?limit=5' }, 'MG_ROUTE_UNSUPPORTED', 404, {}],
    ['an unknown path is not echoed in the details (it may carry a secret)', { path: '/v1/ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2/v1/chat/completions' }, 'MG_ROUTE_UNSUPPORTED', 404, {}],
    ['an unconfigured base path', { path: '/internal/v1/chat/completions', provider: 'openai' }, 'MG_ROUTE_UNSUPPORTED', 404, {}],
    ['GET on a model path', { method: 'GET' }, 'MG_METHOD_UNSUPPORTED', 405, { method: 'GET' }],
    ['PUT on a model path', { method: 'PUT', path: '/v1/messages' }, 'MG_METHOD_UNSUPPORTED', 405, { method: 'PUT' }],
    ['a lower-case post', { method: 'post' }, 'MG_METHOD_UNSUPPORTED', 405, { method: 'post' }],
    ['no method at all', { method: '' }, 'MG_METHOD_UNSUPPORTED', 405, { method: '' }],
  ]
  for (const [name, opts, code, status, details] of denials) {
    t.test(`${name} is denied with ${code}`, async (t) => {
      const ctx = request(opts)
      let err: GateError | undefined
      try {
        await stage().requestHeaders!(ctx)
      } catch (e) {
        err = e as GateError
      }
      t.equal(err?.code, code)
      t.equal(err?.status, status)
      t.same(err?.details, details)
      t.ok(ctx.requestHeaderChanges.empty, 'nothing is changed on a denied request')
    })
  }
})

t.test('request body: content type', async (t) => {
  const accepted = ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', ' application/json ;charset=UTF-8', 'application/vnd.api+json']
  for (const type of accepted) {
    const ctx = request({ headers: { 'content-type': type } })
    t.equal(await runRequest(stage(), ctx), undefined, `${JSON.stringify(type)} is accepted`)
    t.equal(ctx.out.request?.model, 'gpt-4o-mini')
  }
  const refused: [string | undefined, string][] = [
    [undefined, ''],
    ['', ''],
    ['text/plain', 'text/plain'],
    ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded'],
    ['multipart/form-data; boundary=x', 'multipart/form-data; boundary=x'],
    ['application/jsonp', 'application/jsonp'],
    ['text/json', 'text/json'],
    ['application/json-seq', 'application/json-seq'],
  ]
  for (const [type, shown] of refused) {
    const ctx = request({ headers: type === undefined ? {} : { 'content-type': type } })
    const err = await runRequest(stage(), ctx)
    t.equal(err?.code, 'MG_CONTENT_TYPE_UNSUPPORTED', `${JSON.stringify(type)} is refused`)
    t.equal(err?.status, 400)
    t.same(err?.details, { content_type: shown })
    t.equal(ctx.out.request, undefined)
  }
})

t.test('request body: malformed and empty JSON is MG_BODY_MALFORMED, with the line and column', async (t) => {
  const cases: [name: string, body: string | Buffer, details: Record<string, unknown>][] = [
    ['an empty body', '', { problem: 'the body is empty' }],
    ['truncated JSON', '{"model":"m","messages":[', { problem: 'unexpected end of input (expected a value)', line: 1, column: 26 }],
    ['a trailing comma', '{"model":"m",\n}', { problem: "unexpected character '}' (expected a string key)", line: 2, column: 1 }],
    ['plain text', 'hello', { problem: "unexpected character 'h' (expected a value)", line: 1, column: 1 }],
    ['a byte-order mark before the JSON', '\ufeff' + CHAT_BODY, { problem: 'a byte order mark is not allowed before JSON', line: 1, column: 1 }],
    ['a NUL byte', '\u0000', { problem: 'unexpected character U+0000 (expected a value)', line: 1, column: 1 }],
    ['bytes that are not UTF-8', Buffer.concat([Buffer.from('{"model":"m",\n "x":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), { problem: 'the body is not valid UTF-8', line: 2, column: 7 }],
  ]
  for (const [name, body, details] of cases) {
    const err = await runRequest(stage(), request({ body }))
    t.equal(err?.code, 'MG_BODY_MALFORMED', name)
    t.equal(err?.status, 400, name)
    t.same(err?.details, details, name)
  }
})

t.test('request body: valid JSON that does not fit the API is MG_BODY_INVALID', async (t) => {
  const err = await runRequest(stage(), request({ body: '[1,2,3]' }))
  t.equal(err?.code, 'MG_BODY_INVALID')
  t.same(err?.details, { field: '', problem: 'the body must be a JSON object' })
  const deep = '['.repeat(100_000) + ']'.repeat(100_000)
  const e2 = await runRequest(stage(), request({ body: deep }))
  t.equal(e2?.code, 'MG_BODY_TOO_DEEP', 'very deep JSON is refused, never thrown as an exception')
  t.same(e2?.details, { limit: 128, line: 1, column: 129 })
})

t.test('request body: a tool type the tool map does not know is refused unless the configuration allows it', async (t) => {
  const responses = (tools: unknown[]) => request({ path: '/v1/responses', body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi', tools }) })
  const unknown = await runRequest(stage(), responses([{ type: 'web_search' }, { type: 'programmatic_tool_calling' }]))
  t.equal(unknown?.code, 'MG_TOOL_TYPE_UNKNOWN')
  t.equal(unknown?.status, 403)
  t.same(unknown?.details, { field: 'tools[1]', tool_type: 'programmatic_tool_calling' }, 'the field and the type, for the caller')
  const future = await runRequest(stage(), request({ path: '/v1/messages', body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'web_search_20991231', name: 'web_search' }] }) }))
  t.same([future?.code, future?.details], ['MG_TOOL_TYPE_UNKNOWN', { field: 'tools[0]', tool_type: 'web_search_20991231' }], 'a version the map does not know')
  const chat = await runRequest(stage(), request({ body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], tool_choice: { type: 'code_interpreter' } }) }))
  t.same([chat?.code, chat?.details], ['MG_TOOL_TYPE_UNKNOWN', { field: 'tool_choice', tool_type: 'code_interpreter' }], 'chat completions know no built-in tool types, wherever one is named')

  const secretLike = await runRequest(stage(), responses([{ type: 'Tok-ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2' }]))
  t.same([secretLike?.code, secretLike?.details], ['MG_TOOL_TYPE_UNKNOWN', { field: 'tools[0]', tool_type: '[omitted]' }], 'a type that does not read like one is not repeated')
  t.notMatch(secretLike?.internal, /ghp_/)

  const allowing = createProviderStage({ config: { ...ROUTES, allowedToolTypes: ['programmatic_tool_calling', 'web_search_20991231'] }, maxBodyBytes: MAX })
  const ctx = responses([{ type: 'programmatic_tool_calling' }])
  t.equal(await runRequest(allowing, ctx), undefined, 'a listed type passes')
  t.match(ctx.out.request?.tools, [{ name: 'programmatic_tool_calling', type: 'programmatic_tool_calling', known: false }], 'and is still a tool policy decides')
  t.equal(await runRequest(allowing, responses([{ type: 'tool_search' }, { type: 'mcp', server_label: 'x', server_url: 'https://x.example.com' }])), undefined, 'known types need no listing')
  t.equal((await runRequest(allowing, responses([{ type: 'something_else' }])))?.code, 'MG_TOOL_TYPE_UNKNOWN', 'only the listed types')
})

t.test('request body: compressed bodies are decoded and the decoded bytes go upstream', async (t) => {
  const json = Buffer.from(CHAT_BODY)
  const encodings: [string, Buffer][] = [
    ['gzip', gzipSync(json)],
    ['x-gzip', gzipSync(json)],
    ['deflate', deflateSync(json)],
    ['br', brotliCompressSync(json)],
    [' GZIP ', gzipSync(json)],
    // Raw deflate (no zlib header), as some clients send it: responses accepted it, now requests do too.
    ['deflate', deflateRawSync(json)],
    // Stacked codings are undone last-first.
    ['gzip, gzip', gzipSync(gzipSync(json))],
    ['deflate, br', brotliCompressSync(deflateSync(json))],
    ['br,gzip', gzipSync(brotliCompressSync(json))],
    ['identity, gzip', gzipSync(json)],
  ]
  for (const [encoding, body] of encodings) {
    const ctx = request({ headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body })
    t.equal(await runRequest(stage(), ctx), undefined, `${encoding} decodes`)
    t.equal(ctx.requestBodyReplaced, true)
    t.same(ctx.requestBody, json, `${encoding}: the decoded body replaces the request body`)
    t.ok(ctx.requestHeaderChanges.remove.has('content-encoding'), `${encoding}: content-encoding is removed`)
    t.equal(ctx.out.request?.maxTokens, 20, `${encoding}: the decoded body is what was parsed`)
  }
  for (const encoding of ['identity', '']) {
    const ctx = request({ headers: { 'content-type': 'application/json', 'content-encoding': encoding } })
    t.equal(await runRequest(stage(), ctx), undefined)
    t.equal(ctx.requestBodyReplaced, false, `${JSON.stringify(encoding)} leaves the body alone`)
    t.notOk(ctx.requestHeaderChanges.remove.has('content-encoding'))
  }
})

t.test('request body: encodings modelgate cannot read are refused, naming the ones it can', async (t) => {
  for (const encoding of ['zstd', 'compress', 'gzip, zstd', 'gzip, gzip, gzip, gzip, gzip']) {
    const err = await runRequest(stage(), request({ headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body: gzipSync(CHAT_BODY) }))
    t.equal(err?.code, 'MG_CONTENT_ENCODING_UNSUPPORTED', encoding)
    t.equal(err?.status, 400)
    t.same(err?.details, { content_encoding: encoding, supported: ['gzip', 'x-gzip', 'deflate', 'br', 'identity'], max_stacked: 4 })
  }
})

t.test('request body: a body that does not decode is MG_BODY_MALFORMED', async (t) => {
  const cases: [string, Buffer][] = [
    ['gzip', Buffer.from('not gzip at all')],
    ['gzip', gzipSync(CHAT_BODY).subarray(0, 20)],
    ['deflate', Buffer.from([0xff, 0x00, 0x12])],
    ['br', Buffer.from('definitely not brotli data, really')],
  ]
  for (const [encoding, body] of cases) {
    const err = await runRequest(stage(), request({ headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body }))
    t.equal(err?.code, 'MG_BODY_MALFORMED', `${encoding}: ${body.length} bytes`)
    t.same(err?.details, { problem: `the ${encoding} body does not decode` })
    t.match(err?.internal, new RegExp(`^cannot decode ${encoding} body: `))
  }
})

t.test('request body: a compression bomb stops at maxBodyBytes', async (t) => {
  const zeros = Buffer.alloc(32 * 1024 * 1024)
  const bombs: [string, Buffer][] = [
    ['gzip', gzipSync(zeros)],
    ['deflate', deflateSync(zeros)],
    ['br', brotliCompressSync(zeros)],
    ['deflate', deflateRawSync(zeros)],
    // A bomb inside a bomb: every layer is bounded, not just the last.
    ['gzip, gzip', gzipSync(gzipSync(zeros))],
  ]
  for (const [encoding, body] of bombs) {
    t.ok(body.length < MAX, `${encoding}: the compressed bomb fits the limit (${body.length} bytes)`)
    const ctx = request({ headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body })
    const err = await runRequest(stage(), ctx)
    t.equal(err?.code, 'MG_BODY_TOO_LARGE', encoding)
    t.equal(err?.status, 413)
    t.equal(err?.internal, `decoded ${encoding} body exceeds ${MAX} bytes`)
    t.equal(ctx.requestBodyReplaced, false, 'nothing is forwarded')
  }
  const exact = Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(MAX - 60) }] }))
  const padded = Buffer.concat([exact, Buffer.alloc(MAX - exact.length, 0x20)])
  t.equal(padded.length, MAX)
  t.equal(await runRequest(stage(), request({ headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(padded) })), undefined, 'a body that decodes to exactly maxBodyBytes is accepted')
})

t.test('request body: the provider named by the route metadata', async (t) => {
  t.test('names the provider of a known route', async (t) => {
    const ctx = request({ provider: 'internal-llm', path: '/internal/v1/chat/completions' })
    t.equal(await runRequest(stage(), ctx), undefined)
    t.equal(routeProviderName(ctx), 'internal-llm')
    t.equal(ctx.out.request?.providerName, 'internal-llm')
    t.equal(ctx.out.request?.provider, 'openai')
  })

  t.test('defaults to the kind of the path when absent or empty', async (t) => {
    for (const provider of [undefined, '']) {
      const ctx = request({ path: '/v1/messages', body: MESSAGES_BODY, provider })
      t.equal(await runRequest(stage(), ctx), undefined)
      t.equal(routeProviderName(ctx), undefined)
      t.equal(ctx.out.request?.providerName, 'anthropic')
    }
  })

  t.test('an Azure provider may serve the OpenAI path shape under its base path (Azure\'s v1 API)', async (t) => {
    const ctx = request({ provider: 'azure-east', path: '/openai/v1/chat/completions' })
    t.equal(await runRequest(stage(), ctx), undefined)
    t.equal(ctx.out.request?.providerName, 'azure-east')
    t.equal(ctx.out.target?.provider?.name, 'azure-east', 'the catalog entry is on the context')
    t.equal(ctx.out.target?.provider?.kind, 'azure-openai')
  })

  t.test('a route that names no provider goes to the provider that serves the path', async (t) => {
    for (const [path, body, name] of [
      ['/v1/chat/completions', CHAT_BODY, 'openai'],
      ['/internal/v1/chat/completions', CHAT_BODY, 'internal-llm'],
      ['/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21', CHAT_BODY, 'azure-east'],
      ['/v1/messages', MESSAGES_BODY, 'anthropic'],
    ] as const) {
      const ctx = request({ path, body })
      t.equal(await runRequest(stage(), ctx), undefined, path)
      t.equal(ctx.out.target?.provider?.name, name, `${path} → ${name}`)
    }
  })

  const denials: [name: string, opts: RequestOpts, internal: string][] = [
    ['a provider not in providers.catalog', { provider: 'shadow-llm' }, 'route names provider "shadow-llm", which is not in providers.catalog'],
    ['an Anthropic provider on an OpenAI path', { provider: 'anthropic' }, 'the path is not an API path of this provider route'],
    ['an OpenAI provider on the Anthropic path', { path: '/v1/messages', body: MESSAGES_BODY, provider: 'openai' }, 'the path is not an API path of this provider route'],
    ['a provider that takes no root paths, on a root path', { provider: 'internal-llm' }, 'the path is not an API path of this provider route'],
    ['an OpenAI provider on an Azure deployment path', { path: '/openai/deployments/gpt4o/chat/completions', provider: 'openai' }, 'the path is not an API path of this provider route'],
    ['a prototype name as the provider', { provider: '__proto__' }, 'route names provider "__proto__", which is not in providers.catalog'],
    ['a built-in method name as the provider', { provider: 'toString' }, 'route names provider "toString", which is not in providers.catalog'],
  ]
  for (const [name, opts, internal] of denials) {
    t.test(`${name} is MG_ROUTE_UNSUPPORTED`, async (t) => {
      const ctx = request(opts)
      const err = await runRequest(stage(), ctx)
      t.equal(err?.code, 'MG_ROUTE_UNSUPPORTED')
      t.equal(err?.internal, internal)
      t.equal(ctx.out.request, undefined)
    })
  }
})

t.test('request body without a recognised route is refused', async (t) => {
  const ctx = request()
  let err: GateError | undefined
  try {
    await stage().requestBody!(ctx)
  } catch (e) {
    err = e as GateError
  }
  t.equal(err?.code, 'MG_ROUTE_UNSUPPORTED')
  t.equal(err?.internal, 'request body without a recognised route')
})

t.test('one stage instance keeps requests apart', async (t) => {
  const s = stage()
  const a = request()
  const b = request({ path: '/v1/messages', body: MESSAGES_BODY })
  await s.requestHeaders!(a)
  await s.requestHeaders!(b)
  await s.requestBody!(a)
  await s.requestBody!(b)
  t.equal(a.out.request?.api, 'openai.chat_completions')
  t.equal(b.out.request?.api, 'anthropic.messages')
})

t.test('response body: model and usage from a buffered response, whatever type it declares', async (t) => {
  const respond = async (contentType: string | undefined, body: string, end = true) => {
    const ctx = request()
    if (contentType !== undefined) ctx.responseHeaders.set('content-type', contentType)
    await stage().responseBody!(ctx, { data: Buffer.from(body), end })
    return ctx
  }
  const ok = await respond('application/json', JSON.stringify({ model: 'gpt-4o-mini-2024-07-18', usage: { prompt_tokens: 9, completion_tokens: 3 } }))
  t.equal(ok.out.reply?.model, 'gpt-4o-mini-2024-07-18')
  t.same(ok.out.reply?.usage, { input: 9, output: 3 })
  const anthropic = await respond('application/json; charset=utf-8', JSON.stringify({ type: 'message', model: 'claude', usage: { input_tokens: 4, output_tokens: 2 } }))
  t.equal(anthropic.out.reply?.model, 'claude')
  t.same(anthropic.out.reply?.usage, { input: 4, output: 2 })
  // The content decides, as it does for redaction: JSON under another type, and SSE frames in a buffered body.
  for (const [name, type, body] of [
    ['JSON under a non-JSON content type', 'text/html', '{"model":"x","usage":{"prompt_tokens":1}}'],
    ['JSON without a content type', undefined, '{"model":"x","usage":{"prompt_tokens":1}}'],
    ['SSE frames declared as JSON', 'application/json', 'data: {"model":"x","choices":[]}\n\ndata: {"model":"x","usage":{"prompt_tokens":1}}\n\ndata: [DONE]\n\n'],
  ] as const) {
    const ctx = await respond(type, body)
    t.equal(ctx.out.reply?.model, 'x', name)
    t.same(ctx.out.reply?.usage, { input: 1, output: undefined }, name)
  }
  for (const [name, type, body, end] of [
    ['plain text', 'text/plain', 'model: x, prompt_tokens: 1', true],
    ['a chunk that is not the end', 'application/json', '{"model":"x","usage":{"prompt_tokens":1}}', false],
    ['an empty body', 'application/json', '', true],
    ['invalid JSON', 'application/json', '{"model":', true],
    ['an error body', 'application/json', '{"error":{"message":"rate limited"}}', true],
  ] as const) {
    const ctx = await respond(type, body, end)
    t.equal(ctx.out.reply?.model, undefined, name)
    t.equal(ctx.out.reply?.usage.input, undefined, name)
    t.equal(ctx.out.reply?.usage.output, undefined, name)
  }
})

t.test('response body: model and usage from an SSE stream, chunk by chunk', async (t) => {
  const stream = Buffer.from(
    'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":30,"output_tokens":1}}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Grüße 🌍"}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}\n\n' +
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
  )
  // Split inside the multi-byte characters and inside events.
  const cut1 = stream.indexOf(Buffer.from('ü')) + 1
  const cut2 = stream.indexOf(Buffer.from('🌍')) + 2
  const cut3 = stream.indexOf(Buffer.from('"output_tokens":12')) + 5
  const chunks = [stream.subarray(0, 40), stream.subarray(40, cut1), stream.subarray(cut1, cut2), stream.subarray(cut2, cut3), stream.subarray(cut3)]
  const s = stage()
  const ctx = request({ path: '/v1/messages', body: MESSAGES_BODY })
  ctx.responseStreaming = true
  ctx.responseHeaders.set('content-type', 'text/event-stream')
  const seen: (number | undefined)[] = []
  for (let i = 0; i < chunks.length; i++) {
    const chunk = { data: chunks[i]!, end: i === chunks.length - 1 }
    await s.responseBody!(ctx, chunk)
    t.equal(chunk.data, chunks[i], 'the chunk is passed on untouched')
    seen.push(ctx.out.reply?.usage.output)
  }
  t.equal(ctx.out.reply?.model, 'claude-sonnet-4-5')
  t.same(ctx.out.reply?.usage, { input: 30, output: 12 })
  t.equal(seen[0], undefined, 'nothing is known before the first event completes')
})
