/**
 * Policy decision benchmark: decisions per second and latency (p50/p99) of
 * PolicyEngine.decide on a cache hit and a cache miss, for generated policy
 * sets of 10, 100 and 1000 policies. Each decision is the whole stage path
 * (facts → Cedar call with entities → statefulIsAuthorized → decision), not
 * just Cedar.
 *
 *   node test/bench/policy.bench.ts [--sizes 10,100,1000] [--iterations 20000] [--miss-iterations 3000]
 *
 * Not a test: it asserts nothing and is not run by `npm test`. Results are
 * recorded in test/bench/results/policy.md.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PolicyEngine } from '../../src/policy/engine.ts'
import { factsFromDescription, type RequestFacts } from '../../src/policy/request.ts'

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '10,100,1000' }, iterations: { type: 'string', default: '20000' }, 'miss-iterations': { type: 'string', default: '3000' } },
})
const sizes = values.sizes.split(',').map(Number)
const hitIterations = Number(values.iterations)
const missIterations = Number(values['miss-iterations'])
const SCHEMA = readFileSync(join(import.meta.dirname, '..', '..', 'policies', 'modelgate.cedarschema'), 'utf8')
const TEAMS = 50

/**
 * A policy set shaped like a real one grown large: per-team model permits
 * with conditions on tenant and budget, per-team tool permits, data-class
 * forbids and limits. The caller is in team-0, so its permits match.
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

function measure(engine: PolicyEngine, next: (i: number) => RequestFacts, iterations: number) {
  for (let i = 0; i < Math.min(2000, iterations); i++) engine.decide(next(i + 1_000_000))
  const lat = new Float64Array(iterations)
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) {
    const f = next(i)
    const t0 = process.hrtime.bigint()
    const r = engine.decide(f)
    lat[i] = Number(process.hrtime.bigint() - t0) / 1000
    if (r.decision.effect !== 'allow') throw new Error(`unexpected deny: ${JSON.stringify(r.decision)}`)
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  lat.sort()
  return { perSecond: iterations / seconds, p50: percentile(lat, 50), p99: percentile(lat, 99) }
}

const rows: string[] = []
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
    const base = factsFromDescription({ principal: 'spiffe://bench.local/ns/ns-0/sa/app', model: 'gpt-4o-mini', maxTokens: 1024, dataClasses: ['pii'], tools: [] }).facts
    // Hit: the same request every time. Miss: no cache, and a different request each time.
    const hit = measure(cached, () => base, hitIterations)
    const miss = measure(uncached, (i) => ({ ...base, maxTokens: 1 + (i % 4000), clientApp: `app-${i}` }), missIterations)
    if (uncached.policies.size !== n) throw new Error(`expected ${n} policies, loaded ${uncached.policies.size}`)
    rows.push(
      `| ${n} | ${loadMs.toFixed(0)} | ${Math.round(hit.perSecond).toLocaleString('en-US')} | ${hit.p50.toFixed(1)} | ${hit.p99.toFixed(1)} | ${Math.round(miss.perSecond).toLocaleString('en-US')} | ${miss.p50.toFixed(0)} | ${miss.p99.toFixed(0)} |`,
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const cpu = cpus()[0]?.model ?? 'unknown CPU'
process.stdout.write(
  [
    `Node ${process.version}, ${cpus().length} × ${cpu}`,
    `hit: ${hitIterations} decisions of one request; miss: ${missIterations} distinct requests with the cache off`,
    '',
    '| policies | load (ms) | hit decisions/s | hit p50 (µs) | hit p99 (µs) | miss decisions/s | miss p50 (µs) | miss p99 (µs) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
  ].join('\n'),
)
