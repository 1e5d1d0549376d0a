/**
 * Every credential of the provider catalog, compiled once: where its value
 * comes from (a file that is watched, an environment variable, a token
 * endpoint, or nothing), who it is for, and the headers it goes in.
 * Values never leave this module except into the request headers Envoy
 * sends upstream: not into logs, errors, spans or metrics.
 */
import type { CredentialConfig, CredentialSelectorConfig } from '../config/sections/providers.ts'
import type { Logger } from '../log.ts'
import type { CatalogProvider, ProviderCatalog } from '../providers/catalog.ts'
import { endpointOf, TokenSource } from './oauth.ts'
import { FileCredential } from './file.ts'
import { credentialHeader, validSecret, type CredentialHeader } from './headers.ts'

export type CredentialSourceKind = 'file' | 'env' | 'oauth' | 'none'

/** Who is asking: what a credential's `when` is matched against. */
export interface CallerFacts {
  readonly spiffeId: string
  readonly namespace: string | undefined
  /** Teams from entities.json; asked only when some credential selects by team. */
  teams(): ReadonlySet<string>
}

export interface CompiledCredential {
  readonly provider: string
  readonly name: string
  readonly source: CredentialSourceKind
  /** Chosen only when a policy names it (`@credential`), never by the rules. */
  readonly policyOnly: boolean
  /** True when the caller may use it (no `when`: everyone). */
  admits(caller: CallerFacts): boolean
  /** The secret (or a promise of it); undefined for `none`. Throws MG_CREDENTIAL_UNAVAILABLE. */
  secret(): string | Promise<string> | undefined
  readonly header: CredentialHeader | undefined
  /** Fixed headers sent with it. */
  readonly headers: readonly (readonly [string, string])[]
}

export interface CredentialStore {
  /** A provider's credentials in the configured order. */
  of(provider: string): readonly CompiledCredential[]
  /** True when some credential selects by team (team membership must be looked up). */
  readonly usesTeams: boolean
  /** Every credential name in the catalog (to check `@credential` annotations against). */
  readonly names: ReadonlySet<string>
  /** Providers with no credential at all: every request to them is refused. */
  readonly withoutCredentials: readonly string[]
  /** Token and file sources by `<provider>/<credential>` (tests, diagnostics). */
  readonly sources: ReadonlyMap<string, FileCredential | TokenSource>
  start(): void
  close(): void
}

/** Thrown at start-up: every credential that cannot be used, listed together. */
export class CredentialSetupError extends Error {
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(`provider credentials cannot be used (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => `  ${p}`).join('\n'))
    this.name = 'CredentialSetupError'
    this.problems = problems
  }
}

export interface CredentialStoreOptions {
  readonly logger: Logger
  /** Resolves a path of the configuration file. */
  readonly resolve: (path: string) => string
  readonly env?: NodeJS.ProcessEnv
  /** How often credential files are read without a change event. */
  readonly pollMs: number
}

function selector(when: CredentialSelectorConfig | undefined): ((c: CallerFacts) => boolean) | undefined {
  if (!when) return undefined
  const ids = new Set(when.spiffeIds ?? [])
  const prefixes = when.spiffeIdPrefixes ?? []
  const namespaces = new Set(when.namespaces ?? [])
  const teams = when.teams ?? []
  return (c) =>
    ids.has(c.spiffeId) ||
    prefixes.some((p) => c.spiffeId.startsWith(p)) ||
    (c.namespace !== undefined && namespaces.has(c.namespace)) ||
    (teams.length > 0 && teams.some((t) => c.teams().has(t)))
}

/** Builds every source; throws CredentialSetupError listing each credential that cannot be used now. */
export function createCredentialStore(catalog: ProviderCatalog, opts: CredentialStoreOptions): CredentialStore {
  const env = opts.env ?? process.env
  const problems: string[] = []
  const byProvider = new Map<string, CompiledCredential[]>()
  const sources = new Map<string, FileCredential | TokenSource>()
  const names = new Set<string>()
  let usesTeams = false
  const described: Record<string, string[]> = {}

  const compile = (p: CatalogProvider, c: CredentialConfig, i: number): CompiledCredential | undefined => {
    const label = `${p.name}/${c.name}`
    const where = `providers.catalog.${p.name}.credentials[${i}] (${c.name})`
    let secret: () => string | Promise<string> | undefined
    let source: CredentialSourceKind
    if (c.file !== undefined) {
      source = 'file'
      try {
        const f = new FileCredential({ path: opts.resolve(c.file), label, logger: opts.logger, pollMs: opts.pollMs })
        sources.set(label, f)
        secret = () => f.get()
        described[p.name]!.push(`${c.name} (file ${opts.resolve(c.file)})`)
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`)
        return undefined
      }
    } else if (c.env !== undefined) {
      source = 'env'
      const value = env[c.env]?.trim()
      if (value === undefined || value === '') {
        problems.push(`${where}: the environment variable ${c.env} is not set`)
        return undefined
      }
      if (!validSecret(value)) {
        problems.push(`${where}: the environment variable ${c.env} holds characters a header cannot carry`)
        return undefined
      }
      secret = () => value
      described[p.name]!.push(`${c.name} (environment ${c.env})`)
    } else if (c.oauth !== undefined) {
      source = 'oauth'
      const t = new TokenSource({ config: c.oauth, label, logger: opts.logger, resolve: opts.resolve })
      sources.set(label, t)
      secret = () => t.get()
      described[p.name]!.push(`${c.name} (client credentials from ${endpointOf(c.oauth.tokenUrl)})`)
    } else {
      source = 'none'
      secret = () => undefined
      described[p.name]!.push(`${c.name} (none)`)
    }
    if (c.when?.teams) usesTeams = true
    names.add(c.name)
    const admits = selector(c.when)
    return Object.freeze({
      provider: p.name,
      name: c.name,
      source,
      policyOnly: c.policyOnly === true,
      admits: admits ?? (() => true),
      secret,
      header: source === 'none' ? undefined : credentialHeader(p.kind, c),
      headers: Object.freeze(Object.entries(c.headers ?? {}).map(([k, v]) => Object.freeze([k, v] as const))),
    })
  }

  for (const p of catalog.providers) {
    described[p.name] = []
    const list: CompiledCredential[] = []
    p.credentials.forEach((c, i) => {
      const compiled = compile(p, c, i)
      if (compiled) list.push(compiled)
    })
    byProvider.set(p.name, list)
  }
  if (problems.length > 0) {
    for (const s of sources.values()) s.close()
    throw new CredentialSetupError(problems)
  }
  const withoutCredentials = catalog.providers.filter((p) => p.credentials.length === 0).map((p) => p.name)
  return {
    of: (provider) => byProvider.get(provider) ?? [],
    usesTeams,
    names,
    withoutCredentials,
    sources,
    start() {
      opts.logger.info('provider credentials ready', { providers: described })
      if (withoutCredentials.length > 0) {
        opts.logger.warn('providers without a credential: every request to them is refused (MG_CREDENTIAL_MISSING); give them credentials, or `none: true` for an endpoint that needs none', { providers: withoutCredentials })
      }
      for (const s of sources.values()) s.start()
    },
    close() {
      for (const s of sources.values()) s.close()
    },
  }
}
