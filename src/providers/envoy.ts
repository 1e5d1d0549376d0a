/**
 * Envoy's provider routes and clusters, rendered from the provider catalog:
 * the local stack and the end-to-end tests insert them into
 * envoy/envoy.template.yaml, and the Helm chart renders the same from its
 * `providers` values (test/integration/envoy-contract.test.ts compares the
 * two). Envoy routes nowhere else: every route leads to a catalogued
 * provider's cluster, and whatever no route matches gets the 404 backstop.
 *
 * Each provider gets one route per path family it serves, named after it
 * and naming it to modelgate (gRPC metadata `x-modelgate-provider`):
 *
 * | kind | root (`root: true`) | each base path `B` |
 * | --- | --- | --- |
 * | `openai` | prefix `/v1/` | prefix `B/v1/` |
 * | `anthropic` | path `/v1/messages` | path `B/v1/messages` |
 * | `azure-openai` | prefix `/openai/deployments/` | prefix `B/v1/` |
 * | `mcp` | – | path `B` (default `/mcp/<name>`) |
 *
 * The caller's base path is replaced by the upstream URL's path on the way
 * out (`prefix_rewrite`): `https://api.groq.com/openai` receives
 * `/openai/v1/…` whether the caller wrote `/v1/…` or `/groq/v1/…`. Exact
 * paths come first, then prefixes, longest first, so `/v1/messages` never
 * falls into a `/v1/` prefix.
 */
import { PROVIDER_METADATA_KEY, type CatalogProvider, type ProviderCatalog, type Upstream } from './catalog.ts'

/** The cluster of a provider: prefixed, so a provider named like one of Envoy's own clusters cannot take its place. */
export function providerCluster(name: string): string {
  return `provider-${name}`
}

export type RouteMatch = { readonly prefix: string } | { readonly path: string }

export interface ProviderRoute {
  readonly name: string
  readonly match: RouteMatch
  /** The path (or prefix) the matched one is replaced with upstream, when it differs. */
  readonly rewrite: string | undefined
}

/** The routes of one provider, unordered. */
export function providerRoutes(p: Pick<CatalogProvider, 'name' | 'kind' | 'root' | 'basePaths' | 'upstream'>): ProviderRoute[] {
  const up = p.upstream.path
  const out: ProviderRoute[] = []
  const add = (match: RouteMatch, canonical: string) => {
    const matched = 'prefix' in match ? match.prefix : match.path
    const rewrite = up + canonical
    out.push({ name: p.name, match, rewrite: rewrite === matched ? undefined : rewrite })
  }
  if (p.kind === 'mcp') {
    // Each endpoint exactly, sent to the upstream URL's own path.
    for (const b of p.basePaths) {
      const target = up === '' ? '/' : up
      out.push({ name: p.name, match: { path: b }, rewrite: target === b ? undefined : target })
    }
  } else if (p.kind === 'anthropic') {
    if (p.root) add({ path: '/v1/messages' }, '/v1/messages')
    for (const b of p.basePaths) add({ path: `${b}/v1/messages` }, '/v1/messages')
  } else {
    if (p.root) {
      if (p.kind === 'azure-openai') add({ prefix: '/openai/deployments/' }, '/openai/deployments/')
      else add({ prefix: '/v1/' }, '/v1/')
    }
    for (const b of p.basePaths) add({ prefix: `${b}/v1/` }, '/v1/')
  }
  return out
}

/**
 * Every provider's routes in Envoy's order: exact paths first, then prefixes;
 * longest first; equal lengths by the path itself (no two providers share one,
 * so the order does not depend on the order of the catalog: the chart, which
 * reads the catalog as a map, renders the same).
 */
export function orderedRoutes(catalog: Pick<ProviderCatalog, 'providers'>): ProviderRoute[] {
  const all = catalog.providers.flatMap(providerRoutes)
  const key = (r: ProviderRoute) => ('path' in r.match ? { t: 0, m: r.match.path } : { t: 1, m: r.match.prefix })
  return all
    .map((r) => ({ r, k: key(r) }))
    .sort((a, b) => a.k.t - b.k.t || b.k.m.length - a.k.m.length || (a.k.m < b.k.m ? -1 : a.k.m > b.k.m ? 1 : 0))
    .map((x) => x.r)
}

/** The Envoy route objects (route_config.virtual_hosts[].routes entries), in order, without the 404 backstop. */
export function envoyRoutes(catalog: Pick<ProviderCatalog, 'providers'>): Record<string, unknown>[] {
  return orderedRoutes(catalog).map((r) => ({
    name: r.name,
    match: r.match,
    route: {
      cluster: providerCluster(r.name),
      timeout: '300s',
      auto_host_rewrite: true,
      ...(r.rewrite !== undefined ? { prefix_rewrite: r.rewrite } : {}),
    },
    typed_per_filter_config: {
      'envoy.filters.http.ext_proc': {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
        overrides: { grpc_initial_metadata: [{ key: PROVIDER_METADATA_KEY, value: r.name }] },
      },
    },
  }))
}

export interface ClusterOptions {
  /** Envoy's buffer limit per upstream connection (= server.maxBodyBytes). */
  readonly maxBodyBytes: number
  /** Below the providers' keep-alive timeout (see PROVIDER_KEEP_ALIVE_MS). */
  readonly idleTimeout: string
  /** The CA bundle provider certificates are verified against. */
  readonly caFile: string
  /** Where each provider is reached instead of its upstream (the local stack: the stand-in provider). */
  readonly upstreamOf?: (p: CatalogProvider) => Upstream
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/

/** One cluster per provider: its upstream's host and port, TLS (SNI and certificate name checked) for `https`. */
export function envoyClusters(catalog: Pick<ProviderCatalog, 'providers'>, o: ClusterOptions): Record<string, unknown>[] {
  return catalog.providers.map((p) => {
    const u = o.upstreamOf ? o.upstreamOf(p) : p.upstream
    const name = providerCluster(p.name)
    const ip = IPV4.test(u.host)
    return {
      name,
      type: ip ? 'STATIC' : 'LOGICAL_DNS',
      ...(ip ? {} : { dns_lookup_family: 'V4_PREFERRED' }),
      connect_timeout: '5s',
      per_connection_buffer_limit_bytes: o.maxBodyBytes,
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          common_http_protocol_options: { idle_timeout: o.idleTimeout },
          explicit_http_config: { http_protocol_options: {} },
        },
      },
      load_assignment: {
        cluster_name: name,
        // The host name is what auto_host_rewrite puts in the Host header.
        endpoints: [{ lb_endpoints: [{ endpoint: { hostname: u.host, address: { socket_address: { address: u.host, port_value: u.port } } } }] }],
      },
      ...(u.tls
        ? {
            transport_socket: {
              name: 'envoy.transport_sockets.tls',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
                sni: u.host,
                common_tls_context: {
                  validation_context: {
                    trusted_ca: { filename: o.caFile },
                    match_typed_subject_alt_names: [{ san_type: ip ? 'IP_ADDRESS' : 'DNS', matcher: { exact: u.host } }],
                  },
                },
              },
            },
          }
        : {}),
    }
  })
}
