/**
 * The redaction engine: configuration compiled once into a scanner, action
 * tables and a keyed hash. Requests never parse configuration.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { Ajv } from 'ajv'
import RE2 from 're2'
import { ConfigError, type ConfigProblem } from '../config/problems.ts'
import { redactionSchema, type CustomDetectorConfig, type RedactionConfig } from '../config/sections/redaction.ts'
import { BUILTIN_DETECTORS } from './catalog.ts'
import { Scanner } from './scanner.ts'
import type { DetectorSpec, RedactionAction } from './types.ts'

export type Direction = 'request' | 'response'

export interface RedactionEngine {
  readonly config: RedactionConfig
  readonly scanner: Scanner
  /** Salted hash of a value for findings: HMAC-SHA256, first 32 hex characters. */
  hash(value: string): string
  /** The configured action for a detection (before any policy permission). */
  action(direction: Direction, dataClass: string, detector: string): RedactionAction
  /** Whether responses to this provider get the caller's values back in place of placeholders. */
  restoreFor(providerName: string | undefined): boolean
}

/** Where configuration problems are reported from. */
const SOURCE = 'configuration'

export function compileRedaction(cfg: RedactionConfig, env: NodeJS.ProcessEnv = process.env): RedactionEngine {
  const problems: ConfigProblem[] = []
  const problem = (field: string, message: string) => problems.push({ file: SOURCE, line: undefined, column: undefined, field, message })

  const builtinIds = new Set(BUILTIN_DETECTORS.map((d) => d.id))
  cfg.disabledDetectors.forEach((id, i) => {
    if (!builtinIds.has(id)) problem(`redaction.disabledDetectors[${i}]`, `"${id}" is not a built-in detector`)
  })
  const disabled = new Set(cfg.disabledDetectors)
  const specs: DetectorSpec[] = BUILTIN_DETECTORS.filter((d) => !disabled.has(d.id))
  const ids = new Set(builtinIds)
  cfg.custom.forEach((c, i) => {
    const field = `redaction.custom[${i}]`
    if (ids.has(c.id)) {
      problem(`${field}.id`, `"${c.id}" is already a detector id`)
      return
    }
    ids.add(c.id)
    if ((c.pattern === undefined) === (c.words === undefined)) {
      problem(field, 'needs exactly one of "pattern" and "words"')
      return
    }
    const spec = customSpec(c, field, problem)
    if (spec) specs.push(spec)
  })
  for (const id of Object.keys(cfg.detectorActions)) {
    if (!ids.has(id)) problem(`redaction.detectorActions.${id}`, 'is not a detector id')
  }
  if (problems.length) throw new ConfigError(problems)

  const scanner = new Scanner(specs, { base64MinLength: cfg.base64MinLength, minConfidence: cfg.minConfidence })
  const saltText = (cfg.hashSaltEnv && env[cfg.hashSaltEnv]) || cfg.hashSalt
  const salt = saltText ? Buffer.from(saltText, 'utf8') : randomBytes(32)
  const restoreProviders = new Set(cfg.restore.providers)
  return Object.freeze({
    config: cfg,
    scanner,
    hash: (value: string) => createHmac('sha256', salt).update(value, 'utf8').digest('hex').slice(0, 32),
    action(direction: Direction, dataClass: string, detector: string): RedactionAction {
      if (direction === 'request') return cfg.detectorActions[detector] ?? cfg.actions[dataClass] ?? cfg.defaultAction
      return cfg.detectorActions[detector] ?? cfg.responses.actions[dataClass] ?? cfg.responses.defaultAction
    },
    restoreFor: (providerName: string | undefined) => cfg.restore.enabled || (providerName !== undefined && restoreProviders.has(providerName)),
  })
}

function customSpec(c: CustomDetectorConfig, field: string, problem: (field: string, message: string) => void): DetectorSpec | undefined {
  let pattern: string
  let groups: number[]
  let keywords: readonly string[]
  let caseSensitiveKeywords = false
  if (c.words) {
    // Whole words: a non-word character (or the edge of the text) on both sides.
    const alts = c.words.map((w) => w.replace(/[\\^$.*+?()[\]{}|-]/g, '\\$&')).join('|')
    pattern = `(?i)(?:^|[^\\pL\\pN_])((?:${alts}))(?:[^\\pL\\pN_]|$)`
    groups = [1]
    keywords = c.words
  } else {
    pattern = (c.caseInsensitive ? '(?i)' : '') + c.pattern!
    groups = [c.group ?? 0]
    keywords = c.keywords ?? []
    caseSensitiveKeywords = !c.caseInsensitive
  }
  let groupCount: number
  try {
    // An empty alternative always matches: the result's length tells the number of groups.
    const probe = new RE2(`(?:${pattern})|`, 'u').exec('')
    groupCount = probe ? probe.length - 1 : 0
    new RE2(pattern, 'gdu')
  } catch (err) {
    problem(`${field}.${c.words ? 'words' : 'pattern'}`, `is not a valid RE2 pattern: ${(err as Error).message}`)
    return undefined
  }
  if (groups[0]! > groupCount) {
    problem(`${field}.group`, `the pattern has ${groupCount} capture group${groupCount === 1 ? '' : 's'}`)
    return undefined
  }
  if (new RE2(pattern, 'u').test('')) {
    problem(`${field}.pattern`, 'matches the empty string')
    return undefined
  }
  return Object.freeze({
    id: c.id,
    dataClass: c.dataClass,
    confidence: c.confidence,
    label: c.label ?? defaultLabel(c.id),
    description: c.description ?? `custom detector ${c.id}`,
    pattern,
    groups,
    keywords,
    caseSensitiveKeywords,
    maxLength: c.maxLength,
    ...(c.minEntropy !== undefined ? { minEntropy: c.minEntropy } : {}),
    scope: { namespaces: c.namespaces, spiffeIdPrefixes: c.spiffeIdPrefixes },
    origin: 'custom' as const,
  })
}

/** `acme-project` → `ACME_PROJECT`; a label must start with a letter to read as a placeholder. */
function defaultLabel(id: string): string {
  const l = id.toUpperCase().replace(/[^A-Z0-9]+/g, '_').replace(/_+$/, '')
  return (/^[A-Z]/.test(l) ? l : `C_${l}`).slice(0, 32)
}

let validateSection: ReturnType<Ajv['compile']> | undefined
/**
 * The `redaction` section alone, validated with its defaults filled in (for
 * tools that run without a full configuration file, such as `modelgate redact`).
 */
export function redactionConfigFrom(data: unknown = {}): RedactionConfig {
  validateSection ??= new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true }).compile({
    type: 'object',
    additionalProperties: false,
    properties: { redaction: redactionSchema },
  })
  const copy = { redaction: structuredClone(data) }
  if (!validateSection(copy)) {
    throw new ConfigError(
      (validateSection.errors ?? []).map((e) => ({ file: SOURCE, line: undefined, column: undefined, field: e.instancePath.slice(1).replace(/\//g, '.'), message: e.message ?? 'is invalid' })),
    )
  }
  return copy.redaction as RedactionConfig
}
