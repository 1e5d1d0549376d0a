import t, { type Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { createAuditStage } from '../../../src/audit/stage.ts'
import { parseTime, run } from '../../../src/cli/audit.ts'
import type { CliIO } from '../../../src/cli/io.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { GateError } from '../../../src/errors.ts'
import { allowedContext, deniedContext, drive, memoryLogger, SECRET, tempDir, testConfig } from './fixtures.ts'
import { loadAuditExporters } from '../../../src/audit/exporters.ts'

// Every exporter this file's audit stages may be configured with.
await loadAuditExporters()

interface Captured {
  io: CliIO
  out(): string
  err(): string
}

function capture(env: Record<string, string> = {}): Captured {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (c: Buffer) => (out += c.toString()))
  stderr.on('data', (c: Buffer) => (err += c.toString()))
  return { io: { stdout, stderr, stdin: new PassThrough(), cwd: process.cwd(), env }, out: () => out, err: () => err }
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const c = capture(env)
  const code = await run(args, c.io)
  return { code, out: c.out(), err: c.err() }
}

/** An audit file with a few requests from two identities, written by the real stage. */
async function auditFile(t: Test): Promise<string> {
  const dir = tempDir(t)
  const file = join(dir, 'audit.jsonl')
  const audit = createAuditStage(testConfig({ file, stageSpans: true }), { logger: memoryLogger(), env: {} })
  drive(audit.stage, allowedContext({ id: 'r1', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }))
  drive(audit.stage, allowedContext({ id: 'r2' }))
  drive(audit.stage, deniedContext('MG_POLICY_DENIED', { id: 'r3' }))
  drive(audit.stage, allowedContext({ id: 'r4', spiffe: 'spiffe://example.org/ns/search/sa/indexer' }))
  drive(audit.stage, deniedContext('MG_DATA_BLOCKED', { id: 'r5', details: { data_classes: ['secret.cloud_key'] } }))
  const early = new RequestContext()
  early.id = 'r6'
  early.denial = new GateError('MG_IDENTITY_MISSING')
  drive(audit.stage, early)
  await audit.shutdown()
  return file
}

function lines(file: string): string[] {
  return readFileSync(file, 'utf8').trim().split('\n')
}

/** Index of the root record line of request `id`. */
function lineOf(file: string, id: string): number {
  return lines(file).findIndex((l) => JSON.parse(l).attributes['modelgate.request.id'] === id && 'modelgate.audit.seq' in JSON.parse(l).attributes)
}

t.test('show tells one request: who, which data, which model, which policy, what happened', async (t) => {
  const file = await auditFile(t)
  const r = await cli(['show', 'r3', file])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /^request r3\n/)
  t.match(r.out, /  who       spiffe:\/\/example\.org\/ns\/payments\/sa\/checkout \(mtls\)\n/)
  t.match(r.out, /            on behalf of alice@example\.org \(subject alice, issuer https:\/\/idp\.example\.org\), groups payments, eng\n/)
  t.match(r.out, /  model     openai chat, gpt-4o-mini\n/)
  // Refused by policy before redaction applied: nothing was sent, nothing was redacted.
  t.match(r.out, /  data      pii\.email ×1 \(withheld: not sent, the request was refused\), secret\.cloud_key ×1 \(withheld: not sent, the request was refused\)\n/)
  t.match(r.out, /            detectors aws-access-key, email; redaction: withheld\n/)
  t.match(r.out, /  policy    deny by allow-payments-chat \(owner team-payments\), baseline; policy set ps-3af2; decision d-0001\n/)
  t.match(r.out, /  outcome   denied MG_POLICY_DENIED \(403\); nothing reached the model\n/)
  t.match(r.out, /  record    seq 3 of chain [0-9a-f-]{36}, hash [0-9a-f]{16}…\n/)
  t.notMatch(r.out, SECRET)
})

t.test('show tells what happened to each class: blocked, withheld, redacted or sent as is', async (t) => {
  const file = await auditFile(t)
  const blocked = await cli(['show', 'r5', file])
  t.match(blocked.out, /  data      pii\.email ×1 \(withheld: not sent, the request was refused\), secret\.cloud_key ×1 \(blocked\)\n/)
  t.match(blocked.out, /redaction: block\n/)
  t.match(blocked.out, /  outcome   denied MG_DATA_BLOCKED \(403\); nothing reached the model\n/)
  const allowed = await cli(['show', 'r1', file])
  // The fixture's address went out as is in the request and was redacted in the response.
  t.match(allowed.out, /  data      pii\.email ×2 \(redacted\), secret\.cloud_key ×1 \(redacted\)\n/)
  const json = JSON.parse((await cli(['summary', '--json', file])).out)
  t.same(json.dataClasses.find((c: { dataClass: string }) => c.dataClass === 'secret.cloud_key'), { dataClass: 'secret.cloud_key', detections: 5, requests: 5, blocked: 1, withheld: 1, redacted: 3, allowed: 0 })
})

t.test('show finds a request by trace id, and prints JSON on request', async (t) => {
  const file = await auditFile(t)
  const byTrace = await cli(['show', '4BF92F3577B34DA6A3CE929D0E0E4736', file])
  t.equal(byTrace.code, 0)
  t.match(byTrace.out, /^request r1\n/)
  t.match(byTrace.out, /model     openai chat, gpt-4o-mini → gpt-4o-mini-2024-07-18/)
  t.match(byTrace.out, /outcome   allowed; the model answered 200/)
  t.match(byTrace.out, /tokens    input 12, output 34/)
  const json = await cli(['show', 'r1', '--json', file])
  const parsed = JSON.parse(json.out) as { record: { attributes: Record<string, unknown> }; stages: unknown[] }[]
  t.equal(parsed.length, 1)
  t.equal(parsed[0]!.record.attributes['modelgate.request.id'], 'r1')
  t.ok(parsed[0]!.stages.length > 0, 'stage spans included')
})

t.test('show of an unknown request fails', async (t) => {
  const file = await auditFile(t)
  const r = await cli(['show', 'nope', file])
  t.equal(r.code, 1)
  t.match(r.err, /no record of request "nope" in 1 file/)
})

t.test('verify accepts an intact chain', async (t) => {
  const file = await auditFile(t)
  const r = await cli(['verify', file])
  t.equal(r.code, 0, r.out + r.err)
  t.match(r.out, /^chain [0-9a-f-]{36}: 7 records, seq 1\.\.7, closed cleanly, head [0-9a-f]{16}…\n/)
  t.match(r.out, /verify: OK \(1 chain, \d+ records read from 1 file\)\n$/)
})

t.test('verify detects a deleted record', async (t) => {
  const file = await auditFile(t)
  const all = lines(file)
  const i = lineOf(file, 'r3')
  writeFileSync(file, all.filter((_, j) => j !== i).join('\n') + '\n')
  const r = await cli(['verify', file])
  t.equal(r.code, 1)
  t.match(r.out, /  FAIL seq 3\.\.3: 1 record missing \(deleted or never delivered\)\n/)
  t.match(r.out, /verify: FAILED, 1 problem/)
})

t.test('verify detects an edited record', async (t) => {
  const file = await auditFile(t)
  const all = lines(file)
  const i = lineOf(file, 'r5')
  const rec = JSON.parse(all[i]!)
  // Hide that data was blocked: the kind of edit an insider would make.
  rec.attributes['modelgate.outcome'] = 'allowed'
  delete rec.attributes['modelgate.denial.code']
  all[i] = JSON.stringify(rec)
  writeFileSync(file, all.join('\n') + '\n')
  const r = await cli(['verify', file])
  t.equal(r.code, 1)
  t.match(r.out, /  FAIL seq 5: content does not match its hash \(record edited\)\n/)
})

t.test('verify detects a truncated file only with --require-end', async (t) => {
  const file = await auditFile(t)
  const all = lines(file)
  const end = all.findIndex((l) => JSON.parse(l).name === 'modelgate.audit.chain_end')
  writeFileSync(file, all.slice(0, end).join('\n') + '\n')
  const lenient = await cli(['verify', file])
  t.equal(lenient.code, 0)
  t.match(lenient.out, /open \(no chain-end record yet\)/)
  const strict = await cli(['verify', '--require-end', file])
  t.equal(strict.code, 1)
  t.match(strict.out, /FAIL no chain-end record after seq 6/)
})

t.test('verify --partial accepts a file that starts mid-chain', async (t) => {
  const file = await auditFile(t)
  const all = lines(file)
  writeFileSync(file, all.slice(lineOf(file, 'r2')).join('\n') + '\n')
  t.equal((await cli(['verify', file])).code, 1)
  t.equal((await cli(['verify', '--partial', file])).code, 0)
})

t.test('verify reports unreadable lines and empty input as failures', async (t) => {
  const file = await auditFile(t)
  writeFileSync(file, readFileSync(file, 'utf8') + '{"traceId": "torn\n')
  const torn = await cli(['verify', file])
  t.equal(torn.code, 1)
  t.match(torn.out, /FAIL .*audit\.jsonl:\d+: not JSON/)
  const dir = tempDir(t)
  writeFileSync(join(dir, 'empty.jsonl'), '')
  const empty = await cli(['verify', join(dir, 'empty.jsonl')])
  t.equal(empty.code, 1)
  t.match(empty.out, /FAIL no chained audit records in 1 file/)
})

t.test('verify --json reports machine-readable results', async (t) => {
  const file = await auditFile(t)
  const r = await cli(['verify', '--json', file])
  const v = JSON.parse(r.out) as { ok: boolean; chains: { records: number }[]; problems: unknown[] }
  t.equal(v.ok, true)
  t.equal(v.chains[0]!.records, 7)
  t.same(v.problems, [])
})

t.test('OTLP/JSON exports are read too: one request per line or one pretty document, plain or gzip', async (t) => {
  const file = await auditFile(t)
  const records = lines(file).map((l) => JSON.parse(l))
  const value = (v: unknown): unknown =>
    Array.isArray(v) ? { arrayValue: { values: v.map(value) } } : typeof v === 'string' ? { stringValue: v } : typeof v === 'boolean' ? { boolValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v }
  const otlp = (rs: typeof records) => ({
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'modelgate' } }] },
        scopeSpans: [
          {
            scope: { name: 'modelgate' },
            spans: rs.map((r) => ({
              traceId: r.traceId,
              spanId: r.spanId,
              ...(r.parentSpanId ? { parentSpanId: r.parentSpanId } : {}),
              name: r.name,
              kind: r.kind + 1,
              startTimeUnixNano: r.start,
              endTimeUnixNano: r.end,
              attributes: Object.entries(r.attributes).map(([key, v]) => ({ key, value: value(v) })),
              status: {},
            })),
          },
        ],
      },
    ],
  })
  const dir = tempDir(t)
  // A collector writes one export request per line; spread the records over three.
  const third = Math.ceil(records.length / 3)
  const jsonl = [0, 1, 2].map((i) => JSON.stringify(otlp(records.slice(i * third, (i + 1) * third)))).join('\n') + '\n'
  writeFileSync(join(dir, 'traces.jsonl'), jsonl)
  writeFileSync(join(dir, 'pretty.json'), JSON.stringify(otlp(records), null, 2))
  writeFileSync(join(dir, 'traces.jsonl.gz'), gzipSync(jsonl))
  for (const name of ['traces.jsonl', 'pretty.json', 'traces.jsonl.gz']) {
    const r = await cli(['verify', join(dir, name)])
    t.equal(r.code, 0, `${name}: ${r.out}${r.err}`)
    const show = await cli(['show', 'r5', join(dir, name)])
    t.match(show.out, /outcome   denied MG_DATA_BLOCKED \(403\)/, `${name}: show`)
  }
  // The same deletion is caught in the OTLP form.
  const without = records.filter((r) => r.attributes['modelgate.request.id'] !== 'r2' || !('modelgate.audit.seq' in r.attributes))
  writeFileSync(join(dir, 'cut.jsonl'), JSON.stringify(otlp(without)) + '\n')
  const cut = await cli(['verify', join(dir, 'cut.jsonl')])
  t.equal(cut.code, 1)
  t.match(cut.out, /seq 2\.\.2: 1 record missing/)
})

t.test('a spool directory is a source, and several sources are read together', async (t) => {
  const file = await auditFile(t)
  const dir = tempDir(t)
  const all = lines(file)
  writeFileSync(join(dir, 'seg-0000000000001-000000.jsonl'), JSON.stringify({ spool: 1, resource: {}, scope: { name: 'modelgate' } }) + '\n' + all.slice(0, 6).join('\n') + '\n')
  writeFileSync(join(dir, 'spool.lock'), '1')
  const rest = join(tempDir(t), 'rest.jsonl')
  writeFileSync(rest, all.slice(6).join('\n') + '\n')
  const r = await cli(['verify', dir, rest])
  t.equal(r.code, 0, r.out + r.err)
  t.match(r.out, /read from 2 files/)
})

t.test('summary counts outcomes, top identities, denials, data classes, models and policies', async (t) => {
  const file = await auditFile(t)
  const r = await cli(['summary', file])
  t.equal(r.code, 0, r.err)
  const out = r.out
  t.match(out, /^requests  6 from \S+ to \S+\n/)
  t.match(out, /outcomes  allowed 3, denied 3\n/)
  t.match(out, /tokens    input 36, output 102\n/)
  t.match(out, /top identities\n {8}4 {2}spiffe:\/\/example\.org\/ns\/payments\/sa\/checkout {2}\(2 denied\)\n {8}1 {2}\(no identity\) {2}\(1 denied\)\n {8}1 {2}spiffe:\/\/example\.org\/ns\/search\/sa\/indexer\n/)
  t.match(out, /denials by reason\n {8}1 {2}MG_DATA_BLOCKED\n {8}1 {2}MG_IDENTITY_MISSING\n {8}1 {2}MG_POLICY_DENIED\n/)
  // Denied requests count as blocked (r5, for its class) or withheld (r3, r5's other class), never as redacted.
  t.match(out, /data classes \(requests, detections\)\n {8}5 {2}pii\.email {2}8 detections {2}2 withheld, 3 redacted\n {8}5 {2}secret\.cloud_key {2}5 detections {2}1 blocked, 1 withheld, 3 redacted\n/)
  t.match(out, /models\n {8}5 {2}gpt-4o-mini\n/)
  t.match(out, /policies behind denials\n {8}1 {2}allow-payments-chat {2}\(owner team-payments\)\n {8}1 {2}baseline\n/)
  const json = JSON.parse((await cli(['summary', '--json', '--top', '1', file])).out)
  t.equal(json.requests, 6)
  t.same(json.identities, [{ identity: 'spiffe://example.org/ns/payments/sa/checkout', requests: 4, denied: 2 }])
})

t.test('summary windows by --since and --until', async (t) => {
  const file = await auditFile(t)
  const future = await cli(['summary', '--json', '--since', new Date(Date.now() + 3600e3).toISOString(), file])
  t.equal(JSON.parse(future.out).requests, 0)
  const past = await cli(['summary', '--json', '--until', '2000-01-01T00:00:00Z', file])
  t.equal(JSON.parse(past.out).requests, 0)
  const recent = await cli(['summary', '--json', '--since', '1h', file])
  t.equal(JSON.parse(recent.out).requests, 6)
})

t.test('times are ISO 8601 or an age', async (t) => {
  const now = Date.parse('2025-05-01T12:00:00Z')
  t.equal(parseTime('90s', now), now - 90e3)
  t.equal(parseTime('15m', now), now - 900e3)
  t.equal(parseTime('2h', now), now - 7200e3)
  t.equal(parseTime('7d', now), now - 7 * 86400e3)
  t.equal(parseTime('1w', now), now - 604800e3)
  t.equal(parseTime('2025-04-30T00:00:00Z', now), Date.parse('2025-04-30T00:00:00Z'))
  t.throws(() => parseTime('yesterday', now), { message: '"yesterday" is neither an ISO 8601 time nor an age like 15m, 2h, 7d' })
})

t.test('usage errors exit 2 with a message', async (t) => {
  const cases: { args: string[]; err: RegExp }[] = [
    { args: [], err: /usage: modelgate audit <command>/ },
    { args: ['frobnicate'], err: /unknown command "frobnicate"/ },
    { args: ['show'], err: /name the request id to show/ },
    { args: ['summary', '--since', 'yesterday', 'x'], err: /"yesterday" is neither/ },
    { args: ['summary', '--top', '0', 'x'], err: /--top must be an integer from 1 to 10000/ },
    { args: ['verify'], err: /name a SOURCE/ },
    { args: ['verify', '--bogus'], err: /Unknown option '--bogus'/ },
  ]
  for (const c of cases) {
    const r = await cli(c.args)
    t.equal(r.code, 2, c.args.join(' '))
    t.match(r.err, c.err, c.args.join(' '))
  }
  const help = await cli(['--help'])
  t.equal(help.code, 0)
  t.match(help.out, /modelgate audit verify \/var\/log\/modelgate\/audit\.jsonl/)
})

t.test('a missing source is reported', async (t) => {
  const r = await cli(['verify', '/nonexistent/audit.jsonl'])
  t.equal(r.code, 1)
  t.match(r.out, /FAIL \/nonexistent\/audit\.jsonl: cannot read: ENOENT/)
})

t.test('without a source, the configuration names the file and the spool', async (t) => {
  const file = await auditFile(t)
  const dir = tempDir(t)
  const cfg = join(dir, 'modelgate.yaml')
  writeFileSync(cfg, `identity:\n  trustDomains: [example.org]\naudit:\n  file: ${file}\n  spool:\n    dir: ${join(dir, 'spool')}\n`)
  const r = await cli(['verify'], { MODELGATE_CONFIG: cfg })
  t.equal(r.code, 0, r.out + r.err)
  t.match(r.out, /verify: OK/)
  const none = join(dir, 'none.yaml')
  writeFileSync(none, `identity:\n  trustDomains: [example.org]\naudit:\n  spool:\n    dir: ${join(dir, 'never-created')}\n`)
  const nothing = await cli(['summary', '--config', none])
  t.equal(nothing.code, 1)
  t.match(nothing.err, /names no audit file \(audit\.file\) and the spool .*never-created does not exist/)
  const bad = await cli(['verify', '--config', join(dir, 'missing.yaml')])
  t.equal(bad.code, 1)
  t.match(bad.err, /cannot read file/)
})
