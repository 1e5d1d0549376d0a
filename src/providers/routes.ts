/**
 * Which provider API a request path belongs to. Matching is on the path
 * (without the query string), exact and literal: the API's own path, or that
 * path under one of the base paths the configuration names for the provider
 * route (`providers.routes.<name>.basePaths`). A path with any other prefix is
 * not a route, so no segment of a recognised path is chosen by the caller
 * except an Azure deployment name.
 */
import type { ProvidersConfig } from '../config/sections/providers.ts'
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

/**
 * Base paths a route of each kind accepts when its configuration names none:
 * where OpenAI-compatible services document their API (`/openai/v1/…` as Groq
 * serves it, `/api/v1/…` as OpenRouter does). Anthropic and Azure deployment
 * paths have none.
 */
export const DEFAULT_BASE_PATHS: Readonly<Record<ProviderKind, readonly string[]>> = Object.freeze({
  openai: Object.freeze(['/openai', '/api']),
  anthropic: Object.freeze([]),
  'azure-openai': Object.freeze([]),
})

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

/**
 * Resolves an API route from a request path such as `/v1/chat/completions?x=1`.
 * `basePaths` are the prefixes allowed before `/v1/…` (default none); each is
 * compared literally, so `/x/../v1/…` or an encoded prefix is not a route.
 */
export function matchRoute(rawPath: string, basePaths: BasePaths = NO_BASE_PATHS): ApiRoute | undefined {
  const path = pathPart(rawPath)
  const azure = AZURE.exec(path)
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
  const direct = v1('', undefined)
  if (direct) return direct
  for (const family of ['openai', 'anthropic'] as const) {
    for (const base of basePaths[family]) {
      const r = v1(base, family)
      if (r) return r
    }
  }
  return undefined
}

/** Route matching compiled from `providers.routes`: the base paths each provider route accepts. */
export interface RouteTable {
  /** The route for a path sent through the provider route `providerName` (undefined: the route named none). */
  match(rawPath: string, providerName: string | undefined): ApiRoute | undefined
  /** The base paths a provider route accepts (every route's, for undefined). */
  basePaths(providerName: string | undefined): BasePaths
}

/**
 * Compiles the base paths once. A request whose Envoy route names its
 * provider gets that provider's base paths; one whose route names none gets
 * the base paths of every configured provider; a provider name that is not
 * configured gets none (the body phase refuses it).
 */
export function compileRouteTable(config: ProvidersConfig): RouteTable {
  const byName = new Map<string, BasePaths>()
  const all = { openai: new Set<string>(), anthropic: new Set<string>() }
  for (const [name, route] of Object.entries(config.routes)) {
    const family = route.kind === 'anthropic' ? 'anthropic' : 'openai'
    const bases = Object.freeze([...(route.basePaths ?? DEFAULT_BASE_PATHS[route.kind])])
    byName.set(name, Object.freeze({ openai: family === 'openai' ? bases : [], anthropic: family === 'anthropic' ? bases : [] }))
    for (const b of bases) all[family].add(b)
  }
  const union: BasePaths = Object.freeze({ openai: Object.freeze([...all.openai]), anthropic: Object.freeze([...all.anthropic]) })
  const basePaths = (providerName: string | undefined) => (providerName === undefined ? union : (byName.get(providerName) ?? NO_BASE_PATHS))
  return {
    basePaths,
    match: (rawPath, providerName) => matchRoute(rawPath, basePaths(providerName)),
  }
}
