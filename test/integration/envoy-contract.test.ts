/**
 * The contract between modelgate and the Envoy in front of it: what modelgate
 * relies on, asserted on both Envoy configurations the project ships (the
 * reference template in envoy/, rendered the way the local stack renders it,
 * and the Helm chart's bootstrap). A change to either that would let a request
 * pass unchecked, drop modelgate's metadata, reset ext_proc streams after every
 * request or replace modelgate's own error bodies fails here.
 */
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { localModelgateConfig } from '../../src/cli/start.ts'
import { configFromObject, parseConfig } from '../../src/config/config.ts'
import { envoyConfigObject, localStackVars, REPO_ROOT, standInProviders } from '../../src/dev/envoy.ts'
import { compileCatalog } from '../../src/providers/catalog.ts'
import { envoyClusters, envoyRoutes } from '../../src/providers/envoy.ts'
import { PROVIDER_KEEP_ALIVE_MS } from '../../src/dev/provider.ts'
import { ENVOY_REPLY_CODES, ERRORS, type ErrorCode } from '../../src/errors.ts'
import { IDENTITY_ATTRIBUTES } from '../../src/identity/stage.ts'
import { METADATA_NAMESPACE } from '../../src/server/process.ts'
import { configFiles, envoyBootstrap, helmTemplate, manifests, valueSets } from '../helpers/chart.ts'
import { sharedTestPki } from '../helpers/pki.ts'

const run = promisify(execFile)
const EXT_PROC = 'envoy.filters.http.ext_proc'
const CEL_FILTER = 'envoy.access_loggers.extension_filters.cel'
/** nghttp2's default allowance of stream resets per connection (CVE-2023-44487 protection in Node). */
const NGHTTP2_RESET_BURST = 1000

// ---- the two configurations ----------------------------------------------------------

const { pki } = await sharedTestPki()
/** The local stack's catalog, as `modelgate start` renders it (every provider at the stand-in). */
const localConfig = configFromObject(localModelgateConfig({ socket: '/tmp/modelgate-contract.sock', policies: join(REPO_ROOT, 'policies'), dir: '/tmp/modelgate-contract' }), 'contract')
const localCatalogCompiled = compileCatalog(localConfig.providers)
const template = envoyConfigObject(
  localStackVars({ pki, socket: '/tmp/modelgate-contract.sock', listenPort: 0 }),
  standInProviders(localCatalogCompiled, { host: '127.0.0.1', port: 9 }),
)
/** server.phaseTimeoutMs of the local stack (src/cli/start.ts). */
const TEMPLATE_PHASE_TIMEOUT_MS = 1500

const policyFiles = readdirSync(join(REPO_ROOT, 'policies')).filter((f) => /\.(cedar|cedarschema|json)$/.test(f))
const helmArgs = ['--set', 'tls.svid.secretName=modelgate-tls', '--set', 'tls.trustBundle.configMap=spiffe-bundle', '--set', 'config.identity.trustDomains={prod.example.com}']
for (const f of policyFiles) helmArgs.push('--set-file', `policies.files.${f.replaceAll('.', '\\.')}=${join(REPO_ROOT, 'policies', f)}`)
const { stdout } = await run(join(REPO_ROOT, '.tools', 'bin', 'helm'), ['template', 'gw', join(REPO_ROOT, 'charts', 'modelgate'), '--namespace', 'ai', '--kube-version', '1.31.0', ...helmArgs], {
  maxBuffer: 16 * 1024 * 1024,
})
const configMaps = parseAllDocuments(stdout)
  .map((d) => d.toJS())
  .filter((d) => d?.kind === 'ConfigMap')
const chart = parse(configMaps.find((d) => d.data?.['envoy.yaml']).data['envoy.yaml']) as Record<string, any>
const chartPhaseTimeoutMs = parseConfig(configMaps.find((d) => d.data?.['modelgate.yaml']).data['modelgate.yaml'], 'modelgate.yaml').server.phaseTimeoutMs
const chartValues = parse(readFileSync(join(REPO_ROOT, 'charts', 'modelgate', 'values.yaml'), 'utf8')) as Record<string, any>

const chartCatalog = compileCatalog(parseConfig(configMaps.find((d) => d.data?.['modelgate.yaml']).data['modelgate.yaml'], 'modelgate.yaml').providers)

const CONFIGS = [
  { name: 'envoy/envoy.template.yaml', doc: template, phaseTimeoutMs: TEMPLATE_PHASE_TIMEOUT_MS, catalog: localCatalogCompiled },
  { name: 'the chart', doc: chart, phaseTimeoutMs: chartPhaseTimeoutMs, catalog: chartCatalog },
]

// ---- helpers ----------------------------------------------------------------------------

function workloadsHcm(doc: Record<string, any>): Record<string, any> {
  const listener = doc.static_resources.listeners.find((l: { name: string }) => l.name === 'workloads')
  return listener.filter_chains[0].filters.find((f: { name: string }) => f.name === 'envoy.filters.network.http_connection_manager').typed_config
}

function cluster(doc: Record<string, any>, name: string): Record<string, any> {
  return doc.static_resources.clusters.find((c: { name: string }) => c.name === name)
}

/** `2s`, `0.3s`, `300s` in milliseconds. */
function durationMs(d: string): number {
  const m = /^(\d+(?:\.\d+)?)s$/.exec(String(d))
  if (!m) throw new Error(`not a duration: ${d}`)
  return Number(m[1]) * 1000
}

function celExpression(filter: Record<string, any>): string | undefined {
  const ext = filter.extension_filter
  return ext?.name === CEL_FILTER ? ext.typed_config.expression : undefined
}

/** Every attribute name modelgate's code reads from the request context. */
function attributesReadBySource(): string[] {
  const names = new Set<string>()
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name))
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(join(dir, e.name), 'utf8').matchAll(/attributes\.get\('([^']+)'\)/g)) names.add(m[1]!)
    }
  }
  walk(join(REPO_ROOT, 'src'))
  return [...names].sort()
}

// ---- the contract -------------------------------------------------------------------------

for (const { name, doc, phaseTimeoutMs, catalog } of CONFIGS) {
  t.test(`${name}: Envoy reaches only the catalogued providers (and modelgate); whatever no provider serves gets a 404`, async (t) => {
    const names = catalog.providers.map((p) => p.name)
    const routes = workloadsHcm(doc).route_config.virtual_hosts.flatMap((vh: { routes: Record<string, any>[] }) => vh.routes) as Record<string, any>[]
    for (const r of routes) {
      if (r.direct_response) continue
      t.ok(names.includes(r.name) && r.route.cluster === `provider-${r.name}`, `route ${r.name} leads to its catalogued provider's cluster`)
      t.notOk(r.route.cluster_header ?? r.route.weighted_clusters ?? r.route.cluster_specifier_plugin, `route ${r.name}: no cluster a request could choose`)
    }
    t.same(routes.at(-1), { name: 'unknown', match: { prefix: '/' }, direct_response: { status: 404 } }, 'the last route answers 404')
    t.same(workloadsHcm(doc).route_config.virtual_hosts.length, 1, 'one virtual host: the Host header chooses nothing')
    const upstreams = doc.static_resources.clusters.map((c: { name: string }) => c.name).filter((c: string) => !['modelgate', 'envoy_admin', 'spire_agent'].includes(c))
    t.same(upstreams.sort(), names.map((n) => `provider-${n}`).sort(), 'a cluster per catalogued provider, and no other')
    t.notMatch(JSON.stringify(doc), /dynamic_forward_proxy|original_dst|ORIGINAL_DST/, 'no forward proxy, no original destination')
  })


  t.test(`${name}: every request passes modelgate first, and no answer means no request upstream`, async (t) => {
    const hcm = workloadsHcm(doc)
    t.same(
      hcm.http_filters.map((f: { name: string }) => f.name),
      [EXT_PROC, 'envoy.filters.http.router'],
      'ext_proc is the only filter before the router',
    )
    const ext = hcm.http_filters[0].typed_config
    t.equal(ext.failure_mode_allow, false, 'failure_mode_allow: false')
    t.same(ext.grpc_service, { envoy_grpc: { cluster_name: 'modelgate' } })
    t.ok(durationMs(ext.message_timeout) > phaseTimeoutMs, `message_timeout ${ext.message_timeout} is above modelgate's phase deadline (${phaseTimeoutMs} ms)`)
    for (const vh of hcm.route_config.virtual_hosts) {
      for (const r of vh.routes) {
        const per = r.typed_per_filter_config?.[EXT_PROC]
        if (per) t.notOk(per.disabled, `route ${r.name} keeps ext_proc`)
        if (r.route) t.ok(per?.overrides?.grpc_initial_metadata?.some((m: { key: string }) => m.key === 'x-modelgate-provider'), `route ${r.name} names its provider`)
      }
    }
  })

  t.test(`${name}: the whole request body is inspected before it leaves; only SSE answers are streamed`, async (t) => {
    const ext = workloadsHcm(doc).http_filters[0].typed_config
    t.same(ext.processing_mode, {
      request_header_mode: 'SEND',
      response_header_mode: 'SEND',
      request_body_mode: 'BUFFERED',
      response_body_mode: 'BUFFERED',
      request_trailer_mode: 'SKIP',
      response_trailer_mode: 'SKIP',
    })
    t.equal(ext.allow_mode_override, true)
    // Envoy compares an override with each allowed mode field by field, after filling the header and
    // trailer modes from the static mode and taking the body modes from the server's override. An
    // allowed mode must spell those out, or Envoy silently refuses the override (SSE stays BUFFERED).
    const pm = ext.processing_mode
    t.same(
      ext.allowed_override_modes,
      [{ response_header_mode: pm.response_header_mode, response_body_mode: 'STREAMED', request_trailer_mode: pm.request_trailer_mode, response_trailer_mode: pm.response_trailer_mode }],
      'the only override: the response body STREAMED, everything else as configured',
    )
    t.equal(ext.mutation_rules.disallow_is_error, true, 'a refused mutation is an error')
    const listener = doc.static_resources.listeners.find((l: { name: string }) => l.name === 'workloads')
    t.ok(listener.per_connection_buffer_limit_bytes >= 1 << 20, 'the buffer limit holds a whole body')
  })

  t.test(`${name}: modelgate gets the attributes it reads and Envoy keeps the metadata it writes`, async (t) => {
    const ext = workloadsHcm(doc).http_filters[0].typed_config
    for (const a of new Set([...IDENTITY_ATTRIBUTES, ...attributesReadBySource()])) t.ok(ext.request_attributes.includes(a), `request_attributes has ${a}`)
    t.ok(ext.metadata_options.receiving_namespaces.untyped.includes(METADATA_NAMESPACE), `receiving_namespaces has ${METADATA_NAMESPACE}`)
  })

  t.test(`${name}: the identity Envoy forwards is the verified certificate's`, async (t) => {
    const hcm = workloadsHcm(doc)
    t.equal(hcm.forward_client_cert_details, 'SANITIZE_SET')
    const listener = doc.static_resources.listeners.find((l: { name: string }) => l.name === 'workloads')
    t.equal(listener.filter_chains[0].transport_socket.typed_config.require_client_certificate, true)
  })

  t.test(`${name}: ext_proc streams end with a half-close, on HTTP/2 connections that never exhaust Node's reset allowance`, async (t) => {
    const runtime = Object.assign({}, ...doc.layered_runtime.layers.filter((l: { static_layer?: unknown }) => l.static_layer).map((l: { static_layer: object }) => l.static_layer))
    t.equal(runtime['envoy.reloadable_features.ext_proc_graceful_grpc_close'], true, 'the graceful close runtime guard is on')
    t.ok(runtime['envoy.filters.http.ext_proc.remote_close_timeout_milliseconds'] >= 1000, 'Envoy waits at least 1 s for the status')
    const mg = cluster(doc, 'modelgate')
    const http = mg.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']
    t.ok(http.explicit_http_config.http2_protocol_options, 'HTTP/2')
    const perConnection = http.common_http_protocol_options.max_requests_per_connection
    t.ok(perConnection > 0 && perConnection < NGHTTP2_RESET_BURST, `at most ${perConnection} streams per connection, below nghttp2's ${NGHTTP2_RESET_BURST} resets`)
    const limits = mg.circuit_breakers.thresholds[0]
    for (const k of ['max_connections', 'max_pending_requests', 'max_requests']) t.ok(limits[k] >= 100000, `${k} ${limits[k]}: one stream per request, far above the default 1024`)
    t.ok(mg.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe, 'over a Unix socket')
  })

  t.test(`${name}: Envoy retires idle provider connections before the provider would close them`, async (t) => {
    // The clusters routes send requests to (not modelgate's, the admin's or the SPIRE agent's).
    const routed = new Set<string>(workloadsHcm(doc).route_config.virtual_hosts.flatMap((vh: { routes: { route?: { cluster?: string } }[] }) => vh.routes.map((r) => r.route?.cluster).filter(Boolean)))
    const providers = doc.static_resources.clusters.filter((c: { name: string }) => routed.has(c.name))
    t.ok(providers.length >= 2)
    for (const c of providers) {
      const idle = c.typed_extension_protocol_options?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions']?.common_http_protocol_options?.idle_timeout
      t.ok(idle && durationMs(idle) < PROVIDER_KEEP_ALIVE_MS, `${c.name}: idle_timeout ${idle} is below the stand-in provider's keep-alive (${PROVIDER_KEEP_ALIVE_MS} ms)`)
    }
  })

  t.test(`${name}: the access log never holds the raw path`, async (t) => {
    const hcm = workloadsHcm(doc)
    const text = JSON.stringify(hcm.access_log)
    t.notMatch(text, /%REQ\(:PATH\)%|%REQ\(X-ENVOY-ORIGINAL-PATH|%PATH%|%REQ\(:path\)%/i, 'no raw path operator')
    t.equal(hcm.access_log[0].typed_config.log_format.json_format.path, `%DYNAMIC_METADATA(${METADATA_NAMESPACE}:path)%`, "the path is modelgate's route template")
  })

  t.test(`${name}: Envoy's own answers get catalog codes in the route's dialect; modelgate's denials pass untouched`, async (t) => {
    const mappers = workloadsHcm(doc).local_reply_config.mappers as Record<string, any>[]
    t.notOk(workloadsHcm(doc).local_reply_config.body_format, 'no body format for every reply: it would rewrite modelgate’s bodies')
    const [first, ...rest] = mappers
    const passFilters = first!.filter.or_filter.filters as Record<string, any>[]
    t.same(passFilters.map(celExpression).filter(Boolean), ["response.code_details.startsWith('modelgate_')"], "the first mapper matches modelgate's ImmediateResponse details")
    t.match(passFilters.find((f) => f.metadata_filter)?.metadata_filter, { matcher: { filter: METADATA_NAMESPACE, path: [{ key: 'error_code' }], value: { present_match: true } }, match_if_key_not_found: false })
    t.same(Object.keys(first!).sort(), ['filter'], '…and changes nothing')
    t.equal(rest.length % 2, 0, 'mappers come in pairs: Anthropic first, then OpenAI')
    const codes = new Set<string>()
    for (let i = 0; i < rest.length; i += 2) {
      const [anthropic, openai] = [rest[i]!, rest[i + 1]!]
      const code = openai.body_format_override.json_format.error.code as ErrorCode
      codes.add(code)
      t.ok(code in ERRORS, `${code} is in the catalog`)
      t.equal(celExpression(anthropic.filter), `${celExpression(openai.filter)} && request.url_path.startsWith('/v1/messages')`, `${code}: the Anthropic mapper is the OpenAI one for /v1/messages`)
      t.same(openai.body_format_override.json_format, { error: { type: 'modelgate_error', code, message: ERRORS[code].message, request_id: '%REQ(X-REQUEST-ID)%' } }, `${code}: OpenAI-style body`)
      t.match(anthropic.body_format_override.json_format, { type: 'error', error: { type: /^(invalid_request_error|not_found_error|request_too_large|api_error)$/, message: ERRORS[code].message }, request_id: '%REQ(X-REQUEST-ID)%' }, `${code}: Anthropic-style body`)
      const headers = (m: Record<string, any>) => Object.fromEntries(m.headers_to_add.map((h: { header: { key: string; value: string } }) => [h.header.key, h.header.value]))
      t.same(headers(openai), { 'x-modelgate-error': code })
      t.same(headers(anthropic), { 'x-modelgate-error': code, 'request-id': '%REQ(X-REQUEST-ID)%' })
    }
    t.same([...codes].sort(), [...ENVOY_REPLY_CODES].sort(), 'every code Envoy answers with has a mapper')
  })
}

t.test('the chart and envoy/ map Envoy’s answers identically', async (t) => {
  t.same(workloadsHcm(chart).local_reply_config, workloadsHcm(template).local_reply_config)
  t.same(workloadsHcm(chart).access_log, workloadsHcm(template).access_log)
  t.same(chart.layered_runtime, template.layered_runtime)
  t.same(workloadsHcm(chart).http_filters[0].typed_config.processing_mode, workloadsHcm(template).http_filters[0].typed_config.processing_mode)
})

t.test("the chart's provider idle timeout is a value, with a default below common provider keep-alives", async (t) => {
  t.equal(chartValues.envoy.providerIdleTimeout, '30s')
})

t.test('the chart renders the same provider routes and clusters from its catalog as src/providers/envoy.ts does from the same catalog', async (t) => {
  const docs = manifests(await helmTemplate(valueSets().production))
  const boot = envoyBootstrap(docs)
  const catalog = compileCatalog(parseConfig(configFiles(docs)['modelgate.yaml']!, 'modelgate.yaml').providers)
  t.ok(catalog.providers.length >= 3, 'several providers: OpenAI, Anthropic, an internal OpenAI-compatible one')
  const routes = workloadsHcm(boot).route_config.virtual_hosts[0].routes as Record<string, any>[]
  t.same(routes.slice(0, -1), envoyRoutes(catalog), 'the same routes, in the same order')
  t.same(routes.at(-1), { name: 'unknown', match: { prefix: '/' }, direct_response: { status: 404 } }, 'and nothing else: whatever no provider serves gets the 404 backstop')
  const byName = (a: Record<string, any>, b: Record<string, any>) => (a.name < b.name ? -1 : 1)
  const chartClusters = boot.static_resources.clusters.filter((c: { name: string }) => c.name.startsWith('provider-')).sort(byName)
  const expected = envoyClusters(catalog, { maxBodyBytes: chartValues.envoy.maxBodyBytes, idleTimeout: chartValues.envoy.providerIdleTimeout, caFile: '/etc/ssl/certs/ca-certificates.crt' }).sort(byName)
  t.same(chartClusters, expected, 'the same clusters')
})
