/**
 * The Helm chart as an SRE meets it: it lints strictly, its schema refuses
 * wrong values with the schema's message, and every value set the README
 * documents (minimal, production, SPIRE, Istio, Envoy Gateway) renders
 * manifests that are valid against the Kubernetes and CRD schemas, run
 * restricted, probe what matters, and hold an Envoy bootstrap the real Envoy
 * accepts and a modelgate configuration modelgate accepts.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { parse, stringify } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1'
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { ConfigMap, Secret, Service, ServiceAccount } from 'kubernetes-models/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1'
import { parseConfig } from '../../src/config/config.ts'
import { envoyBinary } from '../../src/dev/envoy.ts'
import { valuesSchemaText, VALUES_SCHEMA_FILE } from '../../scripts/chart-schema.ts'
import { CHART, configFiles, container, containers, envoyBootstrap, find, HELM, helmTemplate, helmTemplateError, KUBE_VERSION, manifests, podSpec, valueSets, type Manifest } from '../helpers/chart.ts'
import { kubeconform } from '../helpers/kube-schemas.ts'
import { sharedTestPki } from '../helpers/pki.ts'

const run = promisify(execFile)
const SETS = valueSets()
type SetName = keyof typeof SETS
const GATEWAY_SETS: SetName[] = ['minimal', 'production', 'spire']
const PROCESSOR_SETS: SetName[] = ['istio', 'envoyGateway']
const scratch = mkdtempSync(join(tmpdir(), 'modelgate-chart-test-'))
process.once('exit', () => rmSync(scratch, { recursive: true, force: true }))

/** A values file in the scratch directory. */
function valuesFile(name: string, values: unknown): string {
  const file = join(scratch, name)
  writeFileSync(file, stringify(values))
  return file
}

/** Each value set rendered once. */
const rendered = new Map<SetName, Promise<{ text: string; docs: Manifest[] }>>()
function renderSet(name: SetName, extra: string[] = []): Promise<{ text: string; docs: Manifest[] }> {
  if (extra.length) return helmTemplate([...SETS[name], ...extra]).then((text) => ({ text, docs: manifests(text) }))
  if (!rendered.has(name)) rendered.set(name, helmTemplate(SETS[name]).then((text) => ({ text, docs: manifests(text) })))
  return rendered.get(name)!
}

const models: Record<string, (o: any) => { validate(): void }> = {
  Deployment: (o) => new Deployment(o),
  Service: (o) => new Service(o),
  ConfigMap: (o) => new ConfigMap(o),
  Secret: (o) => new Secret(o),
  ServiceAccount: (o) => new ServiceAccount(o),
  PodDisruptionBudget: (o) => new PodDisruptionBudget(o),
  NetworkPolicy: (o) => new NetworkPolicy(o),
  HorizontalPodAutoscaler: (o) => new HorizontalPodAutoscaler(o),
  Role: (o) => new Role(o),
  RoleBinding: (o) => new RoleBinding(o),
}

// ---- lint and schema ---------------------------------------------------------------------

t.test('helm lint --strict accepts the chart with every documented value set', async (t) => {
  for (const [name, args] of Object.entries(SETS)) {
    const { stdout } = await run(HELM, ['lint', '--strict', CHART, '--kube-version', KUBE_VERSION, ...args])
    t.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, name)
  }
})

t.test("values.schema.json is the one scripts/chart-schema.ts writes from modelgate's configuration schema", async (t) => {
  t.equal(readFileSync(VALUES_SCHEMA_FILE, 'utf8'), valuesSchemaText(), 'run node scripts/chart-schema.ts after changing the chart values or src/config')
})

t.test('a wrong value is refused before rendering, with the schema’s message naming it', async (t) => {
  const cases: { set: string[]; message: RegExp }[] = [
    { set: ['replicaCount=abc'], message: /at '\/replicaCount': got string, want integer/ },
    { set: ['mode=sidecar'], message: /at '\/mode': value must be one of 'gateway', 'processor'/ },
    { set: ['tls.svid.source=vault'], message: /at '\/tls\/svid\/source': value must be one of 'secret', 'spire', 'certManagerCsi'/ },
    { set: ['providers.openai.kind=gemini'], message: /at '\/providers\/openai\/kind': value must be one of 'openai', 'anthropic', 'azure-openai'/ },
    { set: ['providers.openai.upstream=ftp://api.openai.com'], message: /at '\/providers\/openai\/upstream': 'ftp:\/\/api.openai.com' does not match pattern/ },
    { set: ['providers.openai.credentials[0].name=default', 'providers.openai.credentials[0].secret.key=api-key'], message: /at '\/providers\/openai\/credentials\/0\/secret': missing property 'name'/ },
    { set: ['envoy.messageTimeout=2 seconds'], message: /at '\/envoy\/messageTimeout': '2 seconds' does not match pattern/ },
    { set: ['config.server.listen=0.0.0.0:9000'], message: /at '\/config\/server': additional properties 'listen' not allowed/ },
    { set: ['config.server.phaseTimeoutMs=fast'], message: /at '\/config\/server\/phaseTimeoutMs': got string, want integer/ },
    { set: ['config.identity.trustDomains={Prod.Example.com}'], message: /at '\/config\/identity\/trustDomains\/0': 'Prod.Example.com' does not match pattern/ },
    { set: ['containerSecurityContext.readOnlyRootFilesystem=false'], message: /at '\/containerSecurityContext\/readOnlyRootFilesystem': value must be true/ },
    { set: ['podSecurityContext.runAsNonRoot=false'], message: /at '\/podSecurityContext\/runAsNonRoot': value must be true/ },
    { set: ['networkPolicy.enabled=yes'], message: /at '\/networkPolicy\/enabled': got string, want boolean/ },
    { set: ['autoscaling.bogus=1'], message: /at '\/autoscaling': additional properties 'bogus' not allowed/ },
  ]
  for (const c of cases) {
    const err = await helmTemplateError([...SETS.minimal, ...c.set.flatMap((s) => ['--set', s])])
    t.match(err, /values don't meet the specifications of the schema/, `${c.set.join(' ')} is refused by the schema`)
    t.match(err, c.message, `…saying ${c.message.source}`)
  }
})

t.test('a value left out is named: by the schema where one value decides, by the chart where several do', async (t) => {
  const minimalWithout = (prefix: string) => {
    const out: string[] = []
    const args = SETS.minimal
    for (let i = 0; i < args.length; i += 2) if (!args[i + 1]!.startsWith(prefix)) out.push(args[i]!, args[i + 1]!)
    return out
  }
  t.match(await helmTemplateError(minimalWithout('tls.svid.secretName')), /at '\/tls\/svid\/secretName': minLength: got 0, want 1/)
  t.match(await helmTemplateError(minimalWithout('tls.trustBundle.configMap')), /at '\/tls\/trustBundle\/configMap': minLength: got 0, want 1/)
  t.match(await helmTemplateError(minimalWithout('config.identity.trustDomains')), /at '\/config\/identity\/trustDomains': minItems: got 0, want 1/)
  t.match(await helmTemplateError(minimalWithout('/')), /policies\.existingConfigMap or policies\.files is required/)
  t.match(await helmTemplateError([...SETS.minimal, '--set', 'terminationGracePeriodSeconds=12']), /terminationGracePeriodSeconds \(12\) must cover Envoy's preStop pause and modelgate's drain .*at least 15 seconds/)
  t.match(await helmTemplateError([...SETS.minimal, '--set', 'envoy.messageTimeout=500ms']), /envoy\.messageTimeout \(500ms\) must be longer than config\.server\.phaseTimeoutMs \(800 ms\)/)
  t.match(await helmTemplateError([...SETS.minimal, '--set', 'mesh.istio.enabled=true']), /at '\/mesh\/istio\/enabled': value must be false/)
  const twice = valuesFile('twice.yaml', { providers: { groq: { kind: 'openai', upstream: 'https://api.groq.com/openai' } } })
  t.match(await helmTemplateError([...SETS.minimal, '--values', twice]), /providers: "groq" and "openai" both serve prefix \/v1\/; give one of them root: false or other basePaths/)
  t.match(await helmTemplateError([...SETS.envoyGateway, '--set', 'mesh.envoyGateway.targetRefs=null']), /targetRefs/)
})

// ---- every manifest valid --------------------------------------------------------------

t.test('every rendered manifest of every value set is valid against the Kubernetes and CRD schemas (kubeconform -strict)', async (t) => {
  const schemaDir = join(scratch, 'schemas')
  for (const name of Object.keys(SETS) as SetName[]) {
    const { text, docs } = await renderSet(name)
    const file = join(scratch, `${name}.yaml`)
    writeFileSync(file, text)
    const results = await kubeconform(file, schemaDir)
    t.equal(results.length, docs.length, `${name}: kubeconform saw every object`)
    for (const r of results) t.equal(r.status, 'statusValid', `${name}: ${r.kind} ${r.name} ${r.msg}`)
    for (const doc of docs) {
      const make = models[doc.kind]
      if (make) t.doesNotThrow(() => make(doc).validate(), `${name}: ${doc.kind} ${doc.metadata.name} validates with kubernetes-models`)
    }
  }
  const kinds = async (name: SetName) => (await renderSet(name)).docs.map((d) => d.kind).sort()
  t.same(await kinds('minimal'), ['ConfigMap', 'ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service', 'ServiceAccount'])
  t.same(await kinds('production'), ['ConfigMap', 'ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'Service', 'ServiceAccount', 'ServiceMonitor'])
  t.same(await kinds('istio'), ['AuthorizationPolicy', 'ConfigMap', 'ConfigMap', 'Deployment', 'DestinationRule', 'EnvoyFilter', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'ServiceAccount'])
  t.same(await kinds('envoyGateway'), ['ConfigMap', 'ConfigMap', 'Deployment', 'EnvoyExtensionPolicy', 'NetworkPolicy', 'PodDisruptionBudget', 'ReferenceGrant', 'Service', 'ServiceAccount'])
})

t.test('a PodMonitor can replace the ServiceMonitor and is valid against its CRD', async (t) => {
  const { text, docs } = await renderSet('production', ['--set', 'metrics.serviceMonitor.enabled=false', '--set', 'metrics.podMonitor.enabled=true'])
  const file = join(scratch, 'podmonitor.yaml')
  writeFileSync(file, text)
  for (const r of await kubeconform(file, join(scratch, 'schemas'))) t.equal(r.status, 'statusValid', `${r.kind} ${r.name} ${r.msg}`)
  const pm = find(docs, 'PodMonitor')
  t.same(
    pm.spec.podMetricsEndpoints.map((e: Manifest) => [e.port, e.path]),
    [
      ['metrics', '/metrics'],
      ['envoy-status', '/stats/prometheus'],
    ],
  )
  t.notOk(docs.some((d) => d.kind === 'ServiceMonitor'))
})

// ---- the pod ----------------------------------------------------------------------------

t.test('every container runs restricted: non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp', async (t) => {
  for (const name of Object.keys(SETS) as SetName[]) {
    const { docs } = await renderSet(name)
    const pod = podSpec(docs)
    t.equal(pod.automountServiceAccountToken, false, `${name}: no service account token`)
    t.equal(pod.securityContext.runAsNonRoot, true, `${name}: pod runAsNonRoot`)
    t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', `${name}: pod seccomp`)
    for (const c of containers(docs)) {
      const sc = c.securityContext
      t.match(sc, { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } }, `${name}: ${c.name}`)
      t.notOk(sc.capabilities.add, `${name}: ${c.name} adds no capability`)
      t.ok(c.resources.requests.cpu && c.resources.limits.memory, `${name}: ${c.name} has requests and a memory limit`)
    }
  }
})

t.test('modelgate is a native sidecar: serving before Envoy starts, stopped only after Envoy has exited', async (t) => {
  const { docs } = await renderSet('minimal')
  const pod = podSpec(docs)
  t.same(pod.initContainers.map((c: Manifest) => [c.name, c.restartPolicy]), [['modelgate', 'Always']], 'modelgate is an init container with restartPolicy Always')
  t.same(pod.containers.map((c: Manifest) => c.name), ['envoy'])
  t.ok(container(docs, 'modelgate').startupProbe, 'its startup probe gates the start of Envoy')
  t.notOk(container(docs, 'modelgate').lifecycle, 'no preStop pause: the kubelet stops sidecars only after the main containers')
  const envoyPause = container(docs, 'envoy').lifecycle.preStop.sleep.seconds as number
  const drainSeconds = parseConfig(configFiles(docs)['modelgate.yaml']!, 'modelgate.yaml').server.drainTimeoutMs / 1000
  t.ok(pod.terminationGracePeriodSeconds >= envoyPause + drainSeconds, `the grace period (${pod.terminationGracePeriodSeconds} s) covers Envoy's pause (${envoyPause} s) and modelgate's drain (${drainSeconds} s)`)
})

t.test('without native sidecars, modelgate outlives Envoy through a longer preStop pause', async (t) => {
  const { docs } = await renderSet('minimal', ['--set', 'modelgate.nativeSidecar=false'])
  const pod = podSpec(docs)
  t.notOk(pod.initContainers)
  t.same(pod.containers.map((c: Manifest) => c.name), ['modelgate', 'envoy'])
  const pause = (name: string) => container(docs, name).lifecycle.preStop.sleep.seconds as number
  t.ok(pause('modelgate') > pause('envoy'), 'modelgate keeps deciding after Envoy stops taking requests')
  const drainSeconds = parseConfig(configFiles(docs)['modelgate.yaml']!, 'modelgate.yaml').server.drainTimeoutMs / 1000
  t.ok(pod.terminationGracePeriodSeconds >= pause('modelgate') + drainSeconds)
})

t.test('Envoy and modelgate share the ext_proc socket on an in-memory volume; nothing else of modelgate is reachable', async (t) => {
  const { docs } = await renderSet('minimal')
  const socketVolume = podSpec(docs).volumes.find((v: Manifest) => v.name === 'socket')
  t.same(socketVolume.emptyDir, { medium: 'Memory', sizeLimit: '1Mi' })
  for (const name of ['modelgate', 'envoy']) t.ok(container(docs, name).volumeMounts.some((m: Manifest) => m.name === 'socket' && m.mountPath === '/run/modelgate'), `${name} mounts it`)
  const cfg = parseConfig(configFiles(docs)['modelgate.yaml']!, 'modelgate.yaml')
  t.equal(cfg.server.listen, 'unix:///run/modelgate/ext_proc.sock')
  const mg = envoyBootstrap(docs).static_resources.clusters.find((c: Manifest) => c.name === 'modelgate')
  t.equal(mg.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path, '/run/modelgate/ext_proc.sock', "Envoy's ext_proc cluster is that socket")
  t.notOk(container(docs, 'modelgate').ports, 'modelgate exposes no port')
  t.same(container(docs, 'envoy').ports.map((p: Manifest) => [p.name, p.containerPort]), [
    ['https', 8443],
    ['envoy-status', 8081],
  ])
})

t.test("probes: Envoy's admin /ready through a readiness listener, the admin on loopback only; modelgate's gRPC health", async (t) => {
  for (const name of GATEWAY_SETS) {
    const { docs } = await renderSet(name)
    const envoy = container(docs, 'envoy')
    t.same(envoy.readinessProbe.httpGet, { path: '/ready', port: 'envoy-status' }, `${name}: Envoy readiness is /ready`)
    t.same(envoy.startupProbe.httpGet, { path: '/ready', port: 'envoy-status' })
    t.same(envoy.livenessProbe.httpGet, { path: '/live', port: 'envoy-status' })
    const boot = envoyBootstrap(docs)
    t.same(boot.admin.address.socket_address, { address: '127.0.0.1', port_value: 9901 }, `${name}: the admin listens on loopback`)
    const readiness = boot.static_resources.listeners.find((l: Manifest) => l.name === 'readiness')
    t.equal(readiness.address.socket_address.port_value, 8081)
    const routes = readiness.filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes as Manifest[]
    const toAdmin = routes.filter((r) => r.route?.cluster === 'envoy_admin')
    const metrics = name === 'production'
    t.same(
      toAdmin.map((r) => r.match.path),
      metrics ? ['/ready', '/stats/prometheus'] : ['/ready'],
      `${name}: only ${metrics ? '/ready and /stats/prometheus reach' : '/ready reaches'} the admin`,
    )
    for (const r of toAdmin) t.same(r.match.headers, [{ name: ':method', string_match: { exact: 'GET' } }], `${name}: ${r.match.path} GET only`)
    t.same(routes.at(-1), { match: { prefix: '/' }, direct_response: { status: 404 } }, `${name}: everything else is 404`)
    const admin = boot.static_resources.clusters.find((c: Manifest) => c.name === 'envoy_admin')
    t.same(admin.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address, boot.admin.address.socket_address, `${name}: envoy_admin is the admin's address`)
    const health = ['node', '/app/bin/modelgate.js', 'health', '--address', 'unix:///run/modelgate/ext_proc.sock', '--timeout', '3000']
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) t.same(container(docs, 'modelgate')[probe].exec.command, health, `${name}: modelgate ${probe} is modelgate health`)
  }
  for (const name of PROCESSOR_SETS) {
    const mg = container((await renderSet(name)).docs, 'modelgate')
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) t.same(mg[probe].grpc, { port: 9002, service: 'envoy.service.ext_proc.v3.ExternalProcessor' }, `${name}: modelgate ${probe} is the kubelet's gRPC health check`)
  }
})

t.test('pods roll when modelgate.yaml or the Envoy bootstrap changes, not when a policy changes (policies hot-reload)', async (t) => {
  const annotations = async (extra: string[]) => podTemplateAnnotations((await renderSet('minimal', extra)).docs)
  const base = await annotations(['--set', 'podLabels.team=ai'])
  const policy = await annotations(['--set', 'policies.files.extra\\.cedar=// a comment'])
  t.equal(policy['checksum/config'], base['checksum/config'])
  t.equal(policy['checksum/envoy'], base['checksum/envoy'])
  const config = await annotations(['--set', 'config.policy.region=eu-west-1'])
  t.not(config['checksum/config'], base['checksum/config'], 'a modelgate.yaml change rolls the pods')
  const envoy = await annotations(['--set', 'envoy.messageTimeout=3s'])
  t.not(envoy['checksum/envoy'], base['checksum/envoy'], 'an Envoy change rolls the pods')
  const policiesVolume = podSpec((await renderSet('minimal')).docs).volumes.find((v: Manifest) => v.name === 'policies')
  t.same(policiesVolume, { name: 'policies', configMap: { name: 'gw-modelgate-policies' } }, 'the policy ConfigMap is mounted whole (no subPath), so updates reach the watched directory')
})

function podTemplateAnnotations(docs: Manifest[]): Record<string, string> {
  return find(docs, 'Deployment').spec.template.metadata.annotations
}

t.test('replicas spread over zones and nodes; a priority class and an autoscaler on modelgate’s CPU in production', async (t) => {
  const { docs } = await renderSet('production')
  const pod = podSpec(docs)
  t.same(
    pod.topologySpreadConstraints.map((c: Manifest) => [c.topologyKey, c.whenUnsatisfiable]),
    [
      ['topology.kubernetes.io/zone', 'ScheduleAnyway'],
      ['kubernetes.io/hostname', 'ScheduleAnyway'],
    ],
  )
  t.equal(pod.priorityClassName, 'ai-gateway-critical')
  t.notOk('replicas' in find(docs, 'Deployment').spec, 'the autoscaler owns the replica count')
  const hpa = find(docs, 'HorizontalPodAutoscaler')
  t.match(hpa.spec, { minReplicas: 3, maxReplicas: 12, scaleTargetRef: { kind: 'Deployment', name: 'gw-modelgate' } })
  t.same(hpa.spec.metrics, [{ type: 'ContainerResource', containerResource: { name: 'cpu', container: 'modelgate', target: { type: 'Utilization', averageUtilization: 65 } } }])
})

t.test('the NetworkPolicy lets callers reach only the gateway port and the pod reach only DNS, providers, the collector and Redis', async (t) => {
  const { docs } = await renderSet('production')
  const np = find(docs, 'NetworkPolicy').spec
  t.same(np.policyTypes, ['Ingress', 'Egress'])
  t.same(np.podSelector.matchLabels, { 'app.kubernetes.io/name': 'modelgate', 'app.kubernetes.io/instance': 'gw' })
  t.same(np.ingress, [
    { ports: [{ port: 8443, protocol: 'TCP' }], from: [{ namespaceSelector: { matchLabels: { 'modelgate.example.com/ai-client': 'true' } } }] },
    {
      ports: [
        { port: 9464, protocol: 'TCP' },
        { port: 8081, protocol: 'TCP' },
      ],
      from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } }, podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }],
    },
  ])
  const egress = np.egress as Manifest[]
  const ports = (rule: Manifest) => rule.ports.map((p: Manifest) => `${p.port}/${p.protocol}`)
  t.same(egress.map(ports), [['53/UDP', '53/TCP'], ['443/TCP', '8000/TCP'], ['4318/TCP'], ['6379/TCP']], 'DNS, the providers’ ports, OTLP, Redis: nothing else')
  t.same(egress[0]!.to, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }])
  t.same(egress[1]!.to[0], { ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16'] } }, 'public providers: any public address')
  t.same(egress[1]!.to[1].podSelector, { matchLabels: { 'app.kubernetes.io/name': 'vllm' } }, 'the in-cluster provider by selector')
  t.same(egress[2]!.to[0].podSelector, { matchLabels: { 'app.kubernetes.io/name': 'otel-collector' } })
  t.same(egress[3]!.to[0].podSelector, { matchLabels: { 'app.kubernetes.io/name': 'redis' } })
  const istio = find((await renderSet('istio')).docs, 'NetworkPolicy').spec
  t.same(istio.ingress[0].ports, [{ port: 9002, protocol: 'TCP' }], 'mode processor: only the ext_proc port')
  t.same(istio.egress.map(ports), [['53/UDP', '53/TCP']], 'mode processor: modelgate alone reaches no provider')
})

t.test('production wiring: OTLP, Redis, provider credentials as files in modelgate only, metrics endpoints', async (t) => {
  const { docs } = await renderSet('production')
  const mg = container(docs, 'modelgate')
  const env = Object.fromEntries(mg.env.map((e: Manifest) => [e.name, e.value]))
  t.match(env, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector.observability.svc:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' })
  const volumes = Object.fromEntries(podSpec(docs).volumes.map((v: Manifest) => [v.name, v]))
  t.same(volumes.credentials.projected, {
    defaultMode: 288,
    sources: [
      { secret: { name: 'anthropic-api-key', items: [{ key: 'api-key', path: 'anthropic/default/api-key' }] } },
      { secret: { name: 'openai-payments-key', items: [{ key: 'api-key', path: 'openai/payments/api-key' }] } },
      { secret: { name: 'openai-api-key', items: [{ key: 'api-key', path: 'openai/default/api-key' }] } },
    ],
  })
  t.ok(mg.volumeMounts.some((m: Manifest) => m.name === 'credentials' && m.mountPath === '/etc/modelgate/credentials' && m.readOnly), 'modelgate mounts the credentials read-only')
  t.notOk(container(docs, 'envoy').volumeMounts.some((m: Manifest) => m.name === 'credentials' || m.name === 'redis-password'), 'Envoy does not')
  t.same(volumes['redis-password'].secret, { secretName: 'ai-gateway-redis', defaultMode: 288, items: [{ key: 'password', path: 'password' }] })
  const cfg = parseConfig(configFiles(docs)['modelgate.yaml']!, 'modelgate.yaml')
  t.equal(cfg.server.metricsListen, '0.0.0.0:9464')
  t.equal(cfg.quotas.store, 'redis', 'redis.address shares quota counters, sessions and approvals across replicas')
  t.equal(cfg.quotas.redis.url, 'redis://redis-master.ai-state.svc:6379')
  t.equal(cfg.quotas.redis.passwordFile, '/etc/modelgate/redis/password', 'the mounted password')
  t.ok(mg.volumeMounts.some((m: Manifest) => m.name === 'redis-password' && m.mountPath === '/etc/modelgate/redis' && m.readOnly), 'mounted where the configuration reads it')
  t.equal(cfg.audit.spool.dir, '/var/lib/modelgate/spool', 'the spool is on the pod’s state volume')
  t.same(Object.keys(cfg.providers.catalog).sort(), ['anthropic', 'internal-llm', 'openai'])
  t.same(
    cfg.providers.catalog.openai!.credentials!.map((c) => [c.name, c.file]),
    [
      ['payments', '/etc/modelgate/credentials/openai/payments/api-key'],
      ['default', '/etc/modelgate/credentials/openai/default/api-key'],
    ],
    'each credential from a Secret is the file it is mounted as, in the configured order',
  )
  const sm = find(docs, 'ServiceMonitor')
  t.same(sm.spec.endpoints.map((e: Manifest) => [e.port, e.path]), [
    ['metrics', '/metrics'],
    ['envoy-status', '/stats/prometheus'],
  ])
  t.same(sm.metadata.labels.release, 'kube-prometheus-stack')
  const metricsSvc = find(docs, 'Service', 'gw-modelgate-metrics')
  t.equal(metricsSvc.spec.clusterIP, 'None')
  t.same(find(docs, 'Service', 'gw-modelgate').spec.ports.map((p: Manifest) => p.name), ['https'], 'the workload Service exposes only the gateway port')
  const withValue = valuesFile('credential.yaml', { providers: { openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'default', value: 'sk-test-value' }] } } })
  const chartSecret = await renderSet('minimal', ['--values', withValue])
  const secret = find(chartSecret.docs, 'Secret', 'gw-modelgate-credentials')
  t.equal(Buffer.from(secret.data['openai.default'], 'base64').toString(), 'sk-test-value', 'a credential given as a value lives in the chart’s Secret')
  t.same(parseConfig(configFiles(chartSecret.docs)['modelgate.yaml']!, 'modelgate.yaml').providers.catalog.openai!.credentials, [{ name: 'default', file: '/etc/modelgate/credentials/openai/default/value' }])
  t.notMatch(configFiles(chartSecret.docs)['modelgate.yaml'], /sk-test-value/, 'and nowhere in a ConfigMap')
})

t.test('an OAuth credential: modelgate mounts the SVID read-only for its token requests, and the egress rule opens the token endpoint', async (t) => {
  const oauth = valuesFile('oauth.yaml', {
    networkPolicy: { enabled: true },
    providers: {
      azure: {
        kind: 'azure-openai',
        upstream: 'https://contoso.openai.azure.com',
        credentials: [{ name: 'entra', oauth: { tokenUrl: 'https://login.example.com:8443/tenant/oauth2/v2.0/token', clientId: 'gw', certFile: '/etc/modelgate/svid/tls.crt', keyFile: '/etc/modelgate/svid/tls.key' } }],
      },
    },
  })
  const { docs } = await renderSet('minimal', ['--values', oauth])
  const mounts = container(docs, 'modelgate').volumeMounts as Manifest[]
  t.same(mounts.find((m) => m.name === 'svid'), { name: 'svid', mountPath: '/etc/modelgate/svid', readOnly: true })
  const cfg = parseConfig(configFiles(docs)['modelgate.yaml']!, 'modelgate.yaml')
  t.equal(cfg.providers.catalog.azure!.credentials![0]!.oauth!.certFile, '/etc/modelgate/svid/tls.crt')
  const egress = find(docs, 'NetworkPolicy').spec.egress as Manifest[]
  t.same(egress[1]!.ports, [{ port: 443, protocol: 'TCP' }, { port: 8443, protocol: 'TCP' }], "the provider's port and the token endpoint's")
  const { docs: plain } = await renderSet('minimal')
  t.notOk((container(plain, 'modelgate').volumeMounts as Manifest[]).some((m) => m.name === 'svid'), 'without an OAuth credential modelgate does not see the SVID')
})

t.test('routes: exact paths before prefixes, longest prefix first, whatever the order of providers; Host is the provider’s name', async (t) => {
  const boot = envoyBootstrap((await renderSet('production')).docs)
  const hcm = boot.static_resources.listeners.find((l: Manifest) => l.name === 'workloads').filter_chains[0].filters[0].typed_config
  t.same(
    hcm.route_config.virtual_hosts[0].routes.map((r: Manifest) => [r.name, r.match]),
    [
      ['anthropic', { path: '/v1/messages' }],
      ['internal-llm', { prefix: '/internal/v1/' }],
      ['openai', { prefix: '/openai/v1/' }],
      ['openai', { prefix: '/api/v1/' }],
      ['openai', { prefix: '/v1/' }],
      ['unknown', { prefix: '/' }],
    ],
    '/v1/messages reaches Anthropic although openai (prefix /v1/) is listed first',
  )
  for (const c of boot.static_resources.clusters.filter((c: Manifest) => c.name.startsWith('provider-'))) {
    const endpoint = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    t.equal(endpoint.hostname, endpoint.address.socket_address.address, `${c.name}: auto_host_rewrite sends the provider's host name`)
  }
})

// ---- identity sources -------------------------------------------------------------------

function listenerTls(boot: Manifest): Manifest {
  return boot.static_resources.listeners.find((l: Manifest) => l.name === 'workloads').filter_chains[0].transport_socket.typed_config.common_tls_context
}

t.test("SVID and trust bundle from a Secret and a ConfigMap: file-based SDS that reloads on rotation", async (t) => {
  const { docs } = await renderSet('minimal')
  const tls = listenerTls(envoyBootstrap(docs))
  t.same(tls.tls_certificate_sds_secret_configs, [{ name: 'svid', sds_config: { resource_api_version: 'V3', path_config_source: { path: '/etc/envoy/config/sds-svid.yaml' } } }])
  t.same(tls.validation_context_sds_secret_config, { name: 'trust', sds_config: { resource_api_version: 'V3', path_config_source: { path: '/etc/envoy/config/sds-trust.yaml' } } })
  const files = configFiles(docs)
  t.match(parse(files['sds-svid.yaml']!).resources[0], { name: 'svid', tls_certificate: { certificate_chain: { filename: '/etc/envoy/svid/tls.crt' }, private_key: { filename: '/etc/envoy/svid/tls.key' }, watched_directory: { path: '/etc/envoy/svid' } } })
  t.match(parse(files['sds-trust.yaml']!).resources[0], { name: 'trust', validation_context: { trusted_ca: { filename: '/etc/envoy/trust/bundle.pem' }, watched_directory: { path: '/etc/envoy/trust' } } })
  const volumes = Object.fromEntries(podSpec(docs).volumes.map((v: Manifest) => [v.name, v]))
  t.same(volumes.svid.secret.secretName, 'modelgate-tls')
  t.same(volumes['trust-bundle'].configMap.name, 'spiffe-bundle')
})

t.test("SVID and trust bundle from SPIRE: Envoy's SDS from the Workload API socket the SPIFFE CSI driver mounts", async (t) => {
  const { docs } = await renderSet('spire')
  const boot = envoyBootstrap(docs)
  const tls = listenerTls(boot)
  const spire = { resource_api_version: 'V3', initial_fetch_timeout: '0s', api_config_source: { api_type: 'GRPC', transport_api_version: 'V3', grpc_services: [{ envoy_grpc: { cluster_name: 'spire_agent' } }] } }
  t.same(tls.tls_certificate_sds_secret_configs, [{ name: 'default', sds_config: spire }], "the agent's default SVID")
  t.same(tls.validation_context_sds_secret_config, { name: 'ROOTCA', sds_config: spire }, "the agent's bundle")
  const agent = boot.static_resources.clusters.find((c: Manifest) => c.name === 'spire_agent')
  t.equal(agent.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path, '/spiffe-workload-api/spire-agent.sock')
  t.ok(agent.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options, 'gRPC over HTTP/2')
  const volume = podSpec(docs).volumes.find((v: Manifest) => v.name === 'spire-agent-socket')
  t.same(volume.csi, { driver: 'csi.spiffe.io', readOnly: true })
  t.ok(container(docs, 'envoy').volumeMounts.some((m: Manifest) => m.name === 'spire-agent-socket' && m.mountPath === '/spiffe-workload-api' && m.readOnly))
  t.notOk(configFiles(docs)['sds-svid.yaml'], 'no file-based SDS')
  const hostPath = await renderSet('spire', ['--set', 'tls.spire.socketVolume=hostPath'])
  t.same(podSpec(hostPath.docs).volumes.find((v: Manifest) => v.name === 'spire-agent-socket').hostPath, { path: '/run/spire/agent-sockets', type: 'Directory' })
})

t.test("SVID from cert-manager's csi-driver-spiffe: a CSI volume per pod, and the right to request it", async (t) => {
  const { docs } = await renderSet('production')
  const volume = podSpec(docs).volumes.find((v: Manifest) => v.name === 'svid')
  t.same(volume.csi, { driver: 'spiffe.csi.cert-manager.io', readOnly: true })
  t.same(find(docs, 'Role').rules, [{ apiGroups: ['cert-manager.io'], resources: ['certificaterequests'], verbs: ['create'] }])
  t.same(find(docs, 'RoleBinding').subjects, [{ kind: 'ServiceAccount', name: 'gw-modelgate', namespace: 'ai' }])
  t.equal(podSpec(docs).securityContext.fsGroup, 10001, 'the driver makes the key readable to the pod’s group')
  const csiBundle = await renderSet('production', ['--set', 'tls.trustBundle.source=certManagerCsi'])
  t.match(parse(configFiles(csiBundle.docs)['sds-trust.yaml']!).resources[0].validation_context, { trusted_ca: { filename: '/etc/envoy/svid/ca.crt' }, watched_directory: { path: '/etc/envoy/svid' } }, "the bundle from the driver's ca.crt")
  t.notOk(podSpec(csiBundle.docs).volumes.some((v: Manifest) => v.name === 'trust-bundle'))
})

// ---- what modelgate and Envoy make of it -------------------------------------------------------

t.test('the rendered modelgate configuration is accepted by modelgate for every value set', async (t) => {
  for (const name of Object.keys(SETS) as SetName[]) {
    const cfg = parseConfig(configFiles((await renderSet(name)).docs)['modelgate.yaml']!, 'modelgate.yaml')
    t.equal(cfg.policy.dir, '/etc/modelgate/policies', name)
    t.equal(cfg.server.listen, PROCESSOR_SETS.includes(name) ? '0.0.0.0:9002' : 'unix:///run/modelgate/ext_proc.sock', `${name}: listens where the pod expects`)
  }
})

t.test('the rendered Envoy bootstrap of every gateway value set is accepted by Envoy 1.40', async (t) => {
  const { pki } = await sharedTestPki()
  for (const name of GATEWAY_SETS) {
    const files = configFiles((await renderSet(name)).docs)
    const root = join(scratch, `validate-${name}`)
    // The pod's paths under a scratch root, the SVID and bundle files in place.
    const place = (path: string, content: string) => {
      mkdirSync(dirname(join(root, path)), { recursive: true })
      writeFileSync(join(root, path), content)
    }
    for (const [file, text] of Object.entries(files)) if (file !== 'modelgate.yaml') place(`/etc/envoy/config/${file}`, text.replaceAll('/etc/envoy/', `${root}/etc/envoy/`))
    place('/etc/envoy/svid/tls.crt', readFileSync(pki.server.cert, 'utf8'))
    place('/etc/envoy/svid/tls.key', readFileSync(pki.server.key, 'utf8'))
    place('/etc/envoy/svid/ca.crt', readFileSync(pki.ca.cert, 'utf8'))
    place('/etc/envoy/trust/bundle.pem', readFileSync(pki.ca.cert, 'utf8'))
    const { stdout } = await run(envoyBinary(), ['--mode', 'validate', '-c', join(root, 'etc/envoy/config/envoy.yaml')])
    t.match(stdout, /configuration '.*' OK/, name)
  }
})

// ---- mesh integration ------------------------------------------------------------------

/** The ext_proc filter of the chart's own Envoy (gateway mode, same values otherwise). */
async function chartExtProc(): Promise<Manifest> {
  const hcm = envoyBootstrap((await renderSet('minimal')).docs).static_resources.listeners.find((l: Manifest) => l.name === 'workloads').filter_chains[0].filters[0].typed_config
  return hcm.http_filters.find((f: Manifest) => f.name === 'envoy.filters.http.ext_proc')
}

t.test('Istio: an EnvoyFilter gives the gateway exactly the chart’s ext_proc filter, pointed at modelgate’s Service', async (t) => {
  const { docs } = await renderSet('istio')
  const ef = find(docs, 'EnvoyFilter')
  t.equal(ef.metadata.namespace, 'istio-system')
  t.same(ef.spec.workloadSelector.labels, { istio: 'egressgateway' })
  const [patch] = ef.spec.configPatches
  t.match(patch, { applyTo: 'HTTP_FILTER', match: { context: 'GATEWAY', listener: { filterChain: { filter: { name: 'envoy.filters.network.http_connection_manager', subFilter: { name: 'envoy.filters.http.router' } } } } }, patch: { operation: 'INSERT_BEFORE' } })
  const own = await chartExtProc()
  const value = patch.patch.value
  t.same(value.typed_config.grpc_service, { envoy_grpc: { cluster_name: 'outbound|9002||gw-modelgate.ai.svc.cluster.local' } }, "Istio's cluster for modelgate's Service")
  t.same({ ...value, typed_config: { ...value.typed_config, grpc_service: undefined } }, { ...own, typed_config: { ...own.typed_config, grpc_service: undefined } }, 'the rest is the chart’s own filter: failing closed, the same modes, attributes and timeout')
  t.equal(value.typed_config.failure_mode_allow, false)
  const svc = find(docs, 'Service')
  t.same(svc.spec.ports, [{ name: 'grpc', port: 9002, targetPort: 'grpc', protocol: 'TCP', appProtocol: 'grpc' }])
  const dr = find(docs, 'DestinationRule')
  t.equal(dr.spec.host, 'gw-modelgate.ai.svc.cluster.local')
  t.ok(dr.spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection < 1000, 'fewer streams per connection than Node’s HTTP/2 reset allowance')
  const ap = find(docs, 'AuthorizationPolicy')
  t.same(ap.spec.rules, [{ from: [{ source: { principals: ['cluster.local/ns/istio-system/sa/istio-egressgateway-service-account'] } }], to: [{ operation: { ports: ['9002'] } }] }], 'only the gateway may call modelgate')
  const ingress = await renderSet('istio', ['--set', 'mesh.istio.gatewaySelector.istio=ingressgateway', '--set', 'mesh.istio.gatewayPort=8443'])
  const ingressPatch = find(ingress.docs, 'EnvoyFilter').spec.configPatches[0]
  t.equal(ingressPatch.match.listener.portNumber, 8443, 'an ingress gateway: the filter on one listener port')
})

t.test('Envoy Gateway: an EnvoyExtensionPolicy with the chart’s modes, attributes and timeout, failing closed', async (t) => {
  const { docs } = await renderSet('envoyGateway')
  const eep = find(docs, 'EnvoyExtensionPolicy')
  t.equal(eep.metadata.namespace, 'gateways')
  t.same(eep.spec.targetRefs, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'ai-gateway' }])
  const [ext] = eep.spec.extProc
  const own = (await chartExtProc()).typed_config
  t.same(ext.backendRefs, [{ group: '', kind: 'Service', name: 'gw-modelgate', namespace: 'ai', port: 9002 }])
  t.equal(ext.failOpen, false)
  t.equal(ext.messageTimeout, own.message_timeout)
  t.same(ext.processingMode, { request: { body: 'Buffered', attributes: own.request_attributes }, response: { body: 'Buffered' }, allowModeOverride: true })
  t.same(ext.metadata, { writableNamespaces: own.metadata_options.receiving_namespaces.untyped })
  t.equal(ext.backendSettings.circuitBreaker.maxRequestsPerConnection, 500)
  const grant = find(docs, 'ReferenceGrant')
  t.equal(grant.metadata.name, 'gw-modelgate-ext-proc')
  t.same(grant.spec, { from: [{ group: 'gateway.envoyproxy.io', kind: 'EnvoyExtensionPolicy', namespace: 'gateways' }], to: [{ group: '', kind: 'Service', name: 'gw-modelgate' }] })
  const sameNamespace = await renderSet('envoyGateway', ['--set', 'mesh.envoyGateway.namespace=ai'])
  t.notOk(sameNamespace.docs.some((d) => d.kind === 'ReferenceGrant'), 'no grant needed in the same namespace')
})
