/**
 * The data path through real Envoy: three Envoys side by side, rendered from
 * envoy/envoy.template.yaml, all sending to the same stand-in provider,
 *
 *   none  the ext_proc filter removed (Envoy alone),
 *   noop  ext_proc to a no-op server (test/bench/noop-extproc.ts): the floor of the mechanism,
 *   full  ext_proc to `modelgate serve` with the local stack's configuration (full pipeline, audit to a file),
 *
 * driven by test/bench/loadgen (Go, HTTP/2 with the checkout workload's client
 * certificate; built with the Go toolchain on first use) at one request in
 * flight (c1), at a fixed 300 requests/s (r300) and at saturation, 32 in
 * flight over 4 connections (c32); JSON and SSE answers; 1, 4 and 64 KiB
 * prompts. Runs are interleaved across the configurations.
 *
 *   npm run bench                          # every case (about 8 minutes)
 *   npm run bench -- --quick               # a subset, under 3 minutes
 *   npm run bench -- --close-fixes none    # Envoy as configured before the graceful close (for comparison)
 *   npm run bench -- --cases json-4k-c32 --configs noop,full --duration 10
 *
 * Writes <out>/envoy.md, envoy.json and envoy-latency.svg (default
 * test/bench/results; another --label gives envoy-<label>.*). Not a test: it
 * asserts nothing and `npm test` does not run it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync, openSync, readSync, closeSync, fstatSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join, relative } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { stringify } from 'yaml'
import { checkHealth } from '../../src/cli/health.ts'
import { localModelgateConfig, writeLocalKeys } from '../../src/cli/start.ts'
import { configFromObject } from '../../src/config/config.ts'
import { compileCatalog } from '../../src/providers/catalog.ts'
import { ACCESS_LOG_FLUSH_MS, envoyBinary, envoyStats, localStackVars, REPO_ROOT, standInProviders, startEnvoy, type RunningEnvoy } from '../../src/dev/envoy.ts'
import { createDevPki } from '../../src/dev/identities.ts'
import { SERVE_ENV, SERVE_NODE_OPTIONS, stopProcess } from '../../src/dev/process.ts'
import { latencyChart, rssChart } from './svg.ts'

const run = promisify(execFile)
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    cases: { type: 'string' },
    configs: { type: 'string' },
    'close-fixes': { type: 'string', default: 'both' },
    'ext-proc-retry': { type: 'boolean', default: false },
    'envoy-args': { type: 'string', default: '' },
    out: { type: 'string', default: join(REPO_ROOT, 'test', 'bench', 'results') },
    label: { type: 'string', default: '' },
    keep: { type: 'boolean', default: false },
    /** Write a V8 CPU profile of modelgate (`node --cpu-prof`) into this directory. */
    profile: { type: 'string' },
    /** Further options for modelgate's node process, space-separated (e.g. `--trace-gc`; its output goes to modelgate.log). */
    'node-args': { type: 'string', default: '' },
    /** The RSS soak instead of the cases: this many requests at --soak-rate through modelgate (default configuration: full). */
    soak: { type: 'string' },
    'soak-rate': { type: 'string', default: '500' },
  },
})

// ---- what runs ------------------------------------------------------------------

type ConfigName = 'none' | 'noop' | 'full'
interface Plan {
  readonly name: 'c1' | 'r300' | 'c32'
  readonly what: string
  readonly args: string[]
}
const PLANS: Record<Plan['name'], Plan> = {
  c1: { name: 'c1', what: '1 in flight', args: ['-c', '1', '-conns', '1'] },
  r300: { name: 'r300', what: '300 requests/s', args: ['-rate', '300', '-c', '256', '-conns', '4'] },
  c32: { name: 'c32', what: '32 in flight, 4 connections', args: ['-c', '32', '-conns', '4'] },
}
interface Case {
  readonly id: string
  readonly mode: 'json' | 'sse'
  readonly kib: number
  readonly plan: Plan
}
const mkCase = (mode: Case['mode'], kib: number, plan: Plan['name']): Case => ({ id: `${mode}-${kib}k-${plan}`, mode, kib, plan: PLANS[plan] })
const ALL_CASES: Case[] = (['json', 'sse'] as const).flatMap((mode) => [1, 4, 64].flatMap((kib) => (['c1', 'r300', 'c32'] as const).map((p) => mkCase(mode, kib, p))))
const QUICK_CASES: Case[] = [mkCase('json', 4, 'c1'), mkCase('json', 4, 'r300'), mkCase('json', 4, 'c32'), mkCase('sse', 4, 'c1'), mkCase('sse', 4, 'c32'), mkCase('json', 1, 'c32'), mkCase('json', 64, 'c32')]

const cases = args.cases ? args.cases.split(',').map((id) => ALL_CASES.find((c) => c.id === id) ?? fail(`unknown case ${id}; known: ${ALL_CASES.map((c) => c.id).join(', ')}`)) : args.quick ? QUICK_CASES : ALL_CASES
const soakRequests = Number(args.soak ?? 0)
const soakRate = Number(args['soak-rate'])
if (!Number.isInteger(soakRequests) || soakRequests < 0 || !(soakRate > 0)) fail('--soak takes a number of requests and --soak-rate a rate above 0')
const configs = (args.configs ?? (soakRequests > 0 ? 'full' : 'none,noop,full')).split(',').map((c) => (['none', 'noop', 'full'].includes(c) ? (c as ConfigName) : fail(`unknown configuration ${c}`)))
const durationS = Number(args.duration ?? (args.quick ? 3 : 8))
const warmupS = Number(args.warmup ?? (args.quick ? 0.5 : 1))
const rounds = Number(args.rounds)
/** Which of the two measures against stream resets the Envoys keep: the graceful close, the per-connection stream limit. */
const closeFixes = args['close-fixes'] as 'both' | 'graceful-close' | 'stream-limit' | 'none'
if (!['both', 'graceful-close', 'stream-limit', 'none'].includes(closeFixes)) fail('--close-fixes is one of both, graceful-close, stream-limit, none')

function fail(msg: string): never {
  process.stderr.write(`envoy.bench: ${msg}\n`)
  process.exit(2)
}

// ---- the load generator -------------------------------------------------------------

const LOADGEN_SRC = join(REPO_ROOT, 'test', 'bench', 'loadgen')
const LOADGEN_BIN = join(REPO_ROOT, 'test', 'bench', 'tmp', 'loadgen')

async function buildLoadgen(): Promise<void> {
  const newest = Math.max(...['main.go', 'go.mod'].map((f) => statSync(join(LOADGEN_SRC, f)).mtimeMs))
  if (existsSync(LOADGEN_BIN) && statSync(LOADGEN_BIN).mtimeMs >= newest) return
  say('building the load generator (go build)')
  mkdirSync(join(REPO_ROOT, 'test', 'bench', 'tmp'), { recursive: true })
  await run('go', ['build', '-o', LOADGEN_BIN, '.'], { cwd: LOADGEN_SRC, env: { ...process.env, GOFLAGS: '-buildvcs=false' } })
}

interface LoadResult {
  requests: number
  seconds: number
  rps: number
  latency_ms: Percentiles
  ttfb_ms: Percentiles
  status: Record<string, number>
  codes: Record<string, number>
  errors: Record<string, number>
  dropped: number
  http2: number
}
interface Percentiles {
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
}

// ---- the prompts --------------------------------------------------------------------

const PROSE = [
  'The checkout service retries the payment call when the upstream answers 503, and we want a backoff that respects Retry-After.',
  'Summarise the incident notes below for the weekly review, keeping the timeline and the follow-up owners.',
  'Queue depth rose after the deploy at 14:05; the consumer group rebalanced twice before the lag came down.',
  'Please rewrite the paragraph in plain language for customers who read the status page on their phones.',
  'The migration moves order history to the new store in batches of five thousand rows, verified by checksums.',
]
const CODE = 'def retry(call, attempts=5):\n    for i in range(attempts):\n        result = call()\n        if result.ok:\n            return result\n        time.sleep(min(2 ** i, 30))\n'

/** A chat completion request of about `kib` KiB: prose, code, and one e-mail address (redacted on the way). */
function chatBody(kib: number, stream: boolean): string {
  const target = kib * 1024
  const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a careful assistant for the payments team.' }, { role: 'user', content: '' }], ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) }
  let content = 'Contact jane.doe@example.org about the refund before Friday.\n'
  for (let i = 0; JSON.stringify({ ...base, messages: [base.messages[0], { role: 'user', content }] }).length < target; i++) {
    content += i % 6 === 5 ? CODE : `${i + 1}. ${PROSE[i % PROSE.length]}\n`
  }
  return JSON.stringify({ ...base, messages: [base.messages[0], { role: 'user', content }] })
}

// ---- processes -------------------------------------------------------------------------

/** modelgate runs as the container image runs it; the no-op server with the same settings. */
const MODELGATE_NODE_ARGS = [...SERVE_NODE_OPTIONS]

const children: ChildProcess[] = []
function spawnNode(script: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): ChildProcess {
  const fd = openSync(logFile, 'a')
  const child = spawn(process.execPath, [...nodeArgs, script, ...argv], { stdio: ['ignore', 'pipe', fd], env: { ...process.env, ...env } })
  closeSync(fd)
  children.push(child)
  return child
}

function firstLine(child: ChildProcess, what: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! })
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms`)), timeoutMs)
    rl.once('line', (line) => {
      clearTimeout(timer)
      resolve(line)
    })
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) during start-up`)))
  })
}

/** User + system CPU seconds of a process, from /proc (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** CPU time of the whole machine so far, from /proc/stat: every CPU's busy and idle (+ iowait) clock ticks. */
function machineTicks(): { busy: number; idle: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const idle = f[3]! + f[4]!
  return { busy: f.slice(0, 8).reduce((a, b) => a + b, 0) - idle, idle }
}

/** Resident set size now and its peak (VmHWM), in MiB. */

function memory(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0)
  return { rssMiB: Math.round(kb('VmRSS') / 1024), peakMiB: Math.round(kb('VmHWM') / 1024) }
}

// ---- Envoy configurations -------------------------------------------------------------------

/** Envoy without the ext_proc filter (and without the routes' ext_proc settings). */
function withoutExtProc(doc: Record<string, any>): void {
  for (const l of doc.static_resources.listeners) {
    for (const chain of l.filter_chains) {
      for (const f of chain.filters) {
        const hcm = f.typed_config
        hcm.http_filters = hcm.http_filters.filter((h: { name: string }) => h.name !== 'envoy.filters.http.ext_proc')
        for (const vh of hcm.route_config.virtual_hosts) for (const r of vh.routes) delete r.typed_per_filter_config
      }
    }
  }
  doc.static_resources.clusters = doc.static_resources.clusters.filter((c: { name: string }) => c.name !== 'modelgate')
}

/** Drops the graceful close and/or the per-connection stream limit (to measure Envoy as configured before them). */
function dropCloseFixes(doc: Record<string, any>): void {
  if (closeFixes === 'both') return
  if (closeFixes !== 'graceful-close') delete doc.layered_runtime
  const mg = doc.static_resources.clusters.find((c: { name: string }) => c.name === 'modelgate')
  if (mg && closeFixes !== 'stream-limit') delete mg.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].common_http_protocol_options
}

/** A retry policy on the ext_proc gRPC service for refused streams (measured, not shipped). */
function addExtProcRetry(doc: Record<string, any>): void {
  for (const l of doc.static_resources.listeners) {
    for (const chain of l.filter_chains) {
      for (const f of chain.filters) {
        const ext = f.typed_config.http_filters.find((h: { name: string }) => h.name === 'envoy.filters.http.ext_proc')
        if (ext) ext.typed_config.grpc_service.retry_policy = { retry_on: 'refused-stream', num_retries: 2 }
      }
    }
  }
  const mg = doc.static_resources.clusters.find((c: { name: string }) => c.name === 'modelgate')
  if (mg) mg.circuit_breakers.thresholds[0].max_retries = 1000
}

// ---- one run ------------------------------------------------------------------------------------

const STATS_FILTER = '^cluster\\.(modelgate|openai)\\.(upstream_rq_total|upstream_rq_tx_reset|upstream_rq_rx_reset|upstream_cx_total|upstream_cx_destroy_remote|upstream_cx_destroy_local|upstream_cx_destroy_remote_with_active_rq|upstream_cx_destroy_local_with_active_rq|upstream_rq_retry|upstream_rq_retry_success|upstream_cx_max_requests)$|^http\\.workloads\\.ext_proc\\.(streams_started|streams_closed|streams_failed|message_timeouts|failure_mode_allowed)$'

interface Stack {
  readonly name: ConfigName
  readonly envoy: RunningEnvoy
  readonly url: string
  readonly log: string
  logOffset: number
}

interface RunRecord {
  round: number
  case: string
  config: ConfigName
  load: LoadResult
  /** Non-2xx answers from Envoy's access log, by `status details`. */
  non2xx: Record<string, number>
  /** Envoy counters: the change during the run. */
  envoy: Record<string, number>
  /** The processor's CPU seconds during the run (modelgate for full, the no-op server for noop). */
  processorCpuS?: number
  processorRssMiB?: number
  /** Envoy's CPU seconds during the measured part. */
  envoyCpuS?: number
  /** The load generator's and the stand-in provider's CPU seconds during the measured part. */
  loadgenCpuS?: number
  providerCpuS?: number
  /** Share of the machine's CPU time that was busy during the measured part (every process, ours and others'). */
  machineBusy?: number
}

function readFrom(file: string, offset: number): { text: string; end: number } {
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    const buf = Buffer.alloc(Math.max(0, size - offset))
    readSync(fd, buf, 0, buf.length, offset)
    return { text: buf.toString('utf8'), end: size }
  } finally {
    closeSync(fd)
  }
}

/** The stand-in provider's pid, for its CPU time. */
let providerPid: number | undefined

async function runOnce(stack: Stack, c: Case, bodyFile: string, pki: Awaited<ReturnType<typeof createDevPki>>, processorPid: number | undefined, round: number): Promise<RunRecord> {
  const before = await envoyStats(stack.envoy.adminUrl, STATS_FILTER)
  stack.logOffset = statSync(stack.log).size
  const id = pki.identities.checkout
  // The processor's CPU is sampled when the load generator starts and ends its measured part.
  let cpu0 = 0
  let cpu1 = 0
  const envoyPid = stack.envoy.process.pid
  let envoy0 = 0
  let envoy1 = 0
  let m0 = { busy: 0, idle: 0 }
  let m1 = { busy: 0, idle: 0 }
  let gen0 = 0
  let gen1 = 0
  let prov0 = 0
  let prov1 = 0
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      LOADGEN_BIN,
      ['-url', `${stack.url}/v1/chat/completions`, '-ca', pki.ca.cert, '-cert', id.cert, '-key', id.key, '-body', bodyFile, '-d', `${durationS}s`, '-warmup', `${warmupS}s`, ...c.plan.args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (b: Buffer) => (out += b))
    createInterface({ input: child.stderr }).on('line', (line) => {
      if (line === 'measuring' || line === 'measured') {
        const gen = child.pid ? cpuSeconds(child.pid) : 0
        const prov = providerPid ? cpuSeconds(providerPid) : 0
        if (line === 'measuring') [gen0, prov0] = [gen, prov]
        else [gen1, prov1] = [gen, prov]
      }
      if (line === 'measuring') {
        if (processorPid) cpu0 = cpuSeconds(processorPid)
        if (envoyPid) envoy0 = cpuSeconds(envoyPid)
        m0 = machineTicks()
      } else if (line === 'measured') {
        if (processorPid) cpu1 = cpuSeconds(processorPid)
        if (envoyPid) envoy1 = cpuSeconds(envoyPid)
        m1 = machineTicks()
      } else err += line + '\n'
    })
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`loadgen exited with ${code}: ${err}`))))
  })
  const load = JSON.parse(stdout) as LoadResult
  const after = await envoyStats(stack.envoy.adminUrl, STATS_FILTER)
  const envoy: Record<string, number> = {}
  for (const [k, v] of Object.entries(after)) envoy[k] = v - (before[k] ?? 0)
  // Envoy flushes its access log every ACCESS_LOG_FLUSH_MS: wait for the last lines of the run.
  await new Promise((r) => setTimeout(r, ACCESS_LOG_FLUSH_MS * 2))
  const { text, end } = readFrom(stack.log, stack.logOffset)
  stack.logOffset = end
  const non2xx: Record<string, number> = {}
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const e = JSON.parse(line) as { status?: string | number; details?: string }
      const status = Number(e.status)
      if (status >= 200 && status < 300) continue
      const key = `${e.status} ${e.details ?? ''}`.trim()
      non2xx[key] = (non2xx[key] ?? 0) + 1
    } catch {
      /* not an access log line */
    }
  }
  const rec: RunRecord = { round, case: c.id, config: stack.name, load, non2xx, envoy }
  if (envoyPid) rec.envoyCpuS = Math.round((envoy1 - envoy0) * 100) / 100
  rec.loadgenCpuS = Math.round((gen1 - gen0) * 100) / 100
  if (providerPid) rec.providerCpuS = Math.round((prov1 - prov0) * 100) / 100
  const ticks = m1.busy - m0.busy + (m1.idle - m0.idle)
  if (ticks > 0) rec.machineBusy = Math.round(((m1.busy - m0.busy) / ticks) * 1000) / 1000
  if (processorPid) {
    rec.processorCpuS = Math.round((cpu1 - cpu0) * 100) / 100
    rec.processorRssMiB = memory(processorPid).rssMiB
  }
  return rec
}

// ---- the RSS soak ----------------------------------------------------------------------------------

interface SoakSample {
  /** Seconds since the load started. */
  readonly s: number
  /** Requests sent so far (at the steady rate). */
  readonly requests: number
  readonly rssMiB: number
}

interface SoakRecord {
  readonly config: ConfigName
  readonly rate: number
  readonly requests: number
  readonly load: LoadResult
  readonly non2xx: Record<string, number>
  readonly samples: SoakSample[]
  readonly summary: SoakSummary
}

interface SoakSummary {
  readonly startMiB: number
  readonly warmedMiB: number
  readonly plateauMiB: number
  readonly endMiB: number
  readonly minMiB: number
  readonly maxMiB: number
  /** Largest distance of a sample after warm-up from the plateau, as a share of it. */
  readonly maxDeviation: number
  /** Least-squares slope of RSS after warm-up, MiB per 100k requests. */
  readonly slopeMiBPer100k: number
  readonly flat: boolean
}

/** The share of the run counted as warm-up (JIT, caches filling, the heap finding its size). */
const SOAK_WARMUP_SHARE = 0.1

function summariseSoak(samples: readonly SoakSample[]): SoakSummary {
  const total = samples.at(-1)?.requests ?? 0
  const after = samples.filter((x) => x.requests >= total * SOAK_WARMUP_SHARE)
  const sorted = after.map((x) => x.rssMiB).sort((a, b) => a - b)
  const plateau = sorted[Math.floor(sorted.length / 2)] ?? 0
  const maxDeviation = plateau > 0 ? Math.max(...after.map((x) => Math.abs(x.rssMiB - plateau) / plateau)) : 0
  const n = after.length
  const mx = after.reduce((a, x) => a + x.requests, 0) / Math.max(1, n)
  const my = after.reduce((a, x) => a + x.rssMiB, 0) / Math.max(1, n)
  const sxy = after.reduce((a, x) => a + (x.requests - mx) * (x.rssMiB - my), 0)
  const sxx = after.reduce((a, x) => a + (x.requests - mx) ** 2, 0)
  return {
    startMiB: samples[0]?.rssMiB ?? 0,
    warmedMiB: after[0]?.rssMiB ?? 0,
    plateauMiB: plateau,
    endMiB: samples.at(-1)?.rssMiB ?? 0,
    minMiB: sorted[0] ?? 0,
    maxMiB: sorted.at(-1) ?? 0,
    maxDeviation: Math.round(maxDeviation * 1000) / 1000,
    slopeMiBPer100k: sxx > 0 ? Math.round((sxy / sxx) * 1e5 * 10) / 10 : 0,
    flat: maxDeviation <= 0.1,
  }
}

/** Runs `requests` requests at a steady rate through one stack, sampling the processor's RSS every second. */
async function soakOnce(stack: Stack, bodyFile: string, pki: Awaited<ReturnType<typeof createDevPki>>, pid: number, requests: number, rate: number): Promise<SoakRecord> {
  stack.logOffset = statSync(stack.log).size
  const id = pki.identities.checkout
  const seconds = Math.ceil(requests / rate)
  const samples: SoakSample[] = []
  const t0 = Date.now()
  const sample = () => {
    const s = (Date.now() - t0) / 1000
    samples.push({ s: Math.round(s * 10) / 10, requests: Math.min(requests, Math.round(s * rate)), rssMiB: memory(pid).rssMiB })
  }
  sample()
  const timer = setInterval(sample, 1000)
  let lastSay = 0
  const progress = setInterval(() => {
    const last = samples.at(-1)!
    if (last.s - lastSay >= 30) {
      lastSay = last.s
      say(`soak ${stack.name}: ${last.requests} requests, RSS ${last.rssMiB} MiB`)
    }
  }, 1000)
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      const child = spawn(
        LOADGEN_BIN,
        ['-url', `${stack.url}/v1/chat/completions`, '-ca', pki.ca.cert, '-cert', id.cert, '-key', id.key, '-body', bodyFile, '-d', `${seconds}s`, '-warmup', '0s', '-rate', String(rate), '-c', '256', '-conns', '4'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let out = ''
      let err = ''
      child.stdout.on('data', (b: Buffer) => (out += b))
      createInterface({ input: child.stderr }).on('line', (line) => {
        if (line !== 'measuring' && line !== 'measured') err += line + '\n'
      })
      child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`loadgen exited with ${code}: ${err}`))))
    })
    sample()
    const load = JSON.parse(stdout) as LoadResult
    await new Promise((r) => setTimeout(r, ACCESS_LOG_FLUSH_MS * 2))
    const { text, end } = readFrom(stack.log, stack.logOffset)
    stack.logOffset = end
    const non2xx: Record<string, number> = {}
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue
      try {
        const e = JSON.parse(line) as { status?: string | number; details?: string }
        if (Number(e.status) >= 200 && Number(e.status) < 300) continue
        const key = `${e.status} ${e.details ?? ''}`.trim()
        non2xx[key] = (non2xx[key] ?? 0) + 1
      } catch {
        /* not an access log line */
      }
    }
    return { config: stack.name, rate, requests: load.requests, load, non2xx, samples, summary: summariseSoak(samples) }
  } finally {
    clearInterval(timer)
    clearInterval(progress)
  }
}

function soakMarkdown(meta: Record<string, any>, soaks: readonly SoakRecord[], svgName: string): string {
  const out: string[] = []
  out.push('# Through Envoy: modelgate\'s memory over a long steady run')
  out.push('')
  out.push(`Recorded ${meta.date} with \`${meta.command}\`.`)
  out.push('')
  out.push(`- Machine: ${meta.machine.cpus} × ${meta.machine.cpuModel}, ${meta.machine.memoryGiB} GiB, Linux ${meta.machine.kernel}; Node ${meta.machine.node}, Envoy ${meta.machine.envoy}.`)
  out.push(`- Load average before / after: ${meta.loadBefore.map((x: number) => x.toFixed(2)).join(' ')} / ${meta.loadAfter.map((x: number) => x.toFixed(2)).join(' ')}.`)
  out.push(`- The 4 KiB chat body (one e-mail address, redacted on the way), JSON answers, open loop at a steady rate over 4 HTTP/2 connections; the ext_proc server's resident set size (VmRSS) sampled every second. modelgate runs as the local stack configures it (full pipeline, audit to a file), started with \`${meta.modelgateNode}\`.`)
  out.push(`- Warm-up: the first ${SOAK_WARMUP_SHARE * 100} % of the requests. Flat: every sample after warm-up within ±10 % of the plateau (the median after warm-up).`)
  out.push('')
  out.push(`![RSS over the run](${svgName})`)
  out.push('')
  out.push('| config | requests | rate, req/s | non-2xx | p50 / p99 ms | RSS at start | after warm-up | plateau | end | min – max after warm-up | largest deviation | slope, MiB per 100k requests | flat (±10 %) |')
  out.push('|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|')
  for (const r of soaks) {
    const s = r.summary
    out.push(
      `| ${r.config} | ${r.requests} | ${fmt(r.load.rps, 0)} | ${sumCounts(r.non2xx)} | ${fmt(r.load.latency_ms.p50)} / ${fmt(r.load.latency_ms.p99)} | ${s.startMiB} | ${s.warmedMiB} | ${s.plateauMiB} | ${s.endMiB} | ${s.minMiB} – ${s.maxMiB} | ${(s.maxDeviation * 100).toFixed(1)} % | ${s.slopeMiBPer100k} | ${s.flat ? 'yes' : '**no**'} |`,
    )
  }
  out.push('')
  out.push('RSS in MiB. The curve, one point every 30 s (requests sent so far: RSS MiB):')
  out.push('')
  for (const r of soaks) {
    const pts = r.samples.filter((x, i) => i === 0 || i === r.samples.length - 1 || Math.round(x.s) % 30 === 0)
    out.push(`- ${r.config}: ${pts.map((x) => `${x.requests}: ${x.rssMiB}`).join(', ')}`)
  }
  out.push('')
  return out.join('\n')
}

// ---- reporting ---------------------------------------------------------------------------------

const fmt = (n: number | undefined, d = 2) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(d))
const sumCounts = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0)
const counts = (o: Record<string, number>) =>
  Object.entries(o)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${v} × ${k}`)
    .join(', ') || '0'

/** Of several rounds of one case and configuration, the one with the lowest p50. */
function best(records: RunRecord[], caseId: string, config: ConfigName): RunRecord | undefined {
  return records.filter((r) => r.case === caseId && r.config === config).sort((a, b) => a.load.latency_ms.p50 - b.load.latency_ms.p50)[0]
}

function stat(r: RunRecord | undefined, key: string): number {
  return r?.envoy[key] ?? 0
}

function markdown(meta: Record<string, any>, records: RunRecord[], svgName: string): string {
  const out: string[] = []
  out.push(`# Through Envoy: what modelgate adds, under load`)
  out.push('')
  const variant = { both: '', 'graceful-close': ' (Envoy with the graceful close but **without** the per-connection stream limit)', 'stream-limit': ' (Envoy with the per-connection stream limit but **without** the graceful close)', none: ' (Envoy **without** the graceful close and the per-connection stream limit, as configured before them)' }[meta.closeFixes as typeof closeFixes]
  out.push(`Recorded ${meta.date} with \`${meta.command}\`${variant}${meta.extProcRetry ? ', with a retry policy for refused streams on the ext_proc service' : ''}.`)
  out.push('')
  out.push(`- Machine: ${meta.machine.cpus} × ${meta.machine.cpuModel}, ${meta.machine.memoryGiB} GiB, Linux ${meta.machine.kernel}; Node ${meta.machine.node}, Envoy ${meta.machine.envoy}, ${meta.machine.go}.`)
  out.push(`- Load average before / after: ${meta.loadBefore.map((x: number) => x.toFixed(2)).join(' ')} / ${meta.loadAfter.map((x: number) => x.toFixed(2)).join(' ')}. ${meta.quiet ? '' : '**The machine was shared with other work during this run (two vCPUs; see the load average), so the numbers are noisy.**'}`)
  out.push(`- Each run: ${meta.warmupS} s warm-up, ${meta.durationS} s measured; ${meta.rounds} round(s), runs interleaved across the configurations (best p50 of the rounds shown).`)
  out.push(`- Configurations: **none** = Envoy without ext_proc; **noop** = ext_proc to a no-op grpc-js server (answers "continue", switches SSE to STREAMED like modelgate): the floor of the mechanism; **full** = ext_proc to \`modelgate serve\` with the local stack's configuration (identity, provider parsing, redaction scan, Cedar policy, redaction, audit to a file). The prompt carries one e-mail address, redacted on the way. Both ext_proc servers run as the container image runs modelgate: \`${meta.modelgateNode}\`, MALLOC_ARENA_MAX=2.`)
  out.push(`- Plans: c1 = 1 request in flight; r300 = 300 requests/s open loop (latency from the time each request was due); c32 = 32 in flight over 4 HTTP/2 connections.`)
  out.push('')
  out.push(`![latency percentiles per configuration](${svgName})`)
  out.push('')
  out.push('## Latency and throughput')
  out.push('')
  out.push('| case | config | req/s | p50 ms | p90 ms | p99 ms | non-2xx |')
  out.push('|---|---|---:|---:|---:|---:|---|')
  for (const c of meta.cases as string[]) {
    for (const cfg of meta.configs as ConfigName[]) {
      const r = best(records, c, cfg)
      if (!r) continue
      const bad = sumCounts(r.non2xx)
      const dropped = r.load.dropped ? ` (${r.load.dropped} not sent: 256 already outstanding)` : ''
      out.push(`| ${c} | ${cfg} | ${fmt(r.load.rps, 0)} | ${fmt(r.load.latency_ms.p50)} | ${fmt(r.load.latency_ms.p90)} | ${fmt(r.load.latency_ms.p99)} | ${bad} of ${r.load.requests}${dropped} |`)
    }
  }
  if ((meta.configs as string[]).includes('noop')) {
    out.push('')
    out.push('## Against the no-op floor')
    out.push('')
    out.push('| case | full − noop p50 ms | full − noop p99 ms | throughput full / noop | noop / none |')
    out.push('|---|---:|---:|---:|---:|')
    for (const c of meta.cases as string[]) {
      const f = best(records, c, 'full')
      const n = best(records, c, 'noop')
      const z = best(records, c, 'none')
      if (!n) continue
      out.push(`| ${c} | ${f ? fmt(f.load.latency_ms.p50 - n.load.latency_ms.p50) : '–'} | ${f ? fmt(f.load.latency_ms.p99 - n.load.latency_ms.p99) : '–'} | ${f && c.endsWith('c32') ? fmt(f.load.rps / n.load.rps) : '–'} | ${z && c.endsWith('c32') ? fmt(n.load.rps / z.load.rps) : '–'} |`)
    }
    out.push('')
    out.push('Throughput ratios only for the saturation plan (c32); the other plans run at a fixed rate or one at a time.')
  }
  out.push('')
  out.push('## Answers that were not 2xx, and the ext_proc connections')
  out.push('')
  out.push("Non-2xx answers by status and Envoy's response code details (from Envoy's access log), and the change of Envoy's counters for the `modelgate` cluster during each run, summed over every run of a configuration:")
  out.push('')
  out.push('| config | requests | non-2xx | streams | stream resets by Envoy | refused / reset by server | connections | closed by server | retries | ext_proc streams failed |')
  out.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|')
  for (const cfg of meta.configs as ConfigName[]) {
    const rs = records.filter((r) => r.config === cfg)
    const tot = (k: string) => rs.reduce((a, r) => a + stat(r, k), 0)
    const non2xx: Record<string, number> = {}
    for (const r of rs) for (const [k, v] of Object.entries(r.non2xx)) non2xx[k] = (non2xx[k] ?? 0) + v
    const requests = rs.reduce((a, r) => a + r.load.requests, 0)
    if (cfg === 'none') {
      out.push(`| none | ${requests} | ${counts(non2xx)} | – | – | – | – | – | – | – |`)
      continue
    }
    out.push(
      `| ${cfg} | ${requests} | ${counts(non2xx)} | ${tot('cluster.modelgate.upstream_rq_total')} | ${tot('cluster.modelgate.upstream_rq_tx_reset')} | ${tot('cluster.modelgate.upstream_rq_rx_reset')} | ${tot('cluster.modelgate.upstream_cx_total')} | ${tot('cluster.modelgate.upstream_cx_destroy_remote')} | ${tot('cluster.modelgate.upstream_rq_retry')} | ${tot('http.workloads.ext_proc.streams_failed')} |`,
    )
  }
  if ((meta.configs as string[]).includes('full')) {
    out.push('')
    out.push('## modelgate itself')
    out.push('')
    out.push('| case | CPU s | CPU ms per request | no-op server CPU ms per request | Envoy CPU ms per request (full / noop) | machine busy (full / noop) | RSS after, MiB |')
    out.push('|---|---:|---:|---:|---:|---:|---:|')
    const perRequest = (cpu: number | undefined, r: RunRecord | undefined) => (cpu === undefined || !r ? undefined : (cpu * 1000) / Math.max(1, r.load.requests))
    const share = (x: number | undefined) => (x === undefined ? '–' : `${Math.round(x * 100)} %`)
    for (const c of meta.cases as string[]) {
      const r = best(records, c, 'full')
      const n = best(records, c, 'noop')
      if (!r || r.processorCpuS === undefined) continue
      out.push(
        `| ${c} | ${fmt(r.processorCpuS)} | ${fmt(perRequest(r.processorCpuS, r))} | ${fmt(perRequest(n?.processorCpuS, n))} | ${fmt(perRequest(r.envoyCpuS, r))} / ${fmt(perRequest(n?.envoyCpuS, n))} | ${share(r.machineBusy)} / ${share(n?.machineBusy)} | ${r.processorRssMiB} |`,
      )
    }
    out.push('')
    out.push('Where the machine\'s CPU went, per request, in the saturation plan (ms of CPU per request by process; the machine has ' + meta.machine.cpus + ' CPUs, so at most ' + meta.machine.cpus + ' × 1000 ms per second):')
    out.push('')
    out.push('| case | config | req/s | Envoy | ext_proc server | load generator | stand-in provider | all four | all four, share of the machine |')
    out.push('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for (const c of (meta.cases as string[]).filter((x) => x.endsWith('c32'))) {
      for (const cfg of meta.configs as ConfigName[]) {
        const r = best(records, c, cfg)
        if (!r || r.envoyCpuS === undefined) continue
        const parts = [r.envoyCpuS, r.processorCpuS ?? 0, r.loadgenCpuS ?? 0, r.providerCpuS ?? 0]
        const sum = parts.reduce((a, b) => a + b, 0)
        out.push(`| ${c} | ${cfg} | ${fmt(r.load.rps, 0)} | ${parts.map((x) => fmt(perRequest(x, r))).join(' | ')} | ${fmt(perRequest(sum, r))} | ${Math.round((100 * sum) / (meta.machine.cpus * r.load.seconds))} % |`)
      }
    }
    out.push('')
    out.push(`CPU: user + system seconds during the measured part. Machine busy: the share of all ${meta.machine.cpus} CPUs' time that was busy then (Envoy, the load generator, the stand-in provider, the ext_proc server, and anything else running); near 100 % at saturation means no core is left over for a second modelgate process. Peak RSS of modelgate over the whole benchmark: ${meta.peakRss.full ?? '–'} MiB (the no-op server: ${meta.peakRss.noop ?? '–'} MiB).`)
    const l = meta.modelgateLog as Record<string, number>
    out.push('')
    out.push(`modelgate's own log over the whole benchmark: ${l.unansweredResets} ext_proc streams reset before they were answered, ${l.answeredResets ? `at least ${l.answeredResets}` : 0} reset after, ${l.closedByModelgate} connections ended by modelgate's HTTP/2 layer, ${l.closedByEnvoy} connections Envoy ended with streams open.`)
  }
  out.push('')
  return out.join('\n')
}

function say(msg: string): void {
  process.stdout.write(`[bench] ${msg}\n`)
}

// ---- main ----------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'mg-bench-'))
const envoys: RunningEnvoy[] = []
const cleanup = async () => {
  for (const e of envoys) await e.stop().catch(() => {})
  for (const c of children.reverse()) await stopProcess(c, 5000).catch(() => {})
  if (!args.keep) rmSync(dir, { recursive: true, force: true })
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

try {
  const started = Date.now()
  const loadBefore = loadavg()
  await buildLoadgen()
  say(`work directory ${dir}`)
  const pki = await createDevPki(join(dir, 'pki'))

  const providerProc = spawnNode(join(REPO_ROOT, 'test', 'bench', 'provider.ts'), [], join(dir, 'provider.log'))
  const provider = JSON.parse(await firstLine(providerProc, 'the stand-in provider')) as { host: string; port: number }
  providerPid = providerProc.pid

  const sockets = { full: join(dir, 'modelgate.sock'), noop: join(dir, 'noop.sock') }
  const mgConfig = localModelgateConfig({ socket: sockets.full, policies: join(REPO_ROOT, 'policies'), dir })
  await writeLocalKeys(join(dir, 'credentials'))
  const catalog = compileCatalog(configFromObject(mgConfig, 'bench').providers)
  let modelgate: ChildProcess | undefined
  let noop: ChildProcess | undefined
  if (configs.includes('full')) {
    const configFile = join(dir, 'modelgate.yaml')
    writeFileSync(configFile, stringify(mgConfig))
    modelgate = spawnNode(join(REPO_ROOT, 'src', 'cli', 'main.ts'), ['serve', '--config', configFile], join(dir, 'modelgate.log'), { ...SERVE_ENV, MODELGATE_LOG_LEVEL: 'info' }, [...MODELGATE_NODE_ARGS, ...(args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`] : []), ...args['node-args'].split(' ').filter(Boolean)])
    // Whatever node itself prints (e.g. --trace-gc) joins the log.
    modelgate.stdout!.pipe(createWriteStream(join(dir, 'modelgate.log'), { flags: 'a' }))
    const deadline = Date.now() + 30_000
    while ((await checkHealth(`unix://${sockets.full}`, 500).catch(() => 'UNREACHABLE')) !== 'SERVING') {
      if (Date.now() > deadline || modelgate.exitCode !== null) throw new Error(`modelgate did not start:\n${readFileSync(join(dir, 'modelgate.log'), 'utf8').slice(-2000)}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  if (configs.includes('noop')) {
    noop = spawnNode(join(REPO_ROOT, 'test', 'bench', 'noop-extproc.ts'), [sockets.noop], join(dir, 'noop.log'), { ...SERVE_ENV }, [...SERVE_NODE_OPTIONS])
    await firstLine(noop, 'the no-op ext_proc server')
  }

  const stacks: Stack[] = []
  for (const name of configs) {
    const workDir = join(dir, `envoy-${name}`)
    mkdirSync(workDir)
    const log = join(dir, `envoy-${name}.log`)
    const envoy = await startEnvoy({
      workDir,
      vars: localStackVars({ pki, socket: name === 'none' ? sockets.full : sockets[name], listenPort: 0 }),
      providers: standInProviders(catalog, provider),
      logFile: log,
      logLevel: 'error',
      args: args['envoy-args'] ? args['envoy-args'].split(' ') : [],
      edit: (doc) => {
        if (name === 'none') return withoutExtProc(doc)
        dropCloseFixes(doc)
        if (args['ext-proc-retry']) addExtProcRetry(doc)
      },
    })
    envoys.push(envoy)
    stacks.push({ name, envoy, url: `https://127.0.0.1:${envoy.listenPort}`, log, logOffset: 0 })
  }

  const bodies = new Map<string, string>()
  for (const c of soakRequests > 0 ? [mkCase('json', 4, 'c1')] : cases) {
    const key = `${c.mode}-${c.kib}`
    if (bodies.has(key)) continue
    const file = join(dir, `body-${key}.json`)
    writeFileSync(file, chatBody(c.kib, c.mode === 'sse'))
    bodies.set(key, file)
  }

  if (soakRequests > 0) {
    const soaks: SoakRecord[] = []
    for (const stack of stacks) {
      const pid = stack.name === 'full' ? modelgate?.pid : stack.name === 'noop' ? noop?.pid : undefined
      if (!pid) continue
      say(`soak ${stack.name}: ${soakRequests} requests at ${soakRate} requests/s, about ${Math.ceil(soakRequests / soakRate / 60)} min`)
      const r = await soakOnce(stack, bodies.get('json-4')!, pki, pid, soakRequests, soakRate)
      soaks.push(r)
      const s = r.summary
      say(`soak ${stack.name}: ${r.requests} requests, ${sumCounts(r.non2xx)} non-2xx; RSS ${s.startMiB} → ${s.warmedMiB} after warm-up, plateau ${s.plateauMiB}, end ${s.endMiB} MiB; ${s.flat ? 'flat' : 'NOT flat'} (largest deviation ${(s.maxDeviation * 100).toFixed(1)} %)`)
    }
    const meta = {
      date: new Date().toISOString().slice(0, 10),
      command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, envoy: /\/(\d+\.\d+\.\d+)\//.exec((await run(envoyBinary(), ['--version'])).stdout)?.[1] ?? 'unknown' },
      loadBefore,
      loadAfter: loadavg(),
      modelgateNode: ['node', ...MODELGATE_NODE_ARGS, ...args['node-args'].split(' ').filter(Boolean)].join(' '),
    }
    const base = `envoy-soak${args.label ? `-${args.label}` : ''}`
    mkdirSync(args.out, { recursive: true })
    writeFileSync(join(args.out, `${base}.json`), JSON.stringify({ meta, soaks }, null, 1) + '\n')
    writeFileSync(join(args.out, `${base}-rss.svg`), rssChart(soaks.map((r) => ({ name: r.config, points: r.samples.map((x) => [x.requests, x.rssMiB] as const) }))))
    writeFileSync(join(args.out, `${base}.md`), soakMarkdown(meta, soaks, `${base}-rss.svg`))
    say(`done: ${relative(process.cwd(), join(args.out, `${base}.md`))}, ${base}.json, ${base}-rss.svg`)
  } else {
  const estimate = Math.round((rounds * cases.length * stacks.length * (durationS + warmupS + 0.5)) / 60)
  say(`${cases.length} cases × ${stacks.length} configurations × ${rounds} round(s), about ${estimate} min`)
  const records: RunRecord[] = []
  for (let round = 1; round <= rounds; round++) {
    for (const c of cases) {
      for (const stack of stacks) {
        const pid = stack.name === 'full' ? modelgate?.pid : stack.name === 'noop' ? noop?.pid : undefined
        const rec = await runOnce(stack, c, bodies.get(`${c.mode}-${c.kib}`)!, pki, pid, round)
        records.push(rec)
        const bad = sumCounts(rec.non2xx)
        say(
          `${c.id.padEnd(13)} ${stack.name.padEnd(4)} ${fmt(rec.load.rps, 0).padStart(5)} req/s  p50 ${fmt(rec.load.latency_ms.p50).padStart(7)}  p90 ${fmt(rec.load.latency_ms.p90).padStart(7)}  p99 ${fmt(rec.load.latency_ms.p99).padStart(7)} ms  non-2xx ${bad ? counts(rec.non2xx) : 0}${rec.envoy['cluster.modelgate.upstream_rq_tx_reset'] ? `  resets ${rec.envoy['cluster.modelgate.upstream_rq_tx_reset']}` : ''}${rec.envoy['cluster.modelgate.upstream_cx_destroy_remote'] ? `  server-closed connections ${rec.envoy['cluster.modelgate.upstream_cx_destroy_remote']}` : ''}`,
        )
      }
    }
  }

  const loadAfter = loadavg()
  const envoyVersion = /\/(\d+\.\d+\.\d+)\//.exec((await run(envoyBinary(), ['--version'])).stdout)?.[1] ?? 'unknown'
  const goVersion = (await run('go', ['version'])).stdout.trim().split(' ')[2] ?? 'go'
  const meta = {
    date: new Date().toISOString().slice(0, 10),
    command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
    closeFixes,
    extProcRetry: args['ext-proc-retry'],
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model.trim() ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version, envoy: envoyVersion, go: goVersion },
    loadBefore,
    loadAfter,
    // Two cores: a load average above ~0.5 before the run means other work shares the machine.
    quiet: loadBefore[0]! < 0.5 && loadAfter[0]! < 3,
    durationS,
    warmupS,
    rounds,
    cases: cases.map((c) => c.id),
    configs: stacks.map((s) => s.name),
    peakRss: { full: modelgate?.pid ? memory(modelgate.pid).peakMiB : undefined, noop: noop?.pid ? memory(noop.pid).peakMiB : undefined },
    bodies: Object.fromEntries([...bodies].map(([k, f]) => [k, statSync(f).size])),
    minutes: Math.round((Date.now() - started) / 6000) / 10,
    modelgateNode: ['node', ...MODELGATE_NODE_ARGS, ...args['node-args'].split(' ').filter(Boolean)].join(' '),
  }
  const mgLog = modelgate ? readFileSync(join(dir, 'modelgate.log'), 'utf8').split('\n') : []
  const lastAnswered = mgLog.filter((l) => l.includes('Envoy resets ext_proc streams after they were answered')).pop()
  Object.assign(meta, {
    modelgateLog: {
      unansweredResets: mgLog.filter((l) => l.includes('ext_proc stream reset before it was answered')).length,
      // The running count is logged every 1000 resets: the last line gives a lower bound.
      answeredResets: lastAnswered ? Number(/"resets":(\d+)/.exec(lastAnswered)?.[1] ?? 0) : 0,
      closedByModelgate: mgLog.filter((l) => l.includes('modelgate closed an ext_proc connection')).length,
      closedByEnvoy: mgLog.filter((l) => l.includes('Envoy closed an ext_proc connection with streams open')).length,
    },
  })
  const base = `envoy${args.label ? `-${args.label}` : ''}`
  mkdirSync(args.out, { recursive: true })
  const svgName = `${base}-latency.svg`
  writeFileSync(join(args.out, `${base}.json`), JSON.stringify({ meta, records }, null, 1) + '\n')
  writeFileSync(join(args.out, svgName), latencyChart(meta.cases, meta.configs, (c, cfg) => best(records, c, cfg as ConfigName)?.load.latency_ms))
  writeFileSync(join(args.out, `${base}.md`), markdown(meta, records, svgName))
  say(`done in ${meta.minutes} min: ${relative(process.cwd(), join(args.out, `${base}.md`))}, ${base}.json, ${svgName}`)
  }
} finally {
  await cleanup()
}
