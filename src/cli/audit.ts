/**
 * `modelgate audit`: read audit records back (the file sink, a spool
 * directory, or an OTLP/JSON export from a collector), tell one request's
 * story, verify the hash chain, and summarise a time window.
 */
import { existsSync } from 'node:fs'
import * as A from '../audit/attributes.ts'
import { ChainVerifier, isChainEnd, isChained } from '../audit/chain.ts'
import { auditPaths } from '../audit/paths.ts'
import { readRecords, type SourceProblem } from '../audit/read.ts'
import { attrBool, attrNumber, attrString, attrStrings, nanosToMs, type SpanRecord } from '../audit/record.ts'
import { EXIT_USAGE, parseCommandLine, type CliIO } from './io.ts'

const HELP = `usage: modelgate audit <command> [options] [SOURCE...]

Reads audit records from SOURCEs: the audit file (audit.file), a spool
directory (audit.spool.dir), or an OTLP/JSON export written by a collector
(one ExportTraceServiceRequest per line, or one document). Files may be .gz.
Without a SOURCE, the file and spool named by the configuration are read.

commands:
  show <request-id>   one request's story: who, which data, which model,
                      which policy, what happened (also accepts a trace id)
  verify              check the hash chain: detects deleted, edited and
                      reordered records; exits 1 when anything is wrong
  summary             a time window: outcomes, top identities, denials,
                      data classes, models, policies behind denials, tokens

options:
  --config FILE       configuration to take the file and spool from
                      (default: $MODELGATE_CONFIG)
  --json              machine-readable output
  --since TIME        summary/show: records starting at or after TIME
  --until TIME        summary/show: records starting before TIME
                      TIME is ISO 8601 (2025-05-01T12:00:00Z) or an age (90s, 15m, 2h, 7d)
  --top N             summary: rows per table (default 10)
  --partial           verify: accept chains that start after seq 1
                      (a rotated file, a time-windowed export)
  --require-end       verify: fail for chains without their chain-end record
                      (a process still running, crashed, or records cut off the end)

examples:
  modelgate audit show 6f1c1e9e-2b8e-4c55-9a51-0d6b1f7a3e21 /var/log/modelgate/audit.jsonl
  modelgate audit verify /var/log/modelgate/audit.jsonl
  modelgate audit summary --since 24h --config modelgate.yaml
  modelgate audit verify --partial otel-export/traces.jsonl
`

interface Options {
  config?: string
  json?: boolean
  since?: string
  until?: string
  top?: string
  partial?: boolean
  'require-end'?: boolean
  help?: boolean
}

export async function run(argv: string[], io: CliIO): Promise<number> {
  const parsed = parseCommandLine('audit', HELP, io, {
    args: argv,
    options: {
      config: { type: 'string' },
      json: { type: 'boolean' },
      since: { type: 'string' },
      until: { type: 'string' },
      top: { type: 'string' },
      partial: { type: 'boolean' },
      'require-end': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: true,
  })
  if (typeof parsed === 'number') return parsed
  const values: Options = parsed.values
  const positionals = parsed.positionals
  const [command, ...rest] = positionals
  if (!command) {
    io.stderr.write(HELP)
    return EXIT_USAGE
  }
  const usage = (msg: string) => {
    io.stderr.write(`modelgate audit ${command}: ${msg}\n\nRun \`modelgate audit --help\` for usage.\n`)
    return EXIT_USAGE
  }
  let window: { since: number | undefined; until: number | undefined }
  try {
    window = { since: values.since ? parseTime(values.since, Date.now()) : undefined, until: values.until ? parseTime(values.until, Date.now()) : undefined }
  } catch (err) {
    return usage((err as Error).message)
  }
  const top = values.top === undefined ? 10 : Number(values.top)
  if (!Number.isInteger(top) || top < 1 || top > 10000) return usage('--top must be an integer from 1 to 10000')

  switch (command) {
    case 'show': {
      const [id, ...sources] = rest
      if (!id) return usage('name the request id to show')
      const src = await resolveSources(sources, values.config, io)
      if (typeof src === 'number') return src
      return show(id, src, window, values.json === true, io)
    }
    case 'verify': {
      const src = await resolveSources(rest, values.config, io)
      if (typeof src === 'number') return src
      return verify(src, { partial: values.partial === true, requireEnd: values['require-end'] === true, json: values.json === true }, io)
    }
    case 'summary': {
      const src = await resolveSources(rest, values.config, io)
      if (typeof src === 'number') return src
      return summary(src, window, top, values.json === true, io)
    }
    default:
      io.stderr.write(`modelgate audit: unknown command "${command}"\n\n${HELP}`)
      return EXIT_USAGE
  }
}

/** The sources named on the command line, or the file and spool of the configuration. */
async function resolveSources(sources: string[], configFile: string | undefined, io: CliIO): Promise<string[] | number> {
  if (sources.length > 0) return sources
  const file = configFile ?? io.env.MODELGATE_CONFIG
  if (!file) {
    io.stderr.write('modelgate audit: name a SOURCE (audit file, spool directory, OTLP/JSON export) or --config FILE\n')
    return EXIT_USAGE
  }
  const { loadConfigFile, ConfigError } = await import('../config/config.ts')
  try {
    const cfg = loadConfigFile(file)
    const p = auditPaths(cfg.audit, cfg.baseDir)
    // The spool exists only once records had to wait for the collector.
    const sources = [...(p.file ? [p.file] : []), ...(existsSync(p.spoolDir) ? [p.spoolDir] : [])]
    if (sources.length === 0) {
      io.stderr.write(`modelgate audit: ${file} names no audit file (audit.file) and the spool ${p.spoolDir} does not exist\n`)
      return 1
    }
    return sources
  } catch (err) {
    io.stderr.write((err instanceof ConfigError ? err.message : `modelgate audit: ${(err as Error).message}`) + '\n')
    return 1
  }
}

/** ISO 8601, or an age before `now` such as 90s, 15m, 2h, 7d. */
export function parseTime(text: string, now: number): number {
  const age = /^(\d+(?:\.\d+)?)(s|m|h|d|w)$/.exec(text.trim())
  if (age) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[age[2] as 's' | 'm' | 'h' | 'd' | 'w']
    return now - Number(age[1]) * unit
  }
  const t = Date.parse(text)
  if (Number.isNaN(t)) throw new Error(`${JSON.stringify(text)} is neither an ISO 8601 time nor an age like 15m, 2h, 7d`)
  return t
}

function inWindow(r: SpanRecord, w: { since: number | undefined; until: number | undefined }): boolean {
  const t = nanosToMs(r.start)
  if (w.since !== undefined && t < w.since) return false
  if (w.until !== undefined && t >= w.until) return false
  return true
}

function isRequestRecord(r: SpanRecord): boolean {
  return isChained(r) && !isChainEnd(r) && attrString(r, A.MG_REQUEST_ID) !== undefined
}

function reportProblems(problems: readonly SourceProblem[], io: CliIO): void {
  for (const p of problems.slice(0, 50)) io.stderr.write(`${p.file}${p.line ? `:${p.line}` : ''}: ${p.message}\n`)
  if (problems.length > 50) io.stderr.write(`… and ${problems.length - 50} more unreadable lines\n`)
}

// ---- show ---------------------------------------------------------------------

async function show(id: string, sources: string[], w: { since: number | undefined; until: number | undefined }, json: boolean, io: CliIO): Promise<number> {
  const roots = new Map<string, SpanRecord>()
  const children: SpanRecord[] = []
  const read = await readRecords(sources, (r) => {
    if (!inWindow(r, w)) return
    if (isRequestRecord(r) && (attrString(r, A.MG_REQUEST_ID) === id || r.traceId === id.toLowerCase() || r.spanId === id.toLowerCase())) roots.set(r.spanId, r)
    else if (r.parentSpanId && attrString(r, A.MG_STAGE_NAME) !== undefined && (attrString(r, A.MG_REQUEST_ID) === id || r.traceId === id.toLowerCase())) children.push(r)
  })
  reportProblems(read.problems, io)
  if (roots.size === 0) {
    io.stderr.write(`modelgate audit show: no record of request ${JSON.stringify(id)} in ${read.files.length} file${read.files.length === 1 ? '' : 's'} (${read.records} records)\n`)
    return 1
  }
  const list = [...roots.values()].sort((a, b) => (BigInt(a.start) < BigInt(b.start) ? -1 : 1))
  if (json) {
    io.stdout.write(JSON.stringify(list.map((r) => ({ record: r, stages: children.filter((c) => c.parentSpanId === r.spanId).sort(byStart) })), null, 2) + '\n')
    return 0
  }
  io.stdout.write(list.map((r) => story(r, children.filter((c) => c.parentSpanId === r.spanId).sort(byStart))).join('\n'))
  return 0
}

function byStart(a: SpanRecord, b: SpanRecord): number {
  const x = BigInt(a.start)
  const y = BigInt(b.start)
  return x < y ? -1 : x > y ? 1 : 0
}

/** One request, told in the order a security reviewer asks: who, what data, which model, which policy, what happened. */
export function story(r: SpanRecord, stages: readonly SpanRecord[] = []): string {
  const s = (k: string) => attrString(r, k)
  const n = (k: string) => attrNumber(r, k)
  const lines: string[] = []
  const row = (label: string, text: string | undefined) => {
    if (text) lines.push(`  ${label.padEnd(9)} ${text}`)
  }
  lines.push(`request ${s(A.MG_REQUEST_ID)}`)
  const dur = n(A.MG_DURATION_MS)
  row('when', `${new Date(nanosToMs(r.start)).toISOString()}${dur !== undefined ? ` (${dur} ms)` : ''}`)
  row('trace', `${r.traceId} span ${r.spanId}${r.parentSpanId ? ` (parent ${r.parentSpanId})` : ''}`)

  // Who.
  const spiffe = s(A.MG_IDENTITY_SPIFFE_ID)
  row('who', spiffe ? `${spiffe}${s(A.MG_IDENTITY_SOURCE) ? ` (${s(A.MG_IDENTITY_SOURCE)})` : ''}` : 'no workload identity established')
  const user = s(A.MG_USER_SUBJECT)
  if (user) {
    const groups = attrStrings(r, A.MG_USER_GROUPS)
    row('', `on behalf of ${s(A.MG_USER_EMAIL) ?? user} (subject ${user}, issuer ${s(A.MG_USER_ISSUER) ?? '?'})${groups.length ? `, groups ${groups.join(', ')}` : ''}`)
  }

  // Which model.
  const model = s(A.GEN_AI_REQUEST_MODEL)
  if (model) {
    const resp = s(A.GEN_AI_RESPONSE_MODEL)
    const stream = attrBool(r, A.GEN_AI_REQUEST_STREAM)
    const alias = s(A.MG_REQUEST_MODEL_ALIAS)
    row('model', `${s(A.MG_PROVIDER_ROUTE) ?? s(A.GEN_AI_PROVIDER_NAME)} ${s(A.MG_OPERATION) ?? s(A.GEN_AI_OPERATION_NAME) ?? ''}, ${alias ? `${alias} (alias of ${model})` : model}${resp && resp !== model ? ` → ${resp}` : ''}${stream ? ', streamed' : ''}`)
  } else row('model', 'request not parsed (denied before the body was read)')
  const path = s(A.URL_PATH)
  if (path) {
    const route = s(A.HTTP_ROUTE)
    const params = attrStrings(r, A.MG_URL_QUERY_PARAMS)
    row('endpoint', `${s(A.HTTP_REQUEST_METHOD) ?? ''} ${s(A.SERVER_ADDRESS) ?? ''}${path}`.trim() + (route && route !== path ? ` (route ${route})` : ''))
    if (params.length) row('', `query parameters ${params.join(', ')} (names only)`)
  }

  // What data.
  const classes = attrStrings(r, A.MG_DATA_CLASSES)
  if (classes.length === 0) row('data', 'no sensitive data found')
  else {
    const actionOf = (c: string) =>
      attrStrings(r, A.MG_REDACTION_BLOCKED).includes(c)
        ? 'blocked'
        : attrStrings(r, A.MG_REDACTION_WITHHELD).includes(c)
          ? 'withheld: not sent, the request was refused'
          : attrStrings(r, A.MG_REDACTION_REDACTED).includes(c)
            ? 'redacted'
            : 'allowed: sent as is'
    row('data', classes.map((c) => `${c} ×${n(A.itemKey(A.MG_DATA_CLASS_PREFIX, c, A.MG_COUNT_SUFFIX)) ?? '?'} (${actionOf(c)})`).join(', '))
    row('', `detectors ${attrStrings(r, A.MG_DATA_DETECTORS).join(', ')}; redaction: ${s(A.MG_REDACTION_ACTION)}`)
  }

  // Which policy.
  const effect = s(A.MG_DECISION_EFFECT)
  if (effect) {
    const policies = attrStrings(r, A.MG_DECISION_POLICIES)
    const owners = attrStrings(r, A.MG_DECISION_POLICY_OWNERS)
    const named = policies.map((p, i) => (owners[i] ? `${p} (owner ${owners[i]})` : p))
    row('policy', `${effect}${named.length ? ` by ${named.join(', ')}` : ' (no policy matched)'}; policy set ${s(A.MG_DECISION_POLICY_SET_HASH) ?? '?'}; decision ${s(A.MG_DECISION_ID) ?? '?'}`)
    const errors = attrStrings(r, A.MG_DECISION_ERRORS)
    if (errors.length) row('', `evaluation errors: ${errors.join('; ')}`)
    const shadow = s(A.MG_SHADOW_EFFECT)
    if (shadow) {
      const sp = attrStrings(r, A.MG_SHADOW_POLICIES)
      row('', `shadow policy set ${s(A.MG_SHADOW_POLICY_SET_HASH) ?? '?'}: ${shadow}${sp.length ? ` by ${sp.join(', ')}` : ''}${attrBool(r, A.MG_SHADOW_DIFFERS) ? ' (differs)' : ''}`)
    }
  } else row('policy', 'not evaluated')
  const asked = attrStrings(r, A.MG_DECISION_TOOLS)
  if (asked.length) {
    const kinds = attrStrings(r, A.MG_DECISION_TOOL_KINDS)
    const effects = attrStrings(r, A.MG_DECISION_TOOL_EFFECTS)
    row('tools', asked.map((tool, i) => `${tool}${kinds[i] && kinds[i] !== tool ? ` (${kinds[i]})` : ''} ${effects[i] ?? '?'}`).join(', '))
  }
  const called = attrStrings(r, A.MG_RESPONSE_TOOLS)
  if (called.length) {
    const effects = attrStrings(r, A.MG_RESPONSE_TOOL_EFFECTS)
    const refused = s(A.MG_RESPONSE_TOOL_DENIED)
    row(asked.length ? '' : 'tools', `the response called ${called.map((tool, i) => `${tool} ${effects[i] ?? '?'}`).join(', ')}${refused ? `; refused at ${refused} (${s(A.MG_RESPONSE_TOOL_DENIED_REASON) ?? '?'})` : ''}`)
  }

  const credential = s(A.MG_CREDENTIAL_NAME)
  if (credential) row('credential', `${s(A.MG_PROVIDER_ROUTE) ?? '?'}/${credential} (${s(A.MG_CREDENTIAL_SOURCE) ?? '?'})`)

  // Quota.
  const rules = attrStrings(r, A.MG_QUOTA_RULES)
  if (rules.length) {
    row('quota', rules.map((q) => `${q} (remaining ${n(A.itemKey(A.MG_QUOTA_REMAINING_PREFIX, q)) ?? '?'})`).join(', '))
    const deciding = s(A.MG_QUOTA_DECIDING_RULE)
    if (deciding) row('', `deciding rule ${deciding}: ${attrBool(r, A.MG_QUOTA_STREAM_CUT) ? 'ended the stream' : 'refused the request'}`)
    const reserved = n(A.MG_QUOTA_RESERVED_TOKENS)
    const settled = n(A.MG_QUOTA_SETTLED_TOKENS)
    if (reserved !== undefined || settled !== undefined) row('', `tokens reserved ${reserved ?? '-'}, settled ${settled ?? '-'}${s(A.MG_QUOTA_SETTLED_BY) ? ` (${s(A.MG_QUOTA_SETTLED_BY)})` : ''}`)
    const store = s(A.MG_QUOTA_STORE)
    if (store) row('', `store ${store}${s(A.MG_QUOTA_STORE_ERROR) ? ` (store error: ${s(A.MG_QUOTA_STORE_ERROR)})` : ''}`)
  }

  // What happened.
  const outcome = s(A.MG_OUTCOME)
  const code = s(A.MG_DENIAL_CODE)
  const reached = attrBool(r, A.MG_UPSTREAM_REACHED)
  const status = n(A.HTTP_RESPONSE_STATUS_CODE)
  row(
    'outcome',
    `${outcome}${code ? ` ${code} (${n(A.MG_DENIAL_STATUS)})` : ''}; ${reached ? `the model answered${status !== undefined ? ` ${status}` : ''}` : 'nothing reached the model'}${s(A.MG_STREAM_OUTCOME) && s(A.MG_STREAM_OUTCOME) !== 'completed' ? `; stream ${s(A.MG_STREAM_OUTCOME)}` : ''}`,
  )
  const details = s(A.MG_DENIAL_DETAILS)
  if (details) row('', `details ${details}`)
  const tin = n(A.GEN_AI_USAGE_INPUT_TOKENS)
  const tout = n(A.GEN_AI_USAGE_OUTPUT_TOKENS)
  if (tin !== undefined || tout !== undefined) row('tokens', `input ${tin ?? '?'}, output ${tout ?? '?'}`)

  // Timings.
  const timings = Object.entries(r.attributes)
    .filter(([k, v]) => k.startsWith(A.MG_STAGE_DURATION_PREFIX) && k.endsWith(A.MG_STAGE_DURATION_SUFFIX) && typeof v === 'number')
    .map(([k, v]) => `${k.slice(A.MG_STAGE_DURATION_PREFIX.length, -A.MG_STAGE_DURATION_SUFFIX.length)} ${v} ms`)
  if (timings.length) row('stages', timings.join(', '))
  if (stages.length) row('', `stage spans: ${stages.map((c) => `${attrString(c, A.MG_STAGE_NAME)}/${attrString(c, A.MG_STAGE_DIRECTION)} ${attrNumber(c, A.MG_STAGE_BUSY_MS) ?? '?'} ms`).join(', ')}`)

  // Content, when recorded.
  const reqContent = s(A.MG_REQUEST_CONTENT)
  if (reqContent !== undefined) row('sent', `${reqContent}${attrBool(r, A.MG_REQUEST_CONTENT_TRUNCATED) ? ' …(truncated)' : ''}`)
  const resContent = s(A.MG_RESPONSE_CONTENT)
  if (resContent !== undefined) row('returned', `${resContent}${attrBool(r, A.MG_RESPONSE_CONTENT_TRUNCATED) ? ' …(truncated)' : ''}`)

  row('record', `seq ${n(A.MG_AUDIT_SEQ)} of chain ${s(A.MG_AUDIT_CHAIN_ID)}, hash ${s(A.MG_AUDIT_HASH)?.slice(0, 16)}…`)
  return lines.join('\n') + '\n'
}

// ---- verify ---------------------------------------------------------------------

async function verify(sources: string[], opts: { partial: boolean; requireEnd: boolean; json: boolean }, io: CliIO): Promise<number> {
  const v = new ChainVerifier({ partial: opts.partial })
  const read = await readRecords(sources, (r) => v.add(r))
  const result = v.result()
  const problems: { chain: string; kind: string; message: string }[] = result.problems.map((p) => ({ chain: p.chainId, kind: p.kind, message: p.message }))
  for (const p of read.problems) problems.push({ chain: '', kind: 'unreadable', message: `${p.file}${p.line ? `:${p.line}` : ''}: ${p.message}` })
  if (opts.requireEnd) {
    for (const c of result.chains) if (!c.ended) problems.push({ chain: c.chainId, kind: 'no-end', message: `no chain-end record after seq ${c.lastSeq}` })
  }
  const chained = result.chains.reduce((n, c) => n + c.records, 0)
  if (chained === 0) problems.push({ chain: '', kind: 'empty', message: `no chained audit records in ${read.files.length} file${read.files.length === 1 ? '' : 's'}` })
  if (opts.json) {
    io.stdout.write(JSON.stringify({ ok: problems.length === 0, files: read.files, records: read.records, chains: result.chains, duplicates: result.duplicates, unchained: result.unchained, problems }, null, 2) + '\n')
    return problems.length === 0 ? 0 : 1
  }
  for (const c of result.chains) {
    io.stdout.write(`chain ${c.chainId}: ${c.records} record${c.records === 1 ? '' : 's'}, seq ${c.firstSeq}..${c.lastSeq}, ${c.ended ? 'closed cleanly' : 'open (no chain-end record yet)'}, head ${c.head.slice(0, 16)}…\n`)
    for (const p of problems.filter((x) => x.chain === c.chainId)) io.stdout.write(`  FAIL ${p.message}\n`)
  }
  for (const p of problems.filter((x) => x.chain === '')) io.stdout.write(`FAIL ${p.message}\n`)
  const tail = `${read.records} record${read.records === 1 ? '' : 's'} read from ${read.files.length} file${read.files.length === 1 ? '' : 's'}${result.duplicates ? `, ${result.duplicates} duplicate${result.duplicates === 1 ? '' : 's'} ignored` : ''}`
  if (problems.length === 0) {
    io.stdout.write(`verify: OK (${result.chains.length} chain${result.chains.length === 1 ? '' : 's'}, ${tail})\n`)
    return 0
  }
  io.stdout.write(`verify: FAILED, ${problems.length} problem${problems.length === 1 ? '' : 's'} (${tail})\n`)
  return 1
}

// ---- summary ------------------------------------------------------------------------

class Counter {
  readonly #m = new Map<string, number>()
  add(k: string, n = 1): void {
    this.#m.set(k, (this.#m.get(k) ?? 0) + n)
  }
  get(k: string): number {
    return this.#m.get(k) ?? 0
  }
  top(n: number): [string, number][] {
    return [...this.#m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n)
  }
  get size(): number {
    return this.#m.size
  }
}

export interface Summary {
  readonly requests: number
  readonly from: string | undefined
  readonly to: string | undefined
  readonly outcomes: Record<string, number>
  readonly identities: { identity: string; requests: number; denied: number }[]
  readonly denials: { code: string; requests: number }[]
  /** Per class: requests and detections, and in how many requests it was blocked, withheld (request refused otherwise), redacted, or sent as is. */
  readonly dataClasses: { dataClass: string; detections: number; requests: number; blocked: number; withheld: number; redacted: number; allowed: number }[]
  readonly models: { model: string; requests: number }[]
  readonly denyingPolicies: { policy: string; owner: string; requests: number }[]
  readonly users: { user: string; requests: number }[]
  readonly tokens: { input: number; output: number }
}

async function summary(sources: string[], w: { since: number | undefined; until: number | undefined }, top: number, json: boolean, io: CliIO): Promise<number> {
  const seen = new Set<string>()
  const outcomes = new Counter()
  const identities = new Counter()
  const identityDenied = new Counter()
  const denials = new Counter()
  const classDetections = new Counter()
  const classRequests = new Counter()
  const classBlocked = new Counter()
  const classWithheld = new Counter()
  const classRedacted = new Counter()
  const classAllowed = new Counter()
  const models = new Counter()
  const policies = new Counter()
  const owners = new Map<string, string>()
  const users = new Counter()
  let tokensIn = 0
  let tokensOut = 0
  let first: number | undefined
  let last: number | undefined
  const read = await readRecords(sources, (r) => {
    if (!isRequestRecord(r) || !inWindow(r, w) || seen.has(r.spanId)) return
    seen.add(r.spanId)
    const t = nanosToMs(r.start)
    first = first === undefined ? t : Math.min(first, t)
    last = last === undefined ? t : Math.max(last, t)
    const outcome = attrString(r, A.MG_OUTCOME) ?? 'unknown'
    outcomes.add(outcome)
    const who = attrString(r, A.MG_IDENTITY_SPIFFE_ID) ?? '(no identity)'
    identities.add(who)
    if (outcome === 'denied') {
      identityDenied.add(who)
      denials.add(attrString(r, A.MG_DENIAL_CODE) ?? 'unknown')
      const ps = attrStrings(r, A.MG_DECISION_POLICIES)
      const os = attrStrings(r, A.MG_DECISION_POLICY_OWNERS)
      if (attrString(r, A.MG_DECISION_EFFECT) === 'deny') {
        ps.forEach((p, i) => {
          policies.add(p)
          if (os[i]) owners.set(p, os[i]!)
        })
      }
    }
    const blocked = attrStrings(r, A.MG_REDACTION_BLOCKED)
    const withheld = attrStrings(r, A.MG_REDACTION_WITHHELD)
    const redacted = attrStrings(r, A.MG_REDACTION_REDACTED)
    const allowed = attrStrings(r, A.MG_REDACTION_ALLOWED)
    for (const c of attrStrings(r, A.MG_DATA_CLASSES)) {
      classRequests.add(c)
      classDetections.add(c, attrNumber(r, A.itemKey(A.MG_DATA_CLASS_PREFIX, c, A.MG_COUNT_SUFFIX)) ?? 1)
      // One fate per request and class, the strongest (a class may be found in the request and the response).
      if (blocked.includes(c)) classBlocked.add(c)
      else if (withheld.includes(c)) classWithheld.add(c)
      else if (redacted.includes(c)) classRedacted.add(c)
      else if (allowed.includes(c)) classAllowed.add(c)
    }
    const model = attrString(r, A.GEN_AI_REQUEST_MODEL)
    if (model) models.add(model)
    const user = attrString(r, A.MG_USER_EMAIL) ?? attrString(r, A.MG_USER_SUBJECT)
    if (user) users.add(user)
    tokensIn += attrNumber(r, A.GEN_AI_USAGE_INPUT_TOKENS) ?? 0
    tokensOut += attrNumber(r, A.GEN_AI_USAGE_OUTPUT_TOKENS) ?? 0
  })
  reportProblems(read.problems, io)
  const s: Summary = {
    requests: seen.size,
    from: first === undefined ? undefined : new Date(first).toISOString(),
    to: last === undefined ? undefined : new Date(last).toISOString(),
    outcomes: Object.fromEntries(outcomes.top(100)),
    identities: identities.top(top).map(([identity, requests]) => ({ identity, requests, denied: identityDenied.get(identity) })),
    denials: denials.top(top).map(([code, requests]) => ({ code, requests })),
    dataClasses: classRequests.top(top).map(([dataClass, requests]) => ({
      dataClass,
      detections: classDetections.get(dataClass),
      requests,
      blocked: classBlocked.get(dataClass),
      withheld: classWithheld.get(dataClass),
      redacted: classRedacted.get(dataClass),
      allowed: classAllowed.get(dataClass),
    })),
    models: models.top(top).map(([model, requests]) => ({ model, requests })),
    denyingPolicies: policies.top(top).map(([policy, requests]) => ({ policy, owner: owners.get(policy) ?? '', requests })),
    users: users.top(top).map(([user, requests]) => ({ user, requests })),
    tokens: { input: tokensIn, output: tokensOut },
  }
  if (json) {
    io.stdout.write(JSON.stringify(s, null, 2) + '\n')
    return 0
  }
  io.stdout.write(formatSummary(s))
  return 0
}

export function formatSummary(s: Summary): string {
  const out: string[] = []
  const table = (title: string, rows: string[][]) => {
    out.push(title)
    if (rows.length === 0) out.push('  (none)')
    for (const r of rows) out.push(`  ${r[0]!.padStart(7)}  ${r.slice(1).join('  ')}`)
  }
  out.push(`requests  ${s.requests}${s.from ? ` from ${s.from} to ${s.to}` : ''}`)
  out.push(`outcomes  ${Object.entries(s.outcomes).map(([k, v]) => `${k} ${v}`).join(', ') || '(none)'}`)
  out.push(`tokens    input ${s.tokens.input}, output ${s.tokens.output}`)
  table('top identities', s.identities.map((i) => [String(i.requests), i.identity, i.denied ? `(${i.denied} denied)` : '']))
  table('denials by reason', s.denials.map((d) => [String(d.requests), d.code]))
  table('data classes (requests, detections)', s.dataClasses.map((c) => [String(c.requests), c.dataClass, `${c.detections} detections`, [c.blocked ? `${c.blocked} blocked` : '', c.withheld ? `${c.withheld} withheld` : '', c.redacted ? `${c.redacted} redacted` : '', c.allowed ? `${c.allowed} sent as is` : ''].filter(Boolean).join(', ')]))
  table('models', s.models.map((m) => [String(m.requests), m.model]))
  table('policies behind denials', s.denyingPolicies.map((p) => [String(p.requests), p.policy, p.owner ? `(owner ${p.owner})` : '']))
  if (s.users.length) table('delegated users', s.users.map((u) => [String(u.requests), u.user]))
  return out.map((l) => l.trimEnd()).join('\n') + '\n'
}
