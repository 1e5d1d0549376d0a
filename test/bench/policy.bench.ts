/**
 * Policy decision benchmark: latency (p50/p99) and decisions per second of
 * PolicyEngine.decide for generated policy sets of 10, 100 and 1000
 * policies, in three scenarios:
 *
 * - hit: the same request again and again (cache on);
 * - miss: a different request every time with the cache off, so every
 *   decision goes to Cedar (the policy slice it needs is warm). Two callers:
 *   team-0, whose policies are permits on a tenant condition (decided by the
 *   slice index; Cedar validates the request), and team-4, whose policies
 *   are token limits Cedar evaluates — 1, 2 and 20 of them at 10, 100 and
 *   1000 policies;
 * - traffic: a seeded mix shaped like real traffic — ten teams' workloads,
 *   token budgets from 1 to 8192, arrival times spread over a week, some
 *   bodies with personal data (which also asks send_unredacted) — with the
 *   cache on, reporting the share of decisions answered from the cache.
 *
 * Each decision is the whole stage path (facts → slice → Cedar call with its
 * entities → statefulIsAuthorized → decision), not just Cedar.
 *
 *   node test/bench/policy.bench.ts [--sizes 10,100,1000] [--iterations 20000] [--miss-iterations 3000] [--traffic 20000]
 *
 * Not a test: it asserts nothing and is not run by `npm test`. Results are
 * recorded in test/bench/results/policy.md.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PolicyEngine } from '../../src/policy/engine.ts'
import { factsFromDescription, type RequestDescription, type RequestFacts } from '../../src/policy/request.ts'

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10,100,1000' },
    iterations: { type: 'string', default: '20000' },
    'miss-iterations': { type: 'string', default: '3000' },
    traffic: { type: 'string', default: '20000' },
  },
})
const sizes = values.sizes.split(',').map(Number)
const hitIterations = Number(values.iterations)
const missIterations = Number(values['miss-iterations'])
const trafficRequests = Number(values.traffic)
const SCHEMA = readFileSync(join(import.meta.dirname, '..', '..', 'policies', 'modelgate.cedarschema'), 'utf8')
const TEAMS = 50

/**
 * A policy set shaped like a real one grown large: per-team model permits
 * with conditions on tenant, per-team tool permits, data-class forbids and
 * per-team token limits by hour. The benchmark caller is in team-0, so some
 * permits match.
 */
function generate(n: number): { policies: string; entities: unknown[] } {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const team = `team-${i % TEAMS}`
    switch (i % 5) {
      case 0:
      case 1:
        out.push(`@id("p${i}-models")\n@owner("${team}@example.com")\npermit (\n  principal in ModelGate::Team::"${team}",\n  action in ModelGate::Action::"generate",\n  resource in ModelGate::ModelGroup::"catalogue-${i % 7}"\n)\nwhen { context.tenant == "" || context.tenant == "tenant-${i}" };`)
        break
      case 2:
        out.push(`@id("p${i}-tools")\n@owner("${team}@example.com")\npermit (\n  principal in ModelGate::Team::"${team}",\n  action == ModelGate::Action::"call_tool",\n  resource in ModelGate::ToolServer::"server-${i % 11}"\n);`)
        break
      case 3:
        out.push(`@id("p${i}-data")\n@owner("security@example.com")\nforbid (principal, action, resource)\nwhen { context.dataClasses.contains("class-${i}") };`)
        break
      default:
        out.push(`@id("p${i}-limit")\n@owner("finops@example.com")\nforbid (principal in ModelGate::Team::"${team}", action in ModelGate::Action::"generate", resource)\nwhen { context has maxTokens && context.maxTokens > ${4096 + i} && context.utcHour < ${i % 24} };`)
    }
  }
  const entities: unknown[] = []
  for (let t = 0; t < TEAMS; t++) {
    entities.push({ uid: { type: 'ModelGate::Team', id: `team-${t}` } })
    entities.push({ uid: { type: 'ModelGate::Namespace', id: `ns-${t}` }, parents: [{ type: 'ModelGate::Team', id: `team-${t}` }] })
  }
  for (let c = 0; c < 7; c++) entities.push({ uid: { type: 'ModelGate::ModelGroup', id: `catalogue-${c}` } })
  entities.push({ uid: { type: 'ModelGate::Model', id: 'openai/gpt-4o-mini' }, parents: [0, 1, 2, 3, 4, 5, 6].map((c) => ({ type: 'ModelGate::ModelGroup', id: `catalogue-${c}` })) })
  return { policies: out.join('\n\n') + '\n', entities }
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!
}

interface Measured {
  perSecond: number
  p50: number
  p99: number
  allowed: number
  cached: number
}

function measure(engine: PolicyEngine, next: (i: number) => RequestFacts, iterations: number, warmup = Math.min(2000, iterations)): Measured {
  for (let i = 0; i < warmup; i++) engine.decide(next(i + 1_000_000))
  const lat = new Float64Array(iterations)
  let allowed = 0
  let cached = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) {
    const f = next(i)
    const t0 = process.hrtime.bigint()
    const r = engine.decide(f)
    lat[i] = Number(process.hrtime.bigint() - t0) / 1000
    if (r.decision.effect === 'allow') allowed++
    if (r.decision.cached) cached++
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  lat.sort()
  return { perSecond: iterations / seconds, p50: percentile(lat, 50), p99: percentile(lat, 99), allowed, cached }
}

/** A small seeded PRNG (mulberry32), so every run sees the same traffic. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WEEK_START = Date.parse('2025-01-06T00:00:00Z')

/** The traffic mix: request i of a fixed, seeded sequence. */
function trafficRequest(random: () => number): RequestFacts {
  const team = Math.floor(random() * 10)
  const roll = random()
  const d: RequestDescription = {
    principal: `spiffe://bench.local/ns/ns-${team}/sa/app-${Math.floor(random() * 3)}`,
    model: 'gpt-4o-mini',
    maxTokens: 1 + Math.floor(random() * 8192),
    tenant: random() < 0.9 ? '' : `tenant-${team}`,
    dataClasses: roll < 0.8 ? [] : roll < 0.97 ? ['pii'] : ['class-3'],
    time: new Date(WEEK_START + Math.floor(random() * 7 * 24 * 3600 * 1000)).toISOString(),
  }
  return factsFromDescription(d).facts
}

const rows: string[] = []
const traffic: string[] = []
const load0 = loadavg()
for (const n of sizes) {
  const dir = mkdtempSync(join(tmpdir(), 'modelgate-policy-bench-'))
  try {
    const g = generate(n)
    writeFileSync(join(dir, 'modelgate.cedarschema'), SCHEMA)
    writeFileSync(join(dir, 'policies.cedar'), g.policies)
    writeFileSync(join(dir, 'entities.json'), JSON.stringify(g.entities))
    const t0 = process.hrtime.bigint()
    const cached = new PolicyEngine({ dir, cacheSize: 100_000 })
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6
    const uncached = new PolicyEngine({ dir, cacheSize: 0 })
    if (uncached.policies.size !== n) throw new Error(`expected ${n} policies, loaded ${uncached.policies.size}`)
    const base = factsFromDescription({ principal: 'spiffe://bench.local/ns/ns-0/sa/app', model: 'gpt-4o-mini', maxTokens: 1024, tools: [] }).facts
    // Hit: the same request every time. Miss: no cache, and a different request each time.
    const hit = measure(cached, () => base, hitIterations)
    const miss = measure(uncached, (i) => ({ ...base, maxTokens: 1 + (i % 4000), clientApp: `app-${i}` }), missIterations)
    if (hit.allowed !== hitIterations || miss.allowed !== missIterations) throw new Error('the benchmark request was denied')
    // Team 4 has no model permit, only token limits: denied, after Cedar evaluated its limits.
    const limited = { ...base, principal: { ...base.principal, spiffeId: 'spiffe://bench.local/ns/ns-4/sa/app', namespace: 'ns-4' }, maxTokens: 9000 }
    const evaluated = measure(uncached, (i) => ({ ...limited, maxTokens: 9000 + (i % 4000), clientApp: `app-${i}` }), missIterations)
    const limits = Array.from({ length: n }, (_, i) => i).filter((i) => i % 5 === 4 && i % TEAMS === 4).length
    rows.push(
      `| ${n} | ${loadMs.toFixed(0)} | ${Math.round(hit.perSecond).toLocaleString('en-US')} | ${hit.p50.toFixed(1)} | ${hit.p99.toFixed(1)} | ${Math.round(miss.perSecond).toLocaleString('en-US')} | ${miss.p50.toFixed(0)} | ${miss.p99.toFixed(0)} | ${limits} | ${evaluated.p50.toFixed(0)} | ${evaluated.p99.toFixed(0)} |`,
    )
    // Traffic: a fresh engine, the same seeded sequence for every size and run.
    const engine = new PolicyEngine({ dir, cacheSize: 100_000 })
    const random = prng(0x5eed)
    const tr = measure(engine, () => trafficRequest(random), trafficRequests, 0)
    traffic.push(
      `| ${n} | ${trafficRequests.toLocaleString('en-US')} | ${((100 * tr.cached) / trafficRequests).toFixed(1)} % | ${((100 * tr.allowed) / trafficRequests).toFixed(1)} % | ${Math.round(tr.perSecond).toLocaleString('en-US')} | ${tr.p50.toFixed(1)} | ${tr.p99.toFixed(0)} | ${engine.cacheEntries.toLocaleString('en-US')} |`,
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const cpu = cpus()[0]?.model ?? 'unknown CPU'
const load1 = loadavg()
process.stdout.write(
  [
    `Node ${process.version}, ${cpus().length} × ${cpu}; load average ${load0[0]!.toFixed(2)} at start, ${load1[0]!.toFixed(2)} at end`,
    `hit: ${hitIterations} decisions of one request; miss: ${missIterations} distinct requests with the cache off, for team-0 and for team-4 (its token limits evaluated); traffic: ${trafficRequests} requests of the seeded mix, cache on`,
    '',
    '| policies | load (ms) | hit decisions/s | hit p50 (µs) | hit p99 (µs) | miss decisions/s | miss p50 (µs) | miss p99 (µs) | team-4 limits | team-4 miss p50 (µs) | team-4 miss p99 (µs) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    '| policies | traffic requests | answered from cache | allowed | decisions/s | p50 (µs) | p99 (µs) | cache entries |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...traffic,
    '',
  ].join('\n'),
)
