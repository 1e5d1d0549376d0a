/**
 * `modelgate policy validate|format|test|explain`: tooling for policy authors.
 * Exit codes: 0 ok, 1 problems found (invalid set, failing cases, files not
 * formatted), 2 usage errors; `explain` exits 3 when the request is denied.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import { loadCases, runCases } from '../policy/cases.ts'
import { PolicyEngine, type Evaluation, type QueryResult } from '../policy/engine.ts'
import { loadPolicyDirSync, readPolicyDirSync, POLICY_SUFFIX, type CompiledPolicySet, type PolicyInfo } from '../policy/load.ts'
import { ACTION_TYPE } from '../policy/names.ts'
import { formatProblem, PolicyLoadError, SourceText, type PolicyProblem } from '../policy/problems.ts'
import { DescriptionError, factsFromDescription, unredactedQuery, type RequestDescription } from '../policy/request.ts'
import { EXIT_USAGE, readAll, type CliIO } from './io.ts'

const HELP = `usage: modelgate policy <command> [options]

commands:
  validate   check the schema, every policy (strict Cedar validation) and entities.json;
             problems are printed as file:line:col with Cedar's message
  format     format *.cedar files with Cedar's formatter (--check, --write)
  test       run the request cases in <dir>/tests/ALLOW and DENY; print policy coverage
  explain    show the decision for one request, the determining policies and their owners

common options:
  --dir DIR        policy directory (default: policy.dir of --config, else ./policies)
  --config FILE    take the policy directory from a modelgate configuration file
  -h, --help       this help

validate:  [--shadow-dir DIR] [--deny-warnings]
format:    [--check | --write] [--line-width N] [--indent-width N] [FILE...]
test:      [--cases DIR] [--require-coverage] [--json]
explain:   [--json] (FILE | - | --principal SPIFFE_ID --model NAME [--provider NAME]
           [--operation chat|completion|responses|messages|embedding] [--stream]
           [--max-tokens N] [--tool NAME]... [--data-class CLASS]... [--detector ID]...
           [--tenant T] [--purpose P] [--client-app A] [--region R] [--time ISO]
           [--user-subject S --user-issuer I [--user-email E] [--user-group G]...]
           [--unredacted CLASS])

A request FILE holds a request description (or a test case, whose "request" is used).
Exit codes: 0 ok, 1 problems found, 2 usage error; explain: 0 allowed, 3 denied.
`

const COMMON = {
  dir: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

type Sub = (argv: string[], io: CliIO) => Promise<number>

const SUBCOMMANDS: Record<string, Sub> = { validate, format, test, explain }

export async function run(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    ;(name ? io.stdout : io.stderr).write(HELP)
    return name ? 0 : EXIT_USAGE
  }
  const sub = SUBCOMMANDS[name]
  if (!sub) {
    io.stderr.write(`modelgate policy: unknown command "${name}"\n\n${HELP}`)
    return EXIT_USAGE
  }
  return sub(rest, io)
}

class UsageError extends Error {}

function parse<O extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>>(argv: string[], options: O, positionals: boolean) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, strict: true, allowPositionals: positionals })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

function usage(io: CliIO, cmd: string, err: unknown): number {
  io.stderr.write(`modelgate policy ${cmd}: ${(err as Error).message}\n\n${HELP}`)
  return EXIT_USAGE
}

/** Raised for an unusable --config file; its message lists every problem. */
class ConfigProblem extends Error {}

/**
 * The policy directory from --dir, else --config, else ./policies. The
 * configuration module is loaded only for --config, so the policy tooling
 * works on a policy directory alone.
 */
async function policyDir(io: CliIO, values: { dir?: string | undefined; config?: string | undefined }): Promise<string> {
  if (values.dir) return resolve(io.cwd, values.dir)
  if (values.config) {
    const { ConfigError, loadConfigFile, resolveConfigPath } = await import('../config/config.ts')
    try {
      const cfg = loadConfigFile(resolve(io.cwd, values.config))
      return resolveConfigPath(cfg, cfg.policy.dir)
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigProblem(err.message)
      throw err
    }
  }
  return resolve(io.cwd, 'policies')
}

function sortProblems(problems: readonly PolicyProblem[]): PolicyProblem[] {
  return [...problems].sort((a, b) => (a.file === b.file ? (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0) : a.file < b.file ? -1 : 1))
}

function printProblems(io: CliIO, problems: readonly PolicyProblem[]): void {
  for (const p of sortProblems(problems)) (p.severity === 'error' ? io.stderr : io.stdout).write(formatProblem(p, io.cwd) + '\n')
}

const plural = (n: number, word: string, many = `${word}s`) => `${n} ${n === 1 ? word : many}`
const rel = (io: CliIO, p: string) => relative(io.cwd, p) || '.'
const where = (io: CliIO, p: PolicyInfo) => `${rel(io, p.file)}:${p.line}:${p.column}`

/** Loads a set for test/explain, printing problems; undefined when invalid. */
function openEngine(io: CliIO, dir: string): PolicyEngine | undefined {
  try {
    const engine = new PolicyEngine({ dir, cacheSize: 0 })
    printProblems(io, engine.activeSet.warnings)
    return engine
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      printProblems(io, err.problems)
      io.stderr.write(`${rel(io, dir)}: the policy set is invalid; run \`modelgate policy validate\` for details\n`)
      return undefined
    }
    throw err
  }
}

// ---- validate -------------------------------------------------------------------

async function validate(argv: string[], io: CliIO): Promise<number> {
  let values
  try {
    ;({ values } = parse(argv, { 'shadow-dir': { type: 'string' }, 'deny-warnings': { type: 'boolean' } }, false))
  } catch (err) {
    return usage(io, 'validate', err)
  }
  if (values.help) return help(io)
  let dir: string
  try {
    dir = await policyDir(io, values)
  } catch (err) {
    return configProblem(io, err)
  }
  const primary = loadPolicyDirSync(dir)
  let failed = report(io, dir, primary.result, values['deny-warnings'] === true)
  if (values['shadow-dir']) {
    const shadowDir = resolve(io.cwd, values['shadow-dir'])
    const fallback = primary.result.ok ? primary.sources : safeSources(dir)
    const shadow = loadPolicyDirSync(shadowDir, fallback)
    failed = report(io, shadowDir, shadow.result, values['deny-warnings'] === true) || failed
  }
  return failed ? 1 : 0
}

function safeSources(dir: string) {
  try {
    return readPolicyDirSync(dir)
  } catch {
    return undefined
  }
}

function report(io: CliIO, dir: string, result: ReturnType<typeof loadPolicyDirSync>['result'], denyWarnings: boolean): boolean {
  if (!result.ok) {
    printProblems(io, result.problems)
    const errors = result.problems.filter((p) => p.severity === 'error').length
    const warnings = result.problems.length - errors
    io.stderr.write(`${rel(io, dir)}: invalid: ${plural(errors, 'error')}${warnings ? `, ${plural(warnings, 'warning')}` : ''}\n`)
    return true
  }
  const set = result.set
  printProblems(io, set.warnings)
  const files = set.files.filter((f) => f.endsWith(POLICY_SUFFIX)).length
  io.stdout.write(
    `${rel(io, dir)}: valid: ${plural(set.policies.size, 'policy', 'policies')} in ${plural(files, 'file')}, ${plural(set.entities.byKey.size, 'entity', 'entities')}` +
      `${set.warnings.length ? `, ${plural(set.warnings.length, 'warning')}` : ''}; hash ${set.hash}\n`,
  )
  return denyWarnings && set.warnings.length > 0
}

function configProblem(io: CliIO, err: unknown): number {
  if (err instanceof ConfigProblem) {
    io.stderr.write(err.message + '\n')
    return 1
  }
  throw err
}

function help(io: CliIO): number {
  io.stdout.write(HELP)
  return 0
}

// ---- format ---------------------------------------------------------------------

async function format(argv: string[], io: CliIO): Promise<number> {
  let values
  let positionals: string[]
  try {
    ;({ values, positionals } = parse(argv, { check: { type: 'boolean' }, write: { type: 'boolean' }, 'line-width': { type: 'string' }, 'indent-width': { type: 'string' } }, true))
    if (values.check && values.write) throw new UsageError('--check and --write exclude each other')
  } catch (err) {
    return usage(io, 'format', err)
  }
  if (values.help) return help(io)
  const lineWidth = intOption(values['line-width'], 80)
  const indentWidth = intOption(values['indent-width'], 2)
  if (lineWidth === undefined || indentWidth === undefined) return usage(io, 'format', new Error('--line-width and --indent-width take positive integers'))
  let files: string[]
  try {
    files = positionals.length ? positionals.map((f) => resolve(io.cwd, f)) : readPolicyDirSync(await policyDir(io, values)).policies.map((f) => f.path)
  } catch (err) {
    if (err instanceof ConfigProblem) return configProblem(io, err)
    io.stderr.write(`modelgate policy format: ${(err as Error).message}\n`)
    return 1
  }
  let failed = false
  const unformatted: string[] = []
  for (const file of files) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      io.stderr.write(`${rel(io, file)}: error: cannot read: ${(err as Error).message}\n`)
      failed = true
      continue
    }
    const r = cedar.formatPolicies({ policyText: text, lineWidth, indentWidth })
    if (r.type === 'failure') {
      const source = new SourceText(text)
      for (const e of r.errors) {
        const loc = e.sourceLocations?.[0]
        const pos = loc ? source.position(loc.start) : undefined
        printProblems(io, [{ severity: 'error', file, line: pos?.line, column: pos?.column, message: e.message, help: e.help ?? undefined }])
      }
      failed = true
      continue
    }
    const formatted = r.formatted_policy.endsWith('\n') ? r.formatted_policy : r.formatted_policy + '\n'
    if (values.check) {
      if (formatted !== text) unformatted.push(file)
    } else if (values.write) {
      if (formatted !== text) {
        writeFileSync(file, formatted)
        io.stdout.write(`formatted ${rel(io, file)}\n`)
      }
    } else {
      io.stdout.write(files.length > 1 ? `// ${rel(io, file)}\n${formatted}` : formatted)
    }
  }
  if (values.check) {
    for (const f of unformatted) io.stderr.write(`${rel(io, f)}: not formatted\n`)
    if (unformatted.length) {
      io.stderr.write(`${plural(unformatted.length, 'file')} need formatting; run \`modelgate policy format --write\`\n`)
      return 1
    }
    if (!failed) io.stdout.write(`${plural(files.length, 'file')} formatted correctly\n`)
  }
  return failed ? 1 : 0
}

function intOption(v: string | undefined, dflt: number): number | undefined {
  if (v === undefined) return dflt
  const n = Number(v)
  return Number.isInteger(n) && n > 0 && n <= 1000 ? n : undefined
}

// ---- test -----------------------------------------------------------------------

async function test(argv: string[], io: CliIO): Promise<number> {
  let values
  try {
    ;({ values } = parse(argv, { cases: { type: 'string' }, 'require-coverage': { type: 'boolean' }, json: { type: 'boolean' } }, false))
  } catch (err) {
    return usage(io, 'test', err)
  }
  if (values.help) return help(io)
  let dir: string
  try {
    dir = await policyDir(io, values)
  } catch (err) {
    return configProblem(io, err)
  }
  const casesDir = values.cases ? resolve(io.cwd, values.cases) : join(dir, 'tests')
  const engine = openEngine(io, dir)
  if (!engine) return 1
  const { cases, problems } = loadCases(casesDir)
  for (const p of problems) io.stderr.write(`${rel(io, p.file)}: error: ${p.message}\n`)
  if (cases.length === 0 && problems.length === 0) {
    io.stderr.write(`${rel(io, casesDir)}: no cases found (expected ALLOW/*.json and DENY/*.json)\n`)
    return 1
  }
  const runResult = runCases(engine, cases)
  if (values.json) {
    io.stdout.write(
      JSON.stringify(
        {
          policySetHash: engine.policySetHash,
          passed: runResult.passed,
          failed: runResult.failed + problems.length,
          cases: runResult.results.map((r) => ({ case: r.case.name, expect: r.case.expect, decision: r.decision, determining: r.determining, passed: r.passed, problems: r.problems })),
          unexercised: runResult.unexercised.map((p) => ({ id: p.id, owner: p.owner, file: rel(io, p.file), line: p.line })),
        },
        null,
        2,
      ) + '\n',
    )
  } else {
    const width = Math.max(...runResult.results.map((r) => r.case.name.length), 0)
    for (const r of runResult.results) {
      const by = r.determining.length ? `by ${r.determining.join(', ')}` : '(no policy matched)'
      if (r.passed) io.stdout.write(`ok    ${r.case.name.padEnd(width)}  ${r.decision} ${by}\n`)
      else {
        io.stdout.write(`FAIL  ${r.case.name.padEnd(width)}${r.decision ? `  ${r.decision} ${by}` : ''}\n`)
        if (r.case.description) io.stdout.write(`      ${r.case.description}\n`)
        for (const p of r.problems) io.stdout.write(`      ${p}\n`)
      }
    }
    const total = runResult.results.length + problems.length
    io.stdout.write(`\n${plural(total, 'case')}: ${runResult.passed} passed, ${runResult.failed + problems.length} failed\n`)
    const n = engine.policies.size
    io.stdout.write(`coverage: ${n - runResult.unexercised.length} of ${n} policies determined at least one case\n`)
    if (runResult.unexercised.length) {
      io.stdout.write('policies no case exercised:\n')
      for (const p of runResult.unexercised) io.stdout.write(`  ${p.id}  (${p.effect}, owner ${p.owner ?? 'unknown'})  ${where(io, p)}\n`)
    }
  }
  if (runResult.failed || problems.length) return 1
  if (values['require-coverage'] && runResult.unexercised.length) {
    io.stderr.write(`${plural(runResult.unexercised.length, 'policy', 'policies')} without a case (--require-coverage)\n`)
    return 1
  }
  return 0
}

// ---- explain --------------------------------------------------------------------

const EXPLAIN_OPTIONS = {
  json: { type: 'boolean' },
  principal: { type: 'string' },
  model: { type: 'string' },
  provider: { type: 'string' },
  operation: { type: 'string' },
  stream: { type: 'boolean' },
  'max-tokens': { type: 'string' },
  tool: { type: 'string', multiple: true },
  'data-class': { type: 'string', multiple: true },
  detector: { type: 'string', multiple: true },
  tenant: { type: 'string' },
  purpose: { type: 'string' },
  'client-app': { type: 'string' },
  region: { type: 'string' },
  time: { type: 'string' },
  'user-subject': { type: 'string' },
  'user-issuer': { type: 'string' },
  'user-email': { type: 'string' },
  'user-group': { type: 'string', multiple: true },
  unredacted: { type: 'string' },
} as const

async function explain(argv: string[], io: CliIO): Promise<number> {
  let values
  let positionals: string[]
  try {
    ;({ values, positionals } = parse(argv, EXPLAIN_OPTIONS, true))
    if (positionals.length > 1) throw new UsageError('give one request file')
    if (positionals.length && values.principal !== undefined) throw new UsageError('give a request file or --principal/--model, not both')
    if (!positionals.length && (values.principal === undefined || values.model === undefined) && !values.help) throw new UsageError('give a request file, or --principal and --model')
  } catch (err) {
    return usage(io, 'explain', err)
  }
  if (values.help) return help(io)
  let description: unknown
  if (positionals.length) {
    const f = positionals[0]!
    let text: string
    try {
      text = f === '-' ? (await readAll(io.stdin, 1024 * 1024)).toString('utf8') : readFileSync(resolve(io.cwd, f), 'utf8')
    } catch (err) {
      io.stderr.write(`modelgate policy explain: cannot read ${f}: ${(err as Error).message}\n`)
      return 1
    }
    try {
      description = JSON.parse(text)
    } catch (err) {
      io.stderr.write(`${f}: error: not valid JSON: ${(err as Error).message}\n`)
      return 1
    }
    if (description && typeof description === 'object' && 'request' in description) description = (description as { request: unknown }).request
  } else {
    const d: Partial<RequestDescription> & Record<string, unknown> = { principal: values.principal, model: values.model }
    if (values.provider !== undefined) d.provider = values.provider
    if (values.operation !== undefined) d.operation = values.operation as RequestDescription['operation']
    if (values.stream) d.stream = true
    if (values['max-tokens'] !== undefined) d.maxTokens = Number(values['max-tokens'])
    if (values.tool) d.tools = values.tool
    if (values['data-class']) d.dataClasses = values['data-class']
    if (values.detector) d.detectors = values.detector
    for (const [flag, key] of [
      ['tenant', 'tenant'],
      ['purpose', 'purpose'],
      ['client-app', 'clientApp'],
      ['region', 'region'],
      ['time', 'time'],
      ['unredacted', 'unredacted'],
    ] as const) {
      if (values[flag] !== undefined) d[key] = values[flag]
    }
    if (values['user-subject'] !== undefined || values['user-issuer'] !== undefined) {
      d.user = { subject: values['user-subject'] ?? '', issuer: values['user-issuer'] ?? '', ...(values['user-email'] ? { email: values['user-email'] } : {}), groups: values['user-group'] ?? [] }
    }
    description = d
  }
  let dir: string
  try {
    dir = await policyDir(io, values)
  } catch (err) {
    return configProblem(io, err)
  }
  let described
  try {
    described = factsFromDescription(description)
  } catch (err) {
    if (err instanceof DescriptionError) {
      for (const p of err.problems) io.stderr.write(`modelgate policy explain: ${p}\n`)
      return EXIT_USAGE
    }
    throw err
  }
  const engine = openEngine(io, dir)
  if (!engine) return 1
  const set = engine.activeSet
  let effect: 'allow' | 'deny'
  let code: string | undefined
  let results: readonly QueryResult[]
  let determining: string[]
  let errors: readonly string[]
  if (described.unredacted !== undefined) {
    const q = unredactedQuery(described.unredacted)
    const ev = engine.evaluate(described.facts, q)
    results = [{ query: q, evaluation: ev }]
    effect = ev.decision === 'allow' && ev.errors.length === 0 ? 'allow' : 'deny'
    code = undefined
    determining = [...ev.determining]
    errors = ev.errors
  } else {
    const r = engine.decide(described.facts, undefined, described.query ? [described.query] : undefined)
    results = r.results
    effect = r.decision.effect
    code = r.code
    determining = r.decision.policies.map((p) => p.id)
    errors = r.decision.errors
  }
  if (values.json) {
    io.stdout.write(
      JSON.stringify(
        {
          decision: effect,
          code,
          policySetHash: set.hash,
          determining: determining.map((id) => policyJson(io, set, id)),
          errors,
          questions: results.map((r) => ({ action: `${ACTION_TYPE}::"${r.query.action}"`, resource: `${r.query.resource.type}::${JSON.stringify(r.query.resource.id)}`, ...evaluationJson(r.evaluation) })),
        },
        null,
        2,
      ) + '\n',
    )
  } else {
    const note = described.unredacted !== undefined ? (effect === 'allow' ? ` (${described.unredacted} may be sent unredacted)` : ` (${described.unredacted} is redacted)`) : code ? ` (${code})` : ''
    io.stdout.write(`decision: ${effect}${note}\n`)
    io.stdout.write(`policy set: ${rel(io, set.dir)} ${set.hash}\n`)
    io.stdout.write('questions:\n')
    for (const r of results) {
      const e = r.evaluation
      const by = e.determining.length ? `by ${e.determining.join(', ')}` : e.decision === 'deny' && !e.errors.length ? '(no permit matched)' : ''
      io.stdout.write(`  ${ACTION_TYPE}::"${r.query.action}" on ${r.query.resource.type}::${JSON.stringify(r.query.resource.id)}: ${e.errors.length ? 'error' : e.decision} ${by}\n`)
    }
    io.stdout.write('determining policies:\n')
    if (!determining.length) io.stdout.write(effect === 'deny' && !errors.length ? '  none: no policy permits this request (default deny)\n' : '  none\n')
    const width = Math.max(0, ...determining.map((id) => id.length))
    for (const id of determining) {
      const p = set.policies.get(id)
      io.stdout.write(p ? `  ${id.padEnd(width)}  ${p.effect.padEnd(6)}  owner ${p.owner ?? 'unknown'}  ${where(io, p)}\n` : `  ${id}\n`)
    }
    io.stdout.write(`errors:${errors.length ? '' : ' none'}\n`)
    for (const e of errors) io.stdout.write(`  ${e}\n`)
  }
  return effect === 'allow' ? 0 : 3
}

function policyJson(io: CliIO, set: CompiledPolicySet, id: string) {
  const p = set.policies.get(id)
  return p ? { id, effect: p.effect, owner: p.owner, file: rel(io, p.file), line: p.line, column: p.column } : { id }
}

function evaluationJson(e: Evaluation) {
  return { decision: e.decision, determining: e.determining, errors: e.errors }
}

