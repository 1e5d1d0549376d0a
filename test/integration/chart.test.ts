/**
 * The Helm chart as an SRE meets it: it lints, refuses to render without the
 * values it cannot guess, and renders manifests that are valid Kubernetes
 * objects, an Envoy bootstrap the real Envoy accepts, and a modelgate
 * configuration modelgate accepts.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { parseAllDocuments, stringify } from 'yaml'
import { Deployment } from 'kubernetes-models/apps/v1'
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import { parseConfig } from '../../src/config/config.ts'
import { envoyBinary, REPO_ROOT } from '../../src/dev/envoy.ts'
import { sharedTestPki } from '../helpers/pki.ts'

const run = promisify(execFile)
const chart = join(REPO_ROOT, 'charts', 'modelgate')
const helm = join(REPO_ROOT, '.tools', 'bin', 'helm')
/** The cluster version the chart is rendered for (a source-built helm has no default of its own). */
const KUBE_VERSION = '1.31.0'

/** The shipped policy set, handed to the chart as `policies.files` in a values file. */
const policyValues = join(mkdtempSync(join(tmpdir(), 'modelgate-chart-')), 'policies.yaml')
const policyDir = join(REPO_ROOT, 'policies')
writeFileSync(
  policyValues,
  stringify({
    policies: {
      files: Object.fromEntries(
        readdirSync(policyDir)
          .filter((f) => /\.(cedar|cedarschema|json)$/.test(f))
          .map((f) => [f, readFileSync(join(policyDir, f), 'utf8')]),
      ),
    },
  }),
)
process.once('exit', () => rmSync(dirname(policyValues), { recursive: true, force: true }))

const required = [
  '--set', 'tls.serverSecret=modelgate-tls',
  '--set', 'tls.trustBundle.configMap=spiffe-bundle',
  '--set', 'config.identity.trustDomains={prod.example.com}',
  '--values', policyValues,
]

async function template(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(helm, ['template', 'gw', chart, '--namespace', 'ai', '--kube-version', KUBE_VERSION, ...args], { maxBuffer: 16 * 1024 * 1024 })
}

async function renderedDocs(): Promise<any[]> {
  const { stdout } = await template(required)
  return parseAllDocuments(stdout)
    .map((d) => d.toJS())
    .filter(Boolean)
}

const models: Record<string, (o: any) => { validate(): void }> = {
  Deployment: (o) => new Deployment(o),
  Service: (o) => new Service(o),
  ConfigMap: (o) => new ConfigMap(o),
  ServiceAccount: (o) => new ServiceAccount(o),
  PodDisruptionBudget: (o) => new PodDisruptionBudget(o),
}

t.test('helm lint accepts the chart with the required values', async (t) => {
  const { stdout } = await run(helm, ['lint', chart, '--kube-version', KUBE_VERSION, ...required])
  t.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/)
})

t.test('rendering without a required value fails and names the value', async (t) => {
  const cases = [
    { drop: 'tls.serverSecret', message: /tls\.serverSecret is required/ },
    { drop: 'tls.trustBundle.configMap', message: /tls\.trustBundle\.configMap or tls\.trustBundle\.secret is required/ },
    { drop: 'config.identity.trustDomains', message: /config\.identity\.trustDomains is required/ },
    { drop: policyValues, message: /policies\.existingConfigMap or policies\.files is required/ },
  ]
  for (const c of cases) {
    const args: string[] = []
    for (let i = 0; i < required.length; i += 2) if (!required[i + 1]!.startsWith(c.drop)) args.push(required[i]!, required[i + 1]!)
    const what = c.drop === policyValues ? 'policies' : c.drop
    const failure = await template(args).then(
      () => undefined,
      (err: { stderr?: string }) => err,
    )
    t.ok(failure, `rendering fails without ${what}`)
    t.match(failure?.stderr, c.message, `and names ${what}`)
  }
})

t.test('the rendered manifests are valid Kubernetes objects', async (t) => {
  const docs = await renderedDocs()
  t.same(docs.map((d) => d.kind).sort(), ['ConfigMap', 'ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service', 'ServiceAccount'])
  for (const doc of docs) {
    const make = models[doc.kind]
    t.ok(make, `a schema for ${doc.kind}`)
    t.doesNotThrow(() => make!(doc).validate(), `${doc.kind} ${doc.metadata.name} validates`)
  }
  const deployment = docs.find((d) => d.kind === 'Deployment')
  t.same(
    deployment.spec.template.spec.containers.map((c: { name: string }) => c.name),
    ['modelgate', 'envoy'],
    'modelgate runs beside Envoy in each pod',
  )
  t.equal(deployment.spec.template.spec.securityContext.runAsNonRoot, true)
})

t.test('on termination modelgate outlives Envoy and both fit in the grace period', async (t) => {
  const docs = await renderedDocs()
  const pod = docs.find((d) => d.kind === 'Deployment').spec.template.spec
  const pause = (name: string) => pod.containers.find((c: { name: string }) => c.name === name).lifecycle.preStop.sleep.seconds as number
  t.ok(pause('modelgate') > pause('envoy'), 'modelgate keeps deciding after Envoy stops taking requests')
  const cm = docs.find((d) => d.kind === 'ConfigMap' && d.data?.['modelgate.yaml'])
  const drainSeconds = parseConfig(cm.data['modelgate.yaml'], 'modelgate.yaml').server.drainTimeoutMs / 1000
  t.ok(pod.terminationGracePeriodSeconds >= pause('modelgate') + drainSeconds, 'the grace period covers the pause and the drain')
})

t.test('the rendered modelgate configuration is accepted by modelgate', async (t) => {
  const cm = (await renderedDocs()).find((d) => d.kind === 'ConfigMap' && d.data?.['modelgate.yaml'])
  const cfg = parseConfig(cm.data['modelgate.yaml'], 'modelgate.yaml')
  t.equal(cfg.server.listen, 'unix:///run/modelgate/ext_proc.sock')
  t.same(cfg.identity.trustDomains, ['prod.example.com'])
  t.same(Object.keys(cfg.providers.routes).sort(), ['anthropic', 'openai'])
  t.equal(cfg.policy.dir, '/etc/modelgate/policies')
})

t.test('the rendered Envoy bootstrap is accepted by Envoy 1.40', async (t) => {
  const cm = (await renderedDocs()).find((d) => d.kind === 'ConfigMap' && d.data?.['envoy.yaml'])
  // Point the pod paths at real files so validation also loads the certificates.
  const dir = t.testdir()
  const { pki } = await sharedTestPki()
  const envoyYaml = (cm.data['envoy.yaml'] as string)
    .replaceAll('/etc/envoy/tls/tls.crt', pki.server.cert)
    .replaceAll('/etc/envoy/tls/tls.key', pki.server.key)
    .replaceAll('/etc/envoy/trust/bundle.pem', pki.ca.cert)
  writeFileSync(join(dir, 'envoy.yaml'), envoyYaml)
  const { stdout } = await run(envoyBinary(), ['--mode', 'validate', '-c', join(dir, 'envoy.yaml')])
  t.match(stdout, /configuration '.*' OK/)
})
