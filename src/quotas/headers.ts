/**
 * The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11)
 * of a quota refusal, naming the rule that refused:
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

export function rateLimitHeaders(rule: CompiledRule, kind: CounterKind, limit: number, remaining: number, retryAfterS: number): Record<string, string> {
  const unit = UNIT[kind]
  const window = rule.window === 'month' ? undefined : rule.windowMs > 0 ? Math.round(rule.windowMs / 1000) : undefined
  const name = `"${rule.name}"`
  return {
    'retry-after': String(retryAfterS),
    'ratelimit-policy': `${name};q=${limit}${window !== undefined ? `;w=${window}` : ''}${unit ? `;qu="${unit}"` : ''}`,
    ratelimit: `${name};r=${Math.max(0, Math.floor(remaining))};t=${retryAfterS}`,
  }
}
