/**
 * Hostile input through the real ext_proc server, the way Envoy would carry
 * it: seeded random request headers and bodies (malformed, deeply nested,
 * wide, duplicate keys, invalid UTF-8, lone surrogates, compressed garbage,
 * odd content types and paths), followed for the requests that pass by
 * random response headers and bodies (JSON, SSE split anywhere, binary).
 *
 * Every answer must be a clean one — a CONTINUE (with or without mutations)
 * for the phase it answers, or an ImmediateResponse with an explicit 4xx/5xx
 * status and a catalogued JSON error — every stream must end with status OK,
 * and the process must see no uncaught exception or unhandled rejection, stay
 * healthy and keep its memory bounded.
 *
 * FUZZ_RUNS and FUZZ_SEED override the number of cases and the seed (the
 * release check runs 200,000 cases: `FUZZ_RUNS=200000 bash scripts/test.sh test/integration/fuzz.test.ts`).
 */
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import fc from 'fast-check'
import t from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { ERRORS } from '../../src/errors.ts'
import { silentLogger } from '../../src/log.ts'
import type { ProcessingRequestMsg, ProcessingResponseMsg } from '../../src/server/codec.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'
import { answerKind, connectExtProc, connectHealth, headersWithValueField, msg, mtlsAttributes, type ExtProcStream } from '../helpers/grpc-client.ts'

const RUNS = Number(process.env.FUZZ_RUNS ?? 10_000)
const SEED = Number(process.env.FUZZ_SEED ?? 20261126)
/** Streams in flight at once. */
const PARALLEL = 24

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const dir = t.testdir()
const ca = await createCa(dir, 'ca')
const PEM = readFileSync((await issueCertificate(dir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8')
const ATTRS = mtlsAttributes(PEM, CHECKOUT)

const config = configFromObject(
  {
    server: { listen: '127.0.0.1:0', phaseTimeoutMs: 2000, drainTimeoutMs: 2000, maxBodyBytes: 1048576 },
    identity: { trustDomains: [TD] },
    providers: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'none', none: true }] }, anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', credentials: [{ name: 'none', none: true }] } } },
    policy: { dir: permitAllPolicyDir(), watch: false },
    audit: { file: `${dir}/audit.jsonl`, spool: { dir: `${dir}/spool` } },
  },
  'fuzz.test',
)

// ---- generators ------------------------------------------------------------------

const SECRET = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(SECRET, `mail dana.whitfield@gmail.com`, '4111 1111 1111 1111', '\ud800'.repeat(30) + SECRET, 'data:;base64, ' + SECRET),
)
const jsonValue = fc.jsonValue({ maxDepth: 4 })

const chatBody = fc.record(
  {
    model: fc.oneof(fc.constant('gpt-4o-mini'), text, fc.integer()),
    messages: fc.array(fc.record({ role: fc.constantFrom('user', 'system', 'assistant', 'tool', 'x'), content: fc.oneof(text, fc.array(fc.record({ type: fc.constant('text'), text }), { maxLength: 3 })) }), {
      maxLength: 4,
    }),
    max_tokens: fc.oneof(fc.integer(), fc.double(), fc.constant('10')),
    stream: fc.oneof(fc.boolean(), fc.constant('yes')),
    tools: fc.array(fc.record({ type: fc.constant('function'), function: fc.record({ name: text, parameters: jsonValue }) }), { maxLength: 2 }),
    metadata: fc.dictionary(text, text, { maxKeys: 3 }),
    extra: jsonValue,
  },
  { requiredKeys: [] },
)
const anthropicBody = fc.record(
  {
    model: fc.oneof(fc.constant('claude-sonnet-4-5'), text),
    max_tokens: fc.oneof(fc.integer({ min: -5, max: 5000 }), fc.constant(null)),
    system: text,
    messages: fc.array(fc.record({ role: fc.constantFrom('user', 'assistant'), content: fc.oneof(text, fc.array(jsonValue, { maxLength: 3 })) }), { maxLength: 3 }),
  },
  { requiredKeys: [] },
)

/** Raw body bytes: valid JSON shapes and every way of breaking them. */
/** A chat request the provider parser accepts, with hostile text in it. */
const validChat = fc
  .record({ content: text, name: fc.string({ maxLength: 10 }), meta: fc.dictionary(text, text, { maxKeys: 3 }), n: fc.integer({ min: 1, max: 4000 }) })
  .map(({ content, meta, n }) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: n, metadata: meta }))

const body: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: validChat.map((b) => Buffer.from(JSON.stringify(b))), weight: 8 },
  chatBody.map((b) => Buffer.from(JSON.stringify(b))),
  anthropicBody.map((b) => Buffer.from(JSON.stringify(b))),
  fc.tuple(chatBody, fc.nat()).map(([b, cut]) => {
    const s = Buffer.from(JSON.stringify(b))
    return s.subarray(0, cut % (s.length + 1))
  }),
  fc.integer({ min: 1, max: 40_000 }).map((n) => Buffer.from('['.repeat(n) + ']'.repeat(n % 3 === 0 ? n : 0))),
  fc.integer({ min: 1, max: 30_000 }).map((n) => Buffer.from(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"metadata":{"x":${'['.repeat(n)}${']'.repeat(n)}}}`)),
  fc.integer({ min: 1, max: 60_000 }).map((n) => Buffer.from(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":[${'"a",'.repeat(n)}"a"]}`)),
  fc.constantFrom(
    '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}',
    '{"__proto__":{"admin":true},"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
    '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800\\udfff\\ud800"}],"max_tokens":1e400}',
    '',
    'null',
    '[]',
    '"just a string"',
    '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}garbage',
  ).map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  chatBody.map((b) => Buffer.concat([Buffer.from(JSON.stringify(b).slice(0, -1)), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('}')])),
)

const path = fc.oneof(
  { arbitrary: fc.constant('/v1/chat/completions'), weight: 8 },
  fc.constantFrom('/v1/chat/completions', '/v1/messages', '/v1/responses', '/v1/embeddings', '/v1/completions', '/openai/deployments/gpt4/chat/completions'),
  fc.constantFrom('/v1/chat/completions?api_key=' + SECRET, '/v1/../v1/chat/completions', '/', '', '/v1/chat/completions/', '//v1/chat/completions'),
  fc.string({ maxLength: 80 }).map((s) => '/' + s),
)

const contentType = fc.constantFrom('application/json', 'application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain', '', 'application/vnd.api+json', 'multipart/form-data; boundary=x')
const contentEncoding = fc.constantFrom(undefined, undefined, undefined, undefined, undefined, 'gzip', 'br', 'deflate', 'identity', 'gzip, gzip', 'x-unknown', 'GZIP')
const extraHeaders = fc.dictionary(
  fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/),
  fc.oneof(fc.string({ maxLength: 100 }), fc.constant('x'.repeat(8000)), fc.constant(SECRET)),
  { maxKeys: 2 },
)

interface ResponseScript {
  status: string
  contentType: string
  chunks: Buffer[]
}

const sseChunks = fc
  .tuple(
    fc.array(fc.oneof(text.map((s) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: s } }] })}\n\n`), text.map((s) => `data: ${s}\n\n`), fc.constant(':comment\r\n\r\n'), fc.constant('data: [DONE]\n\n')), {
      maxLength: 6,
    }),
    fc.array(fc.nat(), { maxLength: 4 }),
  )
  .map(([events, cuts]) => {
    const all = Buffer.from(events.join(''))
    const points = [...new Set(cuts.map((c) => (all.length ? c % all.length : 0)))].sort((a, b) => a - b)
    const out: Buffer[] = []
    let last = 0
    for (const p of points) {
      out.push(all.subarray(last, p))
      last = p
    }
    out.push(all.subarray(last))
    return out
  })

const response: fc.Arbitrary<ResponseScript> = fc.oneof(
  fc.record({ status: fc.constantFrom('200', '400', '500', 'abc'), contentType: fc.constantFrom('application/json', 'text/plain', ''), chunks: body.map((b) => [b]) }),
  fc.record({ status: fc.constant('200'), contentType: fc.constant('text/event-stream'), chunks: sseChunks }),
  fc.record({ status: fc.constant('200'), contentType: fc.constantFrom('application/octet-stream', 'image/png'), chunks: fc.uint8Array({ maxLength: 200 }).map((a) => [Buffer.from(a)]) }),
  fc.record({ status: fc.constant('200'), contentType: fc.constant('application/json'), chunks: fc.uint8Array({ maxLength: 200 }).map((a) => [Buffer.from(a)]) }),
)

const exchange = fc.record({
  method: fc.constantFrom('POST', 'POST', 'POST', 'POST', 'POST', 'POST', 'GET', 'PUT'),
  path,
  contentType,
  contentEncoding,
  extra: extraHeaders,
  body,
  gzipBody: fc.constantFrom(false, false, false, false, true),
  response,
  provider: fc.constantFrom(undefined, 'openai', 'openai', 'openai', 'anthropic', 'nope'),
})
type Exchange = typeof exchange extends fc.Arbitrary<infer T> ? T : never

// ---- checking answers ------------------------------------------------------------------

const CODES = new Set(Object.keys(ERRORS))

/** Why an answer is not a clean one for the phase it answers, or undefined. */
function problem(answer: ProcessingResponseMsg, expected: string): string | undefined {
  const kind = answerKind(answer)
  if (kind === 'immediate_response') {
    const ir = answer.immediate_response!
    const status = ir.status?.code ?? 0
    if (status < 400 || status > 599) return `immediate response with status ${status}`
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(ir.body ?? []).toString('utf8'))
    } catch {
      return 'immediate response body is not JSON'
    }
    const err = (parsed as { error?: { code?: unknown } }).error
    if (!err || typeof err.code !== 'string' || !CODES.has(err.code)) return `immediate response without a catalogued code: ${JSON.stringify(parsed).slice(0, 200)}`
    return undefined
  }
  if (kind !== expected) return `answered ${kind} for ${expected}`
  return undefined
}

interface Outcome {
  readonly problems: string[]
  readonly denied: boolean
}

async function play(stream: ExtProcStream, x: Exchange): Promise<Outcome> {
  const problems: string[] = []
  const step = async (m: ProcessingRequestMsg, expected: string): Promise<boolean> => {
    const a = await stream.exchange(m, 10_000)
    const p = problem(a, expected)
    if (p) problems.push(p)
    return answerKind(a) === 'immediate_response'
  }
  const headers: Record<string, string> = { ':method': x.method, ':path': x.path, ':authority': 'llm.internal', ':scheme': 'https', ...x.extra }
  if (x.contentType) headers['content-type'] = x.contentType
  const payload = x.gzipBody ? gzipSync(x.body) : x.body
  if (x.gzipBody) headers['content-encoding'] = 'gzip'
  else if (x.contentEncoding) headers['content-encoding'] = x.contentEncoding
  const noBody = payload.length === 0
  let denied = await step(msg.requestHeaders(headers, { attributes: ATTRS, endOfStream: noBody }), 'request_headers')
  if (!denied && !noBody) denied = await step(msg.requestBody(payload), 'request_body')
  if (!denied) {
    const r = x.response
    const respHeaders = { ':status': r.status, ...(r.contentType ? { 'content-type': r.contentType } : {}) }
    denied = await step(msg.responseHeaders(respHeaders), 'response_headers')
    for (let i = 0; !denied && i < r.chunks.length; i++) {
      const last = i === r.chunks.length - 1
      // Only SSE is switched to STREAMED; everything else arrives in one BUFFERED message.
      if (r.contentType !== 'text/event-stream' && !last) continue
      const data = r.contentType === 'text/event-stream' ? r.chunks[i]! : Buffer.concat(r.chunks)
      denied = await step(msg.responseBody(data, last), 'response_body')
    }
  }
  const end = await stream.end()
  if (end.code !== 0) problems.push(`stream ended with gRPC status ${end.code}: ${end.details}`)
  problems.push(...headersWithValueField(stream.received).map((h) => `header value outside raw_value: ${h}`))
  return { problems, denied }
}

// ---- the run ------------------------------------------------------------------------------

t.test(`${RUNS} hostile exchanges (seed ${SEED}) get clean answers, and the server stays up with bounded memory`, async (t) => {
  const faults: unknown[] = []
  const onFault = (e: unknown) => void faults.push(e)
  process.on('uncaughtException', onFault)
  process.on('unhandledRejection', onFault)
  const app = await startApp({ config, logger: silentLogger })
  const client = connectExtProc(app.address, { maxMessageBytes: 4 * 1024 * 1024 })
  const health = connectHealth(app.address)
  t.teardown(async () => {
    process.off('uncaughtException', onFault)
    process.off('unhandledRejection', onFault)
    client.close()
    health.close()
    await app.shutdown()
  })

  const cases = fc.sample(exchange, { numRuns: RUNS, seed: SEED })
  const failures: { index: number; problems: string[] }[] = []
  let denied = 0
  let peakRss = 0
  const rssBefore = process.memoryUsage().rss
  for (let i = 0; i < cases.length; i += PARALLEL) {
    const batch = cases.slice(i, i + PARALLEL)
    const outcomes = await Promise.all(
      batch.map(async (x, j) => {
        const metadata: Record<string, string> = x.provider ? { 'x-modelgate-provider': x.provider } : {}
        try {
          return await play(client.open(metadata), x)
        } catch (err) {
          return { problems: [`no clean answer: ${(err as Error).message}`], denied: false, index: i + j }
        }
      }),
    )
    outcomes.forEach((o, j) => {
      if (o.denied) denied++
      if (o.problems.length) failures.push({ index: i + j, problems: o.problems })
    })
    if (i % (PARALLEL * 50) === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss)
  }
  peakRss = Math.max(peakRss, process.memoryUsage().rss)

  t.same(failures.slice(0, 5), [], `every answer is clean (first of ${failures.length} failing cases shown; replay with FUZZ_SEED=${SEED})`)
  t.same(faults.map(String), [], 'no uncaught exception or unhandled rejection')
  t.equal(await health.check(), 'SERVING', 'the server still serves')
  t.ok(denied > RUNS / 10 && denied < RUNS, `both refusals and passes occur (${denied} of ${RUNS} refused)`)
  t.ok(peakRss - rssBefore < 300 * 1024 * 1024, `memory stays bounded (peak RSS grew by ${Math.round((peakRss - rssBefore) / 1048576)} MB)`)
})
