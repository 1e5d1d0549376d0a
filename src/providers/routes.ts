/**
 * Which provider API a request path belongs to. Matching is on the path
 * (without the query string) and only for POST; everything else is refused
 * before it can reach a provider.
 */
import type { Operation, ProviderKind } from './types.ts'

export interface ApiRoute {
  readonly kind: ProviderKind
  readonly operation: Operation
  /** Stable API name, e.g. "openai.chat_completions". */
  readonly api: string
  /** Azure OpenAI: the deployment named in the path (acts as the model). */
  readonly deployment?: string
  /**
   * The path with every caller-chosen segment replaced by a name in braces, e.g.
   * `/openai/deployments/{deployment}/chat/completions` or `/{base}/v1/embeddings`:
   * safe to log, never the raw path. Every route matchRoute returns has one.
   */
  readonly template?: string
}

const AZURE = /^\/openai\/deployments\/([A-Za-z0-9._-]{1,64})\/(chat\/completions|completions|embeddings)$/

const OPENAI: Record<string, { operation: Operation; api: string }> = {
  'chat/completions': { operation: 'chat', api: 'openai.chat_completions' },
  completions: { operation: 'completion', api: 'openai.completions' },
  responses: { operation: 'responses', api: 'openai.responses' },
  embeddings: { operation: 'embedding', api: 'openai.embeddings' },
}

/** Resolves an API route from a request path such as `/v1/chat/completions?x=1`. */
export function matchRoute(rawPath: string): ApiRoute | undefined {
  const q = rawPath.indexOf('?')
  const path = q === -1 ? rawPath : rawPath.slice(0, q)
  const azure = AZURE.exec(path)
  if (azure) {
    const op = OPENAI[azure[2]!]!
    return { kind: 'azure-openai', operation: op.operation, api: op.api.replace('openai.', 'azure_openai.'), deployment: azure[1]!, template: `/openai/deployments/{deployment}/${azure[2]!}` }
  }
  if (path === '/v1/messages') return { kind: 'anthropic', operation: 'messages', api: 'anthropic.messages', template: '/v1/messages' }
  // OpenAI and OpenAI-compatible servers, optionally under a base path: /v1/…, /openai/v1/…, /api/v1/….
  const m = /^((?:\/[A-Za-z0-9._-]+){0,2}?)\/v1\/(chat\/completions|completions|responses|embeddings)$/.exec(path)
  if (m) {
    const op = OPENAI[m[2]!]!
    return { kind: 'openai', operation: op.operation, api: op.api, template: `${m[1] ? '/{base}' : ''}/v1/${m[2]!}` }
  }
  return undefined
}
