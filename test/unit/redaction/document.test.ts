/**
 * Total scanning of whole bodies: every string value, key and number literal
 * is scanned in decoded form, and what goes upstream carries placeholders
 * wherever detected data was, whatever field it sat in.
 */
import t from 'tap'
import { silentLogger } from '../../../src/log.ts'
import { inProcessInspector } from '../../../src/inspection/inspector.ts'
import { parseJsonDocument } from '../../../src/json/document.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { createProviderStage } from '../../../src/providers/stage.ts'
import { reservedPlaceholders, rewriteDocument, scanDocument, scanLeaves } from '../../../src/redaction/document.ts'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { PlaceholderBook } from '../../../src/redaction/placeholders.ts'
import { createRedactionStages } from '../../../src/redaction/stage.ts'

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const CARD = '4111111111111111'
const EMAIL = 'dana.whitfield@gmail.com'
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(60, 7)])

const engine = compileRedaction(redactionConfigFrom({}), {})

/**
 * Runs a request body through the provider stage (one parse and scan) and
 * both redaction stages, as the server does; returns what goes upstream.
 */
async function upstream(path: string, body: string | object): Promise<{ sent: string; ctx: RequestContext }> {
  const stages = createRedactionStages(redactionConfigFrom({}), { logger: silentLogger })
  const provider = createProviderStage({ config: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com' }, anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com' } } }, maxBodyBytes: 1 << 20, inspector: inProcessInspector({ engine: stages.engine, budgetMs: 30_000 }) })
  const ctx = new RequestContext()
  ctx.method = 'POST'
  ctx.path = path
  ctx.requestHeaders.set('content-type', 'application/json')
  ctx.requestBody = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body))
  await provider.requestHeaders!(ctx)
  await provider.requestBody!(ctx)
  await stages.scan.requestBody!(ctx)
  await stages.apply.requestBody!(ctx)
  return { sent: ctx.requestBody.toString('utf8'), ctx }
}

const CHAT = '/v1/chat/completions'
const MESSAGES = '/v1/messages'
const user = [{ role: 'user', content: 'hello' }]

t.test('data in fields that used to be skipped is found and redacted in what goes upstream', async (t) => {
  const cases: [name: string, path: string, body: object, expected: (sent: any) => unknown, want: unknown][] = [
    ['a token as an object key', CHAT, { model: 'gpt-4o', messages: user, metadata: { [TOKEN]: 'v' } }, (s) => Object.keys(s.metadata), ['[GITHUB_TOKEN_1]']],
    ['a token under metadata', CHAT, { model: 'gpt-4o', messages: user, metadata: { note: `key ${TOKEN}` } }, (s) => s.metadata.note, 'key [GITHUB_TOKEN_1]'],
    [
      'a token as tool_call_id',
      CHAT,
      { model: 'gpt-4o', messages: [...user, { role: 'tool', tool_call_id: TOKEN, content: 'done' }] },
      (s) => s.messages[1].tool_call_id,
      '[GITHUB_TOKEN_1]',
    ],
    [
      'a token in image_url.detail',
      CHAT,
      { model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://img.test/a.png', detail: TOKEN } }] }] },
      (s) => s.messages[0].content[0].image_url.detail,
      '[GITHUB_TOKEN_1]',
    ],
    [
      'a token as a tool-parameter property name',
      CHAT,
      { model: 'gpt-4o', messages: user, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { [TOKEN]: { type: 'string' } } } } }] },
      (s) => Object.keys(s.tools[0].function.parameters.properties),
      ['[GITHUB_TOKEN_1]'],
    ],
    [
      'a token as a key of Anthropic tool_use input',
      MESSAGES,
      { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'tu1', name: 'f', input: { nested: { [TOKEN]: 1 } } }] }] },
      (s) => Object.keys(s.messages[0].content[0].input.nested),
      ['[GITHUB_TOKEN_1]'],
    ],
    ['a card number as a JSON number', CHAT, { model: 'gpt-4o', messages: user, user: 42, seed: Number(CARD) }, (s) => s.seed, '[CARD_NUMBER_1]'],
    [
      'a data: URL that is not base64 at all',
      CHAT,
      { model: 'gpt-4o', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:;base64, my token is ${TOKEN}` } }] }] },
      (s) => s.messages[0].content[0].image_url.url,
      'data:;base64, my token is [GITHUB_TOKEN_1]',
    ],
    [
      'an Anthropic document block with a long text source',
      MESSAGES,
      {
        model: 'claude-haiku-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: `${'Quarterly notes. '.repeat(30)}Mail ${EMAIL}.` } }] }],
      },
      (s) => s.messages[0].content[0].source.data.endsWith('Mail [EMAIL_1].'),
      true,
    ],
  ]
  for (const [name, path, body, pick, want] of cases) {
    const { sent, ctx } = await upstream(path, body)
    t.same(pick(JSON.parse(sent)), want, name)
    t.notOk(sent.includes(TOKEN) || sent.includes(CARD) || sent.includes(EMAIL), `${name}: the value never goes upstream`)
    t.ok(ctx.findings.length >= 1, `${name}: a finding is recorded`)
    t.notOk(JSON.stringify(ctx.findings).includes(TOKEN), `${name}: findings never carry the value`)
  }
})

t.test('every text the provider formats carry is scanned, wherever it sits', async (t) => {
  // Each string, key and number of these bodies carries the card number or the token; every one must go.
  const planted = (s: string) => `${s} ${TOKEN}`
  const chat = {
    model: 'gpt-4o-mini',
    max_completion_tokens: 300,
    messages: [
      { role: 'system', content: planted('Be brief.') },
      { role: 'user', content: [{ type: 'text', text: planted('What is in this image?') }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG.toString('base64')}` } }] },
      { role: 'assistant', content: null, tool_calls: [{ id: planted('call'), type: 'function', function: { name: planted('lookup'), arguments: JSON.stringify({ account: planted('x') }) } }] },
      { role: 'assistant', content: null, function_call: { name: 'pay', arguments: planted('{"card":"') } },
      { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: planted('part result') }] },
    ],
    tools: [{ type: 'function', function: { name: 'lookup', description: planted('Looks up an account.'), parameters: { type: 'object', properties: { [planted('p')]: { description: planted('d') } } } } }],
    metadata: { [planted('k')]: planted('v') },
  }
  const anthropic = {
    model: 'claude-sonnet-4-5',
    max_tokens: 1024,
    system: [{ type: 'text', text: planted('You are terse.') }],
    messages: [
      { role: 'user', content: planted('What is the weather?') },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'tu1', name: 'weather', input: { city: planted('Berlin'), opts: { units: [planted('metric'), 7, true], [planted('note')]: 'n' } } },
          { type: 'thinking', thinking: planted('hidden'), signature: planted('sig') },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'tu1', content: [{ type: 'text', text: planted('block result') }] },
          { type: 'document', title: planted('Q3'), context: planted('internal'), source: { type: 'content', content: [{ type: 'text', text: planted('chunk one') }] } },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG.toString('base64') } },
        ],
      },
    ],
    tools: [{ name: 'weather', description: planted('Current weather.'), input_schema: { type: 'object' } }],
  }
  const responses = {
    model: 'gpt-4.1',
    instructions: planted('Answer in French.'),
    input: [
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: planted('part text') }] },
      { type: 'function_call', call_id: planted('c1'), name: 'lookup', arguments: planted('{"q":"') },
      { type: 'function_call_output', call_id: 'c1', output: [{ type: 'input_text', text: planted('found it') }] },
    ],
  }
  for (const [name, path, body] of [
    ['chat completions', CHAT, chat],
    ['Anthropic messages', MESSAGES, anthropic],
    ['responses', '/v1/responses', responses],
  ] as const) {
    const { sent, ctx } = await upstream(path, body)
    t.notOk(sent.includes(TOKEN), `${name}: no occurrence of the token goes upstream`)
    t.ok(sent.includes('[GITHUB_TOKEN_1]'), name)
    t.ok(ctx.findings.length >= 5, `${name}: ${ctx.findings.length} findings`)
  }
  const embeddings = await upstream('/v1/embeddings', { model: 'text-embedding-3-small', input: [[1, 2, Number(CARD)], planted('doc')] })
  t.same(JSON.parse(embeddings.sent).input, [[1, 2, '[CARD_NUMBER_1]'], 'doc [GITHUB_TOKEN_1]'], 'token ids are numbers, and scanned')
})

t.test('exemptions are by positive identification only', async (t) => {
  const image = `data:image/png;base64,${PNG.toString('base64')}`
  const doc = parseJsonDocument(JSON.stringify({ role: 'user', type: 'text', detail: 'auto', url: image, note: 'x' }))
  const scan = scanLeaves(engine, doc, undefined)
  // 5 keys and "x": the enumerated values and the PNG payload are identified and exempt.
  t.equal(scan.scanned, 6)
  const other = scanLeaves(engine, parseJsonDocument(JSON.stringify({ role: 'admin', detail: 'verbose', url: `data:image/png;base64,${Buffer.from('text, not an image, long enough to be base64').toString('base64')}` })), undefined)
  t.equal(other.scanned, 6, 'other values of enumerated fields and payloads that are not images are scanned')
})

t.test('locations: keys are written <key>, and a key holding detected data is never printed', async (t) => {
  const raw = JSON.stringify({ metadata: { [TOKEN]: { note: `mail ${EMAIL}` }, plain: [EMAIL] } })
  const scan = scanDocument(engine, Buffer.from(raw), undefined)
  t.same(
    scan.sites.map((s) => [s.kind, s.location, s.detections.map((d) => d.detector)]),
    [
      ['key', 'metadata.<key>', ['github-pat']],
      ['string', 'metadata[*].note', ['email']],
      ['string', 'metadata.plain[0]', ['email']],
    ],
  )
  t.notOk(JSON.stringify(scan.sites.map((s) => s.location)).includes('ghp_'))
  const root = scanDocument(engine, Buffer.from(JSON.stringify({ [TOKEN]: 1 })), undefined)
  t.equal(root.sites[0]!.location, '<key>')
})

t.test('a request refuses duplicate keys; a response scans every occurrence', async (t) => {
  const raw = `{"a":"${TOKEN}","a":"mail ${EMAIL}"}`
  t.throws(() => scanDocument(engine, Buffer.from(raw), undefined, { direction: 'request' }), { code: 'MG_BODY_DUPLICATE_KEY' })
  const scan = scanDocument(engine, Buffer.from(raw), undefined)
  t.same(
    scan.sites.map((s) => s.detections[0]!.detector),
    ['github-pat', 'email'],
  )
  const out = rewriteDocument(scan, Buffer.from(raw), () => 'redact', new PlaceholderBook(), false)
  t.equal(out.changed && out.raw, '{"a":"[GITHUB_TOKEN_1]","a":"mail [EMAIL_1]"}')
})

t.test('rewriting replaces only changed tokens and keeps the rest byte for byte', async (t) => {
  const raw = `{ "n": 12345678901234567890,\n  "s": "hi \\"you\\" ${EMAIL}", "\\u0067hp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2": ${CARD}.5, "w": "\\ud800\\ud800", "z": "${EMAIL} \\udc00" }`
  const scan = scanDocument(engine, Buffer.from(raw), undefined)
  const out = rewriteDocument(scan, Buffer.from(raw), () => 'redact', new PlaceholderBook(), false)
  t.equal(
    out.changed && out.raw,
    '{ "n": 12345678901234567890,\n  "s": "hi \\"you\\" [EMAIL_1]", "[GITHUB_TOKEN_1]": "[CARD_NUMBER_1].5", "w": "\\ud800\\ud800", "z": "[EMAIL_1] \\udc00" }',
    'an escaped key is found decoded; a number becomes a string; lone surrogates keep every span exact',
  )
  t.same(JSON.parse(out.changed ? out.raw : ''), { n: 12345678901234567890, s: 'hi "you" [EMAIL_1]', '[GITHUB_TOKEN_1]': '[CARD_NUMBER_1].5', w: '\ud800\ud800', z: '[EMAIL_1] \udc00' })
  t.same(rewriteDocument(scan, raw, () => 'allow', new PlaceholderBook(), false), { changed: false }, 'nothing redacted, nothing changed')
})

t.test('the same text in many places is scanned once and every occurrence is recorded and redacted', async (t) => {
  const raw = JSON.stringify({ a: [EMAIL, EMAIL, EMAIL], b: { [EMAIL]: EMAIL } })
  const scan = scanDocument(engine, Buffer.from(raw), undefined)
  t.equal(scan.sites.length, 5)
  const dets = scan.sites.flatMap((s) => s.detections)
  t.equal(new Set(dets).size, 5, 'one detection object per occurrence')
  const out = rewriteDocument(scan, raw, () => 'redact', new PlaceholderBook(), false)
  t.same(JSON.parse(out.changed ? out.raw : ''), { a: ['[EMAIL_1]', '[EMAIL_1]', '[EMAIL_1]'], b: { '[EMAIL_1]': '[EMAIL_1]' } })
})

t.test('placeholder-shaped text the caller wrote is reserved, wherever it sits', async (t) => {
  const raw = JSON.stringify({ note: 'see [EMAIL_1]', [`[EMAIL_2]`]: EMAIL })
  const scan = scanDocument(engine, Buffer.from(raw), undefined)
  t.same(reservedPlaceholders(scan).sort(), ['[EMAIL_1]', '[EMAIL_2]'])
  const out = rewriteDocument(scan, raw, () => 'redact', new PlaceholderBook(reservedPlaceholders(scan)), false)
  t.same(JSON.parse(out.changed ? out.raw : ''), { note: 'see [EMAIL_1]', '[EMAIL_2]': '[EMAIL_3]' })
})

t.test('a body that is not JSON is scanned as one text; an empty body not at all', async (t) => {
  const scan = scanDocument(engine, Buffer.from(`plain ${EMAIL}`), undefined)
  t.same([scan.mode, scan.sites[0]?.location], ['text', '$body'])
  const out = rewriteDocument(scan, `plain ${EMAIL}`, () => 'redact', new PlaceholderBook(), false)
  t.same(out, { changed: true, raw: 'plain [EMAIL_1]' })
  t.same(scanDocument(engine, Buffer.alloc(0), undefined), { mode: 'empty', sites: [], scanned: 0 })
})

t.test('a scan past its deadline stops with MG_TIMEOUT', async (t) => {
  const doc = parseJsonDocument(JSON.stringify(Array.from({ length: 2000 }, (_, i) => `text ${i}`)))
  t.throws(() => scanLeaves(engine, doc, undefined, Date.now() - 1), { code: 'MG_TIMEOUT' })
})

t.test('a short text found clean for one caller is still scanned for another caller a scoped detector applies to', async (t) => {
  const scoped = compileRedaction(redactionConfigFrom({ custom: [{ id: 'team-a-only', dataClass: 'pii', confidence: 'high', pattern: 'TA-[0-9]{4}', namespaces: ['team-a'] }] }))
  const raw = JSON.stringify({ note: 'TA-1234' })
  const found = (namespace: string) => scanDocument(scoped, Buffer.from(raw), { namespace }).sites.flatMap((s) => s.detections.map((d) => d.detector))
  t.same(found('team-b'), [], 'team-b: nothing applies')
  t.same(found('team-a'), ['team-a-only'], 'team-a: found, though the same text was clean for team-b')
  t.same(found('team-b'), [], 'team-b again: still nothing')
})

t.test('short texts seen in earlier bodies are found again when they hold data', async (t) => {
  const raw = JSON.stringify({ role: 'user', to: EMAIL })
  for (let i = 0; i < 3; i++) {
    const scan = scanDocument(engine, Buffer.from(raw), undefined)
    t.same(
      scan.sites.map((s) => [s.location, s.detections.map((d) => d.dataClass)]),
      [['to', ['pii']]],
      `body ${i + 1}`,
    )
  }
})
