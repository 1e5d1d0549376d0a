/**
 * modelgate's own CPU per request, without the transport: the ext_proc stream
 * handler (src/server/process.ts) and every stage of the local stack's
 * configuration (identity, provider parsing, redaction scan, Cedar policy,
 * redaction apply, audit to a file), in this process, fed the messages Envoy
 * sends for one chat completion — decoded from protobuf bytes and answered
 * with the answers encoded to bytes, as grpc-js does — but no HTTP/2 and no
 * socket. Every request is its own stream; `--concurrency` streams are
 * interleaved message by message.
 *
 *   node test/bench/pipeline.bench.ts [--requests 3000] [--rounds 5] [--concurrency 1,16] [--body-kib 4] [--sse] [--gap-ms 0]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof test/bench/pipeline.bench.ts   # where the time goes
 *
 * `--gap-ms N` idles N ms between requests, as a server at one request in
 * flight does: the CPU a request costs on a cold cache.
 *
 * Reports CPU µs per request (user + system of this process) per round; the
 * lowest round is the least disturbed by other work on the machine. Not a
 * test: it asserts nothing and `npm test` does not run it.
 */
import { EventEmitter } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import * as grpc from '@grpc/grpc-js'
import { stringify } from 'yaml'
import { buildStages } from '../../src/app.ts'
import { loadConfigFile } from '../../src/config/config.ts'
import { localModelgateConfig, writeLocalKeys } from '../../src/cli/start.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { createDevPki } from '../../src/dev/identities.ts'
import { silentLogger } from '../../src/log.ts'
import { Pipeline } from '../../src/pipeline/pipeline.ts'
import { loadExtProcService, type ProcessingRequestMsg, type ProcessingResponseMsg } from '../../src/server/codec.ts'
import { ATTRIBUTES_NAMESPACE, createProcessHandler, type ProcessCall } from '../../src/server/process.ts'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '1,16' },
    'body-kib': { type: 'string', default: '4' },
    sse: { type: 'boolean', default: false },
    /** Idle time between two requests of one stream of work (as at one request in flight behind Envoy). */
    'gap-ms': { type: 'string', default: '0' },
  },
})
const gapMs = Number(values['gap-ms'])
const total = Number(values.requests)
const rounds = Number(values.rounds)
const levels = values.concurrency.split(',').map(Number)
const kib = Number(values['body-kib'])

const dir = mkdtempSync(join(tmpdir(), 'mg-pipeline-bench-'))
process.once('exit', () => rmSync(dir, { recursive: true, force: true }))
const pki = await createDevPki(join(dir, 'pki'))
const configFile = join(dir, 'modelgate.yaml')
await writeLocalKeys(join(dir, 'credentials'))
const local = localModelgateConfig({ socket: join(dir, 'mg.sock'), policies: join(REPO_ROOT, 'policies'), dir })
writeFileSync(configFile, stringify({ ...local, policy: { ...(local.policy as object), watch: false } }))
process.env.OTEL_SDK_DISABLED = 'true'
const config = loadConfigFile(configFile)
const { stages, closers } = await buildStages(config, silentLogger)
const pipeline = new Pipeline(stages, { phaseTimeoutMs: config.server.phaseTimeoutMs })
const handler = createProcessHandler({ pipeline, logger: silentLogger, maxBodyBytes: config.server.maxBodyBytes, draining: () => false })
const service = loadExtProcService().Process!

// ---- what Envoy sends -------------------------------------------------------------------

const PROSE = 'The checkout service retries the payment call when the upstream answers 503, and we want a backoff that respects Retry-After.\n'
let content = 'Contact jane.doe@example.org about the refund before Friday.\n'
while (content.length < kib * 1024) content += PROSE
const requestBody = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a careful assistant.' }, { role: 'user', content }], ...(values.sse ? { stream: true, stream_options: { include_usage: true } } : {}) })
const reply = `Stand-in reply. You said: ${content.replace('jane.doe@example.org', '[EMAIL_1]').slice(0, 500)}`
const responseBody = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1764000000,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: reply, refusal: null }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 1000, completion_tokens: 130, total_tokens: 1130 },
})
const sseChunks = values.sse
  ? [
      // As the stand-in provider streams it: a role event, 16-character deltas, the finish, the usage, [DONE].
      ...[{ role: 'assistant', content: '' }, ...reply.match(/.{1,16}/gs)!.map((content) => ({ content })), {}].map(
        (delta, i, all) => `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1764000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: i === all.length - 1 ? 'stop' : null }] })}\n\n`,
      ),
      `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1764000000, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 1000, completion_tokens: 130, total_tokens: 1130 } })}\n\n`,
      'data: [DONE]\n\n',
    ]
  : []

const pem = readFileSync(pki.identities.checkout.cert, 'utf8')
const value = (v: unknown) => (typeof v === 'string' ? { stringValue: v } : typeof v === 'boolean' ? { boolValue: v } : { numberValue: v })
const attributes = (n: number) => ({
  [ATTRIBUTES_NAMESPACE]: {
    fields: Object.fromEntries(
      Object.entries({
        'connection.mtls': true,
        'connection.uri_san_peer_certificate': pki.identities.checkout.spiffeId,
        'connection.peer_certificate': encodeURIComponent(pem),
        'connection.sha256_peer_certificate_digest': 'ab'.repeat(32),
        'request.id': `7f0c2a4e-0000-4000-8000-${String(n).padStart(12, '0')}`,
        'request.time': new Date().toISOString().replace('Z', '+00:00'),
        'xds.route_name': 'openai',
      }).map(([k, v]) => [k, value(v)]),
    ),
  },
})
const headers = (h: Record<string, string>) => ({ headers: Object.entries(h).map(([key, v]) => ({ key, raw_value: Buffer.from(v, 'latin1') })) })
const encode = (m: ProcessingRequestMsg) => service.requestSerialize(m) as Buffer

/** The messages of request n, encoded as they arrive on the wire. */
function messages(n: number): Buffer[] {
  const out = [
    encode({
      request_headers: {
        headers: headers({
          ':authority': '127.0.0.1:8443',
          ':path': '/v1/chat/completions',
          ':method': 'POST',
          ':scheme': 'https',
          'content-type': 'application/json',
          'content-length': String(requestBody.length),
          'user-agent': 'Go-http-client/2.0',
          'x-forwarded-proto': 'https',
          'x-request-id': `7f0c2a4e-0000-4000-8000-${String(n).padStart(12, '0')}`,
          'x-forwarded-client-cert': `By=spiffe://modelgate.local/gateway;Hash=${'ab'.repeat(32)};URI=${pki.identities.checkout.spiffeId}`,
        }),
      },
      attributes: attributes(n),
    } as ProcessingRequestMsg),
    encode({ request_body: { body: Buffer.from(requestBody), end_of_stream: true } }),
    encode({
      response_headers: {
        headers: headers({
          ':status': '200',
          'content-type': values.sse ? 'text/event-stream' : 'application/json',
          ...(values.sse ? {} : { 'content-length': String(responseBody.length) }),
          date: new Date().toUTCString(),
          'x-envoy-upstream-service-time': '1',
        }),
      },
    }),
  ]
  if (values.sse) sseChunks.forEach((c, i) => out.push(encode({ response_body: { body: Buffer.from(c), end_of_stream: i === sseChunks.length - 1 } })))
  else out.push(encode({ response_body: { body: Buffer.from(responseBody), end_of_stream: true } }))
  return out
}

// ---- a stream without a transport -----------------------------------------------------------

class FakeCall extends EventEmitter {
  readonly metadata = new grpc.Metadata()
  cancelled = false
  answers = 0
  #waiting: (() => void) | undefined
  ended: Promise<void>
  #end!: () => void
  constructor() {
    super()
    this.ended = new Promise((r) => (this.#end = r))
  }
  write(res: ProcessingResponseMsg): boolean {
    if (res.immediate_response) throw new Error(`denied: ${res.immediate_response.body}`)
    service.responseSerialize(res)
    this.answers++
    const w = this.#waiting
    this.#waiting = undefined
    w?.()
    return true
  }
  answered(n: number): Promise<void> {
    return this.answers >= n ? Promise.resolve() : new Promise((r) => (this.#waiting = () => void this.answered(n).then(r)))
  }
  end(): void {
    this.#end()
  }
}

async function oneRequest(n: number): Promise<void> {
  const msgs = messages(n)
  const call = new FakeCall()
  handler(call as unknown as ProcessCall)
  for (let i = 0; i < msgs.length; i++) {
    call.emit('data', service.requestDeserialize(msgs[i]!))
    // Envoy sends the next message of a BUFFERED exchange once the previous one is answered; SSE chunks do not wait.
    if (!values.sse || i < 3) await call.answered(i + 1)
  }
  await call.answered(msgs.length)
  call.emit('end')
  await call.ended
}

async function level(concurrency: number): Promise<number[]> {
  for (let i = 0; i < 300; i++) await oneRequest(i)
  const perRequest: number[] = []
  for (let r = 0; r < rounds; r++) {
    let next = 0
    const c0 = process.cpuUsage()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < total) {
          await oneRequest(next++)
          if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs))
        }
      }),
    )
    const c = process.cpuUsage(c0)
    perRequest.push((c.user + c.system) / total)
  }
  return perRequest
}

console.log(`# pipeline CPU per request: ${cpus().length} × ${cpus()[0]?.model.trim()}, Node ${process.version}, load ${loadavg()[0]!.toFixed(2)}, request body ${requestBody.length} bytes, ${values.sse ? `SSE answer in ${sseChunks.length} chunks` : `JSON answer ${responseBody.length} bytes`}\n`)
console.log('| concurrency | requests per round | CPU µs per request, best round | median | rounds |')
console.log('|---|---:|---:|---:|---|')
for (const c of levels) {
  const r = await level(c)
  const sorted = [...r].sort((a, b) => a - b)
  console.log(`| ${c} | ${total} | ${sorted[0]!.toFixed(0)} | ${sorted[Math.floor(sorted.length / 2)]!.toFixed(0)} | ${r.map((x) => x.toFixed(0)).join(', ')} |`)
}
for (const c of closers.reverse()) await c()
