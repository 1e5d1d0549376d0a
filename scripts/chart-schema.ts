/**
 * Writes charts/modelgate/values.schema.json: the chart's own values, typed
 * and checked here, and `config` (modelgate.yaml) as modelgate's own
 * configuration schema less the settings the chart owns. Helm validates
 * values against it before rendering, so a wrong value fails `helm install`
 * with the schema's message. `test/integration/chart.test.ts` fails when the
 * committed file differs from what this writes.
 *
 *   node scripts/chart-schema.ts            write the file
 *   node scripts/chart-schema.ts --check    exit 1 if it is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { configSchema } from '../src/config/config.ts'
import { credentialSchema, PROVIDER_NAME_PATTERN, providerEntrySchema } from '../src/config/sections/providers.ts'
import { REPO_ROOT } from '../src/dev/envoy.ts'

export const VALUES_SCHEMA_FILE = join(REPO_ROOT, 'charts', 'modelgate', 'values.schema.json')

type Schema = Record<string, unknown>

const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra })
const bool = (description: string): Schema => ({ type: 'boolean', description })
const int = (description: string, minimum: number, maximum: number): Schema => ({ type: 'integer', description, minimum, maximum })
/** An object whose every property is listed; anything else is refused. */
const obj = (description: string, properties: Record<string, Schema>, extra: Schema = {}): Schema => ({ type: 'object', description, additionalProperties: false, properties, ...extra })
/** A Kubernetes structure passed through as given (checked by the API server). */
const kube = (description: string, type: 'object' | 'array' = 'object'): Schema => (type === 'object' ? { type, description } : { type, description, items: { type: 'object' } })

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
const CONFIG_KEY = '^[-._a-zA-Z0-9]+$'
const DURATION = '^[0-9]+(\\.[0-9]+)?(ms|s)$'
const PROM_DURATION = '^([0-9]+(ms|s|m|h))+$'
const QUANTITY = '^[+]?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$'
const SECCOMP: Schema = { type: 'object', properties: { type: { enum: ['RuntimeDefault', 'Localhost'] } }, required: ['type'] }
const orEmpty = (pattern: string) => `(${pattern})|^$`

const image = (what: string): Schema =>
  obj(
    `The ${what} image.`,
    {
      repository: str('Image repository.', { minLength: 1, pattern: '^[a-z0-9][a-z0-9._/:-]*$' }),
      tag: str("Image tag ('' for the default)."),
      digest: str("Image digest; wins over the tag when set ('' for none).", { pattern: orEmpty('^sha256:[a-f0-9]{64}$') }),
      pullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'], description: 'Image pull policy.' },
    },
    { required: ['repository', 'pullPolicy'] },
  )

const resources = (what: string): Schema =>
  obj(`Resource requests and limits of the ${what} container.`, {
    requests: { type: 'object', additionalProperties: { type: ['string', 'number'], pattern: QUANTITY } },
    limits: { type: 'object', additionalProperties: { type: ['string', 'number'], pattern: QUANTITY } },
  })

/** A NetworkPolicyPeer list. */
const peers = (description: string): Schema => ({
  type: 'array',
  description,
  items: obj('A NetworkPolicyPeer.', {
    ipBlock: obj('CIDR block.', { cidr: { type: 'string' }, except: { type: 'array', items: { type: 'string' } } }, { required: ['cidr'] }),
    namespaceSelector: kube('Namespace label selector.'),
    podSelector: kube('Pod label selector.'),
  }),
})

const labels = (description: string): Schema => ({ type: 'object', description, additionalProperties: { type: 'string' } })

const monitor = (kind: string): Schema =>
  obj(
    `A prometheus-operator ${kind} for both metrics endpoints.`,
    {
      enabled: bool(`Render a ${kind} (needs metrics.enabled and the prometheus-operator CRDs).`),
      interval: str('Scrape interval.', { pattern: PROM_DURATION }),
      scrapeTimeout: str('Scrape timeout.', { pattern: PROM_DURATION }),
      labels: labels(`Extra labels on the ${kind} (e.g. the Prometheus selector's).`),
    },
    { required: ['enabled'] },
  )

/** A credential of the catalog, plus the two ways the chart mounts one as a file. */
const credential: Schema = (() => {
  const c = structuredClone(credentialSchema) as unknown as Schema & { properties: Record<string, Schema> }
  c.description = "A provider credential, as in modelgate's providers.catalog, or from a Secret (`secret`) or a value (`value`) the chart mounts into modelgate as a file."
  c.properties.secret = obj(
    'An existing Secret in the release namespace; mounted read-only into modelgate at /etc/modelgate/credentials/<provider>/<credential>/<key> and re-read when it changes.',
    { name: str('The Secret.', { pattern: DNS_SUBDOMAIN }), key: str('The key in that Secret (default api-key).', { pattern: CONFIG_KEY }) },
    { required: ['name'] },
  )
  c.properties.value = str('The credential itself; the chart keeps it in its own Secret (prefer `secret`).', { minLength: 1 })
  return c
})()

/**
 * A schema whose patterns Helm's Go regexp can compile: Go has no lookahead
 * (such a pattern is left to modelgate, which checks the rendered
 * configuration at start-up) and repeats at most 1000 times (a longer
 * bounded repeat becomes unbounded; the length is checked by modelgate).
 */
function forGo<T>(schema: T): T {
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk)
    if (!v || typeof v !== 'object') return v
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) {
      if (k === 'pattern' && typeof x === 'string') {
        if (/\(\?[!=<]/.test(x)) continue
        out[k] = x.replace(/\{(\d+),(\d+)\}/g, (m, lo: string, hi: string) => (Number(hi) > 1000 ? `{${lo},}` : m))
      } else out[k] = walk(x)
    }
    return out
  }
  return walk(schema) as T
}

/** A catalog entry: modelgate's own schema, with the chart's credentials. */
const provider: Schema = (() => {
  const p = structuredClone(providerEntrySchema) as unknown as Schema & { properties: Record<string, Schema> }
  p.description = "A provider of the catalog (modelgate's providers.catalog entry): Envoy's route(s) and cluster are rendered from it."
  p.properties.credentials = { ...p.properties.credentials, items: credential }
  return forGo(p)
})()

/** modelgate's configuration schema less what the chart sets itself. */
function configValues(): Schema {
  const schema = structuredClone(configSchema) as unknown as Schema & { properties: Record<string, any> }
  delete schema.$id
  delete schema.properties.providers.properties.catalog // from `providers`
  delete schema.properties.providers.properties.routes // refused by modelgate
  delete schema.properties.server.properties.listen // the shared socket, or processor.port
  delete schema.properties.server.properties.maxBodyBytes // envoy.maxBodyBytes, so Envoy and modelgate agree
  delete schema.properties.policy.properties.dir // the mounted policy ConfigMap
  return {
    ...schema,
    description:
      "modelgate.yaml as YAML, validated with modelgate's own schema. The chart sets server.listen, server.maxBodyBytes (envoy.maxBodyBytes), server.metricsListen (with metrics.enabled), policy.dir and providers.catalog (from `providers`).",
  }
}

const tlsSchema = obj(
  "Where Envoy's listener SVID and the trust bundle come from (mode gateway).",
  {
    svid: obj(
      "The listener's X.509-SVID.",
      {
        source: { enum: ['secret', 'spire', 'certManagerCsi'], description: 'secret: a kubernetes.io/tls Secret; spire: SDS from the SPIRE agent; certManagerCsi: csi-driver-spiffe.' },
        secretName: str('The kubernetes.io/tls Secret (source secret).', { pattern: orEmpty(DNS_SUBDOMAIN) }),
      },
      { required: ['source'] },
    ),
    trustBundle: obj(
      'The bundle callers’ SVIDs must chain to.',
      {
        source: { enum: ['configMap', 'secret', 'spire', 'certManagerCsi'], description: "configMap | secret: a PEM bundle under `key`; spire: SDS from the SPIRE agent; certManagerCsi: csi-driver-spiffe's ca.crt." },
        configMap: str('ConfigMap holding the bundle (source configMap).', { pattern: orEmpty(DNS_SUBDOMAIN) }),
        secret: str('Secret holding the bundle (source secret).', { pattern: orEmpty(DNS_SUBDOMAIN) }),
        key: str('The key holding the PEM bundle.', { pattern: CONFIG_KEY }),
      },
      { required: ['source', 'key'] },
    ),
    spire: obj(
      'The SPIRE agent (sources spire).',
      {
        socketVolume: { enum: ['csi', 'hostPath'], description: 'How the Workload API socket reaches the pod.' },
        csiDriver: str('The SPIFFE CSI driver.', { pattern: DNS_SUBDOMAIN }),
        hostPath: str("The agent socket's directory on the node (socketVolume hostPath).", { pattern: '^/' }),
        socketName: str('The socket file in that directory.', { pattern: '^[^/]+$' }),
        svidName: str('SDS resource name of the SVID: default, or its SPIFFE ID.', { minLength: 1 }),
        bundleName: str('SDS resource name of the bundle: ROOTCA, ALL, or a trust domain’s SPIFFE ID.', { minLength: 1 }),
      },
      { required: ['socketVolume', 'csiDriver', 'socketName', 'svidName', 'bundleName'] },
    ),
    certManagerCsi: obj(
      "cert-manager's csi-driver-spiffe (sources certManagerCsi).",
      {
        driver: str('The CSI driver.', { pattern: DNS_SUBDOMAIN }),
        volumeAttributes: labels('Extra CSI volume attributes.'),
        createRbac: bool('A Role and RoleBinding letting the service account create CertificateRequests.'),
      },
      { required: ['driver'] },
    ),
  },
  { required: ['svid', 'trustBundle'] },
)

const networkPolicy = obj(
  'A NetworkPolicy: callers reach only the gateway (or ext_proc) port; the pod reaches only DNS, providers, the OTLP collector and Redis.',
  {
    enabled: bool('Render the NetworkPolicy.'),
    callers: peers('Who may call the gateway port (mode processor: the ext_proc port); empty: any source.'),
    metricsScrapers: peers('Who may scrape the metrics ports; empty: any source.'),
    dns: peers('The DNS servers.'),
    providerCidrs: {
      type: 'array',
      description: 'Where providers may be reached, as CIDRs.',
      items: obj('A CIDR and its exceptions.', { cidr: { type: 'string', minLength: 1 }, except: { type: 'array', items: { type: 'string' } } }, { required: ['cidr'] }),
    },
    providerPeers: peers('Where providers may be reached, as peers (in-cluster providers).'),
    otlpPeers: peers("The OTLP collector's pods; empty: any destination on its port."),
    redisPeers: peers("Redis's pods; empty: any destination on its port."),
  },
  { required: ['enabled'] },
)

const mesh = obj('Objects that put modelgate next to an Envoy already there (mode processor).', {
  istio: obj(
    "An EnvoyFilter adding modelgate's ext_proc filter to an Istio ingress or egress gateway.",
    {
      enabled: bool('Render the EnvoyFilter, a DestinationRule and (with gatewayPrincipals) an AuthorizationPolicy.'),
      gatewayNamespace: str("The gateway's namespace (where the EnvoyFilter lives).", { pattern: DNS_LABEL }),
      gatewaySelector: { ...labels("The gateway pods' labels."), minProperties: 1 },
      gatewayPort: int('Only the listener on this port (0: every listener).', 0, 65535),
      gatewayPrincipals: { type: 'array', description: 'Istio principals (cluster.local/ns/<ns>/sa/<sa>) allowed to call modelgate.', items: { type: 'string', pattern: '^[^/]+/ns/[^/]+/sa/[^/]+$' } },
      clusterDomain: str("The cluster's DNS domain.", { pattern: DNS_SUBDOMAIN }),
    },
    { required: ['enabled'] },
  ),
  envoyGateway: obj(
    'An EnvoyExtensionPolicy attaching modelgate to Envoy Gateway targets.',
    {
      enabled: bool('Render the EnvoyExtensionPolicy (and a ReferenceGrant when it lives in another namespace).'),
      namespace: str("The targets' namespace ('' for the release namespace).", { pattern: orEmpty(DNS_LABEL) }),
      targetRefs: {
        type: 'array',
        description: 'Gateway API objects the policy targets.',
        items: obj(
          'A local policy target reference.',
          {
            group: { const: 'gateway.networking.k8s.io' },
            kind: { enum: ['Gateway', 'HTTPRoute'] },
            name: str('Name.', { pattern: DNS_SUBDOMAIN }),
            sectionName: str('Listener or rule name.', { pattern: DNS_SUBDOMAIN }),
          },
          { required: ['group', 'kind', 'name'] },
        ),
      },
    },
    { required: ['enabled'], if: { properties: { enabled: { const: true } } }, then: { required: ['targetRefs'], properties: { targetRefs: { minItems: 1 } } } },
  ),
})

export function valuesSchema(): Schema {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'modelgate chart values',
    type: 'object',
    additionalProperties: false,
    required: ['mode', 'image', 'config', 'providers', 'envoy', 'modelgate', 'tls'],
    properties: {
      global: { type: 'object', description: 'Helm global values (unused by this chart).' },
      mode: { enum: ['gateway', 'processor'], description: 'gateway: Envoy and modelgate in each pod; processor: modelgate alone, as the ext_proc server of an Envoy already there.' },
      replicaCount: int('Replicas (ignored with autoscaling.enabled).', 1, 1000),
      image: image('modelgate'),
      envoyImage: image('Envoy'),
      imagePullSecrets: { type: 'array', description: 'Image pull secrets.', items: obj('A LocalObjectReference.', { name: str('Secret name.', { pattern: DNS_SUBDOMAIN }) }, { required: ['name'] }) },
      serviceAccount: obj('The pod’s service account.', {
        create: bool('Create it.'),
        name: str("Its name ('' for the release's full name).", { pattern: orEmpty(DNS_SUBDOMAIN) }),
        annotations: labels('Annotations.'),
      }),
      service: obj('The workload-facing Service (mode gateway) or the ext_proc Service (mode processor).', {
        type: { enum: ['ClusterIP', 'NodePort', 'LoadBalancer'] },
        port: int('Service port of the gateway listener (mode gateway).', 1, 65535),
        annotations: labels('Annotations.'),
      }),
      processor: obj('mode processor: the ext_proc port.', { port: int('Port modelgate serves ext_proc (gRPC) on.', 1024, 65535) }, { required: ['port'] }),
      tls: tlsSchema,
      config: configValues(),
      policies: obj('Cedar policies: files, or an existing ConfigMap.', {
        existingConfigMap: str('ConfigMap with the policy files.', { pattern: orEmpty(DNS_SUBDOMAIN) }),
        files: { type: 'object', description: 'Policy files by name (*.cedar, *.cedarschema, entities.json).', propertyNames: { pattern: '^[-._a-zA-Z0-9]+\\.(cedar|cedarschema|json)$' }, additionalProperties: { type: 'string' } },
      }),
      providers: { type: 'object', description: 'The provider catalog, by the name Envoy\'s routes give each provider.', minProperties: 1, propertyNames: { pattern: PROVIDER_NAME_PATTERN }, additionalProperties: provider },
      envoy: obj(
        'The Envoy container and its bootstrap.',
        {
          messageTimeout: str("ext_proc message_timeout; above config.server.phaseTimeoutMs (e.g. 2s, 1500ms).", { pattern: DURATION }),
          maxBodyBytes: int("Largest body inspected whole; Envoy's buffer limit and modelgate's server.maxBodyBytes.", 1024, 67108864),
          providerIdleTimeout: str("Idle timeout of provider connections; below the providers' keep-alive.", { pattern: DURATION }),
          logLevel: { enum: ['trace', 'debug', 'info', 'warning', 'warn', 'error', 'critical', 'off'] },
          preStopSleepSeconds: int('Envoy keeps serving this long after termination starts.', 0, 300),
          resources: resources('Envoy'),
        },
        { required: ['messageTimeout', 'maxBodyBytes', 'providerIdleTimeout', 'preStopSleepSeconds'] },
      ),
      modelgate: obj(
        'The modelgate container.',
        {
          nativeSidecar: bool('Run modelgate as a native sidecar (Kubernetes 1.29+): up before Envoy starts, down after Envoy exits.'),
          resources: resources('modelgate'),
          env: { type: 'array', description: 'Extra environment variables (EnvVar list).', items: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$' } } } },
          logLevel: { enum: ['debug', 'info', 'warn', 'error'] },
          preStopSleepSeconds: int('Without nativeSidecar: modelgate keeps deciding this long after termination starts.', 0, 300),
        },
        { required: ['nativeSidecar'] },
      ),
      otlp: obj('The OpenTelemetry collector (OTLP over HTTP/protobuf).', {
        endpoint: str("OTEL_EXPORTER_OTLP_ENDPOINT ('' for no export).", { pattern: orEmpty('^https?://[^\\s/]+(/.*)?$') }),
        headersSecret: obj('A Secret key holding OTEL_EXPORTER_OTLP_HEADERS.', { name: str('Secret.', { pattern: orEmpty(DNS_SUBDOMAIN) }), key: str('Key.', { pattern: orEmpty(CONFIG_KEY) }) }),
      }),
      redis: obj('The Redis for state shared across replicas.', {
        address: str("host:port ('' for none).", { pattern: orEmpty('^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?:[0-9]{1,5}$') }),
        passwordSecret: obj('A Secret key holding the password, mounted as a file.', { name: str('Secret.', { pattern: orEmpty(DNS_SUBDOMAIN) }), key: str('Key.', { pattern: orEmpty(CONFIG_KEY) }) }),
      }),
      metrics: obj(
        "Prometheus metrics: modelgate's (server.metricsListen) and Envoy's (/stats/prometheus on the readiness port).",
        { enabled: bool('Serve metrics.'), port: int("modelgate's metrics port.", 1024, 65535), serviceMonitor: monitor('ServiceMonitor'), podMonitor: monitor('PodMonitor') },
        { required: ['enabled', 'port'] },
      ),
      autoscaling: obj(
        "A HorizontalPodAutoscaler on modelgate's CPU.",
        {
          enabled: bool('Render the HorizontalPodAutoscaler.'),
          minReplicas: int('Fewest replicas.', 1, 1000),
          maxReplicas: int('Most replicas.', 1, 1000),
          targetCPUUtilizationPercentage: int("Target average CPU of the modelgate container, percent of its request.", 1, 1000),
          behavior: kube('HorizontalPodAutoscalerBehavior.'),
        },
        { required: ['enabled'] },
      ),
      terminationGracePeriodSeconds: int("Seconds the pod gets to stop: Envoy's pause plus modelgate's drain at least.", 1, 3600),
      podDisruptionBudget: obj('A PodDisruptionBudget.', { enabled: bool('Render it.'), minAvailable: { type: ['integer', 'string'], pattern: '^[0-9]+%$', minimum: 0 } }),
      networkPolicy,
      priorityClassName: str("PriorityClass of the pods ('' for none).", { pattern: orEmpty(DNS_SUBDOMAIN) }),
      podAnnotations: labels('Pod annotations.'),
      podLabels: labels('Pod labels.'),
      nodeSelector: labels('Node selector.'),
      tolerations: kube('Tolerations.', 'array'),
      affinity: kube('Affinity.'),
      topologySpread: obj('Spread over zones and nodes (replaced by a non-empty topologySpreadConstraints).', {
        enabled: bool('Spread.'),
        maxSkew: int('maxSkew.', 1, 100),
        whenUnsatisfiable: { enum: ['ScheduleAnyway', 'DoNotSchedule'] },
        topologyKeys: { type: 'array', items: { type: 'string', minLength: 1 } },
      }),
      topologySpreadConstraints: kube('TopologySpreadConstraint list, as given.', 'array'),
      podSecurityContext: {
        ...kube('PodSecurityContext: non-root, with a seccomp profile.'),
        properties: { runAsNonRoot: { const: true }, seccompProfile: SECCOMP },
        required: ['runAsNonRoot', 'seccompProfile'],
      },
      containerSecurityContext: {
        ...kube('SecurityContext of both containers; non-root, no privilege escalation, read-only root filesystem, no capabilities.'),
        properties: {
          runAsNonRoot: { const: true },
          allowPrivilegeEscalation: { const: false },
          readOnlyRootFilesystem: { const: true },
          privileged: { const: false },
          capabilities: { type: 'object', properties: { drop: { type: 'array', contains: { const: 'ALL' } }, add: { type: 'array', maxItems: 0 } }, required: ['drop'] },
          seccompProfile: SECCOMP,
        },
        required: ['runAsNonRoot', 'allowPrivilegeEscalation', 'readOnlyRootFilesystem', 'capabilities', 'seccompProfile'],
      },
      mesh,
    },
    allOf: [
      {
        // mode gateway: the Secret, ConfigMap or Secret a file source names must be given.
        if: { properties: { mode: { const: 'gateway' } } },
        then: {
          properties: {
            tls: {
              properties: {
                svid: { if: { properties: { source: { const: 'secret' } } }, then: { required: ['secretName'], properties: { secretName: { minLength: 1 } } } },
                trustBundle: {
                  allOf: [
                    { if: { properties: { source: { const: 'configMap' } } }, then: { required: ['configMap'], properties: { configMap: { minLength: 1 } } } },
                    { if: { properties: { source: { const: 'secret' } } }, then: { required: ['secret'], properties: { secret: { minLength: 1 } } } },
                  ],
                },
              },
            },
          },
        },
      },
      {
        if: { properties: { mode: { const: 'processor' } } },
        else: { properties: { mesh: { properties: { istio: { properties: { enabled: { const: false } } }, envoyGateway: { properties: { enabled: { const: false } } } } } } },
      },
    ],
  }
}

export function valuesSchemaText(): string {
  return JSON.stringify(valuesSchema(), null, 2) + '\n'
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const text = valuesSchemaText()
  if (process.argv.includes('--check')) {
    const current = readFileSync(VALUES_SCHEMA_FILE, 'utf8')
    if (current !== text) {
      process.stderr.write(`${VALUES_SCHEMA_FILE} is out of date: run node scripts/chart-schema.ts\n`)
      process.exit(1)
    }
  } else {
    writeFileSync(VALUES_SCHEMA_FILE, text)
    process.stdout.write(`wrote ${VALUES_SCHEMA_FILE}\n`)
  }
}
