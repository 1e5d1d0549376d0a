/**
 * The provider catalog, compiled once from `providers.catalog`: each
 * provider's name (the one its Envoy route gives it), API kind, upstream,
 * the paths it serves, the models it serves and their aliases, and its
 * credentials (as configured; credentials/ turns them into values).
 *
 * Route resolution lives here too: a request path and the provider its Envoy
 * route names give the API route and the catalog entry, or nothing.
 */
import { DEFAULT_BASE_PATHS, mcpPaths, modelMatcher, type CredentialConfig, type ProviderKindName, type ProvidersConfig } from '../config/sections/providers.ts'
import { matchRoute, pathPart, type ApiRoute, type BasePaths } from './routes.ts'

/** The gRPC metadata key Envoy routes set (grpc_initial_metadata) to name their provider. */
export const PROVIDER_METADATA_KEY = 'x-modelgate-provider'

/** Where a provider is: parsed from its `upstream` URL. */
export interface Upstream {
  readonly tls: boolean
  readonly host: string
  readonly port: number
  /** The URL's path, `''` or e.g. `/openai`: what the API's own path is sent under. */
  readonly path: string
}

export interface CatalogProvider {
  readonly name: string
  readonly kind: ProviderKindName
  readonly upstream: Upstream
  /** The provider takes the API's own paths (no base path). */
  readonly root: boolean
  readonly basePaths: readonly string[]
  /** The model or deployment sent upstream for a name a caller used: the alias's target, else the name itself. */
  resolveModel(requested: string): { readonly model: string; readonly alias: string | undefined }
  /** True when the provider serves the model (its `models` list allows it, or it has none). */
  serves(model: string): boolean
  readonly hasModelList: boolean
  readonly credentials: readonly CredentialConfig[]
}

export interface RouteMatch {
  readonly route: ApiRoute
  readonly provider: CatalogProvider
}

export interface ProviderCatalog {
  readonly providers: readonly CatalogProvider[]
  get(name: string): CatalogProvider | undefined
  /**
   * The API route of a path sent through the provider `declared` (its Envoy
   * route's name), or, when the route names none, through the provider that
   * serves that path. Undefined: no catalogued provider serves it.
   */
  match(rawPath: string, declared: string | undefined): RouteMatch | undefined
}

export function parseUpstream(url: string): Upstream {
  const u = new URL(url)
  const tls = u.protocol === 'https:'
  return Object.freeze({ tls, host: u.hostname, port: u.port ? Number(u.port) : tls ? 443 : 80, path: u.pathname === '/' ? '' : u.pathname })
}

const NO_BASES: BasePaths = Object.freeze({ openai: Object.freeze([]), anthropic: Object.freeze([]) })

export function compileCatalog(config: Pick<ProvidersConfig, 'catalog'>): ProviderCatalog {
  const byName = new Map<string, CatalogProvider>()
  const bases = new Map<string, BasePaths>()
  for (const [name, entry] of Object.entries(config.catalog)) {
    // An MCP server's base paths are its endpoints, matched exactly (default /mcp/<name>).
    const basePaths = Object.freeze(entry.kind === 'mcp' ? mcpPaths(name, entry.basePaths) : [...(entry.basePaths ?? DEFAULT_BASE_PATHS[entry.kind])])
    const served = entry.models ? modelMatcher(entry.models) : () => true
    const aliases = new Map(Object.entries(entry.aliases ?? {}))
    const provider: CatalogProvider = Object.freeze({
      name,
      kind: entry.kind,
      upstream: parseUpstream(entry.upstream),
      root: entry.root !== false,
      basePaths,
      hasModelList: entry.models !== undefined,
      serves: served,
      resolveModel(requested: string) {
        const target = aliases.get(requested)
        return target === undefined ? { model: requested, alias: undefined } : { model: target, alias: requested }
      },
      credentials: Object.freeze([...(entry.credentials ?? [])]),
    })
    byName.set(name, provider)
    const family = entry.kind === 'anthropic' ? 'anthropic' : 'openai'
    bases.set(name, Object.freeze({ openai: family === 'openai' ? basePaths : [], anthropic: family === 'anthropic' ? basePaths : [] }))
  }
  const providers = Object.freeze([...byName.values()])

  const matchFor = (p: CatalogProvider, rawPath: string): ApiRoute | undefined => {
    if (p.kind === 'mcp') {
      const path = pathPart(rawPath)
      return p.basePaths.includes(path) ? { kind: 'mcp', operation: 'mcp', api: 'mcp.streamable_http', template: path } : undefined
    }
    const azure = p.kind === 'azure-openai'
    const route = matchRoute(rawPath, bases.get(p.name) ?? NO_BASES, { root: p.root && !azure, azure: p.root && azure })
    if (!route) return undefined
    // The path's API family must be the provider's: Anthropic's paths for Anthropic, OpenAI's (and Azure's) for the others.
    return (route.kind === 'anthropic') === (p.kind === 'anthropic') ? route : undefined
  }

  return {
    providers,
    get: (name) => (byName.has(name) ? byName.get(name) : undefined),
    match(rawPath, declared) {
      if (declared !== undefined) {
        const p = byName.get(declared)
        const route = p ? matchFor(p, rawPath) : undefined
        return p && route ? { route, provider: p } : undefined
      }
      // No provider named: the one provider whose paths these are (the configuration admits no two).
      for (const p of providers) {
        const route = matchFor(p, rawPath)
        if (route) return { route, provider: p }
      }
      return undefined
    },
  }
}
