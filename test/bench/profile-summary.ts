/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time per function and
 * per area (grpc-js, HTTP/2 and streams, audit, redaction, policy, GC…), as
 * shares of the busy time (idle excluded).
 *
 *   node test/bench/profile-summary.ts PROFILE.cpuprofile [--top 30] [--skip-s 5] [--inclusive] [--callers NAME]
 *
 * --skip-s leaves out start-up; --inclusive adds modelgate's functions with
 * their callees; --callers shows where a function's self time comes from.
 *
 * Not a test; used to write test/bench/results/profile.md.
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '30' }, callers: { type: 'string' }, inclusive: { type: 'boolean' }, 'skip-s': { type: 'string', default: '0' } }, allowPositionals: true })
const top = Number(values.top)

/** The area a frame belongs to, from its script URL and name. */
function area(cf: CallFrame): string {
  const u = cf.url
  const n = cf.functionName
  if (n === '(garbage collector)') return 'GC'
  if (n === '(program)') return 'V8/native (program)'
  if (u.includes('/@grpc/grpc-js/')) return 'grpc-js'
  if (u.includes('/protobufjs/') || u.includes('/@grpc/proto-loader/')) return 'protobuf'
  if (u.includes('/@opentelemetry/')) return 'OpenTelemetry SDK'
  if (u.includes('/@cedar-policy/')) return 'Cedar (wasm)'
  if (u.startsWith('wasm://')) return 'Cedar (wasm)'
  if (u.includes('/lru-cache/')) return 'policy'
  if (u.includes('/src/audit/')) return 'audit'
  if (u.includes('/src/redaction/')) return 'redaction'
  if (u.includes('/src/policy/')) return 'policy'
  if (u.includes('/src/identity/') || u.includes('/@peculiar/') || u.includes('/asn1') || u.includes('/pvtsutils/') || u.includes('/tslib/')) return 'identity'
  if (u.includes('/src/providers/') || u.includes('/src/json/') || u.includes('/src/inspection/')) return 'providers/inspection'
  if (u.includes('/src/server/') || u.includes('/src/pipeline/')) return 'server loop'
  if (u.includes('/src/')) return 'other modelgate'
  if (u.startsWith('node:internal/http2') || u.startsWith('node:http2')) return 'node http2'
  if (u.startsWith('node:internal/streams') || u.startsWith('node:stream')) return 'node streams'
  if (u.startsWith('node:internal/fs') || u.startsWith('node:fs')) return 'node fs'
  if (u.startsWith('node:internal/crypto') || u.startsWith('node:crypto')) return 'node crypto'
  if (u.startsWith('node:')) return 'node other'
  if (u === '') return n === '(idle)' || n === '(root)' ? n : 'builtins (no script)'
  return 'other'
}

const prof = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile
const byId = new Map(prof.nodes.map((n) => [n.id, n]))
// --skip-s N leaves out the first N seconds (start-up: module loading, policy compilation).
const skipUs = Number(values['skip-s']) * 1e6
const self = new Map<number, number>()
let elapsed = 0
for (let i = 0; i < prof.samples.length; i++) {
  elapsed += prof.timeDeltas[i] ?? 0
  if (elapsed < skipUs) continue
  self.set(prof.samples[i]!, (self.get(prof.samples[i]!) ?? 0) + (prof.timeDeltas[i] ?? 0))
}

const fns = new Map<string, number>()
const areas = new Map<string, number>()
let busy = 0
let idle = 0
for (const [id, us] of self) {
  const cf = byId.get(id)!.callFrame
  if (cf.functionName === '(idle)') {
    idle += us
    continue
  }
  busy += us
  const short = cf.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|test)\//, '$1/')
  const key = `${cf.functionName || '(anonymous)'} ${short}${cf.url ? `:${cf.lineNumber + 1}` : ''}`
  fns.set(key, (fns.get(key) ?? 0) + us)
  const a = area(cf)
  areas.set(a, (areas.get(a) ?? 0) + us)
}
const pct = (us: number) => ((100 * us) / busy).toFixed(1)
console.log(`busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s (${((100 * idle) / (busy + idle)).toFixed(0)} % idle)\n`)
console.log('| area | self % of busy |\n|---|---:|')
for (const [a, us] of [...areas].sort((x, y) => y[1] - x[1])) console.log(`| ${a} | ${pct(us)} |`)
console.log(`\n| function | self % of busy |\n|---|---:|`)
for (const [f, us] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`| \`${f}\` | ${pct(us)} |`)

// --callers NAME: where the self time of functions named NAME comes from (the three frames above).
const callersOf = process.argv.indexOf('--callers')
if (callersOf > 0) {
  const name = process.argv[callersOf + 1]!
  const parent = new Map<number, number>()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const stacks = new Map<string, number>()
  for (const [id, us] of self) {
    if (byId.get(id)!.callFrame.functionName !== name) continue
    const path: string[] = []
    let p = parent.get(id)
    for (let i = 0; i < 4 && p !== undefined; i++, p = parent.get(p)) {
      const cf = byId.get(p)!.callFrame
      path.push(`${cf.functionName || '(anonymous)'}@${cf.url.replace(/^.*\//, '')}:${cf.lineNumber + 1}`)
    }
    const key = path.join(' < ')
    stacks.set(key, (stacks.get(key) ?? 0) + us)
  }
  console.log(`\ncallers of ${name}:`)
  for (const [k, us] of [...stacks].sort((x, y) => y[1] - x[1]).slice(0, 12)) console.log(`${pct(us).padStart(5)} %  ${k}`)
}

// --inclusive: total time (self and callees) of modelgate's own functions, recursion counted once.
if (process.argv.includes('--inclusive')) {
  const parent = new Map<number, number>()
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const key = (cf: CallFrame) => `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^file:\/\/.*?\/(src|test)\//, '$1/')}:${cf.lineNumber + 1}`
  const incl = new Map<string, number>()
  for (const [id, us] of self) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue
    const seen = new Set<string>()
    for (let p: number | undefined = id; p !== undefined; p = parent.get(p)) {
      const cf = byId.get(p)!.callFrame
      if (!cf.url.includes('/src/')) continue
      const k = key(cf)
      if (seen.has(k)) continue
      seen.add(k)
      incl.set(k, (incl.get(k) ?? 0) + us)
    }
  }
  console.log(`\n| modelgate function | inclusive % of busy |\n|---|---:|`)
  for (const [k, us] of [...incl].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`| \`${k}\` | ${pct(us)} |`)
}
