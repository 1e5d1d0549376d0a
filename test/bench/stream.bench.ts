/**
 * Streaming redaction cost: CPU time the SSE redactor spends on a streamed
 * answer, per MB of answer text, at growing sizes (time must grow linearly
 * with the answer, not with its square). Each delta is one OpenAI chat chunk
 * event, pushed as it would arrive from Envoy; every built-in detector is on.
 *
 *   node test/bench/stream.bench.ts          # prints a Markdown table
 *
 * Scenarios: a PEM private-key block streamed in 4-byte deltas (a long match
 * whose opening marker stays open for the whole block), a JWT in 4-byte
 * deltas (a marker without a close marker), and a long mixed answer in
 * 20-byte deltas.
 */
import { generateKeyPairSync } from 'node:crypto'
import { cpus, loadavg } from 'node:os'
import { compileRedaction, redactionConfigFrom } from '../../src/redaction/engine.ts'
import { PlaceholderBook } from '../../src/redaction/placeholders.ts'
import { SseRedactor } from '../../src/redaction/stream.ts'
import { mixedText } from '../fixtures/redaction/corpus.ts'

const engine = compileRedaction(redactionConfigFrom({}))

function event(content: string): Buffer {
  const chunk = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, finish_reason: null }] }
  return Buffer.from(`data: ${JSON.stringify(chunk)}\n\n`)
}

/** The answer cut into deltas of `size` characters, one SSE event each. */
function events(answer: string, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < answer.length; i += size) out.push(event(answer.slice(i, i + size)))
  out.push(Buffer.from('data: [DONE]\n\n'))
  return out
}

/** CPU milliseconds to redact the whole stream (best of `runs`), and the findings. */
function run(stream: readonly Buffer[], runs: number): { cpuMs: number; findings: number; maxPushMs: number } {
  let best = Infinity
  let findings = 0
  let maxPushMs = 0
  for (let r = 0; r < runs; r++) {
    let n = 0
    const redactor = new SseRedactor({
      scanner: engine.scanner,
      subject: undefined,
      book: new PlaceholderBook(),
      restore: false,
      action: () => 'redact',
      onDetection: () => void n++,
    })
    let worst = 0
    const c0 = process.cpuUsage()
    for (let i = 0; i < stream.length; i++) {
      const t = performance.now()
      redactor.push(stream[i]!, i === stream.length - 1)
      worst = Math.max(worst, performance.now() - t)
    }
    const c = process.cpuUsage(c0)
    best = Math.min(best, (c.user + c.system) / 1000)
    findings = n
    maxPushMs = worst
  }
  return { cpuMs: best, findings, maxPushMs }
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 4096 })
const pemBase = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
/** A PEM block of about `bytes` bytes (the real key's body repeated to size). */
function pem(bytes: number): string {
  const lines = pemBase.split('\n').filter((l) => l && !l.startsWith('-----'))
  const body: string[] = []
  let size = 0
  for (let i = 0; size < bytes - 60; i++) {
    const l = lines[i % lines.length]!
    body.push(l)
    size += l.length + 1
  }
  return `-----BEGIN PRIVATE KEY-----\n${body.join('\n')}\n-----END PRIVATE KEY-----`
}
function jwt(bytes: number): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64url')
  const payload = b64(JSON.stringify({ sub: '1234567890', data: 'x'.repeat(Math.max(0, Math.floor(((bytes - 80) * 3) / 4) - 30)) }))
  return `${b64('{"alg":"HS256","typ":"JWT"}')}.${payload}.${b64('signature-bytes-for-the-bench')}`
}

const lines: string[] = []
const out = (s = '') => lines.push(s)
out(`Node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} vCPUs, load average at start ${loadavg()[0]!.toFixed(1)}; CPU time of this process, best of the runs.`)
out()
out('| scenario | answer | deltas | CPU ms | ms per MB | slowest push ms | findings |')
out('|---|---:|---:|---:|---:|---:|---:|')
const scenarios: { name: string; answer: (size: number) => string; delta: number; sizes: number[] }[] = [
  { name: 'PEM block, 4-byte deltas', answer: (n) => `Here is the key:\n${pem(n)}\nKeep it safe.`, delta: 4, sizes: [4096, 8192, 16384] },
  { name: 'JWT, 4-byte deltas', answer: (n) => `token: ${jwt(n)} done`, delta: 4, sizes: [2048, 4096, 8192] },
  { name: 'mixed answer, 20-byte deltas', answer: (n) => mixedText(n), delta: 20, sizes: [256 * 1024, 512 * 1024, 1024 * 1024] },
]
for (const s of scenarios) {
  for (const size of s.sizes) {
    const answer = s.answer(size)
    const stream = events(answer, s.delta)
    const runs = size >= 512 * 1024 ? 2 : 3
    const m = run(stream, runs)
    const mb = Buffer.byteLength(answer) / 1048576
    out(`| ${s.name} | ${(Buffer.byteLength(answer) / 1024).toFixed(0)} KiB | ${stream.length - 1} | ${m.cpuMs.toFixed(0)} | ${(m.cpuMs / mb).toFixed(0)} | ${m.maxPushMs.toFixed(1)} | ${m.findings} |`)
  }
}
console.log(lines.join('\n'))
