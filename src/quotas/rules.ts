/**
 * Quota rules, compiled once: each rule's selector becomes matchers, its
 * `per` facts a partition key, its limit one or two counters. `countersFor`
 * turns a request's facts into the counters to reserve.
 */
import { modelMatcher } from '../config/sections/providers.ts'
import type { QuotaDimension, QuotaRuleConfig, QuotaWindow } from '../config/sections/quotas.ts'
import type { CounterAlgorithm, CounterRef } from './store.ts'

/** The facts of a request that rules select on and partition by. */
export interface QuotaFacts {
  readonly identity: string
  readonly teams: readonly string[]
  readonly namespace: string | undefined
  /** The delegated user: subject and `<issuer>#<subject>`. */
  readonly user: { readonly subject: string; readonly id: string } | undefined
  readonly provider: string
  readonly model: string
  readonly operation: string
}

/** What a counter counts. */
export type CounterKind = 'requests' | 'tokens' | 'input' | 'output' | 'concurrent'

export interface RuleCounter {
  readonly kind: CounterKind
  readonly limit: number
}

export interface CompiledRule {
  readonly name: string
  readonly window: QuotaWindow | undefined
  /** The window in milliseconds (a month: 30 days, for display; the counter follows the calendar). */
  readonly windowMs: number
  readonly algorithm: CounterAlgorithm
  readonly per: readonly QuotaDimension[]
  readonly counters: readonly RuleCounter[]
  /** True when the rule limits tokens (the request's estimate is reserved against it). */
  readonly tokens: boolean
  matches(f: QuotaFacts): boolean
  /** The partition the request's counters are in (`-` for every `per` fact the request lacks). */
  partition(f: QuotaFacts): string
}

export const WINDOW_MS: Readonly<Record<QuotaWindow, number>> = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000, month: 30 * 86_400_000 }

const any = (patterns: readonly string[] | undefined): ((v: string | undefined) => boolean) | undefined => {
  if (!patterns) return undefined
  const m = modelMatcher(patterns)
  return (v) => v !== undefined && m(v)
}

/** A partition value as it appears in a key: `%`-encoded so `:` and `|` only ever separate. */
const part = (v: string | undefined) => (v === undefined || v === '' ? '-' : encodeURIComponent(v))

export function compileRule(r: QuotaRuleConfig): CompiledRule {
  const m = r.match ?? {}
  const identity = any(m.identity)
  const team = any(m.team)
  const namespace = any(m.namespace)
  const user = any(m.user)
  const provider = any(m.provider)
  const model = any(m.model)
  const operation = any(m.operation)
  const l = r.limit
  const counters: RuleCounter[] = []
  if (l.requests !== undefined) counters.push({ kind: 'requests', limit: l.requests })
  if (l.tokens !== undefined) counters.push({ kind: 'tokens', limit: l.tokens })
  if (l.inputTokens !== undefined) counters.push({ kind: 'input', limit: l.inputTokens })
  if (l.outputTokens !== undefined) counters.push({ kind: 'output', limit: l.outputTokens })
  if (l.concurrent !== undefined) counters.push({ kind: 'concurrent', limit: l.concurrent })
  const per = [...(r.per ?? [])]
  const algorithm: CounterAlgorithm = l.concurrent !== undefined ? 'concurrent' : r.window === 'month' ? 'month' : 'gcra'
  return Object.freeze({
    name: r.name,
    window: r.window,
    windowMs: r.window ? WINDOW_MS[r.window] : 0,
    algorithm,
    per: Object.freeze(per),
    counters: Object.freeze(counters),
    tokens: counters.some((c) => c.kind === 'tokens' || c.kind === 'input' || c.kind === 'output'),
    matches(f: QuotaFacts) {
      if (identity && !identity(f.identity)) return false
      if (team && !f.teams.some((t) => team(t))) return false
      if (namespace && !namespace(f.namespace)) return false
      if (user && !(user(f.user?.subject) || user(f.user?.id))) return false
      if (provider && !provider(f.provider)) return false
      if (model && !model(f.model)) return false
      if (operation && !operation(f.operation)) return false
      return true
    },
    partition(f: QuotaFacts) {
      if (per.length === 0) return '*'
      return per
        .map((d) => {
          switch (d) {
            case 'identity':
              return part(f.identity)
            case 'team':
              return part([...f.teams].sort().join(','))
            case 'namespace':
              return part(f.namespace)
            case 'user':
              return part(f.user?.id)
            case 'provider':
              return part(f.provider)
            case 'model':
              return part(f.model)
            case 'operation':
              return part(f.operation)
          }
        })
        .join('|')
    },
  })
}

/** The store key of one counter. */
export function counterKey(rule: CompiledRule, kind: CounterKind, partition: string): string {
  return `${rule.name}:${kind}:${partition}`
}

/** Maps a store key back to its rule's counter (for `modelgate quota show`). */
export function refResolver(rules: readonly CompiledRule[]): (key: string) => (CounterRef & { rule: CompiledRule; kind: CounterKind; partition: string }) | undefined {
  const byName = new Map(rules.map((r) => [r.name, r]))
  return (key) => {
    const a = key.indexOf(':')
    const b = key.indexOf(':', a + 1)
    if (a < 0 || b < 0) return undefined
    const rule = byName.get(key.slice(0, a))
    const kind = key.slice(a + 1, b) as CounterKind
    const c = rule?.counters.find((x) => x.kind === kind)
    if (!rule || !c) return undefined
    return { key, algorithm: rule.algorithm, limit: c.limit, windowMs: rule.windowMs, rule, kind, partition: key.slice(b + 1) }
  }
}
