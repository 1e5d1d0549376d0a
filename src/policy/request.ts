/**
 * From a request to Cedar: the facts policy may look at, taken from the
 * request context (or from a request description, for `modelgate policy test`
 * and `explain`), and the Cedar calls built from them. The same code serves
 * both, so a test case exercises exactly the mapping traffic goes through.
 *
 * Only derived features reach Cedar: identity, model, sizes, flags, the data
 * classes and detector ids found, a few bounded header values, the time.
 * Never prompt text.
 */
import { createHash } from 'node:crypto'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import type { EntityJson, EntityUidJson } from '@cedar-policy/cedar-wasm/nodejs'
import { GateError } from '../errors.ts'
import { parseSpiffeId } from '../identity/spiffe.ts'
import type { DelegatedUser } from '../identity/types.ts'
import type { RequestContext } from '../pipeline/context.ts'
import { MCP_KIND, mcpServerId, parseMcpId } from '../providers/tools.ts'
import type { Operation, ParsedRequest, ToolDefinition } from '../providers/types.ts'
import { scopeLookupKeys } from './analysis.ts'
import { canonicalJson, sha256Hex } from '../mcp/protocol.ts'
import { kubernetesParts, plainUid, uidKey, type CompiledPolicySet } from './load.ts'
import { ACTION_TYPE, DEFAULT_CONTEXT_HEADERS, ENTITY, NAMESPACE, OPERATION_ACTION, type ActionName } from './names.ts'

/** Longest header value (characters) passed into the context; longer values are cut. */
export const MAX_HEADER_VALUE = 256
/** Most delegated-user groups passed into the entities; the rest are dropped. */
export const MAX_USER_GROUPS = 256

export interface ContextHeaders {
  readonly tenant: string
  readonly purpose: string
  readonly clientApp: string
}

export interface FactsOptions {
  readonly headers?: ContextHeaders | undefined
  /** The deployment's region (policy.region), passed as context.region. */
  readonly region?: string | undefined
  /**
   * The request's token estimate (quotas/estimate.ts), given only when the
   * policy set reads `context.inputTokens` or `context.estimatedTokens`: the
   * facts, and so the decision-cache key, carry it only then.
   */
  readonly estimate?: ((req: ParsedRequest) => { readonly input: number; readonly output: number }) | undefined
}

/** One tool as policy sees it: its `Tool` id, its `kind`, (MCP) the server URL's host and the hints its server declared. */
export interface ToolFact {
  readonly name: string
  readonly type: string
  readonly host?: string
  readonly hints?: ToolHints
}

/** The behaviour hints an MCP server declares for a tool (tools/list `annotations`): advisory, a server can lie. */
export interface ToolHints {
  readonly readOnlyHint?: boolean
  readonly destructiveHint?: boolean
  readonly idempotentHint?: boolean
  readonly openWorldHint?: boolean
}

export const HINT_NAMES = ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint'] as const

/**
 * The hints of an MCP tool whose server declared none, or that modelgate has
 * not seen listed: the protocol's defaults, which assume the worst — not
 * read-only, destructive, not idempotent, open world. A model request's MCP
 * tools carry them too, so a policy on hints governs a tool the same way
 * whoever asks for it.
 */
export const DEFAULT_HINTS: ToolHints = Object.freeze({ readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true })

/** The agent acting for the user (RFC 8693 `act` claim): `Agent::"<subject>"`. */
export interface ActorFact {
  readonly subject: string
}

/** A tool's facts, with `host` only when there is one (facts are hashed as JSON). */
function toolFact(t: ToolDefinition): ToolFact {
  const base = t.host === undefined ? { name: t.name, type: t.type } : { name: t.name, type: t.type, host: t.host }
  return t.hints === undefined ? base : { ...base, hints: t.hints }
}

/** Everything a policy decision depends on. Two requests with equal facts get equal decisions. */
export interface RequestFacts {
  readonly principal: { readonly spiffeId: string; readonly trustDomain: string; readonly namespace: string; readonly serviceAccount: string }
  readonly user: { readonly subject: string; readonly issuer: string; readonly email: string; readonly groups: readonly string[] } | undefined
  readonly provider: string
  readonly operation: Operation
  readonly api: string
  readonly model: string
  readonly stream: boolean
  readonly maxTokens: number | undefined
  /** The tools the request names (providers/tools.ts): identity, declared type, and an MCP server's host. */
  readonly tools: readonly ToolFact[]
  readonly dataClasses: readonly string[]
  readonly detectors: readonly string[]
  readonly tenant: string
  readonly purpose: string
  readonly clientApp: string
  readonly region: string
  readonly utcHour: number
  readonly dayOfWeek: number
  /** Estimated input tokens (only when the policy set reads it). */
  readonly inputTokens?: number
  /** Estimated input tokens plus the output budget (only when the policy set reads it). */
  readonly estimatedTokens?: number
  /** The agent acting for the user, when the user token is a token-exchange token naming one. */
  readonly actor?: ActorFact | undefined
  /**
   * Optional context attributes beyond the fixed ones (MCP: `mcpMethod`,
   * `arguments`, `argumentsDigest`; the agent session's `sessionDataClasses`
   * and `sessionUntrusted`; `callerClass`): JSON values in a fixed key order,
   * passed only to schemas that declare them.
   */
  readonly extra?: Readonly<Record<string, unknown>>
}

/** One question to Cedar: an action on a resource, asked with the request's facts. */
export interface CedarQuery {
  readonly action: ActionName
  readonly resource: { readonly type: string; readonly id: string }
}

export interface CedarCall {
  readonly principal: EntityUidJson
  readonly action: EntityUidJson
  readonly resource: EntityUidJson
  readonly context: Record<string, unknown>
  readonly entities: EntityJson[]
}

const cut = (s: string) => (s.length > MAX_HEADER_VALUE ? s.slice(0, MAX_HEADER_VALUE) : s)

/** A Cedar Long for a requested token budget: odd values are made conservative (huge), never dropped. */
export function toLong(n: number): number {
  if (Number.isNaN(n) || n === Infinity) return Number.MAX_SAFE_INTEGER
  if (n <= 0) return 0
  return Math.min(Math.floor(n), Number.MAX_SAFE_INTEGER)
}

function timeFacts(ms: number): { utcHour: number; dayOfWeek: number } {
  const d = new Date(ms)
  return { utcHour: d.getUTCHours(), dayOfWeek: d.getUTCDay() === 0 ? 7 : d.getUTCDay() }
}

function userFacts(u: DelegatedUser | undefined): RequestFacts['user'] {
  if (!u) return undefined
  const groups = [...new Set(u.groups)].sort().slice(0, MAX_USER_GROUPS)
  return { subject: u.subject, issuer: u.issuer, email: u.email ?? '', groups }
}

/**
 * The facts of a live request. Needs the caller's identity and the parsed
 * request; without them there is nothing to authorise, so the request is
 * refused (the identity and provider stages normally refuse such requests first).
 */
export function factsFromContext(ctx: RequestContext, opts: FactsOptions = {}, request?: ParsedRequest): RequestFacts {
  const id = ctx.out.caller?.workload
  const user = ctx.out.caller?.user
  const req = request ?? ctx.out.request
  if (!id) throw new GateError('MG_POLICY_ERROR', { internal: 'no caller identity to authorise' })
  if (!req) throw new GateError('MG_POLICY_ERROR', { internal: 'no parsed provider request to authorise' })
  const headers = opts.headers ?? DEFAULT_CONTEXT_HEADERS
  const header = (name: string) => cut((ctx.requestHeaders.get(name) ?? '').trim())
  const detectors = new Set<string>()
  for (const f of ctx.findings) if (f.direction === 'request') detectors.add(f.detector)
  return {
    principal: { spiffeId: id.spiffeId, trustDomain: id.trustDomain, namespace: id.namespace ?? '', serviceAccount: id.serviceAccount ?? '' },
    user: userFacts(user),
    provider: req.providerName,
    operation: req.operation,
    api: req.api,
    model: req.model,
    stream: req.stream,
    maxTokens: req.maxTokens === undefined ? undefined : toLong(req.maxTokens),
    tools: req.tools.map(toolFact),
    dataClasses: [...ctx.dataClasses].sort(),
    detectors: [...detectors].sort(),
    tenant: header(headers.tenant),
    purpose: header(headers.purpose),
    clientApp: header(headers.clientApp),
    region: opts.region ?? '',
    ...timeFacts(ctx.startedAt),
    ...estimateFacts(req, opts.estimate),
    ...(user?.actor !== undefined ? { actor: { subject: user.actor } } : {}),
    extra: { callerClass: callerClass(id.path, user) },
  }
}

function estimateFacts(req: ParsedRequest, estimate: FactsOptions['estimate']): Pick<RequestFacts, 'inputTokens' | 'estimatedTokens'> {
  if (!estimate) return {}
  const e = estimate(req)
  return { inputTokens: toLong(e.input), estimatedTokens: toLong(e.input + e.output) }
}

/**
 * The class of a caller: `agent` when a token-exchange token names an acting
 * agent, or the SPIFFE path follows the agent convention (a segment `agent`
 * or `agents`, or a Kubernetes service account named `agent-…`); `user`
 * when a delegated user's token comes without an actor; else `service`.
 * Policies may also class workloads through their teams in entities.json.
 */
export function callerClass(spiffePath: string, user: DelegatedUser | undefined): 'user' | 'service' | 'agent' {
  if (user?.actor !== undefined) return 'agent'
  const segments = spiffePath.split('/')
  const sa = segments.indexOf('sa')
  if (segments.includes('agent') || segments.includes('agents') || (sa !== -1 && segments[sa + 1]?.startsWith('agent-'))) return 'agent'
  return user ? 'user' : 'service'
}

/**
 * The request part of the decision-cache key: a SHA-256 digest of the facts
 * in a fixed order (RequestFacts are built with a fixed property order and
 * sorted sets), so the cache holds 64 bytes per request rather than the facts.
 */
export function factsKey(f: RequestFacts): string {
  return createHash('sha256').update(JSON.stringify(f)).digest('base64')
}

export function modelUid(f: RequestFacts): { type: string; id: string } {
  return { type: ENTITY.Model, id: `${f.provider}/${f.model}` }
}

/** The question for the model itself: the operation's action on `Model::"<provider>/<model>"`. */
export function modelQuery(f: RequestFacts): CedarQuery {
  return { action: OPERATION_ACTION[f.operation], resource: modelUid(f) }
}

/** One `call_tool` question per distinct tool the request declares. */
export function toolQueries(f: RequestFacts): CedarQuery[] {
  const names = [...new Set(f.tools.map((t) => t.name))]
  return names.map((name) => ({ action: 'call_tool', resource: { type: ENTITY.Tool, id: name } }))
}

export function unredactedQuery(dataClass: string): CedarQuery {
  return { action: 'send_unredacted', resource: { type: ENTITY.DataClass, id: dataClass } }
}

/**
 * Builds the Cedar call for one question: the principal, the context, and the
 * slice of entities the question can reach (the derived entities, plus their
 * declared ancestors from entities.json).
 */
export function buildCall(f: RequestFacts, q: CedarQuery, set: CompiledPolicySet): CedarCall {
  const entities = new EntitySlice(set)
  addPrincipal(entities, f)
  addModel(entities, f)
  addUser(entities, f)
  addResource(entities, f, q, set)
  return { principal: principalUid(f), action: { type: ACTION_TYPE, id: q.action }, resource: { type: q.resource.type, id: q.resource.id }, context: contextOf(f, set), entities: entities.list }
}

export function principalUid(f: RequestFacts): { type: string; id: string } {
  return { type: ENTITY.Workload, id: f.principal.spiffeId }
}

function userUid(u: NonNullable<RequestFacts['user']>): { type: string; id: string } {
  return { type: ENTITY.User, id: `${u.issuer}#${u.subject}` }
}

/** The Cedar context of a request: the same for every question the request asks. */
export function contextOf(f: RequestFacts, set?: CompiledPolicySet): Record<string, unknown> {
  const context: Record<string, unknown> = {
    api: f.api,
    model: { __entity: modelUid(f) },
    stream: f.stream,
    tools: f.tools.map((t) => t.name),
    dataClasses: f.dataClasses,
    detectors: f.detectors,
    tenant: f.tenant,
    purpose: f.purpose,
    clientApp: f.clientApp,
    region: f.region,
    utcHour: f.utcHour,
    dayOfWeek: f.dayOfWeek,
  }
  if (f.maxTokens !== undefined) context.maxTokens = f.maxTokens
  if (f.inputTokens !== undefined) context.inputTokens = f.inputTokens
  if (f.estimatedTokens !== undefined) context.estimatedTokens = f.estimatedTokens
  if (f.user) context.user = { __entity: userUid(f.user) }
  // Optional attributes only for schemas that declare them (a schema written before them keeps working).
  const declared = set ? declaredAttributes(set).context : undefined
  if (f.actor && (!declared || declared.has('actor'))) context.actor = { __entity: actorUid(f.actor) }
  if (f.extra) for (const [k, v] of Object.entries(f.extra)) if (v !== undefined && (!declared || declared.has(k))) context[k] = v
  return context
}

export function actorUid(a: ActorFact): { type: string; id: string } {
  return { type: ENTITY_AGENT, id: a.subject }
}

/** Entity types the schema may declare (older schemas do not): what modelgate passes them is derived. */
export const ENTITY_AGENT = `${NAMESPACE}::Agent`
export const ENTITY_MCP_RESOURCE = `${NAMESPACE}::McpResource`
export const ENTITY_MCP_PROMPT = `${NAMESPACE}::McpPrompt`

function addPrincipal(entities: EntitySlice, f: RequestFacts): void {
  entities.add(
    principalUid(f),
    { trustDomain: f.principal.trustDomain, namespace: f.principal.namespace, serviceAccount: f.principal.serviceAccount },
    f.principal.namespace ? [{ type: ENTITY.Namespace, id: f.principal.namespace }] : [],
  )
}

/** The provider (derived, with entities.json's attributes), then the model and its groups. */
function addModel(entities: EntitySlice, f: RequestFacts): void {
  const provider = { type: ENTITY.Provider, id: f.provider }
  entities.add(provider, { internal: false }, [])
  entities.add(modelUid(f), { name: f.model, provider: { __entity: provider } }, [provider])
}

function addUser(entities: EntitySlice, f: RequestFacts): void {
  if (!f.user) return
  entities.add(
    userUid(f.user),
    { subject: f.user.subject, issuer: f.user.issuer, email: f.user.email },
    f.user.groups.map((g) => ({ type: ENTITY.UserGroup, id: g })),
  )
  // The acting agent travels with the user whose token names it; declared parents (agent groups) come from entities.json.
  if (f.actor) entities.add(actorUid(f.actor), {}, [])
}

/** The question's resource when it is not the model: a tool (with its declared kind) or a data class. */
function addResource(entities: EntitySlice, f: RequestFacts, q: CedarQuery, set: CompiledPolicySet): void {
  if (q.resource.type === ENTITY.Tool) {
    const tool = toolEntity(f, q.resource.id, set)
    entities.add(q.resource, tool.attrs, tool.parents)
  } else if (q.resource.type === ENTITY_MCP_RESOURCE || q.resource.type === ENTITY_MCP_PROMPT) {
    // `mcp:<server>/<uri or prompt name>`, in its server.
    const mcp = parseMcpId(q.resource.id)
    const own = mcp?.tool ?? ''
    entities.add(q.resource, q.resource.type === ENTITY_MCP_RESOURCE ? { uri: own } : { name: own }, mcp ? [{ type: ENTITY.ToolServer, id: mcpServerId(mcp.server) }] : [])
  } else if (q.resource.type !== ENTITY.Model) entities.add(q.resource, {}, [])
}

/** What a `Tool` entity is built from besides its id: the declared kind and (MCP) the server's host. */
export function toolEntityFacts(f: RequestFacts, id: string): readonly [kind: string, host: string, hints: string] {
  const declared = f.tools.find((t) => t.name === id)
  const mcp = parseMcpId(id)
  const host = declared?.host ?? (mcp ? f.tools.find((t) => t.name === mcpServerId(mcp.server))?.host : undefined)
  return [declared?.type ?? '', host ?? '', declared?.hints ? JSON.stringify(declared.hints) : '']
}

/**
 * The `Tool` entity for a `call_tool` question: `kind` is the declared type.
 * An MCP server (`mcp:<server>`) and each of its tools (`mcp:<server>/<tool>`,
 * also one a response calls without the request listing it) are in
 * `ToolServer::"mcp:<server>"`, and carry the server URL's `host` and the
 * tool's own name (`mcpTool`) when the schema declares those attributes.
 */
function toolEntity(f: RequestFacts, id: string, set: CompiledPolicySet): { attrs: Record<string, unknown>; parents: { type: string; id: string }[] } {
  const declared = f.tools.find((t) => t.name === id)
  const mcp = parseMcpId(id)
  const attrs: Record<string, unknown> = { kind: declared?.type ?? (mcp ? MCP_KIND : 'function') }
  if (!mcp) return { attrs, parents: [] }
  const optional = toolAttributes(set)
  const host = declared?.host ?? f.tools.find((t) => t.name === mcpServerId(mcp.server))?.host
  if (host !== undefined && optional.has('host')) attrs.host = host
  if (mcp.tool !== undefined && optional.has('mcpTool')) attrs.mcpTool = mcp.tool
  const hints = declared?.hints ?? (mcp.tool !== undefined ? DEFAULT_HINTS : undefined)
  if (hints) for (const h of HINT_NAMES) if (hints[h] !== undefined && optional.has(h)) attrs[h] = hints[h]
  return { attrs, parents: [{ type: ENTITY.ToolServer, id: mcpServerId(mcp.server) }] }
}

interface DeclaredAttributes {
  readonly tool: ReadonlySet<string>
  readonly context: ReadonlySet<string>
  /** Entity types and actions the schema declares. */
  readonly types: ReadonlySet<string>
  readonly actions: ReadonlySet<string>
}

const DECLARED = new WeakMap<CompiledPolicySet, DeclaredAttributes>()

function toolAttributes(set: CompiledPolicySet): ReadonlySet<string> {
  return declaredAttributes(set).tool
}

/**
 * What a policy set's schema declares, read once per set: the optional
 * attributes of `Tool` (`host`, `mcpTool`, the MCP hints) and of the request
 * context, the entity types and the actions. Optional ones are passed only to
 * schemas that have them, so a schema written before them keeps working.
 */
export function declaredAttributes(set: CompiledPolicySet): DeclaredAttributes {
  let d = DECLARED.get(set)
  if (d) return d
  const tool = new Set<string>()
  const context = new Set<string>()
  const types = new Set<string>()
  const actions = new Set<string>()
  const json = cedar.schemaToJson(set.schemaText)
  if (json.type === 'success') {
    const ns = json.json[NAMESPACE]
    const t = ns?.entityTypes.Tool as { shape?: { attributes?: Record<string, unknown> } } | undefined
    for (const name of Object.keys(t?.shape?.attributes ?? {})) tool.add(name)
    const rc = (ns?.commonTypes as Record<string, { attributes?: Record<string, unknown> }> | undefined)?.RequestContext
    for (const name of Object.keys(rc?.attributes ?? {})) context.add(name)
    for (const name of Object.keys(ns?.entityTypes ?? {})) types.add(`${NAMESPACE}::${name}`)
    for (const name of Object.keys(ns?.actions ?? {})) actions.add(name)
  }
  d = { tool, context, types, actions }
  DECLARED.set(set, d)
  return d
}

/** Collects a request's entities: derived ones merged with entities.json, and every declared ancestor. */
class EntitySlice {
  readonly list: EntityJson[] = []
  /** `uidKey` of each entity in `list`, in the same order. */
  readonly keys: string[] = []
  readonly #seen = new Set<string>()
  readonly #set: CompiledPolicySet

  constructor(set: CompiledPolicySet) {
    this.#set = set
  }

  /** A derived entity: derived attributes win for derived types; declared attributes (e.g. Provider.internal) fill in otherwise. */
  add(uid: { type: string; id: string }, attrs: Record<string, unknown>, parents: { type: string; id: string }[]): void {
    const key = uidKey(uid)
    if (this.#seen.has(key)) return
    const declared = this.#set.entities.byKey.get(key)
    const allParents = new Map<string, EntityUidJson>()
    for (const p of parents) allParents.set(uidKey(p), p)
    for (const p of declared?.parents ?? []) allParents.set(uidKey(plainUid(p)), plainUid(p))
    const merged = uid.type === ENTITY.Provider ? { ...attrs, ...(declared?.attrs ?? {}) } : attrs
    this.#push(key, { uid, attrs: merged as EntityJson['attrs'], parents: [...allParents.values()] })
    for (const p of allParents.values()) this.#addAncestor(uidKey(plainUid(p)), plainUid(p))
  }

  #push(key: string, e: EntityJson): void {
    this.#seen.add(key)
    this.keys.push(key)
    this.list.push(e)
  }

  /** A parent and its declared ancestors; parents nobody declared still appear, without attributes. */
  #addAncestor(key: string, uid: { type: string; id: string }): void {
    const { byKey, ancestors } = this.#set.entities
    for (const k of [key, ...(ancestors.get(key) ?? [])]) {
      if (this.#seen.has(k)) continue
      this.#push(k, byKey.get(k) ?? { uid: k === key ? uid : uidFromKey(k), attrs: {}, parents: [] })
    }
  }
}

/**
 * A group of request entities that travel together: one derived entity (the
 * principal, the model with its provider, the user, the tool or data class)
 * and every ancestor it has, as `buildCall` would put them in the request.
 */
export interface EntityGroup {
  readonly entities: readonly EntityJson[]
  /** `uidKey` of each entity, in the same order. */
  readonly keys: readonly string[]
  /** The keys under which a policy scope can name the group's main entity (see `scopeLookupKeys`). */
  readonly scope: readonly string[]
}

/** Most entity groups remembered per kind; beyond it the memo starts over. */
const MAX_GROUPS = 20_000

/**
 * Entity groups of one policy set, remembered by the facts that make them
 * (SPIFFE ID, provider and model, tool, data class): entities.json does not
 * change while the set is active.
 */
export class EntityGroups {
  readonly #set: CompiledPolicySet
  readonly #principals = new Map<string, EntityGroup>()
  readonly #models = new Map<string, EntityGroup>()
  readonly #resources = new Map<string, EntityGroup>()

  constructor(set: CompiledPolicySet) {
    this.#set = set
  }

  principal(f: RequestFacts): EntityGroup {
    const p = f.principal
    const key = JSON.stringify([p.spiffeId, p.trustDomain, p.namespace, p.serviceAccount])
    return remember(this.#principals, key, () => this.#group((s) => addPrincipal(s, f), principalUid(f)))
  }

  model(f: RequestFacts): EntityGroup {
    return remember(this.#models, JSON.stringify([f.provider, f.model]), () => this.#group((s) => addModel(s, f), modelUid(f)))
  }

  /** The question's resource: the model for model actions, else the tool or data class. */
  resource(f: RequestFacts, q: CedarQuery): EntityGroup {
    if (q.resource.type === ENTITY.Model) return this.model(f)
    // A tool's entity depends on its declared kind and (MCP) its server's host as well as its id.
    const tool = q.resource.type === ENTITY.Tool ? toolEntity(f, q.resource.id, this.#set) : undefined
    return remember(this.#resources, JSON.stringify([q.resource.type, q.resource.id, tool?.attrs ?? null]), () => this.#group((s) => addResource(s, f, q, this.#set), q.resource))
  }

  /** Not remembered: users are many and their groups come with each token. */
  user(f: RequestFacts): EntityGroup | undefined {
    if (!f.user) return undefined
    const user = f.user
    return this.#group((s) => addUser(s, f), userUid(user))
  }

  #group(fill: (s: EntitySlice) => void, main: { type: string; id: string }): EntityGroup {
    const s = new EntitySlice(this.#set)
    fill(s)
    const own = uidKey(main)
    return { entities: s.list, keys: s.keys, scope: scopeLookupKeys(main, s.keys.filter((k) => k !== own)) }
  }
}

function remember<T>(memo: Map<string, T>, key: string, make: () => T): T {
  let v = memo.get(key)
  if (v === undefined) {
    if (memo.size >= MAX_GROUPS) memo.clear()
    v = make()
    memo.set(key, v)
  }
  return v
}

function uidFromKey(key: string): { type: string; id: string } {
  const i = key.indexOf('::"')
  return { type: key.slice(0, i), id: JSON.parse(key.slice(i + 2)) as string }
}

// ---- request descriptions (policy tests and explain) ---------------------------

const OPERATIONS: readonly Operation[] = ['chat', 'completion', 'responses', 'messages', 'embedding']
const API_FOR: Readonly<Record<Operation, string>> = {
  chat: 'openai.chat_completions',
  completion: 'openai.completions',
  responses: 'openai.responses',
  messages: 'anthropic.messages',
  embedding: 'openai.embeddings',
  mcp: 'mcp.streamable_http',
}

/**
 * A request as a policy author writes it: who asks for which model, with what.
 * Only `principal` and `model` are required.
 */
export interface RequestDescription {
  /** The caller's SPIFFE ID. */
  principal: string
  /** Provider name from the route (default "openai"). */
  provider?: string
  model: string
  /** chat (default), completion, responses, messages or embedding. */
  operation?: Operation
  /** API shape for context.api (default: the usual one for the operation). */
  api?: string
  stream?: boolean
  maxTokens?: number
  /** Tools the request declares: names (functions), or {name, type, host?} (host: an MCP server's). */
  tools?: (string | { name: string; type?: string; host?: string })[]
  dataClasses?: string[]
  detectors?: string[]
  tenant?: string
  purpose?: string
  clientApp?: string
  region?: string
  /** When the request arrives (ISO 8601); default now. */
  time?: string
  user?: { subject: string; issuer: string; email?: string; groups?: string[] }
  /** Ask Action::"send_unredacted" for this data class instead of the request's own actions. */
  unredacted?: string
  /** An MCP request instead of a model request: the server (catalog name), method, and for tools/call, prompts/get and resources/read the name or URI. */
  mcp?: { server: string; method: string; name?: string; arguments?: Record<string, unknown>; host?: string; hints?: ToolHints }
  /** The agent acting for the user (`act.sub` of a token-exchange token). */
  actor?: string
  /** context.callerClass: "user", "service" or "agent" (default: derived from the principal and actor). */
  callerClass?: string
  /** The agent session: data classes that entered it, and whether untrusted content did. */
  session?: { dataClasses?: string[]; untrusted?: boolean }
  /** Ask Action::"approve" on this tool (e.g. "mcp:tools/delete_record"): the principal is the approver. */
  approve?: string
}

export class DescriptionError extends Error {
  readonly problems: readonly string[]
  constructor(problems: readonly string[]) {
    super(problems.join('; '))
    this.name = 'DescriptionError'
    this.problems = problems
  }
}

const DESCRIPTION_KEYS = new Set(['principal', 'provider', 'model', 'operation', 'api', 'stream', 'maxTokens', 'tools', 'dataClasses', 'detectors', 'tenant', 'purpose', 'clientApp', 'region', 'time', 'user', 'unredacted', 'mcp', 'actor', 'callerClass', 'session', 'approve'])

/** Checks a request description and turns it into facts. Throws DescriptionError listing every problem. */
export function factsFromDescription(input: unknown, opts: { now?: number } = {}): { facts: RequestFacts; unredacted: string | undefined; query?: CedarQuery } {
  const problems: string[] = []
  if (!input || typeof input !== 'object' || Array.isArray(input)) throw new DescriptionError(['a request description must be a JSON object'])
  const d = input as Record<string, unknown>
  for (const k of Object.keys(d)) if (!DESCRIPTION_KEYS.has(k)) problems.push(`unknown field "${k}" (known: ${[...DESCRIPTION_KEYS].join(', ')})`)
  const str = (k: string, required = false): string | undefined => {
    const v = d[k]
    if (v === undefined) {
      if (required) problems.push(`"${k}" is required`)
      return undefined
    }
    if (typeof v !== 'string' || (required && v === '')) {
      problems.push(`"${k}" must be a ${required ? 'non-empty ' : ''}string`)
      return undefined
    }
    return v
  }
  const strings = (k: string): string[] => {
    const v = d[k]
    if (v === undefined) return []
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      problems.push(`"${k}" must be an array of strings`)
      return []
    }
    return v as string[]
  }
  const principalText = str('principal', true)
  let principal: RequestFacts['principal'] | undefined
  if (principalText !== undefined) {
    const p = parseSpiffeId(principalText)
    if (!p.ok) problems.push(`"principal" is not a valid SPIFFE ID: ${p.reason}`)
    else principal = { spiffeId: p.value.id, trustDomain: p.value.trustDomain, ...kubernetesParts(p.value.segments) }
  }
  const mcpIn = d.mcp as Record<string, unknown> | undefined
  const model = mcpIn !== undefined || d.approve !== undefined ? (str('model') ?? '') : str('model', true)
  const provider = str('provider') ?? 'openai'
  const operation = (str('operation') ?? 'chat') as Operation
  if (!OPERATIONS.includes(operation)) problems.push(`"operation" must be one of ${OPERATIONS.join(', ')}`)
  const api = str('api') ?? API_FOR[operation] ?? ''
  if (d.stream !== undefined && typeof d.stream !== 'boolean') problems.push('"stream" must be true or false')
  let maxTokens: number | undefined
  if (d.maxTokens !== undefined) {
    if (typeof d.maxTokens !== 'number' || !Number.isInteger(d.maxTokens) || d.maxTokens < 0) problems.push('"maxTokens" must be a non-negative integer')
    else maxTokens = toLong(d.maxTokens)
  }
  const tools: ToolFact[] = []
  if (d.tools !== undefined) {
    if (!Array.isArray(d.tools)) problems.push('"tools" must be an array')
    else
      for (const t of d.tools) {
        if (typeof t === 'string' && t) tools.push({ name: t, type: 'function' })
        else if (t && typeof t === 'object' && typeof (t as { name?: unknown }).name === 'string') {
          const o = t as { name: string; type?: unknown; host?: unknown }
          if (o.host !== undefined && typeof o.host !== 'string') problems.push('"tools" entries: "host" must be a string')
          const type = typeof o.type === 'string' ? o.type : 'function'
          tools.push(typeof o.host === 'string' ? { name: o.name, type, host: o.host } : { name: o.name, type })
        } else problems.push('"tools" entries must be names or {"name", "type", "host"}')
      }
  }
  let user: RequestFacts['user']
  if (d.user !== undefined) {
    const u = d.user as Record<string, unknown>
    if (!u || typeof u !== 'object' || typeof u.subject !== 'string' || typeof u.issuer !== 'string') problems.push('"user" must be {"subject", "issuer", "email"?, "groups"?}')
    else if (u.groups !== undefined && (!Array.isArray(u.groups) || !u.groups.every((g) => typeof g === 'string'))) problems.push('"user.groups" must be an array of strings')
    else if (u.email !== undefined && typeof u.email !== 'string') problems.push('"user.email" must be a string')
    else user = userFacts({ subject: u.subject, issuer: u.issuer, email: u.email as string | undefined, groups: (u.groups as string[] | undefined) ?? [] })
  }
  let when = opts.now ?? Date.now()
  const time = str('time')
  if (time !== undefined) {
    const t = Date.parse(time)
    if (Number.isNaN(t)) problems.push('"time" must be an ISO 8601 date-time, e.g. 2025-03-04T10:00:00Z')
    else when = t
  }
  const unredacted = str('unredacted')
  const dataClasses = [...new Set(strings('dataClasses'))].sort()
  const detectors = [...new Set(strings('detectors'))].sort()
  const tenant = str('tenant') ?? ''
  const purpose = str('purpose') ?? ''
  const clientApp = str('clientApp') ?? ''
  const region = str('region') ?? ''
  const actorText = str('actor')
  const classText = str('callerClass')
  const sessionIn = d.session as { dataClasses?: unknown; untrusted?: unknown } | undefined
  if (sessionIn !== undefined && (typeof sessionIn !== 'object' || sessionIn === null || (sessionIn.dataClasses !== undefined && (!Array.isArray(sessionIn.dataClasses) || !sessionIn.dataClasses.every((x) => typeof x === 'string'))) || (sessionIn.untrusted !== undefined && typeof sessionIn.untrusted !== 'boolean'))) {
    problems.push('"session" must be {"dataClasses"?: [strings], "untrusted"?: boolean}')
  }
  let query: CedarQuery | undefined
  const extra: Record<string, unknown> = {}
  const approve = str('approve')
  if (mcpIn !== undefined) {
    if (typeof mcpIn !== 'object' || mcpIn === null || typeof mcpIn.server !== 'string' || typeof mcpIn.method !== 'string') problems.push('"mcp" must be {"server", "method", "name"?, "arguments"?, "host"?, "hints"?}')
    else {
      const server = mcpIn.server
      const method = mcpIn.method
      const name = typeof mcpIn.name === 'string' ? mcpIn.name : undefined
      const id = `mcp:${server}/${name ?? ''}`
      const hints = (mcpIn.hints ?? undefined) as ToolHints | undefined
      if (method === 'tools/call') {
        tools.length = 0
        tools.push({ name: id, type: MCP_KIND, ...(typeof mcpIn.host === 'string' ? { host: mcpIn.host } : {}), ...(hints ? { hints } : {}) })
        query = { action: 'call_tool', resource: { type: ENTITY.Tool, id } }
      } else if (method === 'resources/read') query = { action: 'read_resource', resource: { type: ENTITY_MCP_RESOURCE, id } }
      else if (method === 'prompts/get') query = { action: 'get_prompt', resource: { type: ENTITY_MCP_PROMPT, id } }
      if ((method === 'tools/call' || method === 'prompts/get' || method === 'resources/read') && name === undefined) problems.push(`"mcp.name" is required for ${method}`)
      extra.mcpMethod = method
      if (method === 'tools/call' || method === 'prompts/get') {
        const text = canonicalJson(mcpIn.arguments ?? {})
        extra.arguments = text
        extra.argumentsDigest = sha256Hex(text)
      }
    }
  } else if (approve !== undefined) query = { action: 'approve', resource: { type: ENTITY.Tool, id: approve } }
  if (sessionIn && typeof sessionIn === 'object') {
    extra.sessionDataClasses = [...new Set((sessionIn.dataClasses as string[] | undefined) ?? [])].sort()
    extra.sessionUntrusted = sessionIn.untrusted === true
  }
  if (problems.length || !principal || model === undefined) throw new DescriptionError(problems)
  const actor = actorText !== undefined ? { subject: actorText } : undefined
  const klass = classText ?? (actor ? 'agent' : callerClass(principal.spiffeId.replace(/^spiffe:\/\/[^/]+/, ''), user ? { subject: user.subject, issuer: user.issuer, email: user.email, groups: user.groups } : undefined))
  return {
    ...(query ? { query } : {}),
    facts: {
      principal,
      user,
      provider,
      operation,
      api,
      model,
      stream: d.stream === true,
      maxTokens,
      tools,
      dataClasses,
      detectors,
      tenant: cut(tenant),
      purpose: cut(purpose),
      clientApp: cut(clientApp),
      region,
      ...timeFacts(when),
      ...(actor ? { actor } : {}),
      extra: { callerClass: klass, ...extra },
    },
    unredacted,
  }
}
