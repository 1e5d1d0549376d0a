import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import { isMap, isNode, LineCounter, parseDocument, type Document } from 'yaml'
import { auditSchema, type AuditConfig } from './sections/audit.ts'
import { identitySchema, type IdentityConfig } from './sections/identity.ts'
import { policySchema, type PolicyConfig } from './sections/policy.ts'
import { mcpSchema, type McpConfig } from './sections/mcp.ts'
import { checkProviders, providersSchema, type PathProblem, type ProvidersConfig } from './sections/providers.ts'
import { checkQuotas, quotasSchema, type QuotasConfig } from './sections/quotas.ts'
import { redactionSchema, type RedactionConfig } from './sections/redaction.ts'
import { serverSchema, type ServerConfig } from './sections/server.ts'
import { ConfigError, formatProblem, type ConfigProblem } from './problems.ts'

export { ConfigError, formatProblem, type ConfigProblem } from './problems.ts'

/** The whole, validated, frozen configuration. */
export interface Config {
  server: ServerConfig
  identity: IdentityConfig
  providers: ProvidersConfig
  policy: PolicyConfig
  redaction: RedactionConfig
  audit: AuditConfig
  quotas: QuotasConfig
  mcp: McpConfig
  /** Directory relative paths in the file are resolved against. */
  baseDir: string
}

export const configSchema = {
  $id: 'https://modelgate.dev/schema/config.json',
  type: 'object',
  additionalProperties: false,
  required: ['identity'],
  properties: {
    server: serverSchema,
    identity: identitySchema,
    providers: providersSchema,
    policy: policySchema,
    redaction: redactionSchema,
    audit: auditSchema,
    quotas: quotasSchema,
    mcp: mcpSchema,
  },
} as const

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true })
const validate = ajv.compile(configSchema)

/** Loads, validates and freezes a YAML (or JSON) configuration file. */
export function loadConfigFile(file: string): Config {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError([{ file, line: undefined, column: undefined, field: '', message: `cannot read file: ${(err as Error).message}` }])
  }
  return parseConfig(text, file)
}

/** Parses configuration text; `file` names it in error messages and anchors relative paths. */
export function parseConfig(text: string, file: string): Config {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const problems: ConfigProblem[] = []
  for (const e of [...doc.errors, ...doc.warnings]) {
    // linePos is only filled in with prettyErrors; the offset is always there.
    const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0])
    problems.push({ file, line: pos?.line, column: pos?.col, field: '', message: e.message.split('\n')[0]! })
  }
  if (problems.length) throw new ConfigError(problems)
  const data = doc.toJS() ?? {}
  return finish(data, file, doc, lineCounter)
}

/** Validates a configuration given as an object (e.g. built by `modelgate start`). */
export function configFromObject(data: unknown, source: string, baseDir = process.cwd()): Config {
  return finish(structuredClone(data), source, undefined, undefined, baseDir)
}

function finish(data: unknown, file: string, doc: Document | undefined, lc: LineCounter | undefined, baseDir?: string): Config {
  if (!validate(data)) {
    // A bad key name yields a specific error (carrying propertyName) plus a generic "propertyNames" one: keep the specific one.
    const problems = (validate.errors ?? []).filter((e) => e.keyword !== 'propertyNames').map((e) => problemFromAjv(e, file, doc, lc))
    throw new ConfigError(dedupe(problems))
  }
  const cfg = data as unknown as Omit<Config, 'baseDir'>
  // What the schema cannot say, located like the schema's own problems.
  const semantic: PathProblem[] = [...checkProviders(cfg.providers), ...checkQuotas(cfg.quotas)]
  if (semantic.length) throw new ConfigError(dedupe(semantic.map((p) => problemAt(p, file, doc, lc))))
  const base = baseDir ?? (file.includes('/') || file.endsWith('.yaml') || file.endsWith('.yml') || file.endsWith('.json') ? dirname(resolve(file)) : process.cwd())
  const full: Config = { ...cfg, baseDir: base }
  return deepFreeze(full)
}

/** Resolves a path from the configuration against the configuration's directory. */
export function resolveConfigPath(cfg: Config, p: string): string {
  return isAbsolute(p) ? p : resolve(cfg.baseDir, p)
}

function problemAt(p: PathProblem, file: string, doc: Document | undefined, lc: LineCounter | undefined): ConfigProblem {
  const field = p.path.reduce<string>((acc, s) => (typeof s === 'number' ? `${acc}[${s}]` : acc ? `${acc}.${s}` : s), '')
  let line: number | undefined
  let column: number | undefined
  if (doc && lc) {
    const node = findNode(doc, p.path.map(String), false)
    if (node?.range) ({ line, col: column } = lc.linePos(node.range[0]))
  }
  return { file, line, column, field, message: p.message }
}

function problemFromAjv(e: ErrorObject, file: string, doc: Document | undefined, lc: LineCounter | undefined): ConfigProblem {
  const segments = e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
  let field = segments.reduce((acc, s) => (/^\d+$/.test(s) ? `${acc}[${s}]` : acc ? `${acc}.${s}` : s), '')
  let message = e.message ?? 'is invalid'
  let keyPath = segments
  let wantKey = e.keyword === 'additionalProperties'
  if (e.propertyName !== undefined) {
    // The error is about a key's name (propertyNames), not about its value.
    field = field ? `${field}.${e.propertyName}` : e.propertyName
    message = `is not a valid name (${message})`
    keyPath = [...segments, e.propertyName]
    wantKey = true
  } else if (e.keyword === 'additionalProperties') {
    const extra = String((e.params as { additionalProperty: string }).additionalProperty)
    field = field ? `${field}.${extra}` : extra
    message = 'is not a known setting'
    keyPath = [...segments, extra]
  } else if (e.keyword === 'required') {
    const missing = String((e.params as { missingProperty: string }).missingProperty)
    field = field ? `${field}.${missing}` : missing
    message = 'is required'
  } else if (e.keyword === 'enum') {
    message = `must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`
  }
  let line: number | undefined
  let column: number | undefined
  if (doc && lc) {
    const node = findNode(doc, keyPath, wantKey)
    if (node?.range) {
      const pos = lc.linePos(node.range[0])
      line = pos.line
      column = pos.col
    }
  }
  return { file, line, column, field, message }
}

/** The YAML node for a path; for an unknown key, the key node itself. Falls back to the nearest ancestor. */
function findNode(doc: Document, path: string[], wantKey: boolean): { range?: [number, number, number] | null } | undefined {
  const keys = path.map((s) => (/^\d+$/.test(s) ? Number(s) : s))
  for (let n = keys.length; n >= 0; n--) {
    if (wantKey && n === keys.length && n > 0) {
      const parent = n === 1 ? doc.contents : doc.getIn(keys.slice(0, n - 1), true)
      if (isMap(parent)) {
        const pair = parent.items.find((it) => isNode(it.key) && (it.key as { value?: unknown }).value === keys[n - 1])
        if (pair && isNode(pair.key)) return pair.key as { range?: [number, number, number] | null }
      }
      continue
    }
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true)
    if (isNode(node)) return node as { range?: [number, number, number] | null }
  }
  return undefined
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>()
  return problems.filter((p) => {
    const k = formatProblem(p)
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k])
  }
  return v
}
