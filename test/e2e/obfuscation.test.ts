/**
 * Obfuscated values and values outside the body, through a real Envoy with
 * the official SDKs. Each obfuscation is sent in a request (the stand-in
 * provider must never receive the value, in any form) and returned in a
 * response, JSON and streamed (the SDK-decoded answer must never carry it).
 * A token in the URL path, the query or a custom header never reaches the
 * provider either: the request is refused, or, where configured, the
 * parameter is removed and the header stripped before Envoy sends it.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { APIError } from 'openai'
import { APIError as AnthropicAPIError } from '@anthropic-ai/sdk'
import { permitAllRedactedPolicyDir } from '../helpers/policies.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

/** Policies that permit every request and no class unredacted: what is tested here is redaction, not the shipped policies (which refuse any secret). */
const PERMIT_ALL = { config: { policy: { dir: permitAllRedactedPolicyDir(), watch: false } } }

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const VISA = '4539578763621486'
const MASTERCARD = '5425233430109903'
const AMEX = '374245455400126'
const MODEL = 'gpt-4o-mini'

interface Case {
  readonly name: string
  /** The text as the caller writes it. */
  readonly text: string
  /** What must never arrive, in any of these plain forms. */
  readonly values: readonly string[]
}

const ZW = '\u200b'
const fullWidth = (s: string) => s.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)))
const b64 = (s: string) => Buffer.from(s).toString('base64')

const CASES: readonly Case[] = [
  { name: 'zero-width characters inside a token', text: `my key ${TOKEN.slice(0, 10)}${ZW}${TOKEN.slice(10, 20)}\u2060${TOKEN.slice(20)} thanks`, values: [TOKEN] },
  { name: 'zero-width characters inside a card number', text: `card ${VISA.slice(0, 4)}${ZW}${VISA.slice(4, 8)}\u200d${VISA.slice(8, 12)}\ufeff${VISA.slice(12)} please`, values: [VISA] },
  { name: 'full-width digits', text: `card ${fullWidth('4539 5787 6362 1486')} please`, values: [VISA, fullWidth(VISA)] },
  { name: 'base64 without padding', text: `blob ${b64(`token ${TOKEN}`).replace(/=+$/, '')} end`, values: [TOKEN, b64(`token ${TOKEN}`).replace(/=+$/, '')] },
  { name: 'base64 glued to a preceding underscore', text: `blob_${b64(`token ${TOKEN}`)} end`, values: [TOKEN, b64(`token ${TOKEN}`)] },
  { name: 'base64 of a card number', text: `payload ${b64(`card ${VISA}`)} end`, values: [VISA, b64(`card ${VISA}`)] },
  { name: 'a card number with double spaces', text: `card 4539  5787  6362  1486 please`, values: [VISA] },
  { name: 'a card number with dots', text: `card 4539.5787.6362.1486 please`, values: [VISA] },
  { name: 'a card number with newlines', text: `card 4539\n5787\n6362\n1486 please`, values: [VISA] },
  { name: 'a Visa number with no card keyword', text: `Payment reference ${VISA} received`, values: [VISA] },
  { name: 'a Mastercard number with no card keyword', text: `Payment reference ${MASTERCARD} received`, values: [MASTERCARD] },
  { name: 'an Amex number with no card keyword', text: `Payment reference ${AMEX} received`, values: [AMEX] },
  { name: 'a database URL whose password contains #', text: 'connect to postgres://app:pa#ss@db/x now', values: ['pa#ss'] },
  { name: 'lone \\ud800 escapes before a token', text: `${'\ud800'.repeat(5)}${TOKEN} and \ud800${TOKEN.slice(0, 4)}`, values: [TOKEN] },
]

/** Every string in a JSON value, keys included. */
function strings(v: unknown, out: string[] = []): string[] {
  if (typeof v === 'string') out.push(v)
  else if (typeof v === 'number') out.push(String(v))
  else if (Array.isArray(v)) for (const x of v) strings(x, out)
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(k), strings(x, out)
  return out
}

/** The forms a reader may see a value in: as written, with invisible characters gone and compatibility forms folded, digits only. */
function forms(text: string): string[] {
  const plain = text.normalize('NFKC').replace(/[\u200b-\u200f\u2060-\u2064\ufeff\u00ad]/g, '')
  return [text, plain, plain.replace(/[^0-9]/g, '')]
}

/** True when some form of `text` carries one of the values. */
function carries(text: string, values: readonly string[]): string | undefined {
  for (const f of forms(text)) for (const v of values) if (f.includes(v) || (/^\d+$/.test(v) && f.replace(/\D/g, '').includes(v))) return v
  return undefined
}

function assertProviderNeverGot(t: Test, stack: Stack, values: readonly string[]): void {
  t.ok(stack.provider.requests.length <= 1, 'at most one request reached the provider')
  for (const r of stack.provider.requests) {
    const raw = r.body.toString('utf8')
    const decoded = r.json === undefined ? [raw] : strings(r.json)
    const leaked = carries(raw, values) ?? decoded.map((s) => carries(s, values)).find((x) => x !== undefined)
    t.equal(leaked, undefined, 'the provider never received the value, raw or decoded')
    t.equal(carries(decodeURIComponent(r.path), values), undefined, 'nor in the path or query')
    t.equal(carries(JSON.stringify(r.headers), values), undefined, 'nor in a header')
  }
}

const chatCompletion = (content: string) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1700000000,
  model: MODEL,
  choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
})
const chunk = (content: string) => `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1700000000, model: MODEL, choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`

t.test('obfuscated values never reach the provider or come back to the caller', async (t) => {
  const stack = await startStack(PERMIT_ALL)
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  for (const c of CASES) {
    t.test(`${c.name}: the OpenAI SDK's request reaches the provider without it`, async (t) => {
      await stack.openai('checkout').chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: c.text }] })
      t.equal(stack.provider.requests.length, 1)
      assertProviderNeverGot(t, stack, c.values)
    })

    t.test(`${c.name}: the Anthropic SDK's request reaches the provider without it`, async (t) => {
      await stack.anthropic('notebook').messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: [{ type: 'text', text: c.text }] }] })
      t.equal(stack.provider.requests.length, 1)
      assertProviderNeverGot(t, stack, c.values)
    })

    t.test(`${c.name}: a JSON answer carrying it is decoded by the SDK without it`, async (t) => {
      stack.provider.enqueue({ body: chatCompletion(`Here: ${c.text}`) })
      const res = await stack.openai('checkout').chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
      const text = res.choices[0]!.message.content ?? ''
      t.match(text, /^Here: /, 'the answer arrives')
      t.equal(carries(text, c.values), undefined)
    })

    t.test(`${c.name}: a streamed answer carrying it, cut every 7 characters, is decoded by the SDK without it`, async (t) => {
      const pieces: string[] = []
      const full = `Here: ${c.text} done`
      for (let i = 0; i < full.length; i += 7) pieces.push(full.slice(i, i + 7))
      stack.provider.enqueue({ sse: [...pieces.map(chunk), 'data: [DONE]\n\n'], chunkDelayMs: 1 })
      const stream = await stack.openai('checkout').chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true })
      let text = ''
      for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? ''
      t.match(text, /^Here: /, 'the answer arrives')
      t.equal(carries(text, c.values), undefined)
    })
  }
})

t.test('a token outside the body never reaches the provider', async (t) => {
  const stack = await startStack(PERMIT_ALL)
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())
  const body = { model: MODEL, messages: [{ role: 'user' as const, content: 'hello' }] }

  const refused = async (t: Test, call: Promise<unknown>, status: number, code: string) => {
    const err = await call.then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(err instanceof APIError || err instanceof AnthropicAPIError, 'the SDK raises an API error')
    t.equal((err as APIError).status, status)
    t.equal((err as APIError).code ?? (err as { errorCode?: string }).errorCode, code)
    t.notOk(JSON.stringify((err as APIError).error ?? {}).includes(TOKEN), 'the error does not echo it')
    t.equal(stack.provider.requests.length, 0, 'the provider got nothing')
  }

  t.test('the token in the URL path: a base segment that is not configured is no route', async (t) => {
    const openai = stack.openai('checkout')
    openai.baseURL = `${stack.url}/v1/${TOKEN}/v1`
    await refused(t, openai.chat.completions.create(body), 404, 'MG_ROUTE_UNSUPPORTED')
    const auditText = await readAudit(stack)
    t.notOk(auditText.includes(TOKEN), 'nor does the audit record keep it')
  })

  t.test('the token as an Azure deployment name is refused as data outside the body', async (t) => {
    const res = await stack.request('checkout', { path: `/openai/deployments/${TOKEN}/chat/completions?api-version=2024-10-21`, body })
    t.equal(res.status, 400)
    t.equal(res.json().error.code, 'MG_DATA_OUTSIDE_BODY')
    t.same(res.json().error.locations, ['url.path'])
    t.equal(stack.provider.requests.length, 0)
    const audit = await readAudit(stack, /"url\.path":"\/openai\/deployments\/\[GITHUB_TOKEN\]\/chat\/completions"/)
    t.match(audit, /"url\.path":"\/openai\/deployments\/\[GITHUB_TOKEN\]\/chat\/completions"/, 'the audit record has the segment as its label')
    t.notOk(audit.includes(TOKEN), 'the audit record keeps neither the segment nor the model it names')
  })

  t.test('the token in the query is refused', async (t) => {
    await refused(t, stack.openai('checkout').chat.completions.create(body, { query: { api_key: TOKEN } }), 400, 'MG_DATA_OUTSIDE_BODY')
    await refused(t, stack.openai('checkout').chat.completions.create(body, { query: { note: TOKEN.replace('_', '%5F') } }), 400, 'MG_DATA_OUTSIDE_BODY')
  })

  t.test('the token in a custom header is refused, in the Anthropic dialect for Anthropic callers', async (t) => {
    await refused(t, stack.openai('checkout').chat.completions.create(body, { headers: { 'x-debug-note': TOKEN } }), 400, 'MG_DATA_OUTSIDE_BODY')
    await refused(
      t,
      stack.anthropic('notebook').messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-debug-note': `mail dana.whitfield@gmail.com` } }),
      400,
      'MG_DATA_OUTSIDE_BODY',
    )
  })

  t.test('the audit record of a refused request keeps names and placeholders, never the token', async (t) => {
    await stack.openai('checkout').chat.completions.create(body, { query: { api_key: TOKEN }, headers: { 'x-debug-note': TOKEN } }).catch(() => undefined)
    const audit = await readAudit(stack, /"modelgate\.url\.query_params":\["api_key"\]/)
    t.match(audit, /"modelgate\.url\.query_params":\["api_key"\]/)
    t.notOk(audit.includes(TOKEN))
  })

  t.test('with query.action remove and headers.action strip, the provider gets the request without the parameter and the header', async (t) => {
    await stack.stopModelgate()
    await stack.startModelgate({ config: { redaction: { headers: { action: 'strip' }, query: { action: 'remove' } } } })
    t.teardown(async () => {
      await stack.stopModelgate()
      await stack.startModelgate()
    })
    const res = await stack.openai('checkout').chat.completions.create(body, { query: { keep: 'yes', api_key: TOKEN, also: 'a b' }, headers: { 'x-debug-note': TOKEN, 'x-trace-note': 'fine' } })
    t.match(res.choices[0]!.message.content, /Stand-in reply/)
    t.equal(stack.provider.requests.length, 1)
    const got = stack.provider.requests[0]!
    t.equal(got.path, '/v1/chat/completions?keep=yes&also=a%20b', 'the other parameters go upstream as sent')
    t.equal(got.headers['x-debug-note'], undefined, 'the header is stripped')
    t.equal(got.headers['x-trace-note'], 'fine', 'other headers pass')
    assertProviderNeverGot(t, stack, [TOKEN])
  })
})

/** The audit file once it has a record matching `until` (records are written when streams close), or after 2 s. */
async function readAudit(stack: Stack, until: RegExp = /MG_/): Promise<string> {
  const file = join(stack.dir, 'audit.jsonl')
  for (let i = 0; i < 100; i++) {
    const text = await readFile(file, 'utf8').catch(() => '')
    if (until.test(text)) return text
    await new Promise((r) => setTimeout(r, 20))
  }
  return readFile(file, 'utf8').catch(() => '')
}
