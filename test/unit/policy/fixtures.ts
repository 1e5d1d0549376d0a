/** Shared test data for the policy tests: identities, requests and small policy directories. */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { WorkloadIdentity } from '../../../src/identity/types.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import type { ParsedRequest } from '../../../src/providers/types.ts'

export const REPO = join(import.meta.dirname, '..', '..', '..')
export const SHIPPED = join(REPO, 'policies')
export const SCHEMA_TEXT = readFileSync(join(SHIPPED, 'modelgate.cedarschema'), 'utf8')

export const CHECKOUT = 'spiffe://modelgate.local/ns/payments/sa/checkout'
export const NOTEBOOK = 'spiffe://modelgate.local/ns/research/sa/notebook'
export const ADMIN = 'spiffe://modelgate.local/ns/platform/sa/admin'

export function identity(spiffeId: string): WorkloadIdentity {
  const m = /^spiffe:\/\/([^/]+)(\/.*)?$/.exec(spiffeId)!
  const path = m[2] ?? ''
  const k = /^\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(path)
  return { spiffeId, trustDomain: m[1]!, path, namespace: k?.[1], serviceAccount: k?.[2], source: 'mtls', certificateSha256: undefined }
}

export function parsed(over: Partial<ParsedRequest> = {}): ParsedRequest {
  return {
    provider: 'openai',
    providerName: 'openai',
    operation: 'chat',
    api: 'openai.chat_completions',
    model: 'gpt-4o-mini',
    stream: false,
    maxTokens: undefined,
    tools: [],
    ...over,
  }
}

/** A request context as the policy stage sees it: identity resolved, body parsed, data classes found. */
export function requestContext(opts: { spiffeId?: string; request?: Partial<ParsedRequest> | null; dataClasses?: string[]; headers?: Record<string, string> } = {}): RequestContext {
  const ctx = new RequestContext()
  ctx.put('caller', { workload: identity(opts.spiffeId ?? CHECKOUT), user: ctx.out.caller?.user })
  if (opts.request !== null) ctx.put('request', parsed(opts.request ?? {}))
  for (const [k, v] of Object.entries(opts.headers ?? {})) ctx.requestHeaders.set(k, v)
  for (const c of opts.dataClasses ?? []) {
    ctx.addFinding({ detector: `${c}-detector`, dataClass: c, confidence: 'high', direction: 'request', location: 'messages[0].content', start: 0, length: 4, hash: 'x', action: 'redact' })
  }
  return ctx
}

/** A minimal valid policy directory: the shipped schema, the given policies and entities. */
export function writePolicyDir(dir: string, files: Record<string, string>, opts: { schema?: boolean } = {}): string {
  mkdirSync(dir, { recursive: true })
  if (opts.schema !== false) writeFileSync(join(dir, 'modelgate.cedarschema'), SCHEMA_TEXT)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}

/** A copy of the shipped policy directory (without its tests). */
export function copyShipped(dir: string): string {
  cpSync(SHIPPED, dir, { recursive: true, filter: (src) => !src.includes('/tests') })
  return dir
}

export const ALLOW_ALL = '@id("allow-all")\n@owner("test")\npermit (principal, action, resource);\n'
export const FORBID_SECRET = '@id("no-secret")\n@owner("security")\nforbid (principal, action, resource)\nwhen { context.dataClasses.contains("secret") };\n'
export const PERMIT_MINI = `@id("mini")
@owner("payments")
permit (
  principal in ModelGate::Namespace::"payments",
  action in ModelGate::Action::"use_model",
  resource == ModelGate::Model::"openai/gpt-4o-mini"
);
`
