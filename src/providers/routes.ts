/**
 * Which provider API a request path belongs to. Matching is on the path
 * (without the query string), exact and literal: the API's own path, or that
 * path under one of the base paths the configuration names for the
 * provider (`providers.catalog.<name>.basePaths`). A path with any other prefix is
 * not a route, so no segment of a recognised path is chosen by the caller
 * except an Azure deployment name.
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
   * `/openai/deployments/{deployment}/chat/completions` or `/openai/v1/embeddings`
   * (a configured base path is written as it is): safe to log, never the raw
   * path. Every route matchRoute returns has one.
   */
  readonly template?: string
}

const AZURE = /^\/openai\/deployments\/([A-Za-z0-9._-]{1,64})\/(chat\/completions|completions|embeddings)$/

const V1: Record<string, { kind: ProviderKind; operation: Operation; api: string }> = {
  'chat/completions': { kind: 'openai', operation: 'chat', api: 'openai.chat_completions' },
  completions: { kind: 'openai', operation: 'completion', api: 'openai.completions' },
  responses: { kind: 'openai', operation: 'responses', api: 'openai.responses' },
  embeddings: { kind: 'openai', operation: 'embedding', api: 'openai.embeddings' },
  messages: { kind: 'anthropic', operation: 'messages', api: 'anthropic.messages' },
}

const V1_PREFIX = '/v1/'

/** The path without its query string (a `#` stays: no API path holds one, so such a path is no route). */
export function pathPart(rawPath: string): string {
  const q = rawPath.indexOf('?')
  return q === -1 ? rawPath : rawPath.slice(0, q)
}

/**
 * Prefixes allowed before `/v1/…`, per API family: OpenAI's paths (also for
 * Azure OpenAI and OpenAI-compatible routes) and Anthropic's.
 */
export interface BasePaths {
  readonly openai: readonly string[]
  readonly anthropic: readonly string[]
}

const NO_BASE_PATHS: BasePaths = Object.freeze({ openai: Object.freeze([]), anthropic: Object.freeze([]) })

/** Which of the API's own paths (no base path) a provider takes. */
export interface RootPaths {
  /** `/v1/…` (default true). */
  readonly root?: boolean
  /** Azure OpenAI's `/openai/deployments/{deployment}/…` (default true). */
  readonly azure?: boolean
}

/**
 * Resolves an API route from a request path such as `/v1/chat/completions?x=1`.
 * `basePaths` are the prefixes allowed before `/v1/…` (default none); each is
 * compared literally, so `/x/../v1/…` or an encoded prefix is not a route.
 * `roots` says whether the API's own paths count too (default: all of them).
 */
export function matchRoute(rawPath: string, basePaths: BasePaths = NO_BASE_PATHS, roots: RootPaths = {}): ApiRoute | undefined {
  const path = pathPart(rawPath)
  const azure = roots.azure === false ? null : AZURE.exec(path)
  if (azure) {
    const op = V1[azure[2]!]!
    return { kind: 'azure-openai', operation: op.operation, api: op.api.replace('openai.', 'azure_openai.'), deployment: azure[1]!, template: `/openai/deployments/{deployment}/${azure[2]!}` }
  }
  const v1 = (base: string, family: 'openai' | 'anthropic' | undefined): ApiRoute | undefined => {
    if (!path.startsWith(V1_PREFIX, base.length) || (base !== '' && !path.startsWith(base))) return undefined
    const rest = path.slice(base.length + V1_PREFIX.length)
    const api = Object.hasOwn(V1, rest) ? V1[rest] : undefined
    if (!api || (family !== undefined && (api.kind === 'anthropic') !== (family === 'anthropic'))) return undefined
    return { kind: api.kind, operation: api.operation, api: api.api, template: `${base}${V1_PREFIX}${rest}` }
  }
  const direct = roots.root === false ? undefined : v1('', undefined)
  if (direct) return direct
  for (const family of ['openai', 'anthropic'] as const) {
    for (const base of basePaths[family]) {
      const r = v1(base, family)
      if (r) return r
    }
  }
  return undefined
}
