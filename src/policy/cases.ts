/**
 * Policy tests kept as data: `tests/ALLOW/*.json` and `tests/DENY/*.json` in
 * the policy directory. Each file describes one request and the policies
 * expected to determine the decision:
 *
 *   { "description": "checkout may chat with gpt-4o-mini",
 *     "request": { "principal": "spiffe://…/ns/payments/sa/checkout", "model": "gpt-4o-mini" },
 *     "determining": ["payments-approved-models"] }
 *
 * The folder says the expected decision; `determining` lists the expected
 * policy ids exactly (an empty list for "no policy permits it"). Cases run
 * through the same request mapping and engine as live traffic.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { PolicyEngine, QueryResult } from './engine.ts'
import type { PolicyInfo } from './load.ts'
import { DescriptionError, factsFromDescription, unredactedQuery } from './request.ts'

/** Cases without a `time` run at this instant (a Monday, 12:00 UTC), so results do not depend on when tests run. */
export const CASE_DEFAULT_TIME = Date.parse('2025-01-06T12:00:00Z')

export interface PolicyCase {
  /** Path relative to the cases directory, e.g. `ALLOW/checkout-chat.json`. */
  readonly name: string
  readonly file: string
  readonly expect: 'allow' | 'deny'
  readonly description: string | undefined
  readonly request: unknown
  readonly determining: readonly string[]
}

export interface CaseResult {
  readonly case: PolicyCase
  readonly passed: boolean
  readonly decision: 'allow' | 'deny' | undefined
  readonly determining: readonly string[]
  readonly errors: readonly string[]
  /** Why the case failed (or could not run). */
  readonly problems: readonly string[]
  readonly results: readonly QueryResult[]
}

export interface CaseRun {
  readonly results: readonly CaseResult[]
  readonly passed: number
  readonly failed: number
  /** Policies that determined no case's decision. */
  readonly unexercised: readonly PolicyInfo[]
  readonly exercised: ReadonlySet<string>
}

/** Reads the cases; a file that is not a valid case is reported, not skipped. */
export function loadCases(casesDir: string): { cases: PolicyCase[]; problems: { file: string; message: string }[] } {
  const cases: PolicyCase[] = []
  const problems: { file: string; message: string }[] = []
  for (const expect of ['allow', 'deny'] as const) {
    const folder = join(casesDir, expect.toUpperCase())
    let names: string[]
    try {
      if (!statSync(folder).isDirectory()) continue
      names = readdirSync(folder).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()
    } catch {
      continue
    }
    for (const n of names) {
      const file = join(folder, n)
      const name = `${expect.toUpperCase()}/${n}`
      let data: unknown
      try {
        data = JSON.parse(readFileSync(file, 'utf8'))
      } catch (err) {
        problems.push({ file, message: `not valid JSON: ${(err as Error).message}` })
        continue
      }
      const o = data as Record<string, unknown>
      if (!o || typeof o !== 'object' || Array.isArray(o)) {
        problems.push({ file, message: 'a case must be a JSON object with "request" and "determining"' })
        continue
      }
      const unknown = Object.keys(o).filter((k) => !['description', 'request', 'determining'].includes(k))
      if (unknown.length) problems.push({ file, message: `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} (known: description, request, determining)` })
      if (o.description !== undefined && typeof o.description !== 'string') problems.push({ file, message: '"description" must be a string' })
      if (!Array.isArray(o.determining) || !o.determining.every((x) => typeof x === 'string')) {
        problems.push({ file, message: '"determining" must list the expected policy ids ([] when no policy should match)' })
        continue
      }
      if (o.request === undefined) {
        problems.push({ file, message: '"request" is required' })
        continue
      }
      cases.push({ name, file, expect, description: o.description as string | undefined, request: o.request, determining: o.determining as string[] })
    }
  }
  return { cases, problems }
}

/** Runs every case against the engine's active set. */
export function runCases(engine: PolicyEngine, cases: readonly PolicyCase[]): CaseRun {
  const exercised = new Set<string>()
  const results: CaseResult[] = []
  for (const c of cases) {
    const problems: string[] = []
    for (const id of c.determining) if (!engine.policies.has(id)) problems.push(`expects policy "${id}", which is not in the policy set`)
    let described
    try {
      described = factsFromDescription(c.request, { now: CASE_DEFAULT_TIME })
    } catch (err) {
      const list = err instanceof DescriptionError ? err.problems : [(err as Error).message]
      results.push({ case: c, passed: false, decision: undefined, determining: [], errors: [], problems: [...problems, ...list.map((p) => `request: ${p}`)], results: [] })
      continue
    }
    let decision: 'allow' | 'deny'
    let determining: string[]
    let errors: string[]
    let qr: QueryResult[]
    if (described.unredacted !== undefined) {
      const q = unredactedQuery(described.unredacted)
      const ev = engine.evaluate(described.facts, q)
      decision = ev.errors.length ? 'deny' : ev.decision
      determining = [...ev.determining]
      errors = [...ev.errors]
      qr = [{ query: q, evaluation: ev }]
    } else {
      const r = engine.decide(described.facts, undefined, described.query ? [described.query] : undefined)
      decision = r.decision.effect
      determining = r.decision.policies.map((p) => p.id)
      errors = [...r.decision.errors]
      qr = [...r.results]
    }
    for (const r of qr) for (const id of r.evaluation.determining) exercised.add(id)
    if (decision !== c.expect) problems.push(`expected ${c.expect}, got ${decision}`)
    const want = [...new Set(c.determining)].sort()
    const got = [...new Set(determining)].sort()
    if (want.join('\n') !== got.join('\n')) problems.push(`expected determining policies [${want.join(', ')}], got [${got.join(', ')}]`)
    if (errors.length) problems.push(`evaluation errors: ${errors.join('; ')}`)
    results.push({ case: c, passed: problems.length === 0, decision, determining: got, errors, problems, results: qr })
  }
  const unexercised = [...engine.policies.values()].filter((p) => !exercised.has(p.id))
  const passed = results.filter((r) => r.passed).length
  return { results, passed, failed: results.length - passed, unexercised, exercised }
}
