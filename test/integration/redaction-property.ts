/**
 * The redaction promise, end to end through the real ext_proc server: no
 * planted value leaves — not in what goes upstream (the request body, path
 * and headers after modelgate's mutations, applied as Envoy applies them),
 * not in what goes back to the caller (the response bytes after mutations).
 *
 * Each case builds an OpenAI chat, OpenAI Responses or Anthropic messages
 * request and plants values every class of detector is meant to find (vendor
 * tokens, URL passwords, key assignments, e-mail addresses, phone numbers,
 * SSNs, Luhn-valid cards, valid IBANs, Medicare ids, internal host names) in
 * random places: message text, object keys, values under any key, JSON
 * numbers (cards), nested objects, extra fields, text `data:` URLs, base64
 * blobs, Anthropic document blocks, tool arguments, the query and custom
 * headers. It sprinkles lone surrogates, zero-width characters and BOMs, and
 * writes random characters as `\u` escapes. The answer (JSON, or SSE cut at
 * random byte offsets across ext_proc messages) carries planted values too.
 *
 * What leaves is searched raw and decoded: JSON strings and keys decoded,
 * invisible characters removed and compatibility forms folded, base64 runs
 * decoded, percent-encoding undone, stream deltas joined per channel, digits
 * alone for card numbers.
 *
 * The cases are split over two test files (`redaction.property-1.test.ts`,
 * `redaction.property-2.test.ts`), one shard each, so that the run uses both
 * cores. PROPERTY_RUNS (the total, default 10,000) and PROPERTY_SEED override
 * the number of cases and the seed (a release run:
 * `PROPERTY_RUNS=200000 bash scripts/test.sh test/integration/redaction.property-*.test.ts`).
 */
import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import t, { type Test } from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject, type Config } from '../../src/config/config.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { silentLogger } from '../../src/log.ts'
import type { ProcessingResponseMsg } from '../../src/server/codec.ts'
import { CASES, CorpusBuilder } from '../fixtures/redaction/corpus.ts'
import { answerKind, connectExtProc, msg, mtlsAttributes, readMutation, type ExtProcStream } from '../helpers/grpc-client.ts'
import { permitAllRedactedPolicyDir } from '../helpers/policies.ts'

const RUNS = Number(process.env.PROPERTY_RUNS ?? 10_000)
const SEED = Number(process.env.PROPERTY_SEED ?? 20261127)
const PARALLEL = 32

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const SHARDS = 2

async function setup() {
  const dir = t.testdir()
  const ca = await createCa(dir, 'ca')
  const attrs = mtlsAttributes(readFileSync((await issueCertificate(dir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8'), CHECKOUT)
  const config = configFromObject(
  {
    server: { listen: '127.0.0.1:0', phaseTimeoutMs: 5000, drainTimeoutMs: 2000, maxBodyBytes: 1048576, bodyWorkers: 1 },
    identity: { trustDomains: [TD] },
    providers: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'none', none: true }] }, anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', credentials: [{ name: 'none', none: true }] } } },
    // Every model call is permitted and no class may leave unredacted: redaction alone stands between the value and the provider.
    policy: { dir: permitAllRedactedPolicyDir(), watch: false },
    redaction: { headers: { action: 'strip' }, query: { action: 'remove' } },
    // The audit trail is not what is tested here (its own tests hold it to never keeping a value); off, the run is shorter.
    audit: { enabled: false, spool: { dir: `${dir}/spool` } },
  },
  'redaction.property',
  )
  return { attrs, config }
}

// ---- planted values ---------------------------------------------------------------

/** Detectors whose values are planted, at least one per data class. */
const PLANTED = [
  'github-pat',
  'aws-access-key-id',
  'openai-api-key',
  'anthropic-api-key',
  'slack-bot-token',
  'stripe-secret-key',
  'gitlab-pat',
  'npm-token',
  'url-credentials',
  'generic-secret',
  'email',
  'phone-e164',
  'us-ssn-context',
  'credit-card',
  'iban',
  'us-mbi',
  'internal-hostname',
]
const cases = CASES.filter((c) => PLANTED.includes(c.detector))

interface Plant {
  readonly detector: string
  /** The text planted (the value in its carrier, possibly obfuscated). */
  readonly text: string
  /** The value that must never leave, plain (as generated, and percent-decoded when that differs). */
  readonly values: readonly string[]
}

function plainForms(value: string): string[] {
  let decoded = value
  try {
    decoded = decodeURIComponent(value)
  } catch {
    // not percent-encoded
  }
  return [...new Set([value, decoded])]
}

/** Small deterministic PRNG (mulberry32), one per case. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const INVISIBLE = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff']

class Planter {
  readonly rnd: () => number
  readonly b: CorpusBuilder
  readonly plants: Plant[] = []
  constructor(seed: number, b: CorpusBuilder) {
    this.rnd = prng(seed)
    this.b = b
  }
  chance(p: number): boolean {
    return this.rnd() < p
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rnd() * xs.length)]!
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rnd() * (hi - lo + 1))
  }
  /** A value in its carrier, recorded, with obfuscations sprinkled in. */
  plant(opts: { oneLine?: boolean } = {}): string {
    for (;;) {
      const c = this.pick(cases)
      const carrier = this.pick(c.carriers)
      if (!carrier.includes('{v}')) continue
      const value = c.gen(this.b)
      if (opts.oneLine && /[\r\n]/.test(value + carrier)) continue
      let v = value
      // A zero-width character or BOM inside the value.
      if (this.chance(0.2)) {
        const at = this.int(1, v.length - 1)
        v = v.slice(0, at) + this.pick(INVISIBLE) + v.slice(at)
      }
      let text = carrier.replace('{v}', v)
      // Lone surrogates and BOMs around it.
      if (this.chance(0.2)) text = '\ud800'.repeat(this.int(1, 3)) + text
      if (this.chance(0.1)) text = text + '\udc00'
      if (this.chance(0.1)) text = '\ufeff' + text
      this.plants.push({ detector: c.detector, text, values: plainForms(value) })
      return text
    }
  }
  /** Filler text without planted values. */
  filler(): string {
    return this.pick(['hello', 'Summarise the attached notes.', 'ok', '', 'The weather is fine today.', 'Grüße aus Köln 🌧️'])
  }
  textOrPlant(): string {
    return this.chance(0.35) ? this.plant() : this.filler()
  }
  /** A card as a JSON number (digits only, Luhn-valid). */
  cardNumber(): number {
    for (;;) {
      const card = this.pick(cases.filter((c) => c.detector === 'credit-card')).gen(this.b).replace(/\D/g, '')
      if (card.length > 16) continue
      this.plants.push({ detector: 'credit-card', text: card, values: [card] })
      return Number(card)
    }
  }
  /** Somewhere to hide a value: a string, a key, a nested object, a base64 blob, a text data: URL. */
  hidden(depth = 0): unknown {
    switch (this.int(0, 7)) {
      case 0:
        return this.plant()
      case 1:
        return { [this.plant()]: this.filler() }
      case 2:
        return depth < 3 ? { note: this.hidden(depth + 1), list: [this.filler(), this.hidden(depth + 1)] } : this.plant()
      case 3:
        return Buffer.from(this.plant()).toString('base64')
      case 4:
        return `data:text/plain;base64,${Buffer.from(this.plant()).toString('base64')}`
      case 5:
        return `data:text/plain,${this.plant()}`
      case 6:
        return this.cardNumber()
      default:
        return this.filler()
    }
  }
  extras(): Record<string, unknown> {
    const out: Record<string, unknown> = {}
    const n = this.int(0, 1)
    for (let i = 0; i < n; i++) out[`x_extra_${i}`] = this.hidden()
    return out
  }
}

type Api = 'chat' | 'responses' | 'messages'

function requestBody(p: Planter, api: Api): Record<string, unknown> {
  if (api === 'chat') {
    const messages: unknown[] = [{ role: 'system', content: p.textOrPlant() }]
    messages.push(p.chance(0.5) ? { role: 'user', content: p.textOrPlant() } : { role: 'user', content: [{ type: 'text', text: p.textOrPlant() }, { type: 'image_url', image_url: { url: `data:text/plain;base64,${Buffer.from(p.plant()).toString('base64')}` } }] })
    if (p.chance(0.4)) {
      messages.push({ role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: JSON.stringify({ query: p.plant(), extra: p.hidden() }) } }] })
      messages.push({ role: 'tool', tool_call_id: 'call_1', content: p.textOrPlant() })
    }
    return { model: 'gpt-4o-mini', messages, metadata: { [p.chance(0.5) ? p.plant({ oneLine: true }) : 'ref']: p.textOrPlant() }, ...p.extras() }
  }
  if (api === 'responses') {
    const input = p.chance(0.3)
      ? p.plant()
      : [
          { role: 'user', content: [{ type: 'input_text', text: p.textOrPlant() }] },
          ...(p.chance(0.5) ? [{ type: 'function_call', call_id: 'c1', name: 'lookup', arguments: JSON.stringify({ q: p.plant() }) }, { type: 'function_call_output', call_id: 'c1', output: p.textOrPlant() }] : []),
        ]
    return { model: 'gpt-4o-mini', instructions: p.textOrPlant(), input, ...p.extras() }
  }
  const content: unknown[] = [{ type: 'text', text: p.textOrPlant() }]
  if (p.chance(0.4)) content.push({ type: 'document', source: { type: 'text', media_type: 'text/plain', data: p.plant() } })
  if (p.chance(0.3)) content.push({ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: Buffer.from(p.plant()).toString('base64') } })
  const messages: unknown[] = [{ role: 'user', content }]
  if (p.chance(0.4)) {
    messages.push({ role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: p.plant(), more: p.hidden() } }] })
    messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: p.textOrPlant() }] })
  }
  return { model: 'claude-sonnet-4-5', max_tokens: 256, system: p.textOrPlant(), messages, metadata: { user_id: p.filler() }, ...p.extras() }
}

/** JSON text with some string characters written as \u escapes (what JSON.parse turns back). */
function stringifyEscaped(v: unknown, p: Planter, rate: number): string {
  if (typeof v === 'string') {
    let out = '"'
    for (const ch of v) {
      const esc = JSON.stringify(ch).slice(1, -1)
      out += rate > 0 && p.chance(rate) ? Array.from({ length: ch.length }, (_, i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join('') : esc
    }
    return out + '"'
  }
  if (Array.isArray(v)) return `[${v.map((x) => stringifyEscaped(x, p, rate)).join(',')}]`
  if (v && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${stringifyEscaped(k, p, rate)}:${stringifyEscaped(x, p, rate)}`).join(',')}}`
  return JSON.stringify(v)
}

// ---- responses --------------------------------------------------------------------

interface ResponsePlan {
  readonly contentType: string
  readonly bytes: Buffer
  /** SSE: how the text deltas of the stream are read back. */
  readonly sse: boolean
}

function responsePlan(p: Planter, api: Api): ResponsePlan {
  const sse = p.chance(0.6)
  const text = `${p.filler()} ${p.plant()} ${p.filler()} ${p.chance(0.5) ? p.plant() : ''}`
  if (!sse) {
    const body =
      api === 'messages'
        ? { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text }, { type: 'tool_use', id: 'toolu_2', name: 'lookup', input: { q: p.hidden() } }], stop_reason: 'end_turn', usage: { input_tokens: 1, output_tokens: 1 }, ...p.extras() }
        : api === 'responses'
          ? { id: 'resp_1', object: 'response', status: 'completed', model: 'gpt-4o-mini', output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] }, { type: 'function_call', call_id: 'c2', name: 'lookup', arguments: JSON.stringify({ q: p.plant() }) }], ...p.extras() }
          : { id: 'chatcmpl-1', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: text, tool_calls: [{ id: 'call_2', type: 'function', function: { name: 'lookup', arguments: JSON.stringify({ q: p.plant() }) } }] }, finish_reason: 'stop' }], ...p.extras() }
    return { contentType: 'application/json', bytes: Buffer.from(stringifyEscaped(body, p, 0.05)), sse: false }
  }
  // Deltas of random sizes, so a value is split anywhere.
  const deltas: string[] = []
  const chars = [...text]
  for (let i = 0; i < chars.length; ) {
    const n = p.int(2, 24)
    deltas.push(chars.slice(i, i + n).join(''))
    i += n
  }
  const events = deltas.map((d) => {
    const data =
      api === 'messages'
        ? { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: d } }
        : api === 'responses'
          ? { type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta: d }
          : { id: 'chatcmpl-1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: d }, finish_reason: null }] }
    const event = api === 'messages' ? 'event: content_block_delta\n' : api === 'responses' ? 'event: response.output_text.delta\n' : ''
    return `${event}data: ${stringifyEscaped(data, p, 0.03)}\n\n`
  })
  // A value outside the deltas: in an event's other fields.
  if (p.chance(0.5)) events.splice(p.int(0, events.length), 0, `data: ${stringifyEscaped({ id: 'x', object: 'chat.completion.chunk', [p.plant({ oneLine: true })]: p.hidden(), choices: [] }, p, 0.03)}\n\n`)
  if (api !== 'messages') events.push('data: [DONE]\n\n')
  return { contentType: 'text/event-stream', bytes: Buffer.from(events.join('')), sse: true }
}

// ---- one exchange ----------------------------------------------------------------

interface Exchange {
  readonly api: Api
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: Buffer
  readonly response: ResponsePlan
  /** Byte offsets where the SSE answer is cut into ext_proc messages. */
  readonly cuts: readonly number[]
  readonly plants: readonly Plant[]
}

const PATHS: Record<Api, string> = { chat: '/v1/chat/completions', responses: '/v1/responses', messages: '/v1/messages' }

function makeExchange(seed: number, b: CorpusBuilder): Exchange {
  const p = new Planter(seed, b)
  const api = p.pick<Api>(['chat', 'responses', 'messages'])
  const body = Buffer.from(stringifyEscaped(requestBody(p, api), p, p.chance(0.3) ? 0.05 : 0))
  let path = PATHS[api]
  if (p.chance(0.3)) {
    const params = [`beta=true`, p.chance(0.5) ? `${p.pick(['api_key', 'note', 'q'])}=${encodeURIComponent(p.plant({ oneLine: true }).toWellFormed())}` : `${encodeURIComponent(p.plant({ oneLine: true }).toWellFormed())}=1`]
    path += `?${params.join('&')}`
  }
  const headers: Record<string, string> = { ':method': 'POST', ':path': path, ':authority': 'llm.example.net', ':scheme': 'https', 'content-type': 'application/json', 'user-agent': 'property-test/1.0' }
  if (p.chance(0.3)) headers[p.pick(['x-debug-note', 'x-trace-note', 'x-customer'])] = Buffer.from(p.plant({ oneLine: true }), 'utf8').toString('latin1')
  const response = responsePlan(p, api)
  const cuts = [...new Set(Array.from({ length: p.int(0, 6) }, () => p.int(1, Math.max(1, response.bytes.length - 1))))].sort((a, c) => a - c)
  return { api, path, headers, body, response, cuts, plants: p.plants }
}

/** What left modelgate: the upstream request (Envoy applies the mutations) and the bytes the caller received. */
interface Outgoing {
  refused: boolean
  upstreamBody: Buffer | undefined
  upstreamHeaders: Map<string, string>
  caller: Buffer
}

async function play(stream: ExtProcStream, x: Exchange, ATTRS: Record<string, unknown>): Promise<Outgoing> {
  const out: Outgoing = { refused: false, upstreamBody: undefined, upstreamHeaders: new Map(Object.entries(x.headers)), caller: Buffer.alloc(0) }
  const applyHeaders = (r: ProcessingResponseMsg | undefined) => {
    const m = readMutation(r?.request_headers?.response?.header_mutation ?? r?.request_body?.response?.header_mutation)
    for (const name of m.remove) out.upstreamHeaders.delete(name)
    for (const [k, v] of Object.entries(m.set)) out.upstreamHeaders.set(k, v)
  }
  const refuse = (r: ProcessingResponseMsg) => {
    out.refused = true
    out.caller = Buffer.from(r.immediate_response!.body ?? [])
    return out
  }
  let r = await stream.exchange(msg.requestHeaders(x.headers, { attributes: ATTRS }), 15_000)
  if (answerKind(r) === 'immediate_response') return refuse(r)
  applyHeaders(r)
  r = await stream.exchange(msg.requestBody(x.body), 15_000)
  if (answerKind(r) === 'immediate_response') return refuse(r)
  applyHeaders(r)
  const mutation = r.request_body?.response?.body_mutation
  out.upstreamBody = mutation && 'body' in mutation ? Buffer.from(mutation.body) : x.body

  r = await stream.exchange(msg.responseHeaders({ ':status': '200', 'content-type': x.response.contentType }), 15_000)
  if (answerKind(r) === 'immediate_response') return refuse(r)
  const pieces: Buffer[] = []
  const chunks: Buffer[] = []
  if (x.response.sse) {
    let last = 0
    for (const c of x.cuts) {
      chunks.push(x.response.bytes.subarray(last, c))
      last = c
    }
    chunks.push(x.response.bytes.subarray(last))
  } else chunks.push(x.response.bytes)
  for (let i = 0; i < chunks.length; i++) {
    r = await stream.exchange(msg.responseBody(chunks[i]!, i === chunks.length - 1), 15_000)
    if (answerKind(r) === 'immediate_response') {
      pieces.push(Buffer.from(r.immediate_response!.body ?? []))
      break
    }
    const m = r.response_body?.response?.body_mutation
    pieces.push(!m ? chunks[i]! : 'body' in m ? Buffer.from(m.body) : Buffer.alloc(0))
  }
  out.caller = Buffer.concat(pieces)
  return out
}

// ---- looking for the planted values ---------------------------------------------------

const INVISIBLE_RE = /[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\ud800-\udfff]/g

/** Every string in a JSON value, keys and number literals included; strings that hold JSON are read too. */
function jsonStrings(v: unknown, out: string[], depth = 0): void {
  if (typeof v === 'string') {
    out.push(v)
    if (depth < 4 && /^\s*[[{]/.test(v)) {
      try {
        jsonStrings(JSON.parse(v), out, depth + 1)
      } catch {
        // not JSON
      }
    }
  } else if (typeof v === 'number') out.push(String(v))
  else if (Array.isArray(v)) for (const x of v) jsonStrings(x, out, depth)
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      out.push(k)
      jsonStrings(x, out, depth)
    }
  }
}

/** The readings of one text a reader may see. */
function readingsOf(text: string): string[] {
  const out = [text]
  const plain = text.replace(INVISIBLE_RE, '').normalize('NFKC')
  out.push(plain)
  try {
    out.push(decodeURIComponent(plain))
  } catch {
    // not percent-encoded
  }
  for (const m of plain.matchAll(/[A-Za-z0-9+/_-]{16,}={0,2}/g)) out.push(Buffer.from(m[0].replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8').replace(INVISIBLE_RE, ''))
  for (const m of plain.matchAll(/base64,([A-Za-z0-9+/]+=*)/g)) out.push(Buffer.from(m[1]!, 'base64').toString('utf8').replace(INVISIBLE_RE, ''))
  return out
}

interface Leak {
  readonly plant: Plant
  /** The leaked value with what surrounds it where it was found. */
  readonly around: string
}

function leakIn(texts: readonly string[], plants: readonly Plant[]): Leak | undefined {
  for (const text of texts) {
    for (const r of readingsOf(text)) {
      const digits = r.replace(/\D/g, '')
      for (const p of plants) {
        for (const v of p.values) {
          const at = r.indexOf(v)
          if (at >= 0) return { plant: p, around: r.slice(Math.max(0, at - 40), at + v.length + 40) }
          if (p.detector === 'credit-card' && digits.includes(v.replace(/\D/g, ''))) return { plant: p, around: `digits of ${JSON.stringify(r.slice(0, 200))}` }
        }
      }
    }
  }
  return undefined
}

/** The texts of a body as a reader sees them: the raw text, JSON strings decoded, SSE data decoded and deltas joined. */
function bodyTexts(body: Buffer, sse: boolean): string[] {
  const raw = body.toString('utf8')
  const texts = [raw]
  const tryJson = (s: string) => {
    try {
      jsonStrings(JSON.parse(s), texts)
      return JSON.parse(s) as unknown
    } catch {
      return undefined
    }
  }
  if (!sse) {
    tryJson(raw)
    return texts
  }
  let joined = ''
  for (const block of raw.split(/\r\n\r\n|\n\n|\r\r/)) {
    const data = block
      .split(/\r\n|\n|\r/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n')
    const v = tryJson(data) as Record<string, any> | undefined
    if (!v) {
      texts.push(data)
      continue
    }
    joined += v.choices?.[0]?.delta?.content ?? v.delta?.text ?? (typeof v.delta === 'string' ? v.delta : '')
  }
  texts.push(joined)
  return texts
}

// ---- the run ----------------------------------------------------------------------

/** Runs one shard of the cases (`shard` of SHARDS) as a test. */
export async function runShard(shard: number): Promise<void> {
  const { attrs, config } = await setup()
  const runs = Math.ceil(RUNS / SHARDS)
  const seed = SEED + shard
  t.test(`${runs} of ${RUNS} requests and answers with planted values (seed ${seed}): none leaves upstream or back to the caller`, (t) => run(t, runs, seed, attrs, config, `PROPERTY_SEED=${SEED} PROPERTY_RUNS=${RUNS}`))
}

async function run(t: Test, RUNS: number, SEED: number, ATTRS: Record<string, unknown>, config: Config, replay: string): Promise<void> {
  const app = await startApp({ config, logger: silentLogger })
  const client = connectExtProc(app.address, { maxMessageBytes: 4 * 1024 * 1024 })
  t.teardown(async () => {
    client.close()
    await app.shutdown()
  })
  const b = new CorpusBuilder(SEED)
  const seeds = fc.sample(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { numRuns: RUNS, seed: SEED })
  const g0 = performance.now()
  const exchanges = seeds.map((s) => makeExchange(s, b))
  const generation = (performance.now() - g0) / 1000
  let checking = 0
  const leaks: string[] = []
  let refused = 0
  let upstream = 0
  let planted = 0
  const t0 = performance.now()
  for (let i = 0; i < exchanges.length; i += PARALLEL) {
    const batch = exchanges.slice(i, i + PARALLEL)
    const outcomes = await Promise.all(
      batch.map(async (x, j) => {
        const stream = client.open({ 'x-modelgate-provider': x.api === 'messages' ? 'anthropic' : 'openai' })
        try {
          const o = await play(stream, x, ATTRS)
          await stream.end()
          return { x, o, index: i + j }
        } catch (err) {
          stream.cancel()
          return { x, o: undefined, index: i + j, err }
        }
      }),
    )
    for (const { x, o, index, err } of outcomes) {
      planted += x.plants.length
      if (!o) {
        leaks.push(`case ${index}: no clean answer: ${(err as Error).message}`)
        continue
      }
      if (o.refused) refused++
      else upstream++
      const c0 = performance.now()
      const up: string[] = []
      if (o.upstreamBody) up.push(...bodyTexts(o.upstreamBody, false))
      for (const [k, v] of o.upstreamHeaders) up.push(k, Buffer.from(v, 'latin1').toString('utf8'))
      const sent = leakIn(up, x.plants)
      if (sent && process.env.PROPERTY_DEBUG === 'full') console.error('SENT', x.body.toString(), '\nUPSTREAM', o.upstreamBody?.toString())
      if (sent) leaks.push(`case ${index} (seed ${seeds[index]}): ${sent.plant.detector} value went upstream, planted as ${JSON.stringify(sent.plant.text)}, found in ${JSON.stringify(sent.around)}`)
      const back = leakIn(bodyTexts(o.caller, x.response.sse && !o.refused), x.plants)
      if (back && process.env.PROPERTY_DEBUG === 'full') console.error('ANSWER', JSON.stringify(x.cuts), x.response.bytes.toString(), '\nCALLER', o.caller.toString())
      if (back) leaks.push(`case ${index} (seed ${seeds[index]}): ${back.plant.detector} value came back to the caller, planted as ${JSON.stringify(back.plant.text)}, found in ${JSON.stringify(back.around)}`)
      checking += (performance.now() - c0) / 1000
    }
  }
  const seconds = (performance.now() - t0) / 1000
  if (process.env.PROPERTY_DEBUG) for (const l of leaks) console.error(l)
  t.same(leaks.slice(0, 5), [], `no planted value leaves (${leaks.length} leaks; replay with ${replay})`)
  t.ok(upstream > RUNS / 2, `most requests went upstream redacted (${upstream} of ${RUNS}; ${refused} refused), ${planted} values planted; ${generation.toFixed(1)} s to generate, ${seconds.toFixed(1)} s to run (${checking.toFixed(1)} s of it checking)`)
}
