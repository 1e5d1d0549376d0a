/**
 * Rendering the Helm chart for tests: `helm template` with the value sets the
 * README documents (minimal, production, SPIRE, Istio, Envoy Gateway), the
 * shipped policy set handed over as `policies.files`.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { parse, parseAllDocuments, stringify } from 'yaml'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { kubernetesVersion } from './kube-schemas.ts'

const run = promisify(execFile)

export const CHART = join(REPO_ROOT, 'charts', 'modelgate')
export const HELM = process.env.HELM_BIN || join(REPO_ROOT, '.tools', 'bin', 'helm')
/** The cluster version charts are rendered for: the one the vendored schemas are from (the chart's minimum minor). */
export const KUBE_VERSION = kubernetesVersion()

let policyFile: string | undefined
/** A values file with the shipped policies as `policies.files`. */
export function policyValues(): string {
  if (policyFile) return policyFile
  const file = join(mkdtempSync(join(tmpdir(), 'modelgate-chart-')), 'policies.yaml')
  const dir = join(REPO_ROOT, 'policies')
  const files = Object.fromEntries(
    readdirSync(dir)
      .filter((f) => /\.(cedar|cedarschema|json)$/.test(f))
      .map((f) => [f, readFileSync(join(dir, f), 'utf8')]),
  )
  writeFileSync(file, stringify({ policies: { files } }))
  process.once('exit', () => rmSync(dirname(file), { recursive: true, force: true }))
  policyFile = file
  return file
}

const example = (name: string) => ['--values', join(CHART, 'examples', `${name}.yaml`)]

/** The value sets the chart is tested with, as helm arguments. */
export function valueSets(): Record<'minimal' | 'production' | 'spire' | 'istio' | 'envoyGateway', string[]> {
  const policies = ['--values', policyValues()]
  return {
    minimal: ['--set', 'tls.svid.secretName=modelgate-tls', '--set', 'tls.trustBundle.configMap=spiffe-bundle', '--set', 'config.identity.trustDomains={prod.example.com}', ...policies],
    production: [...example('production'), ...policies],
    spire: [...example('spire'), ...policies],
    istio: [...example('istio'), ...policies],
    envoyGateway: [...example('envoy-gateway'), ...policies],
  }
}

export async function helmTemplate(args: readonly string[]): Promise<string> {
  const { stdout } = await run(HELM, ['template', 'gw', CHART, '--namespace', 'ai', '--kube-version', KUBE_VERSION, ...args], { maxBuffer: 32 << 20 })
  return stdout
}

/** helm's stderr when rendering fails, or undefined when it renders. */
export async function helmTemplateError(args: readonly string[]): Promise<string | undefined> {
  return helmTemplate(args).then(
    () => undefined,
    (err: { stderr?: string; message: string }) => err.stderr || err.message,
  )
}

export type Manifest = Record<string, any>

export function manifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest)
    .filter(Boolean)
}

export async function render(args: readonly string[]): Promise<Manifest[]> {
  return manifests(await helmTemplate(args))
}

export function find(docs: Manifest[], kind: string, name?: string): Manifest {
  const doc = docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name))
  if (!doc) throw new Error(`no ${kind}${name ? ` ${name}` : ''} rendered`)
  return doc
}

/** The rendered configuration ConfigMap's files: modelgate.yaml, envoy.yaml, sds-*.yaml. */
export function configFiles(docs: Manifest[]): Record<string, string> {
  return find(docs, 'ConfigMap', 'gw-modelgate-config').data
}

export function envoyBootstrap(docs: Manifest[]): Manifest {
  return parse(configFiles(docs)['envoy.yaml']!) as Manifest
}

export function podSpec(docs: Manifest[]): Manifest {
  return find(docs, 'Deployment').spec.template.spec
}

/** Every container of the pod, init containers (native sidecars) included. */
export function containers(docs: Manifest[]): Manifest[] {
  const pod = podSpec(docs)
  return [...(pod.initContainers ?? []), ...pod.containers]
}

export function container(docs: Manifest[], name: string): Manifest {
  const c = containers(docs).find((x) => x.name === name)
  if (!c) throw new Error(`no container ${name}`)
  return c
}
