/**
 * Validates rendered manifests with kubeconform against local schemas only:
 * the Kubernetes definitions and the CRDs vendored in test/fixtures/kubernetes
 * (see its README), turned into strict JSON Schemas (unknown fields refused)
 * in a scratch directory. Nothing is downloaded.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { REPO_ROOT } from '../../src/dev/envoy.ts'

const run = promisify(execFile)
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'kubernetes')

/** kubeconform: $KUBECONFORM_BIN, else the one setup installed in .tools/bin. */
export function kubeconformBinary(env: NodeJS.ProcessEnv = process.env): string {
  return env.KUBECONFORM_BIN || join(REPO_ROOT, '.tools', 'bin', 'kubeconform')
}

/** The Kubernetes version the vendored definitions are from (`1.30.14`). */
export function kubernetesVersion(): string {
  const file = readdirSync(FIXTURES).find((f) => /^openapi-v[0-9.]+\.json$/.test(f))
  if (!file) throw new Error(`no openapi-v*.json in ${FIXTURES}`)
  return file.slice('openapi-v'.length, -'.json'.length)
}

type Json = Record<string, any>

/** Objects with listed properties refuse others (kubeconform's "strict" schemas do the same). */
function strictKubernetes(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(strictKubernetes)
  if (!node || typeof node !== 'object') return node
  const out: Json = {}
  for (const [k, v] of Object.entries(node)) out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v as Json).map(([p, s]) => [p, strictKubernetes(s)])) : strictKubernetes(v)
  if (out.properties && out.additionalProperties === undefined) out.additionalProperties = false
  return out
}

/** An OpenAPI v3 schema of a CRD as a draft-4 JSON Schema: nullable, int-or-string, strict objects. */
function fromCrdSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(fromCrdSchema)
  if (!node || typeof node !== 'object') return node
  const s = node as Json
  const out: Json = {}
  for (const [k, v] of Object.entries(s)) {
    if (k === 'properties') out[k] = Object.fromEntries(Object.entries(v as Json).map(([p, ps]) => [p, fromCrdSchema(ps)]))
    else if (k === 'nullable' || k.startsWith('x-kubernetes-')) continue
    else out[k] = fromCrdSchema(v)
  }
  if (s.nullable && typeof out.type === 'string') out.type = [out.type, 'null']
  if (s['x-kubernetes-int-or-string']) {
    delete out.type
    if (!out.anyOf && !out.oneOf) out.anyOf = [{ type: 'integer' }, { type: 'string' }]
  }
  if (out.properties && out.additionalProperties === undefined && !s['x-kubernetes-preserve-unknown-fields']) out.additionalProperties = false
  return out
}

/**
 * Writes one schema per kind and version under dir, laid out for the
 * kubeconform location `<dir>/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json`
 * (the core group is `v1`). Returns the location template.
 */
export function writeSchemas(dir: string): string {
  const write = (group: string, kind: string, version: string, schema: unknown) => {
    mkdirSync(join(dir, group), { recursive: true })
    writeFileSync(join(dir, group, `${kind.toLowerCase()}_${version}.json`), JSON.stringify(schema))
  }
  const openapi = JSON.parse(readFileSync(join(FIXTURES, `openapi-v${kubernetesVersion()}.json`), 'utf8')) as { kinds: string[]; definitions: Json }
  const definitions: Json = {}
  for (const [name, def] of Object.entries(openapi.definitions)) {
    if (name === 'io.k8s.apimachinery.pkg.util.intstr.IntOrString') definitions[name] = { anyOf: [{ type: 'string' }, { type: 'integer' }] }
    else if (name === 'io.k8s.apimachinery.pkg.api.resource.Quantity') definitions[name] = { anyOf: [{ type: 'string' }, { type: 'number' }] }
    else definitions[name] = strictKubernetes(def)
  }
  for (const name of openapi.kinds) {
    for (const gvk of (openapi.definitions[name]['x-kubernetes-group-version-kind'] ?? []) as { group: string; version: string; kind: string }[]) {
      write(gvk.group || gvk.version, gvk.kind, gvk.version, { $ref: `#/definitions/${name}`, definitions })
    }
  }
  for (const file of readdirSync(join(FIXTURES, 'crds'))) {
    const crd = parse(readFileSync(join(FIXTURES, 'crds', file), 'utf8')) as Json
    for (const version of crd.spec.versions as Json[]) {
      if (!version.served) continue
      const schema = fromCrdSchema(version.schema.openAPIV3Schema) as Json
      schema.properties = { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, ...schema.properties }
      write(crd.spec.group, crd.spec.names.kind, version.name, schema)
    }
  }
  return join(dir, '{{ .Group }}', '{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json')
}

export interface KubeconformResource {
  readonly filename: string
  readonly kind: string
  readonly name: string
  readonly version: string
  readonly status: string
  readonly msg: string
}

/** Runs kubeconform -strict over a manifest file: one result per resource, whatever its status. */
export async function kubeconform(manifests: string, schemaDir: string): Promise<KubeconformResource[]> {
  const location = existsSync(join(schemaDir, 'v1')) ? join(schemaDir, '{{ .Group }}', '{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json') : writeSchemas(schemaDir)
  const args = ['-strict', '-verbose', '-output', 'json', '-kubernetes-version', kubernetesVersion(), '-schema-location', location, manifests]
  const { stdout } = await run(kubeconformBinary(), args, { maxBuffer: 16 << 20 }).catch((err: { stdout?: string; message: string }) => {
    // Exit 1 with JSON on stdout: resources that failed; anything else is a failure to run.
    if (err.stdout?.trim().startsWith('{')) return { stdout: err.stdout }
    throw new Error(`kubeconform did not run: ${err.message}`)
  })
  return (JSON.parse(stdout) as { resources: KubeconformResource[] }).resources
}
