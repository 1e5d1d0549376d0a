/**
 * Audit trail benchmark: what one request's record costs.
 *
 *   - hot path: the audit stage's own work inside a request — the phase
 *     marks, and close() building the attributes, the hash-chain link, the
 *     child spans and the metrics (p50/p99 µs of close(), per request);
 *   - throughput: requests per second until every record has left the process,
 *     and CPU µs per request including the background export, for each sink:
 *     OTLP/HTTP protobuf to a collector on loopback (a sink that reads and
 *     acknowledges), the same with the collector down (records go to the
 *     on-disk spool), the JSON-lines file, and no sink at all.
 *
 *   - steady load: the same sinks at a fixed request rate (default 1,000/s for
 *     5 s), the CPU share and CPU µs per request the trail costs then, and
 *     whether anything had to wait in the spool.
 *
 *   node test/bench/audit.bench.ts [--requests 20000] [--rounds 2] [--rate 1000] [--seconds 5]
 *
 * Not a test: it asserts nothing and is not run by `npm test`. Results are
 * recorded in test/bench/results/audit.md.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createAuditStage, type AuditTrail } from '../../src/audit/stage.ts'
import { silentLogger } from '../../src/log.ts'
import { allowedContext, testConfig } from '../unit/audit/fixtures.ts'
import { loadAuditExporters } from '../../src/audit/exporters.ts'

// Every exporter this file's audit stages may be configured with.
await loadAuditExporters()

const { values } = parseArgs({ options: { requests: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '2' }, rate: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '5' } } })
const N = Number(values.requests)
const ROUNDS = Number(values.rounds)
const RATE = Number(values.rate)
const SECONDS = Number(values.seconds)

/** A collector stand-in: reads each export, answers 200 with an empty ExportTraceServiceResponse. */
async function sink(): Promise<{ url: string; bytes: () => number; requests: () => number; close: () => Promise<void> }> {
  let bytes = 0
  let requests = 0
  const server: Server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length))
    req.on('end', () => {
      requests++
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 })
      res.end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes: () => bytes,
    requests: () => requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r())
        server.closeAllConnections()
      }),
  }
}

interface Scenario {
  readonly name: string
  readonly build: (dir: string, collector: string) => AuditTrail
}

const ENV = { OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_METRIC_EXPORT_INTERVAL: '3600000', OTEL_METRICS_EXPORTER: 'none' }
const scenarios: Scenario[] = [
  { name: 'no sink (record only)', build: (dir) => createAuditStage(testConfig({ spool: { dir: join(dir, 'spool') } }), { logger: silentLogger, env: ENV }) },
  {
    name: 'no sink, with stage spans',
    build: (dir) => createAuditStage(testConfig({ spool: { dir: join(dir, 'spool') }, stageSpans: true }), { logger: silentLogger, env: ENV }),
  },
  { name: 'JSON-lines file', build: (dir) => createAuditStage(testConfig({ file: join(dir, 'audit.jsonl') }), { logger: silentLogger, env: ENV }) },
  {
    name: 'OTLP/HTTP to a collector',
    build: (dir, url) => createAuditStage(testConfig({ spool: { dir: join(dir, 'spool'), maxBytes: 4 * 1024 ** 3 } }), { logger: silentLogger, env: { ...ENV, OTEL_EXPORTER_OTLP_ENDPOINT: url } }),
  },
  {
    name: 'OTLP/HTTP, with stage spans',
    build: (dir, url) =>
      createAuditStage(testConfig({ spool: { dir: join(dir, 'spool'), maxBytes: 4 * 1024 ** 3 }, stageSpans: true }), { logger: silentLogger, env: { ...ENV, OTEL_EXPORTER_OTLP_ENDPOINT: url } }),
  },
  {
    name: 'OTLP/HTTP, collector down (spool)',
    build: (dir) =>
      createAuditStage(testConfig({ spool: { dir: join(dir, 'spool'), maxBytes: 4 * 1024 ** 3, retryInitialMs: 600000, retryMaxMs: 600000 } }), {
        logger: silentLogger,
        env: { ...ENV, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_TIMEOUT: '200' },
      }),
  },
]

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

/** One request through the stage's phases, with stage timings filled as the pipeline would. */
function oneRequest(audit: AuditTrail, i: number, closeTimes: number[]): void {
  const ctx = allowedContext({ id: `bench-${i}`, traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' })
  const st = audit.stage
  const bump = (name: string, ms: number) => ctx.timings.set(name, (ctx.timings.get(name) ?? 0) + ms)
  st.requestHeaders!(ctx)
  bump('audit', 0.002)
  bump('identity', 0.05)
  st.requestBody!(ctx)
  bump('audit', 0.001)
  for (const s of ['provider', 'redaction-scan', 'policy', 'redaction-apply', 'quota']) bump(s, 0.02)
  st.responseHeaders!(ctx)
  bump('audit', 0.001)
  st.responseBody!(ctx, { data: Buffer.from('{"choices":[]}'), end: true })
  bump('audit', 0.001)
  bump('redaction-apply', 0.02)
  const t0 = process.hrtime.bigint()
  st.close!(ctx, { kind: 'completed' })
  closeTimes.push(Number(process.hrtime.bigint() - t0) / 1000)
}

async function run(s: Scenario): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-audit-bench-'))
  const collector = await sink()
  const audit = s.build(dir, collector.url)
  // Warm up (JIT, sockets), then measure.
  const warm: number[] = []
  for (let i = 0; i < 500; i++) oneRequest(audit, i, warm)
  await audit.flush()
  const closeTimes: number[] = []
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  // Requests arrive in bursts of 100 per event-loop turn, so the background export runs alongside.
  for (let i = 0; i < N; i++) {
    oneRequest(audit, i, closeTimes)
    if (i % 100 === 99) await new Promise<void>((r) => setImmediate(r))
  }
  await audit.flush()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  const status = audit.status()
  await audit.shutdown()
  await collector.close()
  rmSync(dir, { recursive: true, force: true })
  closeTimes.sort((a, b) => a - b)
  return {
    scenario: s.name,
    'requests/s': Math.round(N / seconds),
    'CPU µs/request': Math.round(((cpu.user + cpu.system) / N) * 10) / 10,
    'close p50 µs': Math.round(pct(closeTimes, 50) * 10) / 10,
    'close p99 µs': Math.round(pct(closeTimes, 99) * 10) / 10,
    'bytes/request': collector.bytes() ? Math.round(collector.bytes() / (N + 500)) : status.spoolBytes ? Math.round(status.spoolBytes / (N + 500)) : 0,
    exported: status.exported,
    spooled: status.spooled,
  }
}

/** Requests at a fixed rate (in 10 ms ticks) for a while; what the trail costs in CPU at that load. */
async function steady(s: Scenario): Promise<Record<string, string | number>> {
  const dir = mkdtempSync(join(tmpdir(), 'mg-audit-bench-'))
  const collector = await sink()
  const audit = s.build(dir, collector.url)
  const warm: number[] = []
  for (let i = 0; i < 500; i++) oneRequest(audit, i, warm)
  await audit.flush()
  const closeTimes: number[] = []
  const perTick = Math.max(1, Math.round(RATE / 100))
  const ticks = Math.round(SECONDS * 100)
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  let sent = 0
  for (let tick = 0; tick < ticks; tick++) {
    const due = t0 + BigInt(tick) * 10_000_000n
    const wait = Number(due - process.hrtime.bigint()) / 1e6
    if (wait > 0) await new Promise<void>((r) => setTimeout(r, wait))
    for (let i = 0; i < perTick; i++) oneRequest(audit, sent++, closeTimes)
  }
  await audit.flush()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  const status = audit.status()
  await audit.shutdown()
  await collector.close()
  rmSync(dir, { recursive: true, force: true })
  closeTimes.sort((a, b) => a - b)
  // The same requests cost this much without any audit work: the fixture and the loop.
  return {
    scenario: s.name,
    'requests/s': Math.round(sent / seconds),
    'CPU %': Math.round(((cpu.user + cpu.system) / 1e6 / seconds) * 1000) / 10,
    'CPU µs/request': Math.round(((cpu.user + cpu.system) / sent) * 10) / 10,
    'close p50 µs': Math.round(pct(closeTimes, 50) * 10) / 10,
    'close p99 µs': Math.round(pct(closeTimes, 99) * 10) / 10,
    exported: status.exported,
    spooled: status.spooled,
  }
}

/** CPU the benchmark loop itself costs per request (building the context), to subtract. */
function baseline(): number {
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < 5000; i++) allowedContext({ id: `b-${i}` }).timings.set('x', 1)
  const cpu = process.cpuUsage(cpu0)
  return Math.round(((cpu.user + cpu.system) / 5000) * 10) / 10
}

function table(rows: Record<string, string | number>[]): void {
  const cols = Object.keys(rows[0]!)
  console.log(`| ${cols.join(' | ')} |`)
  console.log(`|${cols.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`)
  for (const r of rows) console.log(`| ${cols.map((c) => (typeof r[c] === 'number' ? (r[c] as number).toLocaleString('en-US') : r[c])).join(' | ')} |`)
}

console.log(`Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}; flood: ${N} requests per scenario; steady: ${RATE}/s for ${SECONDS} s`)
console.log(`Building one request context (fixture, not audit work) costs ${baseline()} CPU µs; it is included below.`)
for (let round = 1; round <= ROUNDS; round++) {
  const flood: Record<string, string | number>[] = []
  for (const s of scenarios) flood.push(await run(s))
  console.log(`\nRun ${round}, flood (as fast as possible):\n`)
  table(flood)
  const paced: Record<string, string | number>[] = []
  for (const s of scenarios) paced.push(await steady(s))
  console.log(`\nRun ${round}, steady ${RATE} requests/s:\n`)
  table(paced)
}
