/**
 * A stand-in model provider for local use and tests: answers the OpenAI
 * (chat completions, completions, responses, embeddings; also under Azure's
 * /openai/deployments/… paths) and Anthropic (messages) APIs with JSON or SSE,
 * deterministically, and records every request it receives. It never calls
 * out. Tests can queue scripted answers (status, headers, body, raw SSE chunks).
 */
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: Buffer
  /** The body parsed as JSON, or undefined. */
  readonly json: unknown
  readonly receivedAt: number
}

export interface ScriptedResponse {
  readonly status?: number
  readonly headers?: Record<string, string>
  /** A JSON value (serialised) or raw bytes. */
  readonly body?: unknown
  /** Raw SSE chunks written one at a time (content-type text/event-stream). */
  readonly sse?: readonly (string | Buffer)[]
  readonly chunkDelayMs?: number
  /** Wait this long before answering. */
  readonly delayMs?: number
}

const MAX_RECORDED = 1000
const MAX_BODY = 16 * 1024 * 1024
/**
 * How long an idle keep-alive connection stays open. Longer than the idle
 * timeout of Envoy's provider clusters (envoy/envoy.template.yaml), so Envoy
 * always retires a connection before the provider closes it: a request sent on
 * a connection the provider is closing would fail with 503.
 */
export const PROVIDER_KEEP_ALIVE_MS = 60_000

export interface StandInOptions {
  /** Pause between the events of a default SSE answer (default 2 ms); 0 only yields to the event loop. */
  readonly sseIntervalMs?: number
  /** Check credentials as the providers do (see `requireKeys`). Default: none checked. */
  readonly keys?: ProviderKeys
}

/**
 * The keys the stand-in accepts, per API family, as each provider reads them:
 * OpenAI `authorization: Bearer <key>`; Anthropic `x-api-key` (and the
 * `anthropic-version` header it requires); Azure OpenAI `api-key` or
 * `authorization: Bearer <token>`. A family left out is not checked.
 */
export interface ProviderKeys {
  readonly openai?: readonly string[]
  readonly anthropic?: readonly string[]
  readonly azure?: readonly string[]
}

/** The API family of a request path, as the stand-in tells them apart. */
export function keyFamily(path: string): keyof ProviderKeys {
  if (path.endsWith('/v1/messages')) return 'anthropic'
  return path.includes('/openai/deployments/') ? 'azure' : 'openai'
}

const bearer = (h: string | string[] | undefined) => (typeof h === 'string' && h.startsWith('Bearer ') ? h.slice(7) : undefined)

/** The provider's own refusal of a request without a valid key (never repeating what was sent). */
function authFailure(family: keyof ProviderKeys, headers: IncomingMessage['headers']): { status: number; body: unknown } | undefined {
  if (family === 'anthropic') {
    if (headers['anthropic-version'] === undefined) return { status: 400, body: { type: 'error', error: { type: 'invalid_request_error', message: 'the anthropic-version header is required' }, request_id: `req_${randomUUID().replaceAll('-', '')}` } }
    return { status: 401, body: { type: 'error', error: { type: 'authentication_error', message: 'the x-api-key header does not hold a valid key' }, request_id: `req_${randomUUID().replaceAll('-', '')}` } }
  }
  if (family === 'azure') return { status: 401, body: { error: { code: '401', message: 'Access denied: the api-key is missing or not valid for this resource.' } } }
  return { status: 401, body: { error: { message: 'The API key in the Authorization header is not valid.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } } }
}

export class StandInProvider {
  readonly requests: RecordedRequest[] = []
  readonly #script: ScriptedResponse[] = []
  readonly #sseIntervalMs: number
  #keys: ProviderKeys | undefined
  /** Requests refused for their credential (401/400). */
  refused = 0
  #server: Server | undefined
  #port: number | undefined

  constructor(opts: StandInOptions = {}) {
    this.#sseIntervalMs = opts.sseIntervalMs ?? 2
    this.#keys = opts.keys
  }

  /** Replaces the accepted keys (a rotation: accept the new key, then stop accepting the old one); undefined checks none. */
  requireKeys(keys: ProviderKeys | undefined): void {
    this.#keys = keys
  }

  /** Whether a request with these headers passes the key check of its family. */
  #authorized(family: keyof ProviderKeys, headers: IncomingMessage['headers']): boolean {
    const keys = this.#keys?.[family]
    if (!keys) return true
    if (family === 'anthropic') return headers['anthropic-version'] !== undefined && typeof headers['x-api-key'] === 'string' && keys.includes(headers['x-api-key'])
    const token = bearer(headers.authorization)
    if (family === 'azure' && typeof headers['api-key'] === 'string' && keys.includes(headers['api-key'])) return true
    return token !== undefined && keys.includes(token)
  }

  /** The next request gets this answer instead of the default one. */
  enqueue(...responses: ScriptedResponse[]): void {
    this.#script.push(...responses)
  }

  /** The port last bound (also after close, so a test can listen there again). */
  get port(): number | undefined {
    return this.#port
  }

  clear(): void {
    this.requests.length = 0
    this.#script.length = 0
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<{ host: string; port: number; url: string }> {
    const server = createServer((req, res) => void this.#handle(req, res))
    server.keepAliveTimeout = PROVIDER_KEEP_ALIVE_MS
    // Headers of a request on a kept-alive connection may arrive up to the keep-alive timeout.
    server.headersTimeout = PROVIDER_KEEP_ALIVE_MS + 5000
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
    const addr = server.address() as AddressInfo
    this.#port = addr.port
    return { host, port: addr.port, url: `http://${host}:${addr.port}` }
  }

  async close(): Promise<void> {
    const s = this.#server
    if (!s) return
    this.#server = undefined
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const c of req) {
      size += (c as Buffer).length
      if (size > MAX_BODY) {
        res.writeHead(413).end()
        return
      }
      chunks.push(c as Buffer)
    }
    const body = Buffer.concat(chunks)
    let json: unknown
    try {
      json = body.length ? JSON.parse(body.toString('utf8')) : undefined
    } catch {
      json = undefined
    }
    const path = req.url ?? '/'
    this.requests.push({ method: req.method ?? '', path, headers: { ...req.headers }, body, json, receivedAt: Date.now() })
    if (this.requests.length > MAX_RECORDED) this.requests.shift()

    const bare = path.split('?')[0]!
    const family = keyFamily(bare)
    if (!this.#authorized(family, req.headers)) {
      this.refused++
      const failure = authFailure(family, req.headers)!
      return sendJson(res, failure.body, failure.status)
    }
    const scripted = this.#script.shift()
    if (scripted) return this.#respondScripted(res, scripted)
    return this.#respondDefault(res, bare, json)
  }

  async #respondScripted(res: ServerResponse, s: ScriptedResponse): Promise<void> {
    if (s.delayMs) await sleep(s.delayMs)
    if (s.sse) {
      res.writeHead(s.status ?? 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...s.headers })
      for (const chunk of s.sse) {
        res.write(chunk)
        if (s.chunkDelayMs) await sleep(s.chunkDelayMs)
      }
      res.end()
      return
    }
    const raw = Buffer.isBuffer(s.body) ? s.body : typeof s.body === 'string' ? Buffer.from(s.body) : Buffer.from(JSON.stringify(s.body ?? {}))
    res.writeHead(s.status ?? 200, { 'content-type': 'application/json', 'content-length': String(raw.length), ...s.headers })
    res.end(raw)
  }

  async #respondDefault(res: ServerResponse, path: string, json: unknown): Promise<void> {
    const req = (json && typeof json === 'object' ? json : {}) as Record<string, unknown>
    const model = typeof req.model === 'string' ? req.model : (/\/deployments\/([^/]+)\//.exec(path)?.[1] ?? 'stand-in')
    const stream = req.stream === true
    const said = lastUserText(req)
    const reply = `Stand-in reply. You said: ${said.slice(0, 500)}`
    const inTokens = estimateTokens(JSON.stringify(req.messages ?? req.input ?? req.prompt ?? ''))
    const outTokens = estimateTokens(reply)
    if (path === '/v1/messages') return stream ? this.#sse(res, anthropicEvents(model, reply, inTokens, outTokens)) : sendJson(res, anthropicMessage(model, reply, inTokens, outTokens))
    if (path.endsWith('/chat/completions')) {
      const includeUsage = (req.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
      return stream ? this.#sse(res, chatChunks(model, reply, includeUsage ? { prompt_tokens: inTokens, completion_tokens: outTokens, total_tokens: inTokens + outTokens } : undefined)) : sendJson(res, chatCompletion(model, reply, inTokens, outTokens))
    }
    if (path.endsWith('/completions')) return sendJson(res, { id: `cmpl-${randomUUID()}`, object: 'text_completion', created: now(), model, choices: [{ index: 0, text: reply, finish_reason: 'stop', logprobs: null }], usage: { prompt_tokens: inTokens, completion_tokens: outTokens, total_tokens: inTokens + outTokens } })
    if (path.endsWith('/embeddings')) {
      const inputs = Array.isArray(req.input) ? req.input : [req.input]
      return sendJson(res, { object: 'list', model, data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [0.1, 0.2, 0.3, 0.4] })), usage: { prompt_tokens: inTokens, total_tokens: inTokens } })
    }
    if (path.endsWith('/responses')) {
      const resp = responsesObject(model, reply, inTokens, outTokens)
      if (!stream) return sendJson(res, resp)
      return this.#sse(res, [
        sse({ type: 'response.created', response: { ...resp, status: 'in_progress', output: [] } }, 'response.created'),
        ...splitText(reply).map((delta) => sse({ type: 'response.output_text.delta', item_id: 'msg_1', output_index: 0, content_index: 0, delta }, 'response.output_text.delta')),
        sse({ type: 'response.completed', response: resp }, 'response.completed'),
      ])
    }
    sendJson(res, { error: { message: `the stand-in provider does not serve ${path}`, type: 'invalid_request_error' } }, 404)
  }

  async #sse(res: ServerResponse, events: string[]): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    for (const e of events) {
      res.write(e)
      await (this.#sseIntervalMs > 0 ? sleep(this.#sseIntervalMs) : new Promise<void>((r) => setImmediate(r)))
    }
    res.end()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

const now = () => Math.floor(Date.now() / 1000)
const estimateTokens = (s: string) => Math.max(1, Math.ceil(s.length / 4))

function sendJson(res: ServerResponse, value: unknown, status = 200): void {
  const raw = Buffer.from(JSON.stringify(value))
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(raw.length) })
  res.end(raw)
}

function sse(value: unknown, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(value)}\n\n`
}

/** Splits a reply into a few deltas, the way providers stream. */
function splitText(s: string): string[] {
  const out: string[] = []
  for (let i = 0; i < s.length; i += 16) out.push(s.slice(i, i + 16))
  return out.length ? out : ['']
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) return content.map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join(' ')
  return ''
}

function lastUserText(req: Record<string, unknown>): string {
  const messages = Array.isArray(req.messages) ? req.messages : Array.isArray(req.input) ? req.input : undefined
  if (messages) {
    for (let i = messages.length - 1; i >= 0; i--) {
      const m = messages[i] as { role?: string; content?: unknown }
      if (m && m.role === 'user') return textOf(m.content)
    }
  }
  if (typeof req.input === 'string') return req.input
  if (typeof req.prompt === 'string') return req.prompt
  return ''
}

function chatCompletion(model: string, reply: string, inTokens: number, outTokens: number) {
  return {
    id: `chatcmpl-${randomUUID()}`,
    object: 'chat.completion',
    created: now(),
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: reply, refusal: null }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: inTokens, completion_tokens: outTokens, total_tokens: inTokens + outTokens },
  }
}

function chatChunks(model: string, reply: string, usage: Record<string, number> | undefined): string[] {
  const id = `chatcmpl-${randomUUID()}`
  // Asked for usage, OpenAI adds `usage: null` to every chunk before the usage chunk.
  const base = { id, object: 'chat.completion.chunk', created: now(), model, ...(usage ? { usage: null } : {}) }
  return [
    sse({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
    ...splitText(reply).map((content) => sse({ ...base, choices: [{ index: 0, delta: { content }, finish_reason: null }] })),
    sse({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
    ...(usage ? [sse({ ...base, choices: [], usage })] : []),
    'data: [DONE]\n\n',
  ]
}

function anthropicMessage(model: string, reply: string, inTokens: number, outTokens: number) {
  return {
    id: `msg_${randomUUID().replaceAll('-', '')}`,
    type: 'message',
    role: 'assistant',
    model,
    content: [{ type: 'text', text: reply }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: inTokens, output_tokens: outTokens },
  }
}

function anthropicEvents(model: string, reply: string, inTokens: number, outTokens: number): string[] {
  const msg = { ...anthropicMessage(model, '', inTokens, 1), content: [], stop_reason: null }
  return [
    sse({ type: 'message_start', message: msg }, 'message_start'),
    sse({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    ...splitText(reply).map((text) => sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }, 'content_block_delta')),
    sse({ type: 'content_block_stop', index: 0 }, 'content_block_stop'),
    sse({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: outTokens } }, 'message_delta'),
    sse({ type: 'message_stop' }, 'message_stop'),
  ]
}

function responsesObject(model: string, reply: string, inTokens: number, outTokens: number) {
  return {
    id: `resp_${randomUUID().replaceAll('-', '')}`,
    object: 'response',
    created_at: now(),
    status: 'completed',
    model,
    output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: reply, annotations: [] }] }],
    usage: { input_tokens: inTokens, output_tokens: outTokens, total_tokens: inTokens + outTokens },
  }
}
