import t from 'tap'
import { configFromObject } from '../../../src/config/config.ts'
import { GateError } from '../../../src/errors.ts'
import { requestBodyEdits } from '../../../src/inspection/edits.ts'
import { inspectRequestBody } from '../../../src/inspection/inspect.ts'
import { silentLogger } from '../../../src/log.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { BodyChunk } from '../../../src/pipeline/stage.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { MemoryStore } from '../../../src/quotas/memory.ts'
import { createQuotaStage } from '../../../src/quotas/stage.ts'
import { StoreUnavailableError, type StateStore } from '../../../src/quotas/store.ts'
import { applyEdits } from '../../../src/redaction/placeholders.ts'
import { CHECKOUT, identity, NOTEBOOK } from '../policy/fixtures.ts'

const TEAMS: Record<string, string[]> = { [CHECKOUT]: ['payments'], [NOTEBOOK]: ['research'] }

function stage(rules: unknown[], over: { store?: StateStore; quotas?: Record<string, unknown> } = {}) {
  const config = configFromObject({ identity: { trustDomains: ['modelgate.local'] }, quotas: { rules, ...over.quotas } }, 'test').quotas
  const store = over.store ?? new MemoryStore({ sweepMs: 0 })
  return { store, stage: createQuotaStage({ config, store, teamsOf: (id) => new Set(TEAMS[id] ?? []), logger: silentLogger }) }
}

/** A request as the quota stage sees it: identity resolved, body inspected (and measured) as the provider stage does. */
function request(body: Record<string, unknown>, opts: { spiffeId?: string; path?: string } = {}): RequestContext {
  const ctx = new RequestContext()
  ctx.put('caller', { workload: identity(opts.spiffeId ?? CHECKOUT), user: ctx.out.caller?.user })
  ctx.path = opts.path ?? '/v1/chat/completions'
  const route = matchRoute(ctx.path)!
  ctx.dialect = route.kind === 'anthropic' ? 'anthropic' : 'openai'
  ctx.requestBody = Buffer.from(JSON.stringify(body))
  const out = inspectRequestBody({ body: ctx.requestBody, route, providerName: route.kind === 'anthropic' ? 'anthropic' : 'openai', scan: false, subject: undefined, limits: { maxDepth: 64, maxValues: 10000 }, deadline: Date.now() + 5000, measure: 'tokens' }, undefined)
  if (!out.ok) throw new Error('bad test body')
  ctx.put('request', out.request)
  return ctx
}

const chat = (over: Record<string, unknown> = {}) => ({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello there' }], ...over })

async function reserve(s: ReturnType<typeof stage>['stage'], ctx: RequestContext): Promise<GateError | undefined> {
  try {
    await s.requestBody!(ctx)
    return undefined
  } catch (err) {
    if (err instanceof GateError) return err
    throw err
  }
}

t.test('only matching rules count: identity patterns, teams, models and operations select; other requests pass uncounted', async (t) => {
  const { stage: s } = stage([
    { name: 'research-ns', match: { identity: ['spiffe://modelgate.local/ns/research/*'] }, limit: { requests: 1 }, window: 'hour' },
    { name: 'payments-claude', match: { team: ['payments'], model: ['claude-*'] }, limit: { requests: 1 }, window: 'hour' },
    { name: 'embeddings', match: { operation: ['embedding'] }, limit: { requests: 1 }, window: 'hour' },
  ])
  for (let i = 0; i < 3; i++) t.equal(await reserve(s, request(chat())), undefined, 'checkout on gpt-4o-mini chat: no rule matches')
  t.equal(await reserve(s, request(chat(), { spiffeId: NOTEBOOK })), undefined)
  t.equal((await reserve(s, request(chat(), { spiffeId: NOTEBOOK })))?.details.rule, 'research-ns')
  const claude = { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }
  t.equal(await reserve(s, request(claude, { path: '/v1/messages' })), undefined)
  t.equal((await reserve(s, request(claude, { path: '/v1/messages' })))?.details.rule, 'payments-claude')
})

t.test('per partitions a rule: each identity has its own budget', async (t) => {
  const { stage: s } = stage([{ name: 'rph', per: ['identity'], limit: { requests: 1 }, window: 'hour' }])
  t.equal(await reserve(s, request(chat())), undefined)
  t.equal(await reserve(s, request(chat(), { spiffeId: NOTEBOOK })), undefined)
  t.equal((await reserve(s, request(chat())))?.code, 'MG_QUOTA_EXCEEDED')
})

t.test('a token refusal names the rule in Retry-After, RateLimit-Policy (qu tokens) and RateLimit, and in the audit outcome', async (t) => {
  const { stage: s } = stage([{ name: 'daily', limit: { tokens: 1000 }, window: 'day' }])
  const first = request(chat({ max_tokens: 600 }))
  t.equal(await reserve(s, first), undefined)
  const ctx = request(chat({ max_tokens: 600 }))
  const err = await reserve(s, ctx)
  t.equal(err?.code, 'MG_QUOTA_EXCEEDED')
  t.equal(err?.status, 429)
  t.equal(err?.headers['ratelimit-policy'], '"daily";q=1000;w=86400;qu="tokens"')
  t.match(err?.headers.ratelimit, /^"daily";r=\d+;t=\d+$/)
  const r = Number(/r=(\d+)/.exec(err!.headers.ratelimit!)![1])
  t.ok(r < 400 && r > 300, `remaining ${r}: 1000 minus the first reservation`)
  t.ok(Number(err?.headers['retry-after']) >= 1)
  t.equal(ctx.out.quota?.decidingRule, 'daily')
  t.same(ctx.out.quota?.rules, ['daily'])
})

t.test('an admitted answer carries the RateLimit fields of every rule that matched, each at its tightest counter', async (t) => {
  const { stage: s } = stage([
    { name: 'daily', limit: { tokens: 1000 }, window: 'day' },
    { name: 'rpm', limit: { requests: 10 }, window: 'minute' },
  ])
  const ctx = request(chat({ max_tokens: 600 }))
  t.equal(await reserve(s, ctx), undefined)
  ctx.responseStatus = 200
  s.responseHeaders!(ctx)
  const set = ctx.responseHeaderChanges.set
  t.equal(set.get('ratelimit-policy'), '"daily";q=1000;w=86400;qu="tokens", "rpm";q=10;w=60')
  t.match(set.get('ratelimit') ?? '', /^"daily";r=3\d\d;t=\d+, "rpm";r=9;t=\d+$/)
  t.notOk(set.has('retry-after'), 'no Retry-After on an admitted answer')
})

t.test('quotas.rateLimitHeaders: false keeps the fields to refusals', async (t) => {
  const { stage: s } = stage([{ name: 'rpm', limit: { requests: 1 }, window: 'minute' }], { quotas: { rateLimitHeaders: false } })
  const ctx = request(chat())
  t.equal(await reserve(s, ctx), undefined)
  s.responseHeaders!(ctx)
  t.ok(ctx.responseHeaderChanges.empty)
  t.equal((await reserve(s, request(chat())))?.headers['ratelimit-policy'], '"rpm";q=1;w=60', 'the refusal still names the rule')
})

t.test('the reservation is input (gpt-tokenizer) plus max_tokens; settling with usage gives the rest back', async (t) => {
  const { stage: s } = stage([{ name: 'daily', limit: { tokens: 2000 }, window: 'day' }])
  const ctx = request(chat({ max_tokens: 1500 }))
  t.equal(await reserve(s, ctx), undefined)
  const reserved = ctx.out.quota!.reservedTokens!
  t.ok(reserved > 1500 && reserved < 1520, `reserved ${reserved}`)
  t.equal((await reserve(s, request(chat({ max_tokens: 1500 }))))?.code, 'MG_QUOTA_EXCEEDED')
  ctx.responseStatus = 200
  ctx.put('reply', { model: undefined, usage: { input: 8, output: 12 } })
  s.close!(ctx, { kind: 'completed' })
  t.equal(ctx.out.quota?.settledTokens, 20)
  t.equal(ctx.out.quota?.settledBy, 'usage')
  t.equal(await reserve(s, request(chat({ max_tokens: 1500 }))), undefined, 'the unused reservation came back')
})

t.test('no usage settles at the reservation; a request modelgate refused after reserving gives everything back', async (t) => {
  const { stage: s } = stage([{ name: 'daily', limit: { tokens: 3000 }, window: 'day' }])
  const a = request(chat({ max_tokens: 1000 }))
  await reserve(s, a)
  a.responseStatus = 200
  s.close!(a, { kind: 'completed' })
  t.equal(a.out.quota?.settledBy, 'reservation')
  t.equal(a.out.quota?.settledTokens, a.out.quota?.reservedTokens)
  const b = request(chat({ max_tokens: 1000 }))
  await reserve(s, b)
  b.denial = new GateError('MG_CREDENTIAL_MISSING')
  s.close!(b, { kind: 'completed' })
  t.equal(b.out.quota?.settledBy, 'released')
  t.equal(b.out.quota?.settledTokens, 0)
  t.equal(await reserve(s, request(chat({ max_tokens: 1900 }))), undefined, 'only the first request still counts')
})

t.test('a caller gone mid-stream settles at what was produced, never zero; slots in flight are released on every path', async (t) => {
  const { stage: s } = stage([
    { name: 'daily', limit: { tokens: 100000 }, window: 'day' },
    { name: 'one-at-a-time', limit: { concurrent: 1 } },
  ])
  const ctx = request(chat({ stream: true, max_tokens: 500 }))
  t.equal(await reserve(s, ctx), undefined)
  t.equal((await reserve(s, request(chat())))?.details.rule, 'one-at-a-time', 'the slot is held')
  ctx.responseStatus = 200
  ctx.responseStreaming = true
  await s.responseHeaders!(ctx)
  await s.responseBody!(ctx, { data: Buffer.from('data: {"choices":[{"index":0,"delta":{"content":"Hello, world, how are you"}}]}\n\n'), end: false })
  s.close!(ctx, { kind: 'cancelled' })
  t.equal(ctx.out.quota?.settledBy, 'streamed')
  const output = ctx.out.quota!.settledTokens! - ctx.out.quota!.reservedTokens! + 500
  t.ok(output >= 5 && output <= 10, `settled at the produced text (${output} output tokens)`)
  t.equal(await reserve(s, request(chat())), undefined, 'the slot was released')

  const silent = request(chat({ stream: true }))
  const { stage: s2 } = stage([{ name: 'daily', limit: { tokens: 100000 }, window: 'day' }])
  await reserve(s2, silent)
  s2.close!(silent, { kind: 'cancelled' })
  t.ok(silent.out.quota!.settledTokens! > 0, 'a caller gone before any output is not settled at zero')
})

t.test('an OpenAI chat stream without stream_options asks for usage; the caller never sees the usage chunk or usage: null', async (t) => {
  const { stage: s } = stage([{ name: 'daily', limit: { tokens: 100000 }, window: 'day' }])
  const ctx = request(chat({ stream: true }))
  await reserve(s, ctx)
  const sent = JSON.parse(applyEdits(ctx.requestBody.toString('utf8'), requestBodyEdits(ctx)))
  t.same(sent.stream_options, { include_usage: true })
  ctx.responseStatus = 200
  ctx.responseStreaming = true
  await s.responseHeaders!(ctx)
  const upstream = [
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n',
    'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
    'data: {"id":"c","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}\n\n',
    'data: [DONE]\n\n',
  ].join('')
  // Split mid-event: the stage passes only whole events.
  const chunks: BodyChunk[] = [
    { data: Buffer.from(upstream.slice(0, 40)), end: false },
    { data: Buffer.from(upstream.slice(40)), end: true },
  ]
  let out = ''
  for (const c of chunks) {
    await s.responseBody!(ctx, c)
    out += c.data.toString('utf8')
  }
  t.equal(out, 'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')

  const asked = request(chat({ stream: true, stream_options: { include_usage: true } }))
  await reserve(s, asked)
  t.same(requestBodyEdits(asked), [], 'a caller that asked gets its body as sent')
})

t.test('a stream that passes its budget ends with an error event in the caller\'s dialect after the events that fit', async (t) => {
  const { stage: s } = stage([{ name: 'tiny', limit: { tokens: 60 }, window: 'hour' }])
  const ctx = request({ model: 'claude-haiku-4-5', max_tokens: 10, stream: true, messages: [{ role: 'user', content: 'hi' }] }, { path: '/v1/messages' })
  t.equal(await reserve(s, ctx), undefined)
  ctx.responseStatus = 200
  ctx.responseStreaming = true
  await s.responseHeaders!(ctx)
  const delta = (text: string) => `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })}\n\n`
  const first: BodyChunk = { data: Buffer.from(delta('x'.repeat(24))), end: false }
  await s.responseBody!(ctx, first)
  t.equal(ctx.responseTerminated, false, '8 tokens fit')
  const second: BodyChunk = { data: Buffer.from(delta('y'.repeat(30)) + delta('z'.repeat(300))), end: false }
  await s.responseBody!(ctx, second)
  t.equal(ctx.responseTerminated, true)
  const text = second.data.toString('utf8')
  t.match(text, /y{30}/, 'the event that fitted (after an extension) went out')
  t.notMatch(text, /zzz/, 'the one past the budget did not')
  const errorEvent = text.slice(text.indexOf('event: error'))
  t.match(JSON.parse(errorEvent.split('\n')[1]!.slice(6)), { type: 'error', error: { type: 'rate_limit_error', code: 'MG_QUOTA_EXCEEDED', rule: 'tiny' } })
  t.equal(ctx.out.quota?.streamCut, true)
  t.equal(ctx.out.quota?.decidingRule, 'tiny')
  t.equal(ctx.denial?.code, 'MG_QUOTA_EXCEEDED')
})

/** A Redis that cannot be reached: every command fails as RedisStore's do while it reconnects. */
function downStore(): StateStore {
  const down = () => Promise.reject(new StoreUnavailableError('redis is reconnecting'))
  return { kind: 'redis', reserve: down, settle: down, usage: down, put: down, get: down, delete: down, addMembers: down, members: down, take: down, getMany: down, index: down, indexed: down, close: () => Promise.resolve() }
}

t.test('an unreachable store refuses with MG_QUOTA_UNAVAILABLE (deny), or counts against the local share (local)', async (t) => {
  const deny = stage([{ name: 'rph', limit: { requests: 100 }, window: 'hour' }], { store: downStore() })
  const ctx = request(chat())
  const err = await reserve(deny.stage, ctx).catch((e: unknown) => e as GateError)
  t.equal(err?.code, 'MG_QUOTA_UNAVAILABLE')
  t.equal(err?.status, 503)
  t.equal(err?.headers['retry-after'], '1')
  t.match(ctx.out.quota, { store: 'redis', storeError: /reconnecting/ })

  const local = stage([{ name: 'rph', limit: { requests: 100 }, window: 'hour' }], { store: downStore(), quotas: { onStoreError: 'local', localShare: 0.05 } })
  const admitted: (GateError | undefined)[] = []
  for (let i = 0; i < 8; i++) admitted.push(await reserve(local.stage, request(chat())).catch((e: unknown) => e as GateError))
  t.equal(admitted.filter((e) => e === undefined).length, 5, '5 % of 100 on this replica')
  t.equal(admitted.filter((e) => e?.code === 'MG_QUOTA_EXCEEDED').length, 3)
})
