/**
 * Quotas through a real Envoy, with the official SDKs: 50 requests at once
 * against budgets that admit exactly K (by requests and by tokens, on the
 * memory store and on a real redis-server), the 429 with its headers in both
 * dialects, a streamed answer settled with its real usage (asked for on the
 * caller's behalf and hidden from it), a stream ended when it passes its
 * budget, and a redis-server killed and restarted under traffic.
 */
import t from 'tap'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { startStack, type Stack } from '../helpers/stack.ts'
import { startRedis } from '../helpers/redis.ts'

const GPT = 'gpt-4o-mini'
const CLAUDE = 'claude-haiku-4-5'
const N = 50

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  )
}

/** 50 chat requests at once from checkout; the provider holds each answer long enough that every reservation comes before any settles. */
async function burst(stack: Stack, model: string, maxTokens: number): Promise<number[]> {
  stack.provider.enqueue(
    ...Array.from({ length: N }, () => ({ delayMs: 300, body: { id: 'x', object: 'chat.completion', model, choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } } })),
  )
  const answers = await Promise.all(Array.from({ length: N }, () => stack.request('checkout', { path: '/v1/chat/completions', body: { model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'Hello' }] } })))
  return answers.map((a) => a.status)
}

const burstRules = [
  { name: 'checkout-requests', match: { identity: ['spiffe://modelgate.local/ns/payments/sa/checkout'], model: ['gpt-4.1-mini'] }, per: ['identity'], limit: { requests: 7 }, window: 'hour' },
  // Each request reserves its input (a few tokens) plus max_tokens 1000: 5500 admits 5.
  { name: 'checkout-tokens', match: { team: ['payments'], model: [GPT] }, per: ['team'], limit: { tokens: 5500 }, window: 'day' },
]

t.test('quotas through Envoy (memory store)', async (t) => {
  const stack = await startStack({
    config: {
      quotas: {
        rules: [
          ...burstRules,
          { name: 'notebook-rpm', match: { identity: ['spiffe://modelgate.local/ns/research/sa/notebook'] }, limit: { requests: 3 }, window: 'minute' },
        ],
      },
    },
  })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  t.test('50 requests at once against a budget of 7 requests: exactly 7 pass and 43 get 429', async (t) => {
    const statuses = await burst(stack, 'gpt-4.1-mini', 10)
    t.equal(statuses.filter((s) => s === 200).length, 7)
    t.equal(statuses.filter((s) => s === 429).length, N - 7)
    t.equal(stack.provider.requests.length, 7, 'the refused requests never reached the provider')
  })

  t.test('50 requests at once against a budget of 5 worst cases in tokens: exactly 5 pass and 45 get 429', async (t) => {
    const statuses = await burst(stack, GPT, 1000)
    t.equal(statuses.filter((s) => s === 200).length, 5)
    t.equal(statuses.filter((s) => s === 429).length, N - 5)
    t.equal(stack.provider.requests.length, 5)
  })

  t.test('the fourth request of notebook in a minute gets 429 in the SDK with Retry-After and RateLimit fields naming the rule', async (t) => {
    const openai = stack.openai('notebook')
    for (let i = 0; i < 3; i++) {
      const { response } = await openai.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'Hello' }] }).withResponse()
      // Every admitted answer says what is left, so a client can slow down before it is refused.
      t.equal(response.headers.get('ratelimit-policy'), '"notebook-rpm";q=3;w=60', `answer ${i + 1} names the rule`)
      t.match(response.headers.get('ratelimit') ?? '', new RegExp(`^"notebook-rpm";r=${2 - i};t=\\d+$`), `answer ${i + 1}: ${2 - i} left`)
    }
    const err = await rejection(openai.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'Hello' }] }))
    t.ok(err instanceof OpenAI.APIError)
    const e = err as InstanceType<typeof OpenAI.APIError>
    t.equal(e.status, 429)
    t.equal(e.code, 'MG_QUOTA_EXCEEDED')
    t.equal((e.error as Record<string, unknown>).rule, 'notebook-rpm')
    const retry = Number(e.headers?.get('retry-after'))
    t.ok(retry >= 1 && retry <= 20, `Retry-After ${retry}: one emission interval (20 s) at most`)
    t.equal(e.headers?.get('ratelimit-policy'), '"notebook-rpm";q=3;w=60')
    t.match(e.headers?.get('ratelimit') ?? '', /^"notebook-rpm";r=0;t=\d+$/)
    t.equal(e.headers?.get('x-modelgate-error'), 'MG_QUOTA_EXCEEDED')
    t.equal(stack.provider.requests.length, 3)

    const a = await rejection(stack.anthropic('notebook').messages.create({ model: CLAUDE, max_tokens: 16, messages: [{ role: 'user', content: 'Hello' }] }))
    t.ok(a instanceof Anthropic.RateLimitError, 'Anthropic callers get rate_limit_error')
    const ae = a as InstanceType<typeof Anthropic.APIError>
    t.equal(ae.status, 429)
    t.equal((ae as unknown as { errorCode?: string }).errorCode, 'MG_QUOTA_EXCEEDED')
    t.match(ae.headers?.get('ratelimit-policy') ?? '', /^"notebook-rpm";q=3;w=60$/)
    t.ok(ae.headers?.get('retry-after'))

    const rec = await stack.auditRecord(e.requestID!)
    t.equal(rec['modelgate.quota.deciding_rule'], 'notebook-rpm')
    t.equal(rec['modelgate.denial.code'], 'MG_QUOTA_EXCEEDED')
  })
})

t.test('streams and token budgets through Envoy', async (t) => {
  const stack = await startStack({
    config: {
      quotas: {
        rules: [
          { name: 'checkout-daily', match: { identity: ['spiffe://modelgate.local/ns/payments/sa/checkout'] }, per: ['identity'], limit: { tokens: 1_000_000 }, window: 'day' },
          { name: 'notebook-small', match: { identity: ['spiffe://modelgate.local/ns/research/sa/notebook'] }, limit: { tokens: 300 }, window: 'hour' },
        ],
      },
    },
  })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  t.test('a streamed answer is settled with its real usage; the usage asked for on the caller\'s behalf never reaches the caller', async (t) => {
    const stream = await stack.openai('checkout').chat.completions.create({ model: GPT, stream: true, max_tokens: 500, messages: [{ role: 'user', content: 'Tell me a story' }] })
    const chunks: Record<string, unknown>[] = []
    for await (const c of stream) chunks.push(c as unknown as Record<string, unknown>)
    const sent = stack.provider.requests.at(-1)!.json as Record<string, unknown>
    t.same(sent.stream_options, { include_usage: true }, 'the provider was asked for usage')
    t.ok(chunks.length > 3)
    t.ok(chunks.every((c) => !('usage' in c)), 'no chunk carries usage (neither the usage chunk nor usage: null)')
    t.ok(chunks.every((c) => Array.isArray(c.choices) && (c.choices as unknown[]).length > 0), 'no usage-only chunk')
    const text = chunks.map((c) => ((c.choices as { delta?: { content?: string } }[])[0]?.delta?.content ?? '')).join('')
    t.match(text, /^Stand-in reply\. You said: Tell me a story$/)

    const rid = stream._request_id!
    const rec = await stack.auditRecord(rid)
    const input = rec['gen_ai.usage.input_tokens'] as number
    const output = rec['gen_ai.usage.output_tokens'] as number
    t.ok(input > 0 && output > 0, 'usage recorded')
    t.equal(rec['modelgate.quota.settled_tokens'], input + output, 'settled at the provider\'s usage')
    t.equal(rec['modelgate.quota.settled_by'], 'usage')
    t.ok((rec['modelgate.quota.reserved_tokens'] as number) >= 500, 'the reservation held the output budget')
  })

  t.test('a caller that turned usage off (include_usage: false) is still settled with the real usage, and sees none of it', async (t) => {
    const stream = await stack.openai('checkout').chat.completions.create({ model: GPT, stream: true, max_tokens: 500, stream_options: { include_usage: false }, messages: [{ role: 'user', content: 'Hi' }] })
    const chunks: Record<string, unknown>[] = []
    for await (const c of stream) chunks.push(c as unknown as Record<string, unknown>)
    const sent = stack.provider.requests.at(-1)!.json as Record<string, unknown>
    t.same(sent.stream_options, { include_usage: true }, 'the provider was asked for usage')
    t.ok(chunks.every((c) => !('usage' in c)), 'no chunk carries usage')
    const rec = await stack.auditRecord(stream._request_id!)
    t.equal(rec['modelgate.quota.settled_by'], 'usage', 'settled with the provider\'s usage, not the 500-token reservation')
    t.equal(rec['modelgate.quota.settled_tokens'], (rec['gen_ai.usage.input_tokens'] as number) + (rec['gen_ai.usage.output_tokens'] as number))
  })

  t.test('a caller that asked for usage gets the usage chunk, unchanged', async (t) => {
    const stream = await stack.openai('checkout').chat.completions.create({ model: GPT, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Hi' }] })
    const chunks: Record<string, unknown>[] = []
    for await (const c of stream) chunks.push(c as unknown as Record<string, unknown>)
    const last = chunks.at(-1)!
    t.same(last.choices, [])
    t.ok(last.usage && typeof last.usage === 'object', 'the usage chunk arrives')
  })

  t.test('a stream that passes the budget ends with an error event in the SDK, and the rest never reaches the caller', async (t) => {
    // Each delta ~10 tokens: 60 of them are far past the 300-token budget.
    const base = { id: 'chatcmpl-cut', object: 'chat.completion.chunk', created: 1, model: GPT }
    const deltas = Array.from({ length: 60 }, (_, i) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: `word${i} alpha beta gamma delta epsilon zeta eta theta ` }, finish_reason: null }] })}\n\n`)
    stack.provider.enqueue({ sse: [...deltas, 'data: [DONE]\n\n'], chunkDelayMs: 2 })
    const stream = await stack.openai('notebook').chat.completions.create({ model: GPT, stream: true, max_tokens: 20, messages: [{ role: 'user', content: 'Hi' }] })
    let text = ''
    const err = await rejection(
      (async () => {
        for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
      })(),
    )
    t.ok(err instanceof OpenAI.APIError, 'the SDK raises the error event')
    t.equal((err as InstanceType<typeof OpenAI.APIError>).code, 'MG_QUOTA_EXCEEDED')
    t.ok(text.length > 0, 'what fitted was delivered')
    t.notMatch(text, /word59/, 'the end never arrived')
    const rid = stream._request_id!
    const rec = await stack.auditRecord(rid)
    t.equal(rec['modelgate.quota.stream_cut'], true)
    t.equal(rec['modelgate.quota.deciding_rule'], 'notebook-small')
    t.equal(rec['modelgate.quota.settled_by'], 'streamed')
    const settled = rec['modelgate.quota.settled_tokens'] as number
    t.ok(settled > 20 && settled <= 300 + 64, `settled at what was produced (${settled})`)
  })
})

t.test('quotas on a real redis-server through Envoy', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const stack = await startStack({ config: { quotas: { store: 'redis', redis: { url: redis.url, keyPrefix: 'e2e:' }, rules: burstRules } } })
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  t.test('50 requests at once against a budget of 7 requests: exactly 7 pass', async (t) => {
    const statuses = await burst(stack, 'gpt-4.1-mini', 10)
    t.equal(statuses.filter((s) => s === 200).length, 7)
    t.equal(statuses.filter((s) => s === 429).length, N - 7)
  })

  t.test('50 requests at once against a budget of 5 worst cases in tokens: exactly 5 pass', async (t) => {
    const statuses = await burst(stack, GPT, 1000)
    t.equal(statuses.filter((s) => s === 200).length, 5)
    t.equal(statuses.filter((s) => s === 429).length, N - 5)
  })

  t.test('redis-server killed during traffic: 503 MG_QUOTA_UNAVAILABLE, nothing forwarded, no crash; restarted: served again without restarting modelgate', async (t) => {
    const chat = () => stack.request('checkout', { path: '/v1/chat/completions', body: { model: GPT, max_tokens: 5, messages: [{ role: 'user', content: 'Hello' }] } })
    // Traffic running while Redis dies.
    const during = Array.from({ length: 20 }, (_, i) => new Promise((r) => setTimeout(r, i * 10)).then(chat))
    await new Promise((r) => setTimeout(r, 50))
    await redis.kill()
    const first = await Promise.all(during)
    t.ok(first.every((a) => a.status === 200 || a.status === 503 || a.status === 429), 'every answer is a service or a refusal')
    stack.provider.clear()
    const down = await Promise.all(Array.from({ length: 10 }, chat))
    t.same(new Set(down.map((a) => a.status)), new Set([503]))
    t.equal(down[0]!.json().error.code, 'MG_QUOTA_UNAVAILABLE')
    t.equal(down[0]!.headers['retry-after'], '1')
    t.equal(stack.provider.requests.length, 0, 'nothing reached the provider while the store was down')
    t.ok(stack.app, 'modelgate still runs')
    await redis.restart()
    const until = Date.now() + 10_000
    let status = 0
    while (Date.now() < until) {
      status = (await chat()).status
      if (status === 200) break
      await new Promise((r) => setTimeout(r, 100))
    }
    t.equal(status, 200, 'served again once Redis is back')
  })
})
