/**
 * The cost of quotas per request: the quota stage reserving (request body)
 * and settling (stream end) a chat request matched by three rules (requests
 * per minute, tokens per day, requests in flight; each per identity), on the
 * memory store and on a real redis-server on loopback. Reported: CPU per
 * request in this process, and the wall time of the reservation (one
 * round trip with Redis) at 1 in flight, and requests/s at 16 and 64 in
 * flight. Also the cost of measuring a 4 KiB body's input (characters only,
 * and with gpt-tokenizer).
 *
 *   node test/bench/quota.bench.ts [--requests N] [--write]
 *
 * --write also writes test/bench/results/quota.md.
 */
import { writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { configFromObject } from '../../src/config/config.ts'
import { parseJsonDocument } from '../../src/json/document.ts'
import { silentLogger } from '../../src/log.ts'
import { RequestContext } from '../../src/pipeline/context.ts'
import { parseProviderRequest } from '../../src/providers/parse.ts'
import { matchRoute } from '../../src/providers/routes.ts'
import { measureInput } from '../../src/quotas/measure.ts'
import { MemoryStore } from '../../src/quotas/memory.ts'
import { RedisStore } from '../../src/quotas/redis.ts'
import { createQuotaStage } from '../../src/quotas/stage.ts'
import type { StateStore } from '../../src/quotas/store.ts'
import { startRedis } from '../helpers/redis.ts'

const { values } = parseArgs({ options: { requests: { type: 'string', default: '5000' }, write: { type: 'boolean', default: false } } })
const N = Number(values.requests)

const rules = [
  { name: 'rpm', per: ['identity'], limit: { requests: 1e12 }, window: 'minute' },
  { name: 'daily-tokens', per: ['identity'], limit: { tokens: 1e15 }, window: 'day' },
  { name: 'in-flight', per: ['identity'], limit: { concurrent: 1e6 } },
]
const config = configFromObject({ identity: { trustDomains: ['modelgate.local'] }, quotas: { rules } }, 'bench').quotas

const route = matchRoute('/v1/chat/completions')!
const body = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 256, messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Summarise the quarterly numbers. '.repeat(120) }] })
const doc = parseJsonDocument(Buffer.from(body))
const parsed = Object.freeze({ ...parseProviderRequest(route, doc.value, 'openai'), input: measureInput(doc, true) })

function context(i: number): RequestContext {
  const ctx = new RequestContext()
  const sa = `bench-${i % 50}`
  ctx.put('caller', { workload: { spiffeId: `spiffe://modelgate.local/ns/bench/sa/${sa}`, trustDomain: 'modelgate.local', path: `/ns/bench/sa/${sa}`, namespace: 'bench', serviceAccount: sa, source: 'mtls', certificateSha256: undefined }, user: undefined })
  ctx.put('request', parsed)
  return ctx
}

async function oneRequest(stage: ReturnType<typeof createQuotaStage>, i: number): Promise<number> {
  const ctx = context(i)
  const t0 = performance.now()
  const r = stage.requestBody!(ctx)
  if (r) await r
  const reserveMs = performance.now() - t0
  ctx.responseStatus = 200
  ctx.put('reply', { model: undefined, usage: { input: 300, output: 40 } })
  stage.close!(ctx, { kind: 'completed' })
  return reserveMs
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!

async function measure(name: string, store: StateStore, drain: () => Promise<void>): Promise<string> {
  const stage = createQuotaStage({ config, store, teamsOf: () => new Set(['bench']), logger: silentLogger })
  for (let i = 0; i < 500; i++) await oneRequest(stage, i)
  await drain()
  // 1 in flight: CPU per request (reserve + settle) and the reservation's wall time.
  const lat: number[] = []
  const c0 = process.cpuUsage()
  const w0 = performance.now()
  for (let i = 0; i < N; i++) lat.push(await oneRequest(stage, i))
  await drain()
  const wall = performance.now() - w0
  const c = process.cpuUsage(c0)
  const cpuUs = (c.user + c.system) / N
  const rates: string[] = []
  for (const inFlight of [16, 64]) {
    let next = 0
    const s0 = performance.now()
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < N) await oneRequest(stage, next++)
      }),
    )
    await drain()
    rates.push(String(Math.round(N / ((performance.now() - s0) / 1000))))
  }
  return `| ${name} | ${cpuUs.toFixed(1)} µs | ${(pct(lat, 50) * 1000).toFixed(0)} µs / ${(pct(lat, 99) * 1000).toFixed(0)} µs | ${Math.round(N / (wall / 1000))} | ${rates.join(' | ')} |`
}

function measureCost(tokenize: boolean, runs = 2000): number {
  for (let i = 0; i < 200; i++) measureInput(doc, tokenize)
  const c0 = process.cpuUsage()
  for (let i = 0; i < runs; i++) measureInput(doc, tokenize)
  const c = process.cpuUsage(c0)
  return (c.user + c.system) / runs
}

const rows: string[] = []
const memory = new MemoryStore()
rows.push(await measure('memory', memory, async () => {}))
await memory.close()

const redis = await startRedis()
const store = new RedisStore({ url: redis.url, keyPrefix: 'bench:', timeoutMs: 1000 })
await store.connect()
// Settles go out without being awaited: a GET after them returns once Redis has run them (one connection, in order).
rows.push(await measure('redis (loopback)', store, async () => void (await store.get('bench', 'drain'))))
await store.close()
await redis.stop()

const lines = [
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; Node ${process.version}; ${N} requests per row.`,
  '',
  `A chat request (${body.length} bytes, ${parsed.input.tokens} o200k tokens of input, max_tokens 256) matched by three rules, each per identity (50 identities): requests per minute, tokens per day, requests in flight. Each request reserves on all three counters at once and settles when it ends.`,
  '',
  '| store | CPU per request (reserve + settle) | reservation wall time p50 / p99, 1 in flight | requests/s, 1 in flight | 16 in flight | 64 in flight |',
  '|---|---:|---:|---:|---:|---:|',
  ...rows,
  '',
  '| measuring the input of that body (done while the body is inspected) | CPU per request |',
  '|---|---:|',
  `| characters only (no token rule) | ${measureCost(false).toFixed(1)} µs |`,
  `| with gpt-tokenizer o200k_base (a token rule matches) | ${measureCost(true).toFixed(1)} µs |`,
  '',
  'Reproduce: `node test/bench/quota.bench.ts --write`.',
]
console.log(lines.join('\n'))
if (values.write) writeFileSync(join(import.meta.dirname, 'results', 'quota.md'), '# Quotas: the cost of reserve and settle\n\n' + lines.join('\n') + '\n')
