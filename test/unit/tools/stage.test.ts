import { gzipSync } from 'node:zlib'
import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { silentLogger } from '../../../src/log.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { BodyChunk, Stage } from '../../../src/pipeline/stage.ts'
import { PolicyEngine } from '../../../src/policy/engine.ts'
import { parseProviderRequest } from '../../../src/providers/parse.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { SseFramer } from '../../../src/redaction/sse.ts'
import { createToolCallStage, EventCutter, lastEventEnd, MAX_RESPONSE_TOOLS, type ToolCallStageOptions } from '../../../src/tools/stage.ts'
import { CHECKOUT, identity, NOTEBOOK, SHIPPED } from '../policy/fixtures.ts'

const engine = new PolicyEngine({ dir: SHIPPED })
t.teardown(() => engine.close())

/** The engine, counting the facts it is asked for (the cheap path asks for none). */
function counting(): ToolCallStageOptions['engine'] & { facts: number; questions: number } {
  const e = {
    facts: 0,
    questions: 0,
    factsFor: (ctx: RequestContext) => {
      e.facts++
      return engine.factsFor(ctx)
    },
    evaluate: (...args: Parameters<PolicyEngine['evaluate']>) => {
      e.questions++
      return engine.evaluate(...args)
    },
  }
  return e
}

const MAX = 64 * 1024
const stageWith = (e: ToolCallStageOptions['engine'] = engine) => createToolCallStage({ engine: e, maxBytes: MAX, logger: silentLogger })
const H = 'mcp.payments.example.com'

/** A request context after the request phases: identity, parsed body, dialect. */
function request(path: string, body: Record<string, unknown>, spiffeId = CHECKOUT): RequestContext {
  const ctx = new RequestContext()
  ctx.put('caller', { workload: identity(spiffeId), user: ctx.out.caller?.user })
  ctx.path = path
  const route = matchRoute(path)!
  ctx.dialect = route.kind === 'anthropic' ? 'anthropic' : 'openai'
  ctx.put('request', parseProviderRequest(route, body, route.kind))
  return ctx
}

const chatRequest = (over: Record<string, unknown> = {}, spiffeId = CHECKOUT) =>
  request('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'lookup_order' } }], ...over }, spiffeId)
const responsesRequest = (tools: unknown[], spiffeId = CHECKOUT) => request('/v1/responses', { model: 'gpt-4o-mini', input: 'hi', tools }, spiffeId)
const messagesRequest = (over: Record<string, unknown>, spiffeId = CHECKOUT) => request('/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...over }, spiffeId)

async function headers(s: Stage, ctx: RequestContext, contentType: string, encoding?: string): Promise<void> {
  ctx.responseHeaders.set('content-type', contentType)
  if (encoding) ctx.responseHeaders.set('content-encoding', encoding)
  ctx.responseStreaming = contentType.startsWith('text/event-stream')
  await s.responseHeaders!(ctx)
}

/** A buffered response through the stage: the refusal, if any, and the body passed on. */
async function buffered(s: Stage, ctx: RequestContext, body: unknown, opts: { contentType?: string; encoding?: string } = {}): Promise<{ err: GateError | undefined; chunk: BodyChunk }> {
  await headers(s, ctx, opts.contentType ?? 'application/json', opts.encoding)
  let data = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
  if (opts.encoding === 'gzip') data = gzipSync(data)
  const chunk: BodyChunk = { data, end: true }
  try {
    await s.responseBody!(ctx, chunk)
    return { err: undefined, chunk }
  } catch (err) {
    if (err instanceof GateError) return { err, chunk }
    throw err
  }
}

/** A stream through the stage as the server runs it: after the stage ends it, later chunks are cleared. */
async function streamed(s: Stage, ctx: RequestContext, chunks: (string | Buffer)[], encoding?: string): Promise<{ out: Buffer[]; same: boolean[] }> {
  await headers(s, ctx, 'text/event-stream', encoding)
  const out: Buffer[] = []
  const same: boolean[] = []
  for (let i = 0; i < chunks.length; i++) {
    const data = Buffer.isBuffer(chunks[i]) ? (chunks[i] as Buffer) : Buffer.from(chunks[i] as string)
    const chunk: BodyChunk = { data, end: i === chunks.length - 1 }
    if (ctx.responseTerminated) chunk.data = Buffer.alloc(0)
    else await s.responseBody!(ctx, chunk)
    out.push(chunk.data)
    same.push(chunk.data === data)
  }
  return { out, same }
}

const sse = (v: unknown, event?: string) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(v)}\n\n`
const chatCall = (name: string) => ({ choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name, arguments: '{}' } }] }, finish_reason: 'tool_calls' }] })
const chunk = (delta: unknown) => sse({ id: 'x', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: null }] })
const errorOf = (b: Buffer) => {
  const m = /^event: error\ndata: (.*)\n\n$/.exec(b.toString('utf8'))
  return m ? JSON.parse(m[1]!) : undefined
}

t.test('the stage is named tool-calls and looks at responses only', async (t) => {
  const s = stageWith()
  t.equal(s.name, 'tool-calls')
  t.equal(s.requestBody, undefined)
  t.type(s.responseBody, 'function')
})

t.test('a buffered response', async (t) => {
  t.test('that calls a declared tool policy allows passes unchanged, and the answer is recorded', async (t) => {
    const ctx = chatRequest()
    const body = Buffer.from(JSON.stringify(chatCall('lookup_order')))
    const { err, chunk } = await buffered(stageWith(), ctx, body)
    t.equal(err, undefined)
    t.equal(chunk.data, body, 'the very bytes')
    t.same(ctx.toolDecisions, [{ tool: 'lookup_order', kind: 'function', phase: 'response', effect: 'allow' }])
  })

  t.test('that calls a tool the request did not declare is refused, without naming it to the caller', async (t) => {
    const ctx = chatRequest()
    const { err } = await buffered(stageWith(), ctx, chatCall('refund_everything'))
    t.match(err, { code: 'MG_RESPONSE_TOOL_DENIED', status: 403 })
    t.same(err?.details, { reason: 'undeclared' })
    t.match(err?.internal, /refund_everything/)
    t.same(ctx.toolDecisions, [{ tool: 'refund_everything', kind: 'function', phase: 'response', effect: 'deny', reason: 'undeclared' }])
  })

  t.test('that calls a tool of an MCP server is decided per tool: the host-pinned permit, the admin forbid', async (t) => {
    const tools = [{ type: 'mcp', server_label: 'payments', server_url: `https://${H}/mcp` }]
    const lookup = await buffered(stageWith(), responsesRequest(tools), { output: [{ type: 'mcp_call', server_label: 'payments', name: 'lookup_order', arguments: '{}' }] })
    t.equal(lookup.err, undefined)
    const ctx = responsesRequest(tools)
    const admin = await buffered(stageWith(), ctx, { output: [{ type: 'mcp_call', server_label: 'payments', name: 'lookup_order' }, { type: 'mcp_approval_request', server_label: 'payments', name: 'admin_reset' }] })
    t.match(admin.err, { code: 'MG_RESPONSE_TOOL_DENIED' })
    t.same(admin.err?.details, { reason: 'policy', tool: 'mcp:payments/admin_reset' }, 'a tool the request made available is named')
    t.same(
      ctx.toolDecisions.map((d) => [d.tool, d.effect]),
      [
        ['mcp:payments/lookup_order', 'allow'],
        ['mcp:payments/admin_reset', 'deny'],
      ],
    )
    const narrowed = await buffered(stageWith(), responsesRequest([{ ...tools[0], allowed_tools: ['lookup_order'] }]), { output: [{ type: 'mcp_call', server_label: 'payments', name: 'refund_order' }] })
    t.same(narrowed.err?.details, { reason: 'undeclared' }, 'outside the tools the request allowed')
  })

  t.test('that calls a built-in the request did not ask for is refused', async (t) => {
    const { err } = await buffered(stageWith(), responsesRequest([]), { output: [{ type: 'web_search_call', id: 'w', status: 'completed' }] })
    t.same([err?.code, err?.details], ['MG_RESPONSE_TOOL_DENIED', { reason: 'undeclared' }])
  })

  t.test('an Anthropic server tool the caller may use passes', async (t) => {
    const ctx = messagesRequest({ model: 'claude-sonnet-4-5', tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, NOTEBOOK)
    const { err } = await buffered(stageWith(), ctx, { type: 'message', content: [{ type: 'server_tool_use', id: 's', name: 'web_search', input: { query: 'x' } }, { type: 'text', text: 'Found it.' }] })
    t.equal(err, undefined)
    t.same(ctx.toolDecisions, [{ tool: 'web_search', kind: 'web_search_20250305', phase: 'response', effect: 'allow' }])
  })

  t.test('is read as the SDKs read it: compressed, with a byte-order mark, escaped keys, SSE under another type', async (t) => {
    const cases: [name: string, body: string | Buffer, opts: { encoding?: string; contentType?: string }][] = [
      ['gzip', JSON.stringify(chatCall('refund_everything')), { encoding: 'gzip' }],
      ['a byte-order mark', '\ufeff' + JSON.stringify(chatCall('refund_everything')), {}],
      ['an escaped key', JSON.stringify(chatCall('refund_everything')).replace('tool_calls', 'tool\\u005fcalls'), {}],
      ['SSE frames declared as JSON', chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'refund_everything', arguments: '' } }] }) + 'data: [DONE]\n\n', {}],
      ['the rest of a stream without a blank line', 'data: ' + JSON.stringify({ choices: [{ delta: { tool_calls: [{ function: { name: 'refund_everything' } }] } }] }), { contentType: 'text/plain' }],
    ]
    for (const [name, body, opts] of cases) {
      const { err } = await buffered(stageWith(), chatRequest(), body, opts)
      t.equal(err?.code, 'MG_RESPONSE_TOOL_DENIED', name)
    }
  })

  t.test('without a trace of a tool call is not parsed, and policy is not asked', async (t) => {
    const e = counting()
    const body = Buffer.from(JSON.stringify({ choices: [{ message: { role: 'assistant', content: 'Hello!' } }] }))
    const { err, chunk } = await buffered(stageWith(e), chatRequest(), body)
    t.equal(err, undefined)
    t.equal(chunk.data, body)
    t.equal(e.questions, 0)
  })

  t.test('a content-encoding that cannot be read is refused', async (t) => {
    const ctx = chatRequest()
    ctx.responseHeaders.set('content-encoding', 'zstd')
    await t.rejects(async () => stageWith().responseHeaders!(ctx), { code: 'MG_RESPONSE_UNREADABLE' })
    const broken = await buffered(stageWith(), chatRequest(), Buffer.from('not gzip'), { encoding: 'br' })
    t.equal(broken.err?.code, 'MG_RESPONSE_UNREADABLE')
  })
})

t.test('a stream', async (t) => {
  t.test('a split event is checked whole; chunks that hold no unfinished call pass as they came', async (t) => {
    const role = chunk({ role: 'assistant', content: '' })
    const call = chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'lookup_order', arguments: '' } }] })
    const args = chunk({ tool_calls: [{ index: 0, function: { arguments: '{}' } }] })
    const at = call.indexOf('_calls') // "tool" in one chunk, "_calls" in the next
    const pieces = [role.slice(0, 30), role.slice(30) + call.slice(0, at), call.slice(at) + args.slice(0, 10), args.slice(10) + 'data: [DONE]\n\n']
    const ctx = chatRequest()
    const { out, same } = await streamed(stageWith(), ctx, pieces)
    t.same(same, [true, true, true, true], 'the very chunks')
    t.equal(Buffer.concat(out).toString(), pieces.join(''))
    t.same(ctx.toolDecisions, [{ tool: 'lookup_order', kind: 'function', phase: 'response', effect: 'allow' }], 'the call was checked once whole')
  })

  t.test('an unfinished event that may name a call is held, and leaves whole once checked', async (t) => {
    const role = chunk({ role: 'assistant', content: '' })
    const call = chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'lookup_order', arguments: '' } }] })
    const at = call.indexOf('"name"')
    const third = Math.floor((call.length - at) / 3)
    const pieces = [role + call.slice(0, at), call.slice(at, at + third), call.slice(at + third), 'data: [DONE]\n\n']
    const { out, same } = await streamed(stageWith(), chatRequest(), pieces)
    t.same(
      out.map((b) => b.toString()),
      [role, '', call, 'data: [DONE]\n\n'],
    )
    t.same(same, [false, false, false, true])
  })

  t.test('ends at the event that calls a forbidden tool, which never leaves, with an error event in the caller\'s dialect', async (t) => {
    const before = chunk({ role: 'assistant', content: '' })
    const call = chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'refund_everything', arguments: '' } }] })
    const ctx = chatRequest()
    ctx.put('decision', { effect: 'allow', decisionId: 'd-1', policies: [], errors: [], policySetHash: 'h', cached: false })
    const at = call.indexOf('"name"')
    const { out } = await streamed(stageWith(), ctx, [before + call.slice(0, at), call.slice(at), chunk({ content: 'after' }), 'data: [DONE]\n\n'])
    t.equal(out[0]!.toString(), before, 'the event before passes; the part of the call waits')
    const doc = errorOf(out[1]!)
    t.same(doc, { error: { type: 'modelgate_error', code: 'MG_RESPONSE_TOOL_DENIED', message: 'The response calls a tool the caller may not call, so it is withheld.', request_id: ctx.id, decision_id: 'd-1', reason: 'undeclared' } })
    t.same([out[2]!.length, out[3]!.length], [0, 0], 'nothing after it')
    t.notMatch(Buffer.concat(out).toString(), /refund_everything/)
    t.ok(ctx.responseTerminated)
    t.equal(ctx.denial?.code, 'MG_RESPONSE_TOOL_DENIED', 'the record says the response was refused')
  })

  t.test('an event whose first part already left (nothing else holds the stream back) is closed before the error event', async (t) => {
    const call = chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'refund_everything', arguments: '' } }] })
    const at = call.indexOf('tool_calls') // the first part has no trace of a call
    const ctx = chatRequest()
    const { out } = await streamed(stageWith(), ctx, [call.slice(0, at), call.slice(at), 'data: [DONE]\n\n'])
    t.equal(out[0]!.toString(), call.slice(0, at))
    t.notMatch(Buffer.concat(out).toString(), /refund_everything/, 'the name never left')
    const framer = new SseFramer()
    const events = framer.push(Buffer.concat(out))
    t.equal(events.length, 2, 'the unfinished event ends, unreadable, and the error event follows whole')
    t.equal(events[1]!.type, 'error')
    t.match(JSON.parse(events[1]!.data!), { error: { code: 'MG_RESPONSE_TOOL_DENIED' } })
  })

  t.test('checks every delta that names a call: a later name replaces the first in the SDK', async (t) => {
    const ctx = chatRequest()
    const { out } = await streamed(stageWith(), ctx, [
      chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'lookup_order', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { name: 'refund_everything', arguments: '{}' } }] }),
      'data: [DONE]\n\n',
    ])
    t.match(out[0]!.toString(), /lookup_order/)
    t.equal(errorOf(out[1]!)?.error.code, 'MG_RESPONSE_TOOL_DENIED')
  })

  t.test('Anthropic content_block_start and Responses output items end the stream in their dialects', async (t) => {
    const anthropic = messagesRequest({ tools: [{ name: 'lookup_order', input_schema: {} }] })
    const a = await streamed(stageWith(), anthropic, [
      sse({ type: 'message_start', message: { type: 'message', content: [] } }, 'message_start'),
      sse({ type: 'content_block_start', index: 0, content_block: { type: 'mcp_tool_use', id: 'm', server_name: 'payments', name: 'refund_order', input: {} } }, 'content_block_start'),
    ])
    t.match(errorOf(a.out[1]!), { type: 'error', error: { type: 'permission_error', code: 'MG_RESPONSE_TOOL_DENIED', details: { error_code: 'MG_RESPONSE_TOOL_DENIED' } } })
    const responses = responsesRequest([{ type: 'function', name: 'lookup_order' }])
    const r = await streamed(stageWith(), responses, [
      sse({ type: 'response.created', response: { id: 'r', output: [], parallel_tool_calls: true, tools: [{ type: 'function', name: 'lookup_order' }] } }, 'response.created'),
      sse({ type: 'response.output_item.added', output_index: 0, item: { type: 'code_interpreter_call', id: 'ci', status: 'in_progress' } }, 'response.output_item.added'),
    ])
    t.match(r.out[0]!.toString(), /response\.created/, 'the response echoing its tools is no call')
    t.equal(errorOf(r.out[1]!)?.error.code, 'MG_RESPONSE_TOOL_DENIED')
  })

  t.test('without a trace of a tool call passes chunk by chunk, untouched, without asking policy', async (t) => {
    const e = counting()
    const ctx = chatRequest()
    const pieces = [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hello' }), chunk({ content: ' there' }), 'data: [DONE]\n\n']
    const { out, same } = await streamed(stageWith(e), ctx, pieces)
    t.same(same, [true, true, true, true], 'the very chunks: no copy, no body mutation')
    t.equal(Buffer.concat(out).toString(), pieces.join(''))
    t.equal(e.questions, 0)
  })

  t.test('calls are decided with the request\'s facts, not with what the response revealed', async (t) => {
    // notebook may use fetch_url; no-secrets-anywhere forbids everything once "secret" is among the data classes.
    const ctx = request('/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 'fetch_url', input_schema: {} }] }, NOTEBOOK)
    const s = stageWith()
    await headers(s, ctx, 'text/event-stream')
    ctx.addFinding({ detector: 'github-token', dataClass: 'secret', confidence: 'high', direction: 'response', location: 'message_start', start: 0, length: 4, hash: 'h', action: 'redact' })
    const c: BodyChunk = { data: Buffer.from(sse({ type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 't', name: 'fetch_url', input: {} } })), end: false }
    await s.responseBody!(ctx, c)
    t.equal(ctx.responseTerminated, false)
    t.same(ctx.toolDecisions, [{ tool: 'fetch_url', kind: 'custom', phase: 'response', effect: 'allow' }])
  })

  t.test('asks policy once per tool and response', async (t) => {
    const e = counting()
    const call = chunk({ tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'lookup_order', arguments: '' } }] })
    await streamed(stageWith(e), chatRequest(), [call, call, call, 'data: [DONE]\n\n'])
    t.same([e.facts, e.questions], [1, 1])
  })

  t.test('a compressed stream is checked on its decoded events, and passed on as it came', async (t) => {
    const ctx = chatRequest()
    const whole = gzipSync(Buffer.from(chunk({ content: 'hi' }) + chunk({ tool_calls: [{ index: 0, function: { name: 'refund_everything' } }] })))
    const { out, same } = await streamed(stageWith(), ctx, [whole.subarray(0, 20), whole.subarray(20)], 'gzip')
    t.same(same[0], true)
    t.equal(errorOf(out[1]!)?.error.code, 'MG_RESPONSE_TOOL_DENIED')
  })

  t.test('an event larger than the inspected size ends the stream', async (t) => {
    const ctx = chatRequest()
    const { out } = await streamed(stageWith(), ctx, ['data: ' + 'x'.repeat(MAX), 'x', 'more'])
    t.equal(errorOf(out[0]!)?.error.code, 'MG_RESPONSE_UNREADABLE')
  })

  t.test(`more than ${MAX_RESPONSE_TOOLS} distinct tools end the stream`, async (t) => {
    const ctx = responsesRequest([{ type: 'mcp', server_label: 'payments', server_url: `https://${H}/mcp` }])
    const items = Array.from({ length: MAX_RESPONSE_TOOLS + 1 }, (_, i) => sse({ type: 'response.output_item.added', item: { type: 'mcp_call', server_label: 'payments', name: `t${i}` } }))
    const { out } = await streamed(stageWith(), ctx, [items.join(''), 'data: [DONE]\n\n'])
    t.match(errorOf(out[0]!), { error: { code: 'MG_RESPONSE_TOOL_DENIED', reason: 'limit' } })
    t.equal(ctx.toolDecisions.length, 65, 'the record keeps a bounded list, and the answer that ended the response')
    t.match(ctx.toolDecisions.at(-1), { tool: `mcp:payments/t${MAX_RESPONSE_TOOLS}`, effect: 'deny', reason: 'limit' })
  })
})

t.test('an evaluation error refuses the call', async (t) => {
  const failing: ToolCallStageOptions['engine'] = { factsFor: (ctx) => engine.factsFor(ctx), evaluate: () => ({ decision: 'allow', determining: [], errors: ['p: attribute missing'], cached: false }) }
  const ctx = chatRequest()
  const { err } = await buffered(stageWith(failing), ctx, chatCall('lookup_order'))
  t.same(err?.details, { reason: 'error', tool: 'lookup_order' })
  const noFacts = chatRequest()
  delete (noFacts.out as { caller?: unknown }).caller
  t.same((await buffered(stageWith(), noFacts, chatCall('lookup_order'))).err?.details, { reason: 'error', tool: 'lookup_order' }, 'a request that cannot be described')
})

t.test('lastEventEnd finds the end of the last complete event for every line ending', async (t) => {
  const cases: [text: string, end: number][] = [
    ['data: a\n\n', 9],
    ['data: a\r\n\r\n', 11],
    ['data: a\r\rdata: b', 9],
    ['data: a\n\r\ndata', 10],
    ['data: a\n\ndata: b\n\ndata: c', 18],
    ['data: a\ndata: b\n', 0],
    ['', 0],
  ]
  for (const [text, end] of cases) t.equal(lastEventEnd(Buffer.from(text)), end, JSON.stringify(text))
})

t.test('EventCutter: events cut where they end, across chunk seams, held only when they may name a call', async (t) => {
  t.test('a blank line split between two chunks ends the event', async (t) => {
    const c = new EventCutter()
    t.same(c.push(Buffer.from('data: {"a":"tool_use"}\n'), false), { check: undefined, out: Buffer.alloc(0), partial: false }, 'a possible call is held')
    const second = c.push(Buffer.from('\ndata: x\n\n'), false)
    t.equal(second.check?.toString(), 'data: {"a":"tool_use"}\n\ndata: x\n\n')
    t.equal(second.out.toString(), 'data: {"a":"tool_use"}\n\ndata: x\n\n')
    t.equal(c.openBytes, 0)
  })

  t.test('a marker split between two chunks is found', async (t) => {
    const c = new EventCutter()
    t.equal(c.push(Buffer.from('data: {"type":"mcp'), false).out.toString(), 'data: {"type":"mcp', 'no trace yet: it passes')
    const rest = c.push(Buffer.from('_call","name":"x"}\n\n'), false)
    t.equal(rest.check?.toString(), 'data: {"type":"mcp_call","name":"x"}\n\n', 'the whole event is checked')
    t.equal(rest.out.toString(), '_call","name":"x"}\n\n')
    t.equal(rest.partial, true, 'and its first part had left')
  })

  t.test('a long held event in small chunks is kept once and checked once, at its end', async (t) => {
    const c = new EventCutter()
    const event = 'data: {"type":"tool_use","input":"' + 'x'.repeat(1 << 20) + '"}\n\n'
    const bytes = Buffer.from(event)
    let out = 0
    let early = 0
    let checks = 0
    for (let i = 0; i < bytes.length; i += 1024) {
      const r = c.push(bytes.subarray(i, Math.min(i + 1024, bytes.length)), false)
      if (i + 1024 < bytes.length) early += r.out.length
      out += r.out.length
      if (r.check) checks++
    }
    t.equal(early, 0, 'nothing left before its end')
    t.equal(out, bytes.length, 'it left whole, at the end')
    t.equal(checks, 1)
  })

  t.test('CR line ends count as line ends', async (t) => {
    const c = new EventCutter()
    const r = c.push(Buffer.from('data: {"a":"tool_use"}\r\n\r\ndata: {"b":1}'), false)
    t.equal(r.check?.toString(), 'data: {"a":"tool_use"}\r\n\r\n')
    t.equal(r.out.toString(), 'data: {"a":"tool_use"}\r\n\r\ndata: {"b":1}', 'the unfinished event without a trace passes')
    t.equal(c.push(Buffer.from('\r\r'), true).check, undefined)
  })
})
