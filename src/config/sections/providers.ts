/**
 * `providers`: the provider catalog. Every upstream a request may reach is an
 * entry: the name its Envoy route gives it, the API it speaks, where it is,
 * which models it serves (and under which other names), and the credentials
 * modelgate attaches on the way out. Envoy's routes and clusters (envoy/, the
 * chart) are rendered from the same entries.
 */

export type ProviderKindName = 'openai' | 'anthropic' | 'azure-openai' | 'mcp'

/** Who a credential may be used for; any listed fact that matches the caller selects it. */
export interface CredentialSelectorConfig {
  spiffeIds?: string[]
  spiffeIdPrefixes?: string[]
  namespaces?: string[]
  /** Teams from the policy set's entities.json (through the workload's or its namespace's membership). */
  teams?: string[]
}

/** An OAuth 2.0 client-credentials grant (RFC 6749 §4.4) authenticated with the TLS client certificate (RFC 8705). */
export interface OAuthCredentialConfig {
  tokenUrl: string
  clientId: string
  scope?: string
  audience?: string
  resource?: string
  /** Further form fields of the token request. */
  params?: Record<string, string>
  /** The gateway's SVID: the TLS client certificate and key (PEM), read again for every token request. */
  certFile: string
  keyFile: string
  /** CA bundle (PEM) the token endpoint's certificate must chain to; default: Node's bundled CAs. */
  caFile?: string
  /** Refresh this long before the token expires (capped at half its lifetime). */
  refreshBeforeSeconds: number
  /** Give up on one token request after this long. */
  timeoutMs: number
}

/** One credential of a provider: exactly one of `file`, `env`, `oauth`, `none`. */
export interface CredentialConfig {
  name: string
  when?: CredentialSelectorConfig
  /** Chosen only when a policy names it (`@credential("<name>")`), never by the `when` rules. */
  policyOnly?: boolean
  file?: string
  env?: string
  oauth?: OAuthCredentialConfig
  none?: true
  /** The header the credential goes in (default by kind and source); `authorization` gets `Bearer `. */
  header?: string
  /** Fixed, non-secret headers sent with it (e.g. `openai-organization`). */
  headers?: Record<string, string>
}

export interface ProviderEntryConfig {
  kind: ProviderKindName
  /** `https://host[:port][/path]` or `http://…`: where Envoy sends the provider's requests. */
  upstream: string
  /** Prefixes callers may put before the API's `/v1/…` path (default per kind). */
  basePaths?: string[]
  /** The provider also takes the API's own paths (`/v1/…`, `/openai/deployments/…`) with no base path. */
  root?: boolean
  /** The models it serves (`*` matches any run of characters); absent: any. */
  models?: string[]
  /** Other names callers may use for a model: alias → the model (or Azure deployment) sent upstream. */
  aliases?: Record<string, string>
  credentials?: CredentialConfig[]
}

export interface ProvidersConfig {
  /** The providers by the name their Envoy route gives them (gRPC metadata `x-modelgate-provider`). */
  catalog: Record<string, ProviderEntryConfig>
  /**
   * Tool types the tool map does not know (providers/tools.ts) that requests
   * may still declare, e.g. a newer dated version of a built-in tool. Every
   * other unknown type is refused (MG_TOOL_TYPE_UNKNOWN). Default (and when
   * absent from a configuration built in code): none.
   */
  allowedToolTypes?: string[]
  /** Credential files are read again this often even without a change event (seconds; default 10). */
  credentialPollSeconds?: number
}

/**
 * A base path: one to four literal segments, each led by `/`, no dot segments,
 * no trailing `/`, only unreserved URL characters (so it is compared exactly as sent).
 */
export const BASE_PATH_PATTERN = '^(?:/(?!\\.\\.?(?:/|$))[A-Za-z0-9._~-]{1,64}){1,4}$'
export const PROVIDER_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$'
/** An upstream URL: scheme, host name or IPv4 address, optional port and path (literal segments, no trailing `/`). */
export const UPSTREAM_PATTERN = '^https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~-]{1,64}){0,4}$'
/** A model name or alias as providers write them: visible ASCII, no spaces. */
const MODEL_NAME = '^[!-~]{1,256}$'
const HEADER_NAME = '^[a-z0-9][a-z0-9-]{0,63}$'

export const DEFAULT_CATALOG = {
  openai: { kind: 'openai', upstream: 'https://api.openai.com' },
  anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com' },
} as const

const selectorSchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    spiffeIds: { type: 'array', minItems: 1, maxItems: 256, uniqueItems: true, items: { type: 'string', pattern: '^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)*$' } },
    spiffeIdPrefixes: { type: 'array', minItems: 1, maxItems: 256, uniqueItems: true, items: { type: 'string', pattern: '^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]*)*$' } },
    namespaces: { type: 'array', minItems: 1, maxItems: 256, uniqueItems: true, items: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' } },
    teams: { type: 'array', minItems: 1, maxItems: 256, uniqueItems: true, items: { type: 'string', minLength: 1, maxLength: 256 } },
  },
} as const

const oauthSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['tokenUrl', 'clientId', 'certFile', 'keyFile'],
  properties: {
    tokenUrl: { type: 'string', pattern: '^https://[^\\s/?#]+(/[^\\s#]*)?$' },
    clientId: { type: 'string', minLength: 1, maxLength: 256 },
    scope: { type: 'string', minLength: 1, maxLength: 1024 },
    audience: { type: 'string', minLength: 1, maxLength: 1024 },
    resource: { type: 'string', minLength: 1, maxLength: 1024 },
    params: { type: 'object', propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' }, additionalProperties: { type: 'string', maxLength: 1024 } },
    certFile: { type: 'string', minLength: 1 },
    keyFile: { type: 'string', minLength: 1 },
    caFile: { type: 'string', minLength: 1 },
    refreshBeforeSeconds: { type: 'integer', minimum: 0, maximum: 86400, default: 300 },
    timeoutMs: { type: 'integer', minimum: 100, maximum: 60000, default: 5000 },
  },
} as const

export const credentialSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: PROVIDER_NAME_PATTERN },
    when: selectorSchema,
    policyOnly: { type: 'boolean' },
    file: { type: 'string', minLength: 1 },
    env: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$' },
    oauth: oauthSchema,
    none: { const: true },
    header: { type: 'string', pattern: HEADER_NAME },
    headers: { type: 'object', maxProperties: 16, propertyNames: { pattern: HEADER_NAME }, additionalProperties: { type: 'string', pattern: '^[ -~]{0,1024}$' } },
  },
} as const

export const providerEntrySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'upstream'],
  properties: {
    kind: { enum: ['openai', 'anthropic', 'azure-openai', 'mcp'] },
    upstream: { type: 'string', pattern: UPSTREAM_PATTERN },
    basePaths: { type: 'array', maxItems: 16, uniqueItems: true, items: { type: 'string', pattern: BASE_PATH_PATTERN } },
    root: { type: 'boolean', default: true },
    models: { type: 'array', minItems: 1, maxItems: 1024, uniqueItems: true, items: { type: 'string', pattern: MODEL_NAME } },
    aliases: { type: 'object', maxProperties: 1024, propertyNames: { pattern: '^[!-)+-~]{1,256}$' }, additionalProperties: { type: 'string', pattern: '^[!-)+-~]{1,256}$' } },
    credentials: { type: 'array', maxItems: 64, items: credentialSchema },
  },
} as const

export const providersSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    catalog: {
      type: 'object',
      default: DEFAULT_CATALOG,
      minProperties: 1,
      propertyNames: { pattern: PROVIDER_NAME_PATTERN },
      additionalProperties: providerEntrySchema,
    },
    // The shape before the catalog: refused with a message naming its replacement (checkProviders).
    routes: {},
    allowedToolTypes: {
      type: 'array',
      default: [],
      uniqueItems: true,
      items: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,128}$' },
    },
    credentialPollSeconds: { type: 'integer', minimum: 1, maximum: 3600, default: 10 },
  },
} as const

/** A problem found after the schema passed, located by its path in the configuration. */
export interface PathProblem {
  readonly path: readonly (string | number)[]
  readonly message: string
}

/** Base paths a provider of each kind accepts when its entry names none. */
export const DEFAULT_BASE_PATHS: Readonly<Record<ProviderKindName, readonly string[]>> = Object.freeze({
  openai: Object.freeze(['/openai', '/api']),
  anthropic: Object.freeze([]),
  'azure-openai': Object.freeze([]),
  mcp: Object.freeze([]),
})

/** Headers a credential may not set: Envoy's own, hop-by-hop and framing headers. */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'content-type', 'content-encoding', 'transfer-encoding', 'connection', 'te', 'upgrade', 'accept-encoding', 'x-request-id', 'x-forwarded-client-cert'])

/**
 * What the schema cannot say: one source per credential, unique names, aliases
 * that lead to served models, and no two providers claiming the same paths.
 */
export function checkProviders(p: Partial<ProvidersConfig> & { routes?: unknown }): PathProblem[] {
  const problems: PathProblem[] = []
  if (p.routes !== undefined) {
    problems.push({
      path: ['providers', 'routes'],
      message:
        'is replaced by providers.catalog: each provider is an entry `<name>: {kind, upstream, credentials: [...]}` (see the README, "Providers and credentials"); e.g. providers.catalog.openai: {kind: openai, upstream: "https://api.openai.com", credentials: [{name: default, file: /etc/modelgate/credentials/openai/default}]}',
    })
  }
  const catalog = p.catalog ?? {}
  /** Who owns each path family: `anthropic:/v1/messages`, `openai:/base/v1/`, … */
  const owners = new Map<string, string>()
  for (const [name, entry] of Object.entries(catalog)) {
    const at = ['providers', 'catalog', name]
    for (const key of pathKeys(entry, name)) {
      const other = owners.get(key)
      if (other !== undefined) problems.push({ path: at, message: `serves ${describePathKey(key)}, as provider "${other}" does: give one of them root: false or other basePaths` })
      else owners.set(key, name)
    }
    if (entry.kind === 'mcp') {
      for (const key of ['models', 'aliases'] as const) {
        if (entry[key] !== undefined) problems.push({ path: [...at, key], message: 'does not apply to an MCP server (kind: mcp serves tools, not models, on the paths basePaths lists)' })
      }
    }
    if (entry.aliases && entry.kind === 'azure-openai') {
      for (const [alias, target] of Object.entries(entry.aliases)) {
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(target)) problems.push({ path: [...at, 'aliases', alias], message: `leads to "${target}", which cannot be an Azure OpenAI deployment name (letters, digits, . _ -, at most 64)` })
      }
    }
    if (entry.aliases && entry.models) {
      const served = modelMatcher(entry.models)
      for (const [alias, target] of Object.entries(entry.aliases)) {
        if (!served(target)) problems.push({ path: [...at, 'aliases', alias], message: `leads to "${target}", which models does not list` })
      }
    }
    const seen = new Set<string>()
    ;(entry.credentials ?? []).forEach((c, i) => {
      const cat = [...at, 'credentials', i]
      if (seen.has(c.name)) problems.push({ path: [...cat, 'name'], message: `"${c.name}" is used twice in this provider` })
      seen.add(c.name)
      const sources = (['file', 'env', 'oauth', 'none'] as const).filter((s) => c[s] !== undefined)
      if (sources.length !== 1) problems.push({ path: cat, message: `needs exactly one of file, env, oauth, none (has ${sources.length === 0 ? 'none of them' : sources.join(', ')})` })
      if (c.none && c.header !== undefined) problems.push({ path: [...cat, 'header'], message: 'has no credential to carry (none: true)' })
      for (const h of [...(c.header !== undefined ? [c.header] : []), ...Object.keys(c.headers ?? {})]) {
        if (RESERVED_HEADERS.has(h) || h.startsWith('x-envoy-') || h.startsWith('x-modelgate-')) problems.push({ path: [...cat, c.header === h ? 'header' : 'headers'], message: `may not set "${h}"` })
      }
      if (c.header !== undefined && c.headers?.[c.header] !== undefined) problems.push({ path: [...cat, 'headers', c.header], message: 'is the header the credential goes in' })
    })
  }
  return problems
}

/** The path families an entry serves, as keys two providers must not share. */
export function pathKeys(entry: Pick<ProviderEntryConfig, 'kind' | 'basePaths' | 'root'>, name = ''): string[] {
  if (entry.kind === 'mcp') return mcpPaths(name, entry.basePaths).map((p) => `mcp:${p}`)
  const family = entry.kind === 'anthropic' ? 'anthropic' : 'openai'
  const keys: string[] = []
  if (entry.root !== false) keys.push(entry.kind === 'azure-openai' ? 'azure:/openai/deployments/' : `${entry.kind}:/v1/`)
  for (const b of entry.basePaths ?? DEFAULT_BASE_PATHS[entry.kind]) keys.push(`${family}:${b}/v1/`)
  return keys
}

/** The paths an MCP server entry takes: its `basePaths`, each exactly, else `/mcp/<name>`. */
export function mcpPaths(name: string, basePaths: readonly string[] | undefined): string[] {
  return basePaths && basePaths.length > 0 ? [...basePaths] : [`/mcp/${name}`]
}

function describePathKey(key: string): string {
  const [family, path] = [key.slice(0, key.indexOf(':')), key.slice(key.indexOf(':') + 1)]
  if (family === 'mcp') return `the MCP endpoint ${path}`
  if (family === 'azure') return 'the Azure OpenAI deployment paths (/openai/deployments/…)'
  return family === 'anthropic' ? `${path}messages` : `the OpenAI paths under ${path}`
}

/** Model names against an allow-list whose entries may hold `*` (any run of characters). */
export function modelMatcher(patterns: readonly string[]): (model: string) => boolean {
  const exact = new Set(patterns.filter((p) => !p.includes('*')))
  const globs = patterns.filter((p) => p.includes('*')).map((p) => p.split('*'))
  return (model) => exact.has(model) || globs.some((parts) => globMatch(parts, model))
}

/** `parts` are a glob split at `*`: linear, no backtracking (each part is found at its first place). */
function globMatch(parts: readonly string[], s: string): boolean {
  const first = parts[0]!
  const last = parts[parts.length - 1]!
  if (!s.startsWith(first) || s.length < first.length + last.length || !s.endsWith(last)) return false
  let pos = first.length
  const end = s.length - last.length
  for (let i = 1; i < parts.length - 1; i++) {
    const at = s.indexOf(parts[i]!, pos)
    if (at < 0 || at + parts[i]!.length > end) return false
    pos = at + parts[i]!.length
  }
  return true
}
