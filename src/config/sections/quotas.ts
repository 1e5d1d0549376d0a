/**
 * `quotas`: limits on what callers may spend, per rule. A rule selects
 * requests (by identity, team, namespace, delegated user, provider, model,
 * operation), partitions its counter by some of those facts, and limits
 * requests, tokens or requests in flight per window. Every rule that matches
 * a request must admit it. Counters live in a store: this process's memory,
 * or Redis shared by every replica.
 */
import type { PathProblem } from './providers.ts'

export type QuotaWindow = 'second' | 'minute' | 'hour' | 'day' | 'month'
export type QuotaDimension = 'identity' | 'team' | 'namespace' | 'user' | 'provider' | 'model' | 'operation'

export const QUOTA_DIMENSIONS: readonly QuotaDimension[] = ['identity', 'team', 'namespace', 'user', 'provider', 'model', 'operation']

/** Which requests a rule applies to: every listed fact must match one of its values (`*` matches any run of characters). */
export interface QuotaSelectorConfig {
  identity?: string[]
  team?: string[]
  namespace?: string[]
  user?: string[]
  provider?: string[]
  model?: string[]
  operation?: string[]
}

/** One limit: `requests`, `tokens` (input + output), `inputTokens` and/or `outputTokens`, or `concurrent`. */
export interface QuotaLimitConfig {
  requests?: number
  tokens?: number
  inputTokens?: number
  outputTokens?: number
  concurrent?: number
}

export interface QuotaRuleConfig {
  name: string
  match?: QuotaSelectorConfig
  /** The facts whose values get a counter of their own; none: one counter for every matching request. */
  per?: QuotaDimension[]
  limit: QuotaLimitConfig
  /** Absent only for `concurrent` limits. */
  window?: QuotaWindow
}

export interface QuotaRedisConfig {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). */
  url: string
  /** A file holding the password (read at start-up); overrides one in the URL. */
  passwordFile: string
  username: string
  /** PEM files for TLS (`rediss://` or any of them set). */
  tls: { caFile: string; certFile: string; keyFile: string; serverName: string }
  /** Prefix of every key modelgate writes. */
  keyPrefix: string
  /** Give up on one command after this long; the request then follows `onStoreError`. */
  timeoutMs: number
}

export interface QuotaModelConfig {
  /** Model names (`*` matches any run of characters). */
  match: string[]
  /** Characters per token for input and output estimates; absent: gpt-tokenizer for OpenAI APIs, `estimation.charsPerToken` otherwise. */
  charsPerToken?: number
  /** Output tokens reserved when the request sets no max_tokens. */
  defaultMaxTokens?: number
}

export interface QuotasConfig {
  store: 'memory' | 'redis'
  redis: QuotaRedisConfig
  /** Store unreachable: `deny` (MG_QUOTA_UNAVAILABLE) or `local` (a per-replica share of each limit). */
  onStoreError: 'deny' | 'local'
  /** With `onStoreError: local`, the share of each limit one replica may use on its own while the store is unreachable. */
  localShare: number
  /** A reservation whose request never ends is released (concurrent) after this long. */
  maxRequestSeconds: number
  /** Admitted requests' answers carry the RateLimit fields of the rules that matched (refusals always do). */
  rateLimitHeaders: boolean
  estimation: {
    charsPerToken: number
    defaultMaxTokens: number
    models: QuotaModelConfig[]
  }
  rules: QuotaRuleConfig[]
}

const names = { type: 'array', minItems: 1, maxItems: 256, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 2048 } } as const
const positive = { type: 'integer', minimum: 1, maximum: 1e15 } as const

export const quotasSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    store: { enum: ['memory', 'redis'], default: 'memory' },
    redis: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: { type: 'string', default: '', pattern: '^(|rediss?://.+)$' },
        passwordFile: { type: 'string', default: '' },
        username: { type: 'string', default: '' },
        tls: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            caFile: { type: 'string', default: '' },
            certFile: { type: 'string', default: '' },
            keyFile: { type: 'string', default: '' },
            serverName: { type: 'string', default: '' },
          },
        },
        keyPrefix: { type: 'string', maxLength: 64, pattern: '^[A-Za-z0-9:._-]*$', default: 'modelgate:' },
        timeoutMs: { type: 'integer', minimum: 1, maximum: 10000, default: 200 },
      },
    },
    onStoreError: { enum: ['deny', 'local'], default: 'deny' },
    localShare: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.1 },
    maxRequestSeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 600 },
    rateLimitHeaders: { type: 'boolean', default: true },
    estimation: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        charsPerToken: { type: 'number', exclusiveMinimum: 0, maximum: 100, default: 3 },
        defaultMaxTokens: { ...positive, default: 4096 },
        models: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['match'],
            properties: {
              match: names,
              charsPerToken: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
              defaultMaxTokens: positive,
            },
          },
        },
      },
    },
    rules: {
      type: 'array',
      default: [],
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'limit'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
          match: {
            type: 'object',
            additionalProperties: false,
            properties: { identity: names, team: names, namespace: names, user: names, provider: names, model: names, operation: names },
          },
          per: { type: 'array', uniqueItems: true, items: { enum: [...QUOTA_DIMENSIONS] } },
          limit: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: { requests: positive, tokens: positive, inputTokens: positive, outputTokens: positive, concurrent: positive },
          },
          window: { enum: ['second', 'minute', 'hour', 'day', 'month'] },
        },
      },
    },
  },
} as const

const OPERATIONS = new Set(['chat', 'completion', 'responses', 'embedding', 'messages'])

/** What the schema cannot say: unique rule names, one kind of limit per rule, a window where one is needed, a usable Redis. */
export function checkQuotas(q: QuotasConfig | undefined): PathProblem[] {
  if (!q) return []
  const problems: PathProblem[] = []
  const seen = new Set<string>()
  q.rules.forEach((r, i) => {
    const at = ['quotas', 'rules', i]
    if (seen.has(r.name)) problems.push({ path: [...at, 'name'], message: `"${r.name}" is the name of an earlier rule` })
    seen.add(r.name)
    const l = r.limit
    const kinds = [l.requests !== undefined && 'requests', l.tokens !== undefined && 'tokens', (l.inputTokens !== undefined || l.outputTokens !== undefined) && 'inputTokens/outputTokens', l.concurrent !== undefined && 'concurrent'].filter(Boolean)
    if (kinds.length > 1) problems.push({ path: [...at, 'limit'], message: `sets ${kinds.join(' and ')}: one kind of limit per rule (write another rule for the other)` })
    if (l.concurrent !== undefined && r.window !== undefined) problems.push({ path: [...at, 'window'], message: 'does not apply to a concurrent limit (requests in flight have no window)' })
    if (l.concurrent === undefined && r.window === undefined) problems.push({ path: [...at, 'window'], message: 'is required: one of second, minute, hour, day, month' })
    for (const op of r.match?.operation ?? []) {
      if (!op.includes('*') && !OPERATIONS.has(op)) problems.push({ path: [...at, 'match', 'operation'], message: `"${op}" is not an operation (${[...OPERATIONS].join(', ')})` })
    }
  })
  if (q.store === 'redis' && q.redis.url === '') problems.push({ path: ['quotas', 'redis', 'url'], message: 'is required with store: redis' })
  const tls = q.redis.tls
  if ((tls.certFile === '') !== (tls.keyFile === '')) problems.push({ path: ['quotas', 'redis', 'tls'], message: 'certFile and keyFile go together' })
  return problems
}
