/**
 * The cost modelgate adds to a request: a modelgate server in its own process
 * (the full pipeline from configuration: identity, provider parsing, redaction
 * scan, Cedar policy, redaction apply, audit to a file sink), driven over its
 * Unix socket by an ext_proc client that sends exactly what Envoy sends for a
 * chat completion: request headers with the mTLS attributes, the buffered
 * body, response headers, the buffered response body.
 *
 *   node test/bench/extproc.bench.ts [--requests 4000] [--concurrency 1,16,64] [--body-kib 1]
 *
 * Not a test: it asserts nothing and is not run by `npm test`. Results are
 * recorded in test/bench/results/extproc.md.
 */
import { spawn } from 'node:child_process'
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { stringify } from 'yaml'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { DEV_TRUST_DOMAIN } from '../../src/dev/identities.ts'
import { connectExtProc, mtlsAttributes, msg } from '../helpers/grpc-client.ts'
import { sharedTestPki } from '../helpers/pki.ts'

const { values } = parseArgs({
  options: { requests: { type: 'string', default: '4000' }, concurrency: { type: 'string', default: '1,16,64' }, 'body-kib': { type: 'string', default: '1' } },
})
const total = Number(values.requests)
const levels = values.concurrency.split(',').map(Number)
const bodyKib = Number(values['body-kib'])

const dir = mkdtempSync(join(tmpdir(), 'modelgate-bench-'))
const socket = join(dir, 'mg.sock')
const configFile = join(dir, 'modelgate.yaml')
writeFileSync(
  configFile,
  stringify({
    server: { listen: `unix://${socket}`, phaseTimeoutMs: 5000 },
    identity: { trustDomains: [DEV_TRUST_DOMAIN] },
    policy: { dir: join(REPO_ROOT, 'policies'), watch: false },
    audit: { file: join(dir, 'audit.jsonl') },
  }),
)
const server = spawn(process.execPath, [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
  stdio: ['ignore', 'ignore', 'pipe'],
  env: { ...process.env, MODELGATE_LOG_LEVEL: 'warn', OTEL_SDK_DISABLED: 'true' },
})
let serverErr = ''
server.stderr.on('data', (b: Buffer) => (serverErr += b))
const cleanup = () => {
  server.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
}
process.once('exit', cleanup)

const client = connectExtProc(`unix://${socket}`)
for (let i = 0; i < 100; i++) {
  try {
    await client.open().exchange(msg.requestHeaders({ ':method': 'GET', ':path': '/healthz' }), 200)
    break
  } catch {
    if (server.exitCode !== null) throw new Error(`server exited:\n${serverErr}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const { pki } = await sharedTestPki()
const pem = readFileSync(pki.identities.checkout.cert, 'utf8')
const attributes = mtlsAttributes(pem, pki.identities.checkout.spiffeId)
// A realistic prompt with one e-mail address to redact, padded to the requested size.
const filler = 'The quarterly numbers look fine; please summarise the notes below for the team. '
const content = `Contact jane.doe@example.org about the refund. ${filler.repeat(Math.max(1, Math.round((bodyKib * 1024) / filler.length)))}`
const requestBody = JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 256, messages: [{ role: 'user', content }] })
const responseBody = JSON.stringify({ id: 'c', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'Here is the summary.' }, finish_reason: 'stop' }], usage: { prompt_tokens: 300, completion_tokens: 5 } })

async function oneRequest(n: number): Promise<number> {
  const t0 = process.hrtime.bigint()
  const s = client.open()
  const h = await s.exchange(
    msg.requestHeaders(
      { ':method': 'POST', ':path': '/v1/chat/completions', ':authority': 'gateway', 'content-type': 'application/json', 'content-length': String(requestBody.length), 'x-request-id': `bench-${n}` },
      { attributes },
    ),
  )
  if (h.immediate_response) throw new Error(`denied at headers: ${h.immediate_response.body}`)
  const b = await s.exchange(msg.requestBody(requestBody))
  if (b.immediate_response) throw new Error(`denied at body: ${b.immediate_response.body}`)
  await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))
  await s.exchange(msg.responseBody(responseBody))
  await s.end()
  return Number(process.hrtime.bigint() - t0) / 1e6
}

/** CPU time (user + system) the server process has used, in ms, from /proc. */
function serverCpuMs(): number {
  const fields = readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  // utime and stime are fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

async function level(concurrency: number): Promise<string> {
  // Warm-up: JIT, caches.
  for (let i = 0; i < 200; i++) await oneRequest(-i)
  const latencies: number[] = []
  let next = 0
  const cpu0 = serverCpuMs()
  const t0 = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) latencies.push(await oneRequest(next++))
    }),
  )
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpuPerRequest = (serverCpuMs() - cpu0) / total
  latencies.sort((a, b) => a - b)
  return `| ${concurrency} | ${total} | ${(total / seconds).toFixed(0)} | ${pct(latencies, 50).toFixed(2)} | ${pct(latencies, 90).toFixed(2)} | ${pct(latencies, 99).toFixed(2)} | ${cpuPerRequest.toFixed(3)} | ${(1000 / cpuPerRequest).toFixed(0)} |`
}

console.log(`# ext_proc round trip: ${cpus().length} × ${cpus()[0]?.model}, Node ${process.version}, request body ${requestBody.length} bytes\n`)
console.log('| concurrency | requests | requests/s | p50 ms | p90 ms | p99 ms | server CPU ms/request | requests/s per server core |')
console.log('|---|---|---|---|---|---|---|---|')
for (const c of levels) console.log(await level(c))
client.close()
server.kill('SIGTERM')
