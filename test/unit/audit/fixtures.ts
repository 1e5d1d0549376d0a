/**
 * Shared fixtures for the audit tests: a Config built from the audit section's
 * own schema (defaults applied by ajv, as the loader does), request contexts
 * shaped like the ones the other stages leave behind, and small utilities.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Ajv } from 'ajv'
import type { Config } from '../../../src/config/config.ts'
import { auditSchema, type AuditConfig } from '../../../src/config/sections/audit.ts'
import { GateError, type ErrorCode } from '../../../src/errors.ts'
import { createLogger, type Logger } from '../../../src/log.ts'
import { RequestContext, type PolicyDecision } from '../../../src/pipeline/context.ts'
import type { ParsedRequest } from '../../../src/providers/types.ts'
import { compileCatalog } from '../../../src/providers/catalog.ts'
import { matchRoute } from '../../../src/providers/routes.ts'

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true })
const validateAudit = ajv.compile({ type: 'object', additionalProperties: false, properties: { audit: auditSchema } })

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] }

/** The audit section with every default filled in, validated by its schema. */
export function auditSection(overrides: DeepPartial<AuditConfig> = {}): AuditConfig {
  const data = { audit: structuredClone(overrides) as Record<string, unknown> }
  if (!validateAudit(data)) throw new Error('invalid audit section: ' + ajv.errorsText(validateAudit.errors))
  return data.audit as unknown as AuditConfig
}

/** A Config with the audit section under test; other sections carry what the audit stage reads. */
export function testConfig(audit: DeepPartial<AuditConfig> = {}, opts: { metricsListen?: string; redaction?: boolean; baseDir?: string } = {}): Config {
  return {
    server: { listen: '127.0.0.1:0', maxBodyBytes: 1048576, phaseTimeoutMs: 800, drainTimeoutMs: 1000, metricsListen: opts.metricsListen ?? '' },
    identity: { trustDomains: ['example.org'] },
    providers: { routes: {} },
    policy: {},
    redaction: { enabled: opts.redaction ?? true },
    audit: auditSection(audit),
    baseDir: opts.baseDir ?? process.cwd(),
  } as unknown as Config
}

/** A temporary directory removed when the test ends. */
export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'mg-audit-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Collects log lines as objects. */
export function memoryLogger(): Logger & { lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const logger = createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) })
  return Object.assign(logger, { lines })
}

export const SECRET = 'AKIAZ7Q3EXAMPLEKEY42'

export function parsedRequest(over: Partial<ParsedRequest> = {}): ParsedRequest {
  return {
    provider: 'openai',
    providerName: 'openai',
    operation: 'chat',
    api: 'openai.chat_completions',
    model: 'gpt-4o-mini',
    stream: false,
    maxTokens: 256,
    tools: [{ name: 'lookup', type: 'function' }],
    ...over,
  }
}

export const DECISION: PolicyDecision = {
  effect: 'allow',
  decisionId: 'd-0001',
  policies: [
    { id: 'allow-payments-chat', owner: 'team-payments' },
    { id: 'baseline', owner: undefined },
  ],
  errors: [],
  policySetHash: 'ps-3af2',
  cached: false,
  shadow: { effect: 'deny', policies: [{ id: 'shadow-deny-secrets', owner: 'security' }], errors: [], policySetHash: 'ps-shadow-9' },
}

/**
 * A context as the other stages would leave it for an allowed chat request
 * that carried a secret (redacted before it left). `secret` is placed in the
 * original body; the body that "went upstream" carries a placeholder.
 */
/** The provider the fixtures' requests go to. */
export const PROVIDER = compileCatalog({ catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com' } } }).get('openai')!

export function allowedContext(opts: { id?: string; traceparent?: string; secret?: string; spiffe?: string } = {}): RequestContext {
  const ctx = new RequestContext(opts.traceparent ? { traceparent: opts.traceparent } : {})
  ctx.id = opts.id ?? 'req-allowed-1'
  ctx.method = 'POST'
  ctx.path = '/v1/chat/completions?api-key=should-not-appear'
  ctx.put('target', { route: matchRoute(ctx.path)!, provider: PROVIDER })
  ctx.put('url', { path: '/v1/chat/completions', queryNames: ['api-key'] })
  ctx.authority = 'llm.internal'
  const spiffe = opts.spiffe ?? 'spiffe://example.org/ns/payments/sa/checkout'
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffe)!
  const ns = /^\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(m[2] ?? '')
  ctx.put('caller', {
    workload: {
      spiffeId: spiffe,
      trustDomain: m[1]!,
      path: m[2] ?? '',
      namespace: ns?.[1],
      serviceAccount: ns?.[2],
      source: 'mtls',
      certificateSha256: 'c0ffee',
    },
    user: { subject: 'alice', issuer: 'https://idp.example.org', email: 'alice@example.org', groups: ['payments', 'eng'] },
  })
  const secret = opts.secret ?? SECRET
  ctx.requestBody = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `my key is ${secret}` }] }))
  ctx.put('request', parsedRequest())
  ctx.addFinding({ detector: 'aws-access-key', dataClass: 'secret.cloud_key', confidence: 'high', direction: 'request', location: '$.messages[0].content', start: 10, length: secret.length, hash: 'h-5e1f', action: 'redact' })
  ctx.addFinding({ detector: 'email', dataClass: 'pii.email', confidence: 'high', direction: 'request', location: '$.messages[0].content', start: 0, length: 5, hash: 'h-aa01', action: 'allow' })
  ctx.addFinding({ detector: 'email', dataClass: 'pii.email', confidence: 'medium', direction: 'response', location: '$.choices[0]', start: 0, length: 5, hash: 'h-aa02', action: 'redact' })
  ctx.replaceRequestBody(Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'my key is [SECRET_CLOUD_KEY_1]' }] })))
  ctx.put('decision', DECISION)
  ctx.put('quota', { rules: ['team-daily-tokens'], remaining: { 'team-daily-tokens': 9000 } })
  ctx.put('reply', { model: 'gpt-4o-mini-2024-07-18', usage: { input: 12, output: 34 } })
  ctx.responseStatus = 200
  return ctx
}

/** A context denied by `code` during the request phases. */
export function deniedContext(code: ErrorCode, opts: { id?: string; details?: Record<string, unknown>; internal?: string } = {}): RequestContext {
  const ctx = allowedContext({ id: opts.id ?? `req-denied-${code}` })
  ctx.responseStatus = undefined
  ctx.put('reply', { model: undefined, usage: { input: undefined, output: undefined } })
  ctx.put('decision', { ...DECISION, effect: code === 'MG_POLICY_DENIED' ? 'deny' : 'allow' })
  ctx.denial = new GateError(code, { ...(opts.details ? { details: opts.details } : {}), ...(opts.internal ? { internal: opts.internal } : {}) })
  // Refused in the request phases: nothing went upstream, so no response findings. Redaction-apply
  // marks the classes it blocked `block`; every other value stays as the scan left it, withheld.
  const blocked = code === 'MG_DATA_BLOCKED' && Array.isArray(opts.details?.data_classes) ? (opts.details.data_classes as string[]) : []
  const request = ctx.findings.filter((f) => f.direction === 'request').map((f) => ({ ...f, action: blocked.includes(f.dataClass) ? ('block' as const) : ('withheld' as const) }))
  ctx.findings.splice(0, ctx.findings.length, ...request)
  return ctx
}

/** Runs a context through the stage's phases the way the pipeline would, adding stage timings as it goes. */
export function drive(
  stage: { requestHeaders?: (c: RequestContext) => unknown; requestBody?: (c: RequestContext) => unknown; responseHeaders?: (c: RequestContext) => unknown; close?: (c: RequestContext, o: { kind: 'completed' | 'cancelled' | 'error'; error?: unknown }) => void },
  ctx: RequestContext,
  opts: { response?: boolean; outcome?: 'completed' | 'cancelled' | 'error' } = {},
): void {
  const bump = (name: string, ms: number) => ctx.timings.set(name, (ctx.timings.get(name) ?? 0) + ms)
  stage.requestHeaders?.(ctx)
  bump('audit', 0.01)
  bump('identity', 0.2)
  stage.requestBody?.(ctx)
  bump('audit', 0.01)
  bump('provider', 0.3)
  bump('policy', 0.4)
  if (opts.response !== false && !ctx.denial) {
    stage.responseHeaders?.(ctx)
    bump('audit', 0.01)
    bump('provider', 0.05)
  }
  stage.close?.(ctx, { kind: opts.outcome ?? 'completed' })
}
