/**
 * Loading a policy directory: read the files, check them with Cedar (schema,
 * policy syntax, strict validation of every policy against the schema,
 * entities against the schema, and a probe request per action), and produce a
 * compiled set ready to preparse. Everything here runs at load and reload,
 * never per request.
 *
 * A policy directory holds:
 *   *.cedarschema   the schema (one or more files, read in name order)
 *   *.cedar         policies; each needs an @id annotation (and should have @owner)
 *   entities.json   optional: teams, namespaces, workload memberships, providers, groups
 * Names starting with "." are skipped (Kubernetes ConfigMap mounts keep their
 * real files under `..data/`, with symlinks at the top level). Subdirectories
 * (such as tests/) are not read.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import type { EntityJson, EntityUidJson, PolicyJson, SchemaJson } from '@cedar-policy/cedar-wasm/nodejs'
import { parseSpiffeId } from '../identity/spiffe.ts'
import { ACTIONS, ACTION_TYPE, DERIVED_TYPES, ENTITY, NAMESPACE } from './names.ts'
import { dedupeProblems, problemsFromCedar, SourceText, type PolicyProblem } from './problems.ts'

export const SCHEMA_SUFFIX = '.cedarschema'
export const POLICY_SUFFIX = '.cedar'
export const ENTITIES_FILE = 'entities.json'

export interface SourceFile {
  readonly path: string
  readonly text: string
}

/** The raw contents of a policy directory. */
export interface PolicySources {
  readonly dir: string
  readonly schemas: readonly SourceFile[]
  readonly policies: readonly SourceFile[]
  readonly entities: SourceFile | undefined
}

/** One policy, as authored. */
export interface PolicyInfo {
  readonly id: string
  readonly owner: string | undefined
  readonly effect: 'permit' | 'forbid'
  readonly file: string
  readonly line: number
  readonly column: number
  readonly text: string
  readonly annotations: Readonly<Record<string, string>>
}

/** Entities from entities.json, indexed for building per-request entity slices. */
export interface StaticEntities {
  /** Every declared entity, by `uidKey`. */
  readonly byKey: ReadonlyMap<string, EntityJson>
  /** Every ancestor (transitively) of a declared entity, by `uidKey`. */
  readonly ancestors: ReadonlyMap<string, readonly string[]>
}

export interface CompiledPolicySet {
  /** SHA-256 (hex) over the schema, policy and entity files that make up the set. */
  readonly hash: string
  readonly dir: string
  readonly schemaText: string
  readonly policies: ReadonlyMap<string, PolicyInfo>
  /** Policy texts keyed by @id, as handed to preparsePolicySet. */
  readonly policyTexts: Readonly<Record<string, string>>
  /** Each policy's JSON form (Cedar's EST), keyed by @id, in load order. */
  readonly policyJson: ReadonlyMap<string, PolicyJson>
  /** The schema as JSON. */
  readonly schemaJson: SchemaJson<string>
  readonly entities: StaticEntities
  readonly warnings: readonly PolicyProblem[]
  readonly files: readonly string[]
}

export type CompileResult = { readonly ok: true; readonly set: CompiledPolicySet } | { readonly ok: false; readonly problems: readonly PolicyProblem[] }

export function uidKey(uid: { type: string; id: string }): string {
  return `${uid.type}::${JSON.stringify(uid.id)}`
}

/** Splits the string form of a uid: `ModelGate::Team::"payments"` (or a bare id for a known type). */
export function plainUid(uid: EntityUidJson): { type: string; id: string } {
  return '__entity' in uid ? uid.__entity : uid
}

interface Listing {
  schemas: string[]
  policies: string[]
  entities: string | undefined
}

function classify(names: readonly string[], isFile: (n: string) => boolean): Listing {
  const out: Listing = { schemas: [], policies: [], entities: undefined }
  for (const name of [...names].sort()) {
    if (name.startsWith('.')) continue
    if (!(name.endsWith(SCHEMA_SUFFIX) || name.endsWith(POLICY_SUFFIX) || name === ENTITIES_FILE)) continue
    if (!isFile(name)) continue
    if (name.endsWith(SCHEMA_SUFFIX)) out.schemas.push(name)
    else if (name.endsWith(POLICY_SUFFIX)) out.policies.push(name)
    else out.entities = name
  }
  return out
}

/**
 * Reads a policy directory synchronously (start-up and the CLI). `fallback`
 * supplies the schema and the entities when the directory has none of its
 * own (shadow sets).
 */
export function readPolicyDirSync(dir: string, fallback?: PolicySources): PolicySources {
  const abs = resolve(dir)
  const names = readdirSync(abs)
  const list = classify(names, (n) => {
    try {
      return statSync(join(abs, n)).isFile()
    } catch {
      return false
    }
  })
  const read = (n: string): SourceFile => ({ path: join(abs, n), text: readFileSync(join(abs, n), 'utf8') })
  return withFallback(
    { dir: abs, schemas: list.schemas.map(read), policies: list.policies.map(read), entities: list.entities ? read(list.entities) : undefined },
    fallback,
  )
}

/** Reads a policy directory without blocking the event loop on I/O (reloads). */
export async function readPolicyDir(dir: string, fallback?: PolicySources): Promise<PolicySources> {
  const abs = resolve(dir)
  const names = await readdir(abs)
  const kinds = new Map<string, boolean>()
  await Promise.all(
    names.map(async (n) => {
      try {
        kinds.set(n, (await stat(join(abs, n))).isFile())
      } catch {
        kinds.set(n, false)
      }
    }),
  )
  const list = classify(names, (n) => kinds.get(n) === true)
  const read = async (n: string): Promise<SourceFile> => ({ path: join(abs, n), text: await readFile(join(abs, n), 'utf8') })
  const [schemas, policies, entities] = await Promise.all([Promise.all(list.schemas.map(read)), Promise.all(list.policies.map(read)), list.entities ? read(list.entities) : undefined])
  return withFallback({ dir: abs, schemas, policies, entities }, fallback)
}

function withFallback(src: PolicySources, fallback: PolicySources | undefined): PolicySources {
  if (!fallback) return src
  return {
    dir: src.dir,
    schemas: src.schemas.length ? src.schemas : fallback.schemas,
    policies: src.policies,
    entities: src.entities ?? fallback.entities,
  }
}

/** The hash of a set: every file's role, name and content. */
export function hashSources(src: PolicySources): string {
  const h = createHash('sha256')
  const add = (kind: string, f: SourceFile) => {
    const name = f.path.slice(f.path.lastIndexOf('/') + 1)
    h.update(`${kind}\0${name}\0${Buffer.byteLength(f.text)}\0`)
    h.update(f.text)
  }
  for (const f of src.schemas) add('schema', f)
  for (const f of src.policies) add('policy', f)
  if (src.entities) add('entities', src.entities)
  return h.digest('hex')
}

/** Validates and compiles the sources. Never throws for bad input: returns every problem found. */
export function compilePolicySources(src: PolicySources): CompileResult {
  const problems: PolicyProblem[] = []
  const error = (file: string, message: string, pos?: { line: number; column: number }, help?: string) =>
    problems.push({ severity: 'error', file, line: pos?.line, column: pos?.column, message, help })

  // ---- schema --------------------------------------------------------------
  if (src.schemas.length === 0) error(src.dir, `no schema: the directory needs a *${SCHEMA_SUFFIX} file`)
  const schemaParts: { file: SourceFile; source: SourceText; start: number }[] = []
  let schemaText = ''
  for (const f of src.schemas) {
    schemaParts.push({ file: f, source: new SourceText(f.text), start: Buffer.byteLength(schemaText) })
    schemaText += f.text + '\n'
  }
  let schemaJson: SchemaJson<string> | undefined
  if (src.schemas.length) {
    const parsed = cedar.checkParseSchema(schemaText)
    if (parsed.type === 'failure') {
      for (const e of parsed.errors) {
        const loc = e.sourceLocations?.[0]
        const part = loc ? [...schemaParts].reverse().find((p) => p.start <= loc.start) : schemaParts[0]
        const target = part ?? schemaParts[0]!
        problems.push(...problemsFromCedar([e], { file: target.file.path, source: target.source, base: -target.start }))
      }
    } else {
      const j = cedar.schemaToJson(schemaText)
      if (j.type === 'success') schemaJson = j.json
      else problems.push(...problemsFromCedar(j.errors, { file: src.schemas[0]!.path }))
    }
  }
  if (schemaJson) problems.push(...checkSchemaNames(schemaJson, src.schemas[0]!.path))
  const schemaOk = problems.length === 0

  // ---- policies ------------------------------------------------------------
  const policies = new Map<string, PolicyInfo>()
  const policyTexts: Record<string, string> = {}
  const policyJson = new Map<string, PolicyJson>()
  const warnings: PolicyProblem[] = []
  for (const f of src.policies) {
    const source = new SourceText(f.text)
    const parts = cedar.policySetTextToParts(f.text)
    if (parts.type === 'failure') {
      problems.push(...problemsFromCedar(parts.errors, { file: f.path, source }))
      continue
    }
    if (parts.policy_templates.length) {
      const at = source.byteOffset(Math.max(0, f.text.indexOf(parts.policy_templates[0]!)))
      error(f.path, 'policy templates are not supported; write static policies', source.position(at))
    }
    const located = locateParts(source, parts.policies)
    const forValidation: Record<string, string> = {}
    const offsets = new Map<string, number>()
    for (const [i, part] of located.entries()) {
      const pos = source.position(part.offset)
      const json = cedar.policyToJson(part.text)
      if (json.type === 'failure') {
        problems.push(...problemsFromCedar(json.errors, { file: f.path, source, base: part.offset }))
        continue
      }
      const annotations = (json.json.annotations ?? {}) as Record<string, string>
      const id = annotations.id
      let key = id
      if (id === undefined || id === '') {
        error(f.path, 'policy has no @id annotation', pos, 'add @id("…"): decisions and audit records name policies by their @id')
        key = `${f.path}#${i}`
      } else if (policies.has(id)) {
        const first = policies.get(id)!
        error(f.path, `duplicate policy id "${id}" (first defined at ${basename(first.file)}:${first.line}:${first.column})`, pos)
        key = `${f.path}#${i}`
      } else {
        if (!annotations.owner) warnings.push({ severity: 'warning', file: f.path, line: pos.line, column: pos.column, message: `policy "${id}" has no @owner annotation`, help: 'add @owner("team or address") so decisions name who to ask' })
        policies.set(id, { id, owner: annotations.owner || undefined, effect: json.json.effect, file: f.path, line: pos.line, column: pos.column, text: part.text, annotations })
        policyTexts[id] = part.text
        policyJson.set(id, json.json)
      }
      forValidation[key] = part.text
      offsets.set(key, part.offset)
    }
    if (schemaOk && schemaJson && Object.keys(forValidation).length) {
      const v = cedar.validate({ schema: schemaText, policies: { staticPolicies: forValidation }, validationSettings: { mode: 'strict' } })
      if (v.type === 'failure') problems.push(...problemsFromCedar(v.errors, { file: f.path, source }))
      else {
        for (const e of v.validationErrors) problems.push(...problemsFromCedar([e.error], { file: f.path, source, base: offsets.get(e.policyId) ?? 0, fallbackOffset: 0 }))
        for (const e of v.validationWarnings) warnings.push(...problemsFromCedar([e.error], { file: f.path, source, base: offsets.get(e.policyId) ?? 0 }, 'warning'))
        warnings.push(...problemsFromCedar(v.otherWarnings, { file: f.path }, 'warning'))
      }
    }
  }
  if (src.policies.length === 0) warnings.push({ severity: 'warning', file: src.dir, line: undefined, column: undefined, message: `no *${POLICY_SUFFIX} files: every request will be denied` })

  // ---- entities ------------------------------------------------------------
  let entities: StaticEntities = { byKey: new Map(), ancestors: new Map() }
  if (schemaOk && schemaJson) {
    const r = loadEntities(src.entities, schemaText, schemaJson)
    problems.push(...r.problems)
    if (r.entities) entities = r.entities
  }

  if (problems.length) return { ok: false, problems: dedupeProblems([...problems, ...warnings]) }

  // ---- probe: the schema must accept the requests modelgate sends ------------
  const probe = probeSchema(schemaText, src.schemas[0]!.path)
  if (probe.length) return { ok: false, problems: dedupeProblems([...probe, ...warnings]) }

  return {
    ok: true,
    set: {
      hash: hashSources(src),
      dir: src.dir,
      schemaText,
      policies,
      policyTexts,
      policyJson,
      schemaJson: schemaJson!,
      entities,
      warnings: dedupeProblems(warnings),
      files: [...src.schemas, ...src.policies, ...(src.entities ? [src.entities] : [])].map((f) => f.path),
    },
  }
}

/** Reads and compiles a directory; `fallback` as for readPolicyDirSync. */
export function loadPolicyDirSync(dir: string, fallback?: PolicySources): { sources: PolicySources; result: CompileResult } {
  let sources: PolicySources
  try {
    sources = readPolicyDirSync(dir, fallback)
  } catch (err) {
    return { sources: { dir: resolve(dir), schemas: [], policies: [], entities: undefined }, result: { ok: false, problems: [readProblem(dir, err)] } }
  }
  return { sources, result: compilePolicySources(sources) }
}

export function readProblem(dir: string, err: unknown): PolicyProblem {
  return { severity: 'error', file: resolve(dir), line: undefined, column: undefined, message: `cannot read the policy directory: ${(err as Error).message}` }
}

/**
 * Finds each policy's text in its file, in source order. Cedar returns the
 * parts sorted by their generated ids ("policy0", "policy1", "policy10", …),
 * which number the policies in source order; undoing that sort and searching
 * forward from the previous policy's end places each one.
 */
function locateParts(source: SourceText, parts: readonly string[]): { text: string; offset: number }[] {
  const generated = parts.map((_, i) => `policy${i}`).sort()
  const inOrder: string[] = new Array(parts.length)
  generated.forEach((id, j) => (inOrder[Number(id.slice('policy'.length))] = parts[j]!))
  const out: { text: string; offset: number }[] = []
  let from = 0
  for (const text of inOrder) {
    const needle = Buffer.from(text, 'utf8')
    let at = source.bytes.indexOf(needle, from)
    if (at === -1) at = source.bytes.indexOf(needle)
    out.push({ text, offset: Math.max(0, at) })
    if (at !== -1) from = at + needle.length
  }
  return out
}

const DERIVED_ATTRIBUTES: Readonly<Record<string, readonly string[]>> = {
  Workload: ['trustDomain', 'namespace', 'serviceAccount'],
  User: ['subject', 'issuer', 'email'],
  Model: ['name', 'provider'],
  Tool: ['kind'],
  Provider: ['internal'],
}

/** The schema must declare every type, attribute and action modelgate uses. */
function checkSchemaNames(schema: SchemaJson<string>, file: string): PolicyProblem[] {
  const problems: PolicyProblem[] = []
  const ns = schema[NAMESPACE]
  const err = (message: string): void => {
    problems.push({ severity: 'error', file, line: undefined, column: undefined, message, help: 'modelgate builds requests with these names; see the shipped policies/modelgate.cedarschema' })
  }
  if (!ns) {
    err(`the schema has no namespace ${NAMESPACE}`)
    return problems
  }
  for (const full of Object.values(ENTITY)) {
    const name = full.slice(NAMESPACE.length + 2)
    const t = ns.entityTypes[name] as { shape?: { attributes?: Record<string, unknown> } } | undefined
    if (!t) {
      err(`the schema does not declare entity type ${full}`)
      continue
    }
    for (const attr of DERIVED_ATTRIBUTES[name] ?? []) {
      if (!t.shape?.attributes || !(attr in t.shape.attributes)) err(`entity type ${full} lacks attribute \`${attr}\``)
    }
  }
  for (const a of ACTIONS) if (!ns.actions[a]) err(`the schema does not declare action ${ACTION_TYPE}::"${a}"`)
  return problems
}

interface RawEntity {
  uid: { type: string; id: string }
  attrs: Record<string, unknown>
  parents: { type: string; id: string }[]
}

/** Validates entities.json: shape, known types, derived attributes left to modelgate, then Cedar's own check. */
function loadEntities(file: SourceFile | undefined, schemaText: string, schema: SchemaJson<string>): { entities?: StaticEntities; problems: PolicyProblem[] } {
  if (!file) return { entities: { byKey: new Map(), ancestors: new Map() }, problems: [] }
  const problems: PolicyProblem[] = []
  const source = new SourceText(file.text)
  const at = (needle: string | undefined): { line: number; column: number } | undefined => {
    if (needle === undefined) return undefined
    const i = file.text.indexOf(needle)
    return i === -1 ? undefined : source.position(source.byteOffset(i))
  }
  const error = (message: string, pos?: { line: number; column: number }, help?: string) =>
    problems.push({ severity: 'error', file: file.path, line: pos?.line, column: pos?.column, message, help })
  let data: unknown
  try {
    data = JSON.parse(file.text)
  } catch (err) {
    const m = /position (\d+)/.exec((err as Error).message)
    error(`invalid JSON: ${(err as Error).message.replace(/ in JSON at position \d+.*$/, '')}`, m ? source.position(source.byteOffset(Number(m[1]))) : undefined)
    return { problems }
  }
  if (!Array.isArray(data)) {
    error('entities.json must be a JSON array of entities', { line: 1, column: 1 })
    return { problems }
  }
  const ns = schema[NAMESPACE]!
  const known = new Set(Object.keys(ns.entityTypes).map((t) => `${NAMESPACE}::${t}`))
  const isUid = (u: unknown): u is { type: string; id: string } =>
    !!u && typeof u === 'object' && typeof (u as { type?: unknown }).type === 'string' && typeof (u as { id?: unknown }).id === 'string'
  const raw: RawEntity[] = []
  const seen = new Set<string>()
  data.forEach((e: unknown, i) => {
    const where = `entities.json[${i}]`
    if (!e || typeof e !== 'object' || Array.isArray(e)) return error(`${where} must be an object with uid, attrs and parents`)
    const o = e as Record<string, unknown>
    if (!isUid(o.uid)) return error(`${where}.uid must be {"type": "…", "id": "…"}`)
    const uid = o.uid
    const pos = at(JSON.stringify(uid.id))
    if (uid.type === ACTION_TYPE) return error(`${where}: actions come from the schema; remove ${uid.type}::${JSON.stringify(uid.id)}`, pos)
    if (!known.has(uid.type)) return error(`${where}: unknown entity type \`${uid.type}\``, at(JSON.stringify(uid.type)), `declared types: ${[...known].sort().join(', ')}`)
    const key = uidKey(uid)
    if (seen.has(key)) return error(`${where}: duplicate entity ${uid.type}::${JSON.stringify(uid.id)}`, pos)
    seen.add(key)
    const attrs = o.attrs ?? {}
    if (!attrs || typeof attrs !== 'object' || Array.isArray(attrs)) return error(`${where}.attrs must be an object`, pos)
    const parents = o.parents ?? []
    if (!Array.isArray(parents) || !parents.every(isUid)) return error(`${where}.parents must be an array of {"type", "id"}`, pos)
    for (const p of parents) if (!known.has(p.type)) return error(`${where}: parent has unknown entity type \`${p.type}\``, at(JSON.stringify(p.type)))
    if (uid.type === ENTITY.User) return error(`${where}: users come from verified tokens and cannot be declared; use ${ENTITY.UserGroup} for groups`, pos)
    if (DERIVED_TYPES.has(uid.type) && Object.keys(attrs).length) return error(`${where}: the attributes of ${uid.type} are derived from the request; entities.json may only give parents`, pos)
    const derived = derivedAttrsFor(uid)
    if (typeof derived === 'string') return error(`${where}: ${derived}`, pos)
    raw.push({ uid, attrs: { ...derived, ...(attrs as Record<string, unknown>) }, parents: parents.map((p) => ({ type: p.type, id: p.id })) })
  })
  if (problems.length) return { problems }
  const list = raw as unknown as EntityJson[]
  const check = cedar.checkParseEntities({ entities: list, schema: schemaText })
  if (check.type === 'failure') {
    for (const e of check.errors) {
      const m = /`[A-Za-z0-9_:]+::("(?:[^"\\]|\\.)*")`/.exec(e.message)
      problems.push({ severity: 'error', file: file.path, ...(at(m?.[1]) ?? { line: undefined, column: undefined }), message: e.message, help: e.help ?? undefined })
    }
    return { problems }
  }
  return { entities: indexEntities(list), problems }
}

/** Attributes modelgate fills in for a declared entity of a derived type (for validation), or a reason it is invalid. */
function derivedAttrsFor(uid: { type: string; id: string }): Record<string, unknown> | string {
  switch (uid.type) {
    case ENTITY.Workload: {
      const p = parseSpiffeId(uid.id)
      if (!p.ok) return `workload id ${JSON.stringify(uid.id)} is not a valid SPIFFE ID (${p.reason})`
      const k = kubernetesParts(p.value.segments)
      return { trustDomain: p.value.trustDomain, namespace: k.namespace, serviceAccount: k.serviceAccount }
    }
    case ENTITY.Model: {
      const slash = uid.id.indexOf('/')
      if (slash <= 0 || slash === uid.id.length - 1) return `model id ${JSON.stringify(uid.id)} must be "<provider>/<model>"`
      return { name: uid.id.slice(slash + 1), provider: { __entity: { type: ENTITY.Provider, id: uid.id.slice(0, slash) } } }
    }
    case ENTITY.Tool:
      return { kind: 'function' }
    default:
      return {}
  }
}

/** `/ns/<namespace>/sa/<service-account>` → its parts; '' when the path does not follow it. */
export function kubernetesParts(segments: readonly string[]): { namespace: string; serviceAccount: string } {
  if (segments.length === 4 && segments[0] === 'ns' && segments[2] === 'sa') return { namespace: segments[1]!, serviceAccount: segments[3]! }
  return { namespace: '', serviceAccount: '' }
}

function indexEntities(list: readonly EntityJson[]): StaticEntities {
  const byKey = new Map<string, EntityJson>()
  for (const e of list) byKey.set(uidKey(plainUid(e.uid)), e)
  const ancestors = new Map<string, readonly string[]>()
  const walk = (key: string): readonly string[] => {
    const done = ancestors.get(key)
    if (done) return done
    const out: string[] = []
    const seen = new Set<string>([key])
    const stack = [...(byKey.get(key)?.parents ?? []).map((p) => uidKey(plainUid(p)))]
    while (stack.length) {
      const k = stack.pop()!
      if (seen.has(k)) continue
      seen.add(k)
      out.push(k)
      for (const p of byKey.get(k)?.parents ?? []) stack.push(uidKey(plainUid(p)))
    }
    ancestors.set(key, out)
    return out
  }
  for (const key of byKey.keys()) walk(key)
  return { byKey, ancestors }
}

/** One synthetic request per action, checked against the schema, so a schema modelgate cannot satisfy fails at load. */
function probeSchema(schemaText: string, file: string): PolicyProblem[] {
  const W = { type: ENTITY.Workload, id: 'spiffe://probe.invalid/ns/probe/sa/probe' }
  const P = { type: ENTITY.Provider, id: 'probe' }
  const M = { type: ENTITY.Model, id: 'probe/probe' }
  const U = { type: ENTITY.User, id: 'probe#probe' }
  const entities: EntityJson[] = [
    { uid: W, attrs: { trustDomain: 'probe.invalid', namespace: 'probe', serviceAccount: 'probe' }, parents: [{ type: ENTITY.Namespace, id: 'probe' }] },
    { uid: { type: ENTITY.Namespace, id: 'probe' }, attrs: {}, parents: [] },
    { uid: P, attrs: { internal: false }, parents: [] },
    { uid: M, attrs: { name: 'probe', provider: { __entity: P } }, parents: [P] },
    { uid: { type: ENTITY.Tool, id: 'probe' }, attrs: { kind: 'function' }, parents: [] },
    { uid: { type: ENTITY.DataClass, id: 'probe' }, attrs: {}, parents: [] },
    { uid: U, attrs: { subject: 'probe', issuer: 'probe', email: '' }, parents: [{ type: ENTITY.UserGroup, id: 'probe' }] },
    { uid: { type: ENTITY.UserGroup, id: 'probe' }, attrs: {}, parents: [] },
  ]
  const context = {
    api: 'probe',
    model: { __entity: M },
    stream: false,
    maxTokens: 1,
    tools: ['probe'],
    dataClasses: ['probe'],
    detectors: ['probe'],
    tenant: '',
    purpose: '',
    clientApp: '',
    region: '',
    utcHour: 0,
    dayOfWeek: 1,
    user: { __entity: U },
  }
  const problems: PolicyProblem[] = []
  for (const action of ACTIONS) {
    const resource = action === 'call_tool' ? { type: ENTITY.Tool, id: 'probe' } : action === 'send_unredacted' ? { type: ENTITY.DataClass, id: 'probe' } : M
    const r = cedar.isAuthorized({
      principal: W,
      action: { type: ACTION_TYPE, id: action },
      resource,
      context,
      schema: schemaText,
      validateRequest: true,
      policies: { staticPolicies: {} },
      entities,
    })
    if (r.type === 'failure') {
      for (const e of r.errors) {
        problems.push({
          severity: 'error',
          file,
          line: undefined,
          column: undefined,
          message: `the schema does not accept the requests modelgate sends for ${ACTION_TYPE}::"${action}": ${e.message}`,
          help: 'keep the shipped RequestContext attributes and entity shapes; add new attributes as optional',
        })
      }
    }
  }
  return problems
}
