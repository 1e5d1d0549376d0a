/**
 * The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11)
 * of a quota refusal, naming the rule that refused (and, for an admitted
 * request, one list member per rule that matched):
 *
 *   RateLimit-Policy: "<rule>";q=<limit>;w=<window seconds>[;qu="<unit>"]
 *   RateLimit: "<rule>";r=<remaining>;t=<seconds until the request fits>
 *
 * plus Retry-After (seconds). Units: `requests` (the draft's default, left
 * out), `concurrent-requests` (no window), and `tokens` for token limits,
 * a unit the draft does not define (`input-tokens`, `output-tokens` for
 * rules that limit them apart).
 */
import type { CompiledRule, CounterKind } from './rules.ts'

const UNIT: Readonly<Record<CounterKind, string | undefined>> = { requests: undefined, concurrent: 'concurrent-requests', tokens: 'tokens', input: 'input-tokens', output: 'output-tokens' }

/** One counter of an admitted request: its rule, kind, limit and state after the charge. */
export interface AdmittedCounter {
  readonly rule: CompiledRule
  readonly kind: CounterKind
  readonly limit: number
  readonly remaining: number
  readonly resetMs: number
}

/**
 * The RateLimit fields of an admitted request: one list member per rule that
 * matched, its counter with the least left (the one the next request meets
 * first), `t` the seconds until that counter is back to its full limit.
 */
export function admittedRateLimitHeaders(counters: readonly AdmittedCounter[]): Record<string, string> | undefined {
  const tightest = new Map<CompiledRule, AdmittedCounter>()
  for (const c of counters) {
    const seen = tightest.get(c.rule)
    if (seen === undefined || c.remaining / c.limit < seen.remaining / seen.limit) tightest.set(c.rule, c)
  }
  if (tightest.size === 0) return undefined
  const policies: string[] = []
  const states: string[] = []
  for (const c of tightest.values()) {
    policies.push(policyItem(c.rule, c.kind, c.limit))
    states.push(stateItem(c.rule, c.remaining, Math.max(0, Math.ceil(c.resetMs / 1000))))
  }
  return { 'ratelimit-policy': policies.join(', '), ratelimit: states.join(', ') }
}

function stateItem(rule: CompiledRule, remaining: number, seconds: number): string {
  return `"${rule.name}";r=${Math.max(0, Math.floor(remaining))};t=${seconds}`
}

function policyItem(rule: CompiledRule, kind: CounterKind, limit: number): string {
  const unit = UNIT[kind]
  const window = rule.window === 'month' ? undefined : rule.windowMs > 0 ? Math.round(rule.windowMs / 1000) : undefined
  return `"${rule.name}";q=${limit}${window !== undefined ? `;w=${window}` : ''}${unit ? `;qu="${unit}"` : ''}`
}

export function rateLimitHeaders(rule: CompiledRule, kind: CounterKind, limit: number, remaining: number, retryAfterS: number): Record<string, string> {
  return {
    'retry-after': String(retryAfterS),
    'ratelimit-policy': policyItem(rule, kind, limit),
    ratelimit: stateItem(rule, remaining, retryAfterS),
  }
}
