/**
 * Policy slices: each question is evaluated against only the policies that
 * can apply to it, not the whole set, so a decision costs about the same at
 * 10 or 1000 policies.
 *
 * At load, every policy is indexed by its scope (action; principal and
 * resource `==`, `in`, `is`) and, when it has one, by its guard (see
 * analysis.ts). A question picks the policies whose scope matches its action,
 * principal and resource (with their ancestors from entities.json) and whose
 * guard can hold; that list is the slice. Each distinct slice is preparsed
 * once, lazily, with the scopes removed — they hold for every question routed
 * to it — and kept in a bounded LRU.
 *
 * Why the answer is the whole set's: a policy left out either has a scope that
 * does not match (Cedar evaluates the scope first and it cannot fail) or a
 * guard that is false (evaluated next, cannot fail either), so it is neither
 * satisfied nor in error; Cedar's decision, determining policies and errors
 * only ever come from the others.
 *
 * Some policies in a slice are already decided by the index: those without
 * conditions, and those whose only condition is their guard (found to hold).
 * They are satisfied and cannot fail, so Cedar is not asked about them; they
 * are added to its answer on the rest (`withDecided`): a satisfied forbid
 * denies, else a satisfied permit allows.
 *
 * The slice also says what the policies Cedar evaluates read, which gives two
 * savings:
 * - the entities sent to Cedar are only the groups its conditions look into
 *   (parsing entities is most of a call's fixed cost);
 * - the decision-cache key holds only the facts it reads, so requests that
 *   differ in, say, their token budget share an answer when no policy in the
 *   slice looks at `context.maxTokens`.
 */
import { hash } from 'node:crypto'
import type { EntityJson, PolicyJson, SchemaJson } from '@cedar-policy/cedar-wasm/nodejs'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import { LRUCache } from 'lru-cache'
import { analysePolicy, emptyReads, mergeReads, withoutScope, type GuardAlternative, type PolicyAnalysis, type Reads } from './analysis.ts'
import { uidKey, type CompiledPolicySet } from './load.ts'
import { ACTION_TYPE, ALL_ACTIONS, ENTITY } from './names.ts'
import { ENTITY_AGENT, ENTITY_MCP_PROMPT, ENTITY_MCP_RESOURCE, factsKey, toolEntityFacts, type CedarQuery, type EntityGroup, type EntityGroups, type RequestFacts } from './request.ts'

export interface Slice {
  /** The positions of its policies in the set, e.g. "0,4,17" ("" for none): identifies the slice. */
  readonly key: string
  /** A short name, unique for the slicer's lifetime (never reused), for decision-cache keys. */
  readonly token: number
  /** The id the policies Cedar evaluates are preparsed under. */
  readonly policySetId: string
  /** Policies Cedar evaluates. */
  readonly size: number
  /** Ids of the policies the index decided (satisfied for every question routed here), by effect. */
  readonly satisfied: { readonly permit: readonly string[]; readonly forbid: readonly string[] }
  /** What the policies Cedar evaluates read (`full` when entities cannot be pruned for this set). */
  readonly reads: Reads
}

export interface SlicerOptions {
  /** Prefix of the preparsed policy-set ids. */
  readonly idPrefix: string
  /** Most slices kept preparsed. */
  readonly maxSlices: number
  /** Most policies kept preparsed over all slices (a slice of n policies counts n, at least 1). */
  readonly maxPolicies: number
}

interface IndexedPolicy {
  readonly id: string
  readonly effect: PolicyJson['effect']
  readonly analysis: PolicyAnalysis
  readonly stripped: PolicyJson
}

interface Bucket {
  readonly plain: number[]
  /** Guarded policies by guard alternative (`kind\0attr\0value`). */
  readonly guarded: Map<string, number[]>
  /** The distinct (kind, attr) pairs of the guarded policies, to look up from the request. */
  readonly tests: { kind: GuardAlternative['kind']; attr: string }[]
}

/** principal scope key → resource scope key → bucket, for one action. */
type ActionIndex = Map<string, Map<string, Bucket>>

/** The policies a (principal, resource, action) can reach: unguarded ones, and the buckets whose guards decide the rest. */
interface Candidates {
  readonly plain: readonly number[]
  readonly plainKey: string
  readonly guarded: readonly Bucket[]
  /** Every (kind, attr) the guarded buckets test. */
  readonly tests: readonly { readonly kind: GuardAlternative['kind']; readonly attr: string }[]
  /** Slice keys by the values of the tested attributes. */
  readonly byGuardValues: Map<string, string>
}

/** Most guard outcomes remembered per candidate set; beyond it the memo starts over. */
const MAX_GUARD_OUTCOMES = 256

export class Slicer {
  readonly #policies: IndexedPolicy[] = []
  readonly #byAction = new Map<string, ActionIndex>()
  readonly #slices: LRUCache<string, Slice>
  readonly #free: string[] = []
  readonly #opts: SlicerOptions
  /** Candidates by principal group, resource group and action (groups are remembered per set, so identity works as a key). */
  readonly #candidates = new WeakMap<EntityGroup, WeakMap<EntityGroup, Map<string, Candidates>>>()
  #nextId = 0
  #nextToken = 0
  /** False when leaving entities out could change an answer for this set (see `pruningIsExact`). */
  readonly pruneEntities: boolean

  constructor(set: CompiledPolicySet, opts: SlicerOptions) {
    this.#opts = opts
    this.pruneEntities = pruningIsExact(set)
    for (const [id, json] of set.policyJson) this.#policies.push({ id, effect: json.effect, analysis: analysePolicy(json), stripped: withoutScope(json) })
    const ancestors = actionAncestors(set.schemaJson)
    for (const action of ALL_ACTIONS) {
      const own = uidKey({ type: ACTION_TYPE, id: action })
      const names = new Set([own, ...(ancestors.get(own) ?? [])])
      const index: ActionIndex = new Map()
      this.#policies.forEach((p, i) => {
        const a = p.analysis.scope.action
        if (a && !a.uids.some((u) => (a.op === '==' ? u === own : names.has(u)))) return
        let byResource = index.get(p.analysis.scope.principal)
        if (!byResource) index.set(p.analysis.scope.principal, (byResource = new Map()))
        let bucket = byResource.get(p.analysis.scope.resource)
        if (!bucket) byResource.set(p.analysis.scope.resource, (bucket = { plain: [], guarded: new Map(), tests: [] }))
        const guard = p.analysis.guard
        if (!guard) return void bucket.plain.push(i)
        for (const g of guard) {
          const k = guardKey(g.kind, g.attr, g.value)
          const list = bucket.guarded.get(k)
          if (list) list.push(i)
          else bucket.guarded.set(k, [i])
          if (!bucket.tests.some((t) => t.kind === g.kind && t.attr === g.attr)) bucket.tests.push({ kind: g.kind, attr: g.attr })
        }
      })
      this.#byAction.set(action, index)
    }
    this.#slices = new LRUCache<string, Slice>({
      max: opts.maxSlices,
      maxSize: opts.maxPolicies,
      // Capped, so that every slice is stored (and its id comes back to the pool when it is evicted).
      sizeCalculation: (s) => Math.min(Math.max(1, s.size), opts.maxPolicies),
      dispose: (s) => this.#free.push(s.policySetId),
    })
  }

  /** Slices currently preparsed. */
  get preparsed(): number {
    return this.#slices.size
  }

  /** The slice that answers `q` for this request, preparsing it on first use. */
  select(f: RequestFacts, q: CedarQuery, groups: EntityGroups): Slice {
    const c = this.#candidatesFor(q.action, groups.principal(f), groups.resource(f, q))
    let key = c.plainKey
    if (c.guarded.length) {
      const values = guardValues(c.tests, f)
      const known = c.byGuardValues.get(values)
      if (known !== undefined) key = known
      else {
        const picked = [...c.plain]
        for (const b of c.guarded) pickGuarded(b, f, picked)
        if (picked.length > c.plain.length) key = positionsKey(picked)
        if (c.byGuardValues.size >= MAX_GUARD_OUTCOMES) c.byGuardValues.clear()
        c.byGuardValues.set(values, key)
      }
    }
    return this.#slices.get(key) ?? this.#prepare(key)
  }

  #candidatesFor(action: string, principal: EntityGroup, resource: EntityGroup): Candidates {
    let byResource = this.#candidates.get(principal)
    if (!byResource) this.#candidates.set(principal, (byResource = new WeakMap()))
    let byAction = byResource.get(resource)
    if (!byAction) byResource.set(resource, (byAction = new Map()))
    let c = byAction.get(action)
    if (c) return c
    const plain: number[] = []
    const guarded: Bucket[] = []
    const index = this.#byAction.get(action)
    if (index) {
      for (const pk of principal.scope) {
        const byResourceKey = index.get(pk)
        if (!byResourceKey) continue
        for (const rk of resource.scope) {
          const b = byResourceKey.get(rk)
          if (!b) continue
          plain.push(...b.plain)
          if (b.tests.length) guarded.push(b)
        }
      }
    }
    const key = positionsKey(plain)
    const tests: Candidates['tests'][number][] = []
    for (const b of guarded) for (const t of b.tests) if (!tests.some((x) => x.kind === t.kind && x.attr === t.attr)) tests.push(t)
    c = { plain: key ? key.split(',').map(Number) : [], plainKey: key, guarded, tests, byGuardValues: new Map() }
    byAction.set(action, c)
    return c
  }

  #prepare(key: string): Slice {
    const positions = key ? key.split(',').map(Number) : []
    const reads = emptyReads()
    const staticPolicies: Record<string, PolicyJson> = {}
    const satisfied = { permit: [] as string[], forbid: [] as string[] }
    let size = 0
    for (const i of positions) {
      const p = this.#policies[i]!
      if (p.analysis.decidedByIndex) {
        satisfied[p.effect].push(p.id)
        continue
      }
      mergeReads(reads, p.analysis.reads)
      staticPolicies[p.id] = p.stripped
      size++
    }
    if (!this.pruneEntities) reads.full = true
    // Reserve the id first: setting the slice may evict (and free) another one.
    const policySetId = this.#free.pop() ?? `${this.#opts.idPrefix}-s${this.#nextId++}`
    const r = cedar.preparsePolicySet(policySetId, { staticPolicies })
    if (r.type === 'failure') {
      this.#free.push(policySetId)
      throw new Error(`preparsePolicySet failed for a slice: ${r.errors.map((e) => e.message).join('; ')}`)
    }
    const slice: Slice = { key, token: this.#nextToken++, policySetId, size, satisfied, reads }
    this.#slices.set(key, slice)
    return slice
  }

  /** Drops every preparsed slice and releases Cedar's copies (the set is no longer active). */
  release(): void {
    const ids = new Set([...this.#free, ...[...this.#slices.values()].map((s) => s.policySetId)])
    this.#slices.clear()
    this.#free.length = 0
    for (const id of ids) cedar.preparsePolicySet(id, { staticPolicies: {} })
  }
}

/** Sorted, distinct positions joined by commas. */
function positionsKey(positions: number[]): string {
  positions.sort((a, b) => a - b)
  let out = ''
  let prev = -1
  for (const i of positions) {
    if (i === prev) continue
    out = prev === -1 ? String(i) : `${out},${i}`
    prev = i
  }
  return out
}

/**
 * Cedar's answer on the rest of a slice, with the policies the index decided
 * added as Cedar would have counted them: any satisfied forbid denies (and
 * the satisfied forbids determine it); otherwise any satisfied permit allows
 * (and the satisfied permits determine it); otherwise deny. Cedar's answer
 * tells which of its own policies were satisfied as far as that matters: on
 * allow, its reasons are its satisfied permits and it had no satisfied
 * forbid; on deny, its reasons are its satisfied forbids, and with none, it
 * had no satisfied permit either. Errors come only from Cedar's policies.
 */
export function withDecided(slice: Slice, decision: 'allow' | 'deny', reasons: readonly string[]): { decision: 'allow' | 'deny'; determining: string[] } {
  const { permit, forbid } = slice.satisfied
  if (permit.length === 0 && forbid.length === 0) return { decision, determining: [...reasons] }
  const forbids = decision === 'deny' ? [...reasons, ...forbid] : [...forbid]
  if (forbids.length) return { decision: 'deny', determining: forbids }
  const permits = decision === 'allow' ? [...reasons, ...permit] : [...permit]
  return permits.length ? { decision: 'allow', determining: permits } : { decision: 'deny', determining: [] }
}

function guardKey(kind: GuardAlternative['kind'], attr: string, value: string): string {
  return `${kind}\0${attr}\0${value}`
}

/** The request's values of the attributes guards test, as one string (JSON: distinct values give distinct strings). */
function guardValues(tests: Candidates['tests'], f: RequestFacts): string {
  const values: unknown[] = []
  for (const t of tests) {
    if (t.kind === 'contains') values.push(t.attr === 'tools' ? f.tools.map((x) => x.name) : t.attr === 'dataClasses' ? f.dataClasses : f.detectors)
    else if (t.kind === 'equals') values.push(f[t.attr as 'api' | 'tenant' | 'purpose' | 'clientApp' | 'region'])
    else values.push(t.attr === 'user' ? f.user !== undefined : f.maxTokens !== undefined)
  }
  return JSON.stringify(values)
}

/** Adds the guarded policies of a bucket whose guard can hold for this request. */
function pickGuarded(b: Bucket, f: RequestFacts, picked: number[]): void {
  const add = (k: string) => {
    const list = b.guarded.get(k)
    if (list) for (const i of list) picked.push(i)
  }
  for (const t of b.tests) {
    if (t.kind === 'contains') {
      if (t.attr === 'tools') for (const tool of f.tools) add(guardKey('contains', 'tools', tool.name))
      else for (const v of t.attr === 'dataClasses' ? f.dataClasses : f.detectors) add(guardKey('contains', t.attr, v))
    } else if (t.kind === 'equals') add(guardKey('equals', t.attr, f[t.attr as 'api' | 'tenant' | 'purpose' | 'clientApp' | 'region']))
    else if (t.attr === 'user' ? f.user !== undefined : f.maxTokens !== undefined) add(guardKey('has', t.attr, ''))
  }
}

// ---- what a slice's answer depends on ----------------------------------------------

/** Longest decision-cache key kept as is; longer ones are replaced by their SHA-256. */
const MAX_PLAIN_KEY = 160

/**
 * The decision-cache key of a question answered by `slice`: the slice, the
 * action and resource type, and only the request facts its policies read.
 * Values are JSON-encoded, so no two requests that differ in a read fact
 * share a key; long keys are hashed (SHA-256).
 */
export function decisionKey(slice: Slice, f: RequestFacts, q: CedarQuery): string {
  const r = slice.reads
  if (r.full) return hashed(JSON.stringify([slice.token, q.action, q.resource.type, q.resource.id, factsKey(f)]))
  const parts: unknown[] = [slice.token, q.action, q.resource.type]
  if (r.resourceUid || r.resourceEntity) {
    if (q.resource.type === ENTITY.Model) parts.push(f.provider, f.model)
    else parts.push(q.resource.id, q.resource.type === ENTITY.Tool && r.resourceEntity ? toolEntityFacts(f, q.resource.id) : '')
  }
  if (r.principalUid || r.principalEntity) {
    const p = f.principal
    parts.push(p.spiffeId, p.trustDomain, p.namespace, p.serviceAccount)
  }
  if (r.modelUid || r.modelEntity) parts.push(f.provider, f.model)
  const u = r.user
  if (u.presence || u.identity || u.email || u.groups) {
    const user = f.user
    parts.push(user === undefined ? 0 : 1)
    if (user) {
      if (u.identity) parts.push(user.issuer, user.subject)
      if (u.email) parts.push(user.email)
      if (u.groups) parts.push(user.groups)
    }
  }
  const all = r.context === 'all'
  const reads = r.context as Set<string>
  if (all || reads.has('api')) parts.push('api', f.api)
  if (all || reads.has('stream')) parts.push('stream', f.stream)
  if (all || reads.has('maxTokens')) parts.push('maxTokens', f.maxTokens ?? null)
  if (all || reads.has('inputTokens')) parts.push('inputTokens', f.inputTokens ?? null)
  if (all || reads.has('estimatedTokens')) parts.push('estimatedTokens', f.estimatedTokens ?? null)
  if (all || reads.has('tools')) parts.push('tools', f.tools.map((t) => t.name))
  if (all || reads.has('dataClasses')) parts.push('dataClasses', f.dataClasses)
  if (all || reads.has('detectors')) parts.push('detectors', f.detectors)
  if (all || reads.has('tenant')) parts.push('tenant', f.tenant)
  if (all || reads.has('purpose')) parts.push('purpose', f.purpose)
  if (all || reads.has('clientApp')) parts.push('clientApp', f.clientApp)
  if (all || reads.has('region')) parts.push('region', f.region)
  if (all || reads.has('utcHour')) parts.push('utcHour', f.utcHour)
  if (all || reads.has('dayOfWeek')) parts.push('dayOfWeek', f.dayOfWeek)
  if (all || reads.has('actor')) parts.push('actor', f.actor?.subject ?? null)
  if (f.extra) for (const [k, v] of Object.entries(f.extra)) if (all || reads.has(k)) parts.push(k, v ?? null)
  return hashed(JSON.stringify(parts))
}

/** JSON keys start with `[`; a hashed key starts with `#`, so the two never meet. */
function hashed(key: string): string {
  return key.length <= MAX_PLAIN_KEY ? key : '#' + hash('sha256', key, 'base64')
}

/** The entities a question answered by `slice` needs: the groups its policies look into (all of them when `full`). */
export function sliceEntities(slice: Slice, f: RequestFacts, q: CedarQuery, groups: EntityGroups): EntityJson[] {
  const r = slice.reads
  const isModel = q.resource.type === ENTITY.Model
  const picked: EntityGroup[] = []
  if (r.full || r.principalEntity) picked.push(groups.principal(f))
  if (r.full || r.modelEntity || (isModel && r.resourceEntity)) picked.push(groups.model(f))
  if ((r.full || r.user.entity) && f.user) picked.push(groups.user(f)!)
  if (!isModel && (r.full || r.resourceEntity)) picked.push(groups.resource(f, q))
  if (picked.length === 0) return []
  if (picked.length === 1) return picked[0]!.entities as EntityJson[]
  // First one wins, in the order buildCall adds them.
  const seen = new Set<string>()
  const out: EntityJson[] = []
  for (const g of picked) {
    g.keys.forEach((k, i) => {
      if (seen.has(k)) return
      seen.add(k)
      out.push(g.entities[i]!)
    })
  }
  return out
}

// ---- load-time facts about the schema ------------------------------------------------

function qualify(ns: string, name: string): string {
  return name.includes('::') || !ns ? name : `${ns}::${name}`
}

/** Every action's ancestors (action groups), from the schema's `memberOf`, as `uidKey`s. */
function actionAncestors(schema: SchemaJson<string>): Map<string, string[]> {
  const parents = new Map<string, string[]>()
  for (const [ns, def] of Object.entries(schema)) {
    for (const [name, action] of Object.entries(def.actions)) {
      const own = uidKey({ type: qualify(ns, 'Action'), id: name })
      parents.set(
        own,
        (action.memberOf ?? []).map((m) => uidKey({ type: m.type ? qualify(ns, m.type) : qualify(ns, 'Action'), id: m.id })),
      )
    }
  }
  return closure(parents)
}

function closure(parents: ReadonlyMap<string, readonly string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const start of parents.keys()) {
    const seen = new Set<string>()
    const stack = [...(parents.get(start) ?? [])]
    while (stack.length) {
      const k = stack.pop()!
      if (seen.has(k)) continue
      seen.add(k)
      stack.push(...(parents.get(k) ?? []))
    }
    out.set(start, [...seen])
  }
  return out
}

/**
 * Whether sending only some entity groups gives the same answers as sending
 * all of them. Two things could tell them apart, and both are settled by the
 * schema and entities.json:
 * - an entity that appears without attributes (a parent nobody declared, a
 *   namespace, a token group) whose type requires attributes: the whole
 *   request then fails validation, and would not when that group is left out;
 * - a derived entity type (workload, provider, model, user, tool, data class)
 *   that can also be an ancestor in another group: its contents would depend
 *   on which group brought it.
 */
export function pruningIsExact(set: CompiledPolicySet): boolean {
  const types = new Map<string, { memberOf: string[]; requiresAttrs: boolean }>()
  for (const [ns, def] of Object.entries(set.schemaJson)) {
    for (const [name, t] of Object.entries(def.entityTypes)) {
      const std = t as { memberOfTypes?: string[]; shape?: { type: string; attributes?: Record<string, { required?: boolean }> } }
      const shape = std.shape
      const requiresAttrs = !!shape && (shape.type !== 'Record' || Object.values(shape.attributes ?? {}).some((a) => a.required !== false))
      types.set(qualify(ns, name), { memberOf: (std.memberOfTypes ?? []).map((m) => qualify(ns, m)), requiresAttrs })
    }
  }
  const bare = new Set<string>([ENTITY.Namespace, ENTITY.UserGroup])
  for (const e of set.entities.byKey.values()) {
    for (const p of e.parents) {
      const uid = '__entity' in p ? p.__entity : p
      if (!set.entities.byKey.has(uidKey(uid))) bare.add(uid.type)
    }
  }
  for (const t of bare) if (types.get(t)?.requiresAttrs !== false) return false
  const memberOf = new Map([...types].map(([k, v]) => [k, v.memberOf]))
  const ancestorTypes = closure(memberOf)
  const groups: string[][] = [[ENTITY.Workload], [ENTITY.Provider, ENTITY.Model], [ENTITY.User, ENTITY_AGENT], [ENTITY.Tool, ENTITY_MCP_RESOURCE, ENTITY_MCP_PROMPT], [ENTITY.DataClass]]
  const reach = groups.map((g) => new Set(g.flatMap((t) => [t, ...(ancestorTypes.get(t) ?? [])])))
  for (let i = 0; i < groups.length; i++) for (let j = 0; j < groups.length; j++) if (i !== j && groups[i]!.some((t) => reach[j]!.has(t))) return false
  return true
}
