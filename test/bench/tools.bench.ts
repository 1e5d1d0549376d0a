/**
 * The cost of authorising tools: the tool-calls stage on streamed answers
 * (per chunk, for an answer that names no tool and for one that streams a
 * tool call's arguments), the stage on one long event held until it is whole
 * (time must grow linearly with the event), and the tool map on a request
 * naming many tools. The stage runs with the real policy engine on the
 * shipped policies; each chunk is pushed as it would arrive from Envoy.
 *
 *   node test/bench/tools.bench.ts          # prints a Markdown table
 */
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../src/log.ts'
import { RequestContext } from '../../src/pipeline/context.ts'
import { PolicyEngine } from '../../src/policy/engine.ts'
import { parseProviderRequest } from '../../src/providers/parse.ts'
import { matchRoute } from '../../src/providers/routes.ts'
import { toolsOf } from '../../src/providers/apis/index.ts'
import { SseFramer } from '../../src/redaction/sse.ts'
import { createToolCallStage } from '../../src/tools/stage.ts'

const REPO = join(import.meta.dirname, '..', '..')
const engine = new PolicyEngine({ dir: join(REPO, 'policies') })
const stage = createToolCallStage({ engine, maxBytes: 16 << 20, logger: silentLogger })

function context(): RequestContext {
  const ctx = new RequestContext()
  ctx.put('caller', { workload: { spiffeId: 'spiffe://modelgate.local/ns/payments/sa/checkout', trustDomain: 'modelgate.local', path: '/ns/payments/sa/checkout', namespace: 'payments', serviceAccount: 'checkout', source: 'mtls', certificateSha256: undefined }, user: undefined })
  ctx.put('request', parseProviderRequest(matchRoute('/v1/chat/completions')!, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'lookup_order' } }] }, 'openai'))
  ctx.responseHeaders.set('content-type', 'text/event-stream')
  ctx.responseStreaming = true
  return ctx
}

const sse = (delta: unknown) => Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`)
const text = (n: number) => Array.from({ length: n }, (_, i) => sse({ content: `word${i % 97} and more ` }))
const toolCall = (n: number) => [
  sse({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup_order', arguments: '' } }] }),
  ...Array.from({ length: n }, (_, i) => sse({ tool_calls: [{ index: 0, function: { arguments: `"k${i}":1,` } }] })),
]

/** CPU microseconds per chunk through the stage (best of `runs`), a fresh response each run. */
async function perChunk(chunks: readonly Buffer[], runs = 5): Promise<number> {
  let best = Infinity
  for (let r = 0; r < runs; r++) {
    const ctx = context()
    await stage.responseHeaders!(ctx)
    const c0 = process.cpuUsage()
    for (let i = 0; i < chunks.length; i++) await stage.responseBody!(ctx, { data: chunks[i]!, end: i === chunks.length - 1 })
    const c = process.cpuUsage(c0)
    if (ctx.responseTerminated) throw new Error('the bench stream was refused')
    best = Math.min(best, ((c.user + c.system) / chunks.length))
  }
  return best
}

/** The floor: an async stage that does nothing, called the same way. */
async function floorPerChunk(chunks: readonly Buffer[], runs = 5): Promise<number> {
  const noop = async (_ctx: RequestContext, _chunk: { data: Buffer; end: boolean }): Promise<void> => {}
  let best = Infinity
  for (let r = 0; r < runs; r++) {
    const ctx = context()
    const c0 = process.cpuUsage()
    for (let i = 0; i < chunks.length; i++) await noop(ctx, { data: chunks[i]!, end: i === chunks.length - 1 })
    const c = process.cpuUsage(c0)
    best = Math.min(best, (c.user + c.system) / chunks.length)
  }
  return best
}

/** The same chunks framed and parsed event by event, as a check without the pre-check would. */
function framedPerChunk(chunks: readonly Buffer[], runs = 5): number {
  let best = Infinity
  for (let r = 0; r < runs; r++) {
    const framer = new SseFramer()
    const c0 = process.cpuUsage()
    for (const ch of chunks) for (const ev of framer.push(ch)) if (ev.data && ev.data !== '[DONE]') JSON.parse(ev.data)
    const c = process.cpuUsage(c0)
    best = Math.min(best, (c.user + c.system) / chunks.length)
  }
  return best
}

/** CPU milliseconds for one event of `bytes` that names a call, pushed in 1 KiB chunks. */
async function heldEvent(bytes: number): Promise<number> {
  const event = Buffer.from(`data: ${JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: 'x'.repeat(bytes) }, note: 'tool_use' })}\n\n`)
  let best = Infinity
  for (let r = 0; r < 3; r++) {
    const ctx = context()
    await stage.responseHeaders!(ctx)
    const c0 = process.cpuUsage()
    for (let i = 0; i < event.length; i += 1024) await stage.responseBody!(ctx, { data: event.subarray(i, Math.min(i + 1024, event.length)), end: false })
    const c = process.cpuUsage(c0)
    best = Math.min(best, (c.user + c.system) / 1000)
  }
  return best
}

/** Microseconds per request for the tool map (best of 5 rounds of 200, after a warm-up). */
function toolMap(n: number, runs = 200): number {
  const body = { tools: Array.from({ length: n }, (_, i) => ({ type: 'function', name: `tool_${i}`, parameters: { type: 'object' } })), tool_choice: { type: 'allowed_tools', mode: 'auto', tools: [{ type: 'function', name: 'tool_1' }] } }
  for (let r = 0; r < runs; r++) toolsOf('openai.responses', body)
  let best = Infinity
  for (let round = 0; round < 5; round++) {
    const c0 = process.cpuUsage()
    for (let r = 0; r < runs; r++) toolsOf('openai.responses', body)
    const c = process.cpuUsage(c0)
    best = Math.min(best, (c.user + c.system) / runs)
  }
  return best
}

const rows: string[] = []
const plain = text(4000)
rows.push(`| an answer naming no tool, 4000 chunks | ${(await perChunk(plain)).toFixed(2)} µs | ${(await floorPerChunk(plain)).toFixed(2)} µs | ${framedPerChunk(plain).toFixed(2)} µs |`)
const call = toolCall(4000)
rows.push(`| a tool call streaming its arguments, 4001 chunks | ${(await perChunk(call)).toFixed(2)} µs | ${(await floorPerChunk(call)).toFixed(2)} µs | ${framedPerChunk(call).toFixed(2)} µs |`)
console.log(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; Node ${process.version}\n`)
console.log('| stream | tool-calls stage, CPU per chunk | a no-op async stage | framing and parsing every event |')
console.log('|---|---:|---:|---:|')
for (const r of rows) console.log(r)
console.log('\n| one event that names a call, held in 1 KiB chunks | CPU |')
console.log('|---|---:|')
for (const mib of [1, 2, 4]) console.log(`| ${mib} MiB | ${(await heldEvent(mib << 20)).toFixed(1)} ms |`)
console.log('\n| tool map, a Responses request naming | CPU per request |')
console.log('|---|---:|')
for (const n of [1, 16, 128, 256]) console.log(`| ${n} tools | ${toolMap(n).toFixed(1)} µs |`)
engine.close()
