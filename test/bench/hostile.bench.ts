/**
 * One request must not hurt the others: ordinary callers' latency through
 * real Envoy, with and without a hostile caller sending, back to back, a
 * 60 KiB body of nested `[` and a 1 MiB body of 200,000 tiny strings (and,
 * in a third run, legitimate 1 MiB prompts that are parsed and scanned in the
 * worker pool). modelgate runs in its own process, launched as the container
 * image launches it, so its memory is its own.
 *
 *   node test/bench/hostile.bench.ts [--seconds 15] [--rate 50] [--attack-rate 5] [--write]
 *
 * Prints, per run: the ordinary requests' p50/p90/p99 and errors, what the
 * hostile caller got back, and modelgate's peak RSS. --write records the
 * result in test/bench/results/hostile.md. A benchmark, not a test.
 */
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { checkHealth } from '../../src/cli/health.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { imageLaunch } from '../helpers/image.ts'
import { stopProcess } from '../../src/dev/process.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '15' }, rate: { type: 'string', default: '50' }, 'attack-rate': { type: 'string', default: '5' }, write: { type: 'boolean', default: false } },
})
const SECONDS = Number(values.seconds)
const RATE = Number(values.rate)
/** Attacking requests per second (0: back to back). */
const ATTACK_RATE = Number(values['attack-rate'])
const MODEL = 'gpt-4o-mini'

const deep = '['.repeat(60 * 1024)
const tiny = `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"metadata":[${Array.from({ length: 200_000 }, () => '"ab"').join(',')}]}`
const words = 'the quarterly report shows revenue growth across every region and the team expects further gains next year '
const large = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: words.repeat(Math.floor((1 << 20) / words.length) - 2) }] })

type Attack = 'none' | 'hostile' | 'large'

interface RunResult {
  readonly attack: Attack
  readonly ordinary: { count: number; errors: number; p50: number; p90: number; p99: number }
  readonly attacker: Record<string, number>
  readonly peakRssMb: number
}

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN)

async function run(stack: Stack, pid: number, attack: Attack): Promise<RunResult> {
  const rss = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024
  let peak = rss()
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20)
  const until = Date.now() + SECONDS * 1000
  const attacker: Record<string, number> = {}
  const attacking = (async () => {
    if (attack === 'none') return
    const bodies = attack === 'hostile' ? [deep, tiny] : [large]
    const t0 = performance.now()
    for (let i = 0; Date.now() < until; i++) {
      if (ATTACK_RATE > 0) {
        const wait = t0 + (i * 1000) / ATTACK_RATE - performance.now()
        if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      }
      const res = await stack.request('checkout', { path: '/v1/chat/completions', body: bodies[i % bodies.length]! }).catch(() => ({ status: 0, headers: {} as Record<string, unknown> }))
      const key = `${res.status} ${res.headers['x-modelgate-error'] ?? ''}`.trim()
      attacker[key] = (attacker[key] ?? 0) + 1
    }
  })()
  // Open loop: one ordinary request every 1/RATE s, latency from the time it was due.
  const latencies: number[] = []
  let errors = 0
  const pending: Promise<void>[] = []
  const start = performance.now()
  for (let i = 0; ; i++) {
    const due = start + (i * 1000) / RATE
    if (Date.now() >= until) break
    const wait = due - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    pending.push(
      stack
        .request('notebook', { path: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'ordinary question' }] } })
        .then((res) => {
          if (res.status !== 200) errors++
          latencies.push(performance.now() - due)
        })
        .catch(() => void errors++),
    )
  }
  await Promise.all(pending)
  await attacking
  clearInterval(sampler)
  latencies.sort((a, b) => a - b)
  return {
    attack,
    ordinary: { count: latencies.length, errors, p50: pct(latencies, 50), p90: pct(latencies, 90), p99: pct(latencies, 99) },
    attacker,
    peakRssMb: peak,
  }
}

const stack = await startStack({ withoutModelgate: true })
const configFile = join(stack.dir, 'modelgate.json')
await writeFile(configFile, JSON.stringify(stack.configObject))
const image = imageLaunch()
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS'))
// Extra node flags for modelgate (e.g. HOSTILE_BENCH_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof").
const extraFlags = (process.env.HOSTILE_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)
const child = spawn(process.execPath, [...image.nodeFlags, ...extraFlags, join(REPO_ROOT, 'bin/modelgate.js'), 'serve', '--config', configFile], {
  env: { ...env, ...image.env, MODELGATE_LOG_LEVEL: 'error' },
  stdio: ['ignore', 'ignore', 'inherit'],
})
const results: RunResult[] = []
try {
  const ready = Date.now() + 30_000
  while ((await checkHealth(`unix://${stack.socket}`, 500).catch(() => 'UNREACHABLE')) !== 'SERVING') {
    if (Date.now() > ready || child.exitCode !== null) throw new Error('modelgate did not start')
    await new Promise((r) => setTimeout(r, 100))
  }
  const load0 = loadavg()
  // Warm-up, then the three runs.
  await run(stack, child.pid!, 'none')
  for (const attack of ['none', 'hostile', 'large'] as const) {
    const r = await run(stack, child.pid!, attack)
    results.push(r)
    const o = r.ordinary
    console.log(
      `${attack.padEnd(8)} ordinary: ${o.count} requests, ${o.errors} errors, p50 ${o.p50.toFixed(2)} ms, p90 ${o.p90.toFixed(2)} ms, p99 ${o.p99.toFixed(2)} ms; attacker: ${JSON.stringify(r.attacker)}; peak RSS ${r.peakRssMb.toFixed(0)} MB`,
    )
  }
  const load1 = loadavg()
  if (values.write) {
    const base = results[0]!.ordinary.p99
    const rows = results.map((r) => {
      const o = r.ordinary
      const attacker = Object.entries(r.attacker)
        .map(([k, n]) => `${n} × ${k}`)
        .join(', ') || '–'
      return `| ${r.attack} | ${o.count} | ${o.errors} | ${o.p50.toFixed(2)} | ${o.p90.toFixed(2)} | ${o.p99.toFixed(2)} | ${(o.p99 / base).toFixed(2)}× | ${attacker} | ${r.peakRssMb.toFixed(0)} |`
    })
    writeFileSync(
      join(REPO_ROOT, 'test/bench/results/hostile.md'),
      [
        '# One request must not hurt the others',
        '',
        `Recorded ${new Date().toISOString().slice(0, 10)} with \`node test/bench/hostile.bench.ts --seconds ${SECONDS} --rate ${RATE} --attack-rate ${ATTACK_RATE} --write\`.`,
        '',
        `- Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; Node ${process.version}; Envoy 1.40.`,
        `- Load average before / after: ${load0.map((l) => l.toFixed(2)).join(' ')} / ${load1.map((l) => l.toFixed(2)).join(' ')}.`,
        `- modelgate runs in its own process as the container image runs it (${image.nodeFlags.join(' ')}; ${Object.entries(image.env).map(([k, v]) => `${k}=${v}`).join(' ')}), behind the local stack's Envoy.`,
        `- Ordinary caller: ${RATE} chat requests/s, open loop (latency from the time each was due), for ${SECONDS} s per run.`,
        `- Attacks from a second caller, ${ATTACK_RATE > 0 ? `${ATTACK_RATE} per second` : 'back to back'}, for the whole run: ` + '**hostile** = a 60 KiB body of nested `[` and a 1 MiB body of 200,000 tiny strings, alternately; **large** = legitimate 1 MiB prompts (parsed and scanned in the worker pool).',
        '',
        '| attack | ordinary requests | errors | p50 ms | p90 ms | p99 ms | p99 vs none | attacker got | peak RSS MB |',
        '|---|---:|---:|---:|---:|---:|---:|---|---:|',
        ...rows,
        '',
      ].join('\n'),
    )
  }
} finally {
  await stopProcess(child, 5000)
  await stack.close()
}
