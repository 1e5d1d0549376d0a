/**
 * The real gRPC server on loopback, driven through every ext_proc phase the
 * way Envoy drives it. Fault-injection and probe stages are added around the
 * real identity and provider stages.
 */
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { ERRORS, type ErrorCode } from '../../src/errors.ts'
import { silentLogger } from '../../src/log.ts'
import type { RequestContext } from '../../src/pipeline/context.ts'
import type { BodyChunk, Phase, Stage, StreamOutcome } from '../../src/pipeline/stage.ts'
import type { ProcessingResponseMsg } from '../../src/server/codec.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'
import {
  answerKind,
  connectExtProc,
  denialJson,
  fromStruct,
  headersWithValueField,
  msg,
  mtlsAttributes,
  readMutation,
  type ExtProcStream,
  type Headers,
} from '../helpers/grpc-client.ts'

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`

// ---- certificates -------------------------------------------------------------

const dir = t.testdir()
const ca = await createCa(dir, 'ca')
const pemOf = async (name: string, uris: string[]) => readFileSync((await issueCertificate(dir, ca, { name, uris })).cert, 'utf8')
const PEM = {
  checkout: await pemOf('checkout', [CHECKOUT]),
  twoUris: await pemOf('two', [CHECKOUT, `spiffe://${TD}/ns/payments/sa/other`]),
  foreign: await pemOf('foreign', ['spiffe://other.example/ns/payments/sa/checkout']),
  nonSpiffe: await pemOf('https', ['https://example.org/checkout']),
}
const ATTRS = mtlsAttributes(PEM.checkout, CHECKOUT)

// ---- stages around the real ones --------------------------------------------------

/** Phases each request went through, by request id, as the first stage saw them. */
const phasesSeen = new Map<string, Phase[]>()
/** How each request ended, by request id, as the last stage saw it. */
const closed = new Map<string, { ctx: RequestContext; outcomes: StreamOutcome[] }>()

/**
 * Fault injection driven by the request header `x-test-fault: <kind>:<phase>`:
 * throw (a plain TypeError), hang (never settles), slow (50 ms), replace (response
 * body data replaced), clear (response body data emptied).
 */
function faultStage(): Stage {
  const inject = (ctx: RequestContext, phase: Phase, chunk?: BodyChunk): void | Promise<void> => {
    const list = phasesSeen.get(ctx.id) ?? []
    list.push(phase)
    phasesSeen.set(ctx.id, list)
    const [kind, where] = (ctx.requestHeaders.get('x-test-fault') ?? '').split(':')
    if (where !== phase) return
    switch (kind) {
      case 'throw':
        throw new TypeError('injected failure with internal detail')
      case 'hang':
        return new Promise<void>(() => {})
      case 'slow':
        return new Promise<void>((r) => setTimeout(r, 50))
      case 'replace':
        if (chunk) chunk.data = Buffer.from(chunk.data.toString('utf8').replaceAll('secret', '[redacted]'))
        return
      case 'clear':
        if (chunk) chunk.data = Buffer.alloc(0)
        return
    }
  }
  return {
    name: 'fault',
    requestHeaders: (ctx) => inject(ctx, 'requestHeaders'),
    requestBody: (ctx) => inject(ctx, 'requestBody'),
    requestTrailers: (ctx) => inject(ctx, 'requestTrailers'),
    responseHeaders: (ctx) => inject(ctx, 'responseHeaders'),
    responseBody: (ctx, chunk) => inject(ctx, 'responseBody', chunk),
    responseTrailers: (ctx) => inject(ctx, 'responseTrailers'),
  }
}

const probeStage: Stage = {
  name: 'probe',
  close(ctx, outcome) {
    const entry = closed.get(ctx.id) ?? { ctx, outcomes: [] }
    entry.outcomes.push(outcome)
    closed.set(ctx.id, entry)
  },
}

// ---- the server -----------------------------------------------------------------

const config = configFromObject(
  {
    server: { listen: '127.0.0.1:0', phaseTimeoutMs: 300, drainTimeoutMs: 2000 },
    identity: { trustDomains: [TD] },
    providers: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'none', none: true }] }, anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', credentials: [{ name: 'none', none: true }] }, 'internal-llm': { kind: 'openai', upstream: 'http://vllm.ml.svc:8000', root: false, basePaths: ['/internal'], credentials: [{ name: 'none', none: true }] } } },
    audit: { enabled: false },
    redaction: { enabled: false }, policy: { dir: permitAllPolicyDir(), watch: false },
  },
  'server.test',
)
const app = await startApp({ config, logger: silentLogger, extraStages: { first: [faultStage()], last: [probeStage] } })
const client = connectExtProc(app.address)
t.teardown(async () => {
  client.close()
  await app.shutdown()
})

// ---- helpers --------------------------------------------------------------------

let counter = 0
const newId = (label: string) => `${label}-${++counter}`

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello, secret world' }], max_tokens: 32 })
const MESSAGES = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'Hi' }] })

function requestHeaders(id: string, extra: Record<string, string> = {}, path = '/v1/chat/completions'): Headers {
  return {
    ':method': 'POST',
    ':path': path,
    ':authority': 'llm.internal',
    ':scheme': 'https',
    'content-type': 'application/json',
    'x-request-id': id,
    ...extra,
  }
}

/** The subtest type (the last overload of t.test takes just the callback). */
type TestT = Parameters<Parameters<typeof t.test>[0]>[0]

/** Every stream the tests opened; the last test checks all their answers. */
const allStreams: ExtProcStream[] = []
function open(metadata?: Record<string, string>): ExtProcStream {
  const s = client.open(metadata)
  allStreams.push(s)
  return s
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`gave up waiting for ${what}`)
}

/** Checks an ImmediateResponse against the catalog entry for `code`. */
function assertDenial(t: TestT, r: ProcessingResponseMsg, code: ErrorCode, requestId: string): Record<string, unknown> {
  t.equal(answerKind(r), 'immediate_response', `${code}: an immediate response`)
  const ir = r.immediate_response!
  t.equal(ir.status.code, ERRORS[code].status, `${code}: explicit status ${ERRORS[code].status}`)
  t.same(readMutation(ir.headers).set, { 'content-type': 'application/json', 'x-modelgate-error': code, 'x-request-id': requestId })
  t.equal(ir.details, `modelgate_${code}`)
  const body = denialJson(r).error
  t.match(body, { type: 'modelgate_error', code, message: ERRORS[code].message, request_id: requestId })
  t.equal(fromStruct(r.dynamic_metadata).modelgate && (fromStruct(r.dynamic_metadata).modelgate as Record<string, unknown>).error_code, code)
  return body
}


// ---- tests ------------------------------------------------------------------------

t.test('an allowed JSON request goes through every phase with the answers Envoy expects', async (t) => {
  const id = newId('json')
  const s = open()
  const forged = { 'x-spiffe-id': `spiffe://${TD}/ns/admin/sa/root`, 'x-forwarded-client-cert': `URI=spiffe://${TD}/ns/admin/sa/root`, 'content-length': String(CHAT.length) }

  const h = await s.exchange(msg.requestHeaders(requestHeaders(id, forged), { attributes: ATTRS }))
  t.equal(answerKind(h), 'request_headers')
  const hm = readMutation(h.request_headers?.response?.header_mutation)
  t.same(hm.set, { 'accept-encoding': 'identity' }, 'asks the upstream for an uncompressed response')
  t.same(hm.remove.sort(), ['x-forwarded-client-cert', 'x-spiffe-id'], 'forged identity headers are removed')
  t.notOk(h.request_headers?.response?.body_mutation)
  t.notOk(h.dynamic_metadata, 'no metadata before the body phase')

  const b = await s.exchange(msg.requestBody(CHAT))
  t.equal(answerKind(b), 'request_body')
  t.notOk(b.request_body?.response?.body_mutation, 'the body is forwarded unchanged')
  t.notOk(b.request_body?.response?.header_mutation)
  t.match(fromStruct(b.dynamic_metadata), {
    modelgate: { request_id: id, path: '/v1/chat/completions', spiffe_id: CHECKOUT, model: 'gpt-4o-mini', decision_id: /^[0-9a-f-]{36}$/, policy_set: /^[0-9a-f]+$/ },
  })
  t.same(Object.keys(fromStruct(b.dynamic_metadata).modelgate as object).sort(), ['decision_id', 'model', 'path', 'policy_set', 'request_id', 'spiffe_id'], 'facts only, never content')

  const rh = await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))
  t.equal(answerKind(rh), 'response_headers')
  t.notOk(rh.mode_override, 'a JSON response stays BUFFERED')
  t.notOk(rh.response_headers?.response?.header_mutation)

  const answer = JSON.stringify({ id: 'c1', model: 'gpt-4o-mini-2024-07-18', choices: [{ message: { role: 'assistant', content: 'hi' } }], usage: { prompt_tokens: 12, completion_tokens: 3 } })
  const rb = await s.exchange(msg.responseBody(answer, true))
  t.equal(answerKind(rb), 'response_body')
  t.notOk(rb.response_body?.response?.body_mutation)

  t.same(await s.end(), { code: 0, details: 'OK' })
  const c = closed.get(id)
  t.same(c?.outcomes, [{ kind: 'completed' }], 'close is called once, as completed')
  t.equal(c?.ctx.out.caller?.workload?.spiffeId, CHECKOUT)
  t.equal(c?.ctx.out.request?.model, 'gpt-4o-mini')
  t.equal(c?.ctx.responseStatus, 200)
  t.equal(c?.ctx.out.reply?.model, 'gpt-4o-mini-2024-07-18')
  t.same(c?.ctx.out.reply?.usage, { input: 12, output: 3 })
  t.same(phasesSeen.get(id), ['requestHeaders', 'requestBody', 'responseHeaders', 'responseBody'])
  t.ok(c?.ctx.timings.has('identity') && c?.ctx.timings.has('provider'), 'stage timings are recorded')
})

t.test('an SSE response is switched to STREAMED, every chunk and both trailers are answered', async (t) => {
  const id = newId('sse')
  const s = open()
  await s.exchange(msg.requestHeaders(requestHeaders(id, {}, '/v1/messages'), { attributes: ATTRS }))
  t.equal(answerKind(await s.exchange(msg.requestBody(MESSAGES))), 'request_body')
  t.equal(answerKind(await s.exchange(msg.requestTrailers({ 'x-trailer': '1' }))), 'request_trailers')

  const rh = await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream; charset=utf-8' }))
  t.same(rh.mode_override, { response_body_mode: 'STREAMED' })

  const stream = Buffer.from(
    'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":21,"output_tokens":1}}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Grüße 🌍"}}\n\n' +
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}\n\n',
  )
  const cutA = stream.indexOf(Buffer.from('ü')) + 1 // inside a two-byte character
  const cutB = stream.indexOf(Buffer.from('🌍')) + 3 // inside a four-byte character
  const chunks = [stream.subarray(0, cutA), stream.subarray(cutA, cutB), stream.subarray(cutB)]
  for (let i = 0; i < chunks.length; i++) {
    const r = await s.exchange(msg.responseBody(chunks[i]!, i === chunks.length - 1))
    t.equal(answerKind(r), 'response_body', `chunk ${i} is answered`)
    t.notOk(r.response_body?.response?.body_mutation, `chunk ${i} passes unchanged`)
    t.notOk(r.response_body?.response?.header_mutation, `chunk ${i}: no content-length on a stream`)
  }
  t.equal(answerKind(await s.exchange(msg.responseTrailers({ 'x-usage': 'done' }))), 'response_trailers')
  t.same(await s.end(), { code: 0, details: 'OK' })
  const c = closed.get(id)
  t.equal(c?.ctx.responseStreaming, true)
  t.equal(c?.ctx.out.request?.stream, true)
  t.same(c?.ctx.out.reply?.usage, { input: 21, output: 9 })
  t.equal(c?.ctx.out.reply?.model, 'claude-sonnet-4-5')
  t.same(phasesSeen.get(id), ['requestHeaders', 'requestBody', 'requestTrailers', 'responseHeaders', 'responseBody', 'responseBody', 'responseBody', 'responseTrailers'])
})

t.test('a replaced request body is sent with a matching content-length', async (t) => {
  const id = newId('gzip')
  const compressed = gzipSync(CHAT)
  const s = open()
  const h = await s.exchange(
    msg.requestHeaders(requestHeaders(id, { 'content-encoding': 'gzip', 'content-length': String(compressed.length) }), { attributes: ATTRS }),
  )
  t.same(readMutation(h.request_headers?.response?.header_mutation).set, { 'accept-encoding': 'identity' })
  const b = await s.exchange(msg.requestBody(compressed))
  const common = b.request_body?.response
  t.same(common?.body_mutation, { body: Buffer.from(CHAT), mutation: 'body' }, 'the decoded body goes upstream')
  const m = readMutation(common?.header_mutation)
  t.same(m.set, { 'content-length': String(Buffer.byteLength(CHAT)) })
  t.same(m.remove, ['content-encoding'])
  await s.end()
})

t.test('a replaced response body: content-length when buffered, none when streamed, clear_body when emptied', async (t) => {
  t.test('buffered', async (t) => {
    const id = newId('resp-replace')
    const s = open()
    await s.exchange(msg.requestHeaders(requestHeaders(id, { 'x-test-fault': 'replace:responseBody' }), { attributes: ATTRS }))
    await s.exchange(msg.requestBody(CHAT))
    await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))
    const r = await s.exchange(msg.responseBody('{"text":"a secret"}', true))
    const common = r.response_body?.response
    t.same(common?.body_mutation, { body: Buffer.from('{"text":"a [redacted]"}'), mutation: 'body' })
    t.same(readMutation(common?.header_mutation).set, { 'content-length': '23' })
    await s.end()
  })

  t.test('streamed', async (t) => {
    const id = newId('sse-replace')
    const s = open()
    await s.exchange(msg.requestHeaders(requestHeaders(id, { 'x-test-fault': 'replace:responseBody' }, '/v1/messages'), { attributes: ATTRS }))
    await s.exchange(msg.requestBody(MESSAGES))
    await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }))
    const r = await s.exchange(msg.responseBody('data: {"t":"secret"}\n\n', false))
    t.same(r.response_body?.response?.body_mutation, { body: Buffer.from('data: {"t":"[redacted]"}\n\n'), mutation: 'body' })
    t.notOk(r.response_body?.response?.header_mutation, 'no content-length on a stream')
    await s.exchange(msg.responseBody('', true))
    await s.end()
  })

  t.test('emptied', async (t) => {
    const id = newId('sse-clear')
    const s = open()
    await s.exchange(msg.requestHeaders(requestHeaders(id, { 'x-test-fault': 'clear:responseBody' }, '/v1/messages'), { attributes: ATTRS }))
    await s.exchange(msg.requestBody(MESSAGES))
    await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'text/event-stream' }))
    const r = await s.exchange(msg.responseBody('data: {"t":"x"}\n\n', true))
    t.same(r.response_body?.response?.body_mutation, { clear_body: true, mutation: 'clear_body' })
    await s.end()
  })
})

t.test('a body-less request still runs the body phase before its headers are answered', async (t) => {
  const id = newId('bodyless')
  const s = open()
  const r = await s.exchange(msg.requestHeaders(requestHeaders(id), { endOfStream: true, attributes: ATTRS }))
  t.same(phasesSeen.get(id), ['requestHeaders', 'requestBody'])
  const body = assertDenial(t, r, 'MG_BODY_MALFORMED', id)
  t.equal(body.problem, 'the body is empty')
  t.same(await s.end(), { code: 0, details: 'OK' })
})

t.test('denials are ImmediateResponses with an explicit status, a JSON body and the request id', async (t) => {
  type Case = { name: string; code: ErrorCode; headers?: Record<string, string>; path?: string; attrs?: Record<string, unknown>; body?: string; details?: Record<string, unknown> }
  const cases: Case[] = [
    { name: 'no client certificate', code: 'MG_IDENTITY_MISSING', attrs: {} },
    { name: 'mTLS without attributes but a forged XFCC header', code: 'MG_IDENTITY_MISSING', attrs: {}, headers: { 'x-forwarded-client-cert': `URI=${CHECKOUT}` } },
    { name: 'two URI SANs', code: 'MG_IDENTITY_INVALID', attrs: mtlsAttributes(PEM.twoUris, CHECKOUT) },
    { name: 'a non-SPIFFE URI SAN', code: 'MG_IDENTITY_INVALID', attrs: mtlsAttributes(PEM.nonSpiffe, 'https://example.org/checkout') },
    { name: 'a foreign trust domain', code: 'MG_IDENTITY_UNTRUSTED', attrs: mtlsAttributes(PEM.foreign) },
    { name: 'an unknown path', code: 'MG_ROUTE_UNSUPPORTED', path: '/v1/models' },
    { name: 'a GET', code: 'MG_METHOD_UNSUPPORTED', headers: { ':method': 'GET' }, details: { method: 'GET' } },
    { name: 'malformed JSON', code: 'MG_BODY_MALFORMED', body: '{"model": "gpt-4o-mini", "messages": [' },
    { name: 'a text/plain body', code: 'MG_CONTENT_TYPE_UNSUPPORTED', headers: { 'content-type': 'text/plain' }, body: 'hello', details: { content_type: 'text/plain' } },
    { name: 'a body of the wrong shape', code: 'MG_BODY_INVALID', body: '{"model":"m","messages":[]}', details: { field: 'messages', problem: 'must not be empty' } },
    { name: 'an unknown content-encoding', code: 'MG_CONTENT_ENCODING_UNSUPPORTED', headers: { 'content-encoding': 'zstd' }, details: { content_encoding: 'zstd' } },
  ]
  for (const c of cases) {
    t.test(`${c.name} is ${ERRORS[c.code].status} ${c.code}`, async (t) => {
      const id = newId('deny')
      const s = open()
      let r = await s.exchange(msg.requestHeaders(requestHeaders(id, c.headers, c.path), { attributes: c.attrs ?? ATTRS }))
      if (answerKind(r) === 'request_headers') r = await s.exchange(msg.requestBody(c.body ?? CHAT))
      const body = assertDenial(t, r, c.code, id)
      if (c.details) t.match(body, c.details)
      t.same(await s.end(), { code: 0, details: 'OK' }, 'the stream then ends normally')
      t.same(closed.get(id)?.outcomes, [{ kind: 'completed' }])
      t.equal(closed.get(id)?.ctx.denial?.code, c.code)
    })
  }
})

t.test('the request id comes from x-request-id, else the request.id attribute, else a fresh one', async (t) => {
  const s1 = open()
  const r1 = await s1.exchange(msg.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions' }, { attributes: { 'request.id': 'attr-id-1' } }))
  t.equal(denialJson(r1).error.request_id, 'attr-id-1')
  await s1.end()
  const s2 = open()
  const r2 = await s2.exchange(msg.requestHeaders({ ':method': 'POST', ':path': '/v1/chat/completions', 'x-request-id': 'x'.repeat(129) }, { attributes: {} }))
  t.match(denialJson(r2).error.request_id, /^[0-9a-f-]{36}$/, 'an over-long x-request-id is not used')
  await s2.end()
})

t.test('a stage that throws is a 500 ImmediateResponse, in any phase, never an OK stream end first', async (t) => {
  for (const phase of ['requestHeaders', 'requestBody', 'responseHeaders', 'responseBody'] as const) {
    t.test(phase, async (t) => {
      const id = newId(`throw-${phase}`)
      const s = open()
      const steps = [
        msg.requestHeaders(requestHeaders(id, { 'x-test-fault': `throw:${phase}` }), { attributes: ATTRS }),
        msg.requestBody(CHAT),
        msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }),
        msg.responseBody('{"usage":{}}', true),
      ]
      let r: ProcessingResponseMsg | undefined
      for (const step of steps) {
        r = await s.exchange(step)
        if (r.immediate_response) break
      }
      const body = assertDenial(t, r!, 'MG_INTERNAL', id)
      t.notMatch(JSON.stringify(body), /injected|TypeError/, 'the internal cause is not shown to the caller')
      t.same(await s.end(), { code: 0, details: 'OK' })
      t.equal(closed.get(id)?.ctx.denial?.internal, 'TypeError: injected failure with internal detail')
    })
  }
})

t.test('a stage that hangs past the phase deadline is a 504 ImmediateResponse', async (t) => {
  const id = newId('hang')
  const s = open()
  await s.exchange(msg.requestHeaders(requestHeaders(id, { 'x-test-fault': 'hang:requestBody' }), { attributes: ATTRS }))
  assertDenial(t, await s.exchange(msg.requestBody(CHAT)), 'MG_TIMEOUT', id)
  t.same(await s.end(), { code: 0, details: 'OK' })
})

t.test('a half-close right after a message still gets that message answered before the stream ends', async (t) => {
  const id = newId('halfclose')
  const s = open()
  s.send(msg.requestHeaders(requestHeaders(id, { 'x-test-fault': 'slow:requestHeaders' }), { attributes: ATTRS }))
  const end = await s.end()
  t.same(end, { code: 0, details: 'OK' })
  t.same(s.received.map(answerKind), ['request_headers'], 'the answer arrived before the OK status')
})

t.test('a request body in pieces is refused: only BUFFERED bodies are inspected', async (t) => {
  const id = newId('pieces')
  const s = open()
  await s.exchange(msg.requestHeaders(requestHeaders(id), { attributes: ATTRS }))
  const r = await s.exchange(msg.requestBody(CHAT.slice(0, 10), false))
  assertDenial(t, r, 'MG_INTERNAL', id)
  t.equal(closed.get(id), undefined, 'not closed while Envoy still holds the stream')
  t.same(await s.end(), { code: 0, details: 'OK' })
  t.equal(closed.get(id)?.ctx.denial?.internal, 'request body arrived in pieces: Envoy must send it BUFFERED')
})

t.test('a non-SSE response body in pieces is refused', async (t) => {
  const id = newId('resp-pieces')
  const s = open()
  await s.exchange(msg.requestHeaders(requestHeaders(id), { attributes: ATTRS }))
  await s.exchange(msg.requestBody(CHAT))
  await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))
  assertDenial(t, await s.exchange(msg.responseBody('{"a":', false)), 'MG_INTERNAL', id)
  await s.end()
})

t.test('messages modelgate cannot serve are refused with 500', async (t) => {
  const s1 = open()
  const r1 = await s1.exchange({ ...msg.requestHeaders(requestHeaders(newId('observe')), { attributes: ATTRS }), observability_mode: true })
  t.equal(answerKind(r1), 'immediate_response', 'observability mode')
  t.equal(r1.immediate_response?.status.code, 500)
  t.equal(denialJson(r1).error.code, 'MG_INTERNAL')
  await s1.end()
  const s2 = open()
  const r2 = await s2.exchange({})
  t.equal(answerKind(r2), 'immediate_response', 'a message without a phase')
  t.equal(r2.immediate_response?.status.code, 500)
  await s2.end()
})

t.test('after a denial, further messages get no answer and the stream still ends OK', async (t) => {
  const id = newId('after-deny')
  const s = open()
  assertDenial(t, await s.exchange(msg.requestHeaders(requestHeaders(id), { attributes: {} })), 'MG_IDENTITY_MISSING', id)
  s.send(msg.requestBody(CHAT))
  t.same(await s.end(), { code: 0, details: 'OK' })
  t.equal(s.received.length, 1)
})

t.test('the route metadata names the provider', async (t) => {
  const id = newId('provider')
  const s = open({ 'x-modelgate-provider': 'internal-llm', 'x-other': 'ignored' })
  await s.exchange(msg.requestHeaders(requestHeaders(id, {}, '/internal/v1/chat/completions'), { attributes: ATTRS }))
  await s.exchange(msg.requestBody(CHAT))
  await s.end()
  const ctx = closed.get(id)?.ctx
  t.equal(ctx?.out.request?.providerName, 'internal-llm')
  t.same([...(ctx?.streamMetadata ?? [])], [['x-modelgate-provider', 'internal-llm']], 'only x-modelgate-* metadata is kept')

  const id2 = newId('provider-unknown')
  const s2 = open({ 'x-modelgate-provider': 'shadow-llm' })
  assertDenial(t, await s2.exchange(msg.requestHeaders(requestHeaders(id2), { attributes: ATTRS })), 'MG_ROUTE_UNSUPPORTED', id2)
  await s2.end()
})

t.test('trace context from the gRPC metadata reaches the request context', async (t) => {
  const id = newId('trace')
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  const s = open({ traceparent, tracestate: 'vendor=1' })
  await s.exchange(msg.requestHeaders(requestHeaders(id), { attributes: ATTRS }))
  await s.end()
  t.same(closed.get(id)?.ctx.trace, { traceparent, tracestate: 'vendor=1' })
})

t.test('Envoy cancelling a stream closes the request once, as cancelled', async (t) => {
  const id = newId('cancel')
  const s = open()
  await s.exchange(msg.requestHeaders(requestHeaders(id), { attributes: ATTRS }))
  s.cancel()
  await waitFor(() => closed.has(id), 'the stream to close')
  await new Promise((r) => setTimeout(r, 20))
  t.same(closed.get(id)?.outcomes.map((o) => o.kind), ['cancelled'])
})

t.test('concurrent streams keep their requests apart', async (t) => {
  const runs = Array.from({ length: 25 }, async (_, i) => {
    const id = newId(`concurrent-${i}`)
    const s = open()
    const anthropic = i % 2 === 1
    const attrs = i % 5 === 0 ? mtlsAttributes(PEM.foreign) : ATTRS
    const h = await s.exchange(msg.requestHeaders(requestHeaders(id, {}, anthropic ? '/v1/messages' : '/v1/chat/completions'), { attributes: attrs }))
    if (h.immediate_response) {
      await s.end()
      return { id, outcome: denialJson(h).error.code as string }
    }
    const b = await s.exchange(msg.requestBody(anthropic ? MESSAGES : CHAT))
    await s.end()
    return { id, outcome: b.immediate_response ? (denialJson(b).error.code as string) : (fromStruct(b.dynamic_metadata).modelgate as { model: string }).model }
  })
  const results = await Promise.all(runs)
  results.forEach((r, i) => {
    const expected = i % 5 === 0 ? 'MG_IDENTITY_UNTRUSTED' : i % 2 === 1 ? 'claude-sonnet-4-5' : 'gpt-4o-mini'
    t.equal(r.outcome, expected, r.id)
    t.equal(closed.get(r.id)?.outcomes.length, 1)
  })
  t.equal(app.server.openStreams(), 0, 'every stream is closed afterwards')
})

t.test('every header value in every answer travels in raw_value only', async (t) => {
  // Runs last, over the answers of every stream the other tests opened.
  const seen = allStreams.flatMap((s) => s.received)
  t.ok(seen.length > 40, `checked ${seen.length} answers`)
  t.ok(seen.some((x) => x.immediate_response) && seen.some((x) => x.request_headers?.response?.header_mutation?.set_headers?.length), 'both denials and mutations were checked')
  t.same(headersWithValueField(seen), [])
})
