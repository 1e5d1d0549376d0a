/**
 * What a policy can observe of a request, read from its JSON form (Cedar's
 * EST, `policyToJson`) once per load:
 *
 * - its scope, as index keys: which principals, actions and resources it can
 *   apply to at all;
 * - a guard: a condition Cedar evaluates first and that can never fail, such
 *   as `context.dataClasses.contains("secret")` — when it is false for a
 *   request, the policy is neither satisfied nor in error, so it cannot
 *   affect the answer;
 * - which facts its conditions read: context attributes by name, and which
 *   request entities (principal, resource, model, user) they look into.
 *
 * The engine evaluates a request against only the policies whose scope and
 * guard can match it (a slice), with the scopes removed (they are known to
 * hold for every request routed to that slice), and keys its decision cache on
 * the facts that slice reads. Anything this analysis does not recognise is
 * treated as reading everything.
 */
import type { Expr, PolicyJson } from '@cedar-policy/cedar-wasm/nodejs'
import { plainUid, uidKey } from './load.ts'
import { ENTITY } from './names.ts'

/** A scope constraint as an index key: `*`, `=<uid>`, `<<uid>` (in), `:<type>` (is), `:<type><<uid>` (is … in). */
export type ScopeKey = string

export interface PolicyScope {
  readonly principal: ScopeKey
  /** Action uids (`uidKey`) the policy names; undefined for an unconstrained action. */
  readonly action: { readonly op: '==' | 'in'; readonly uids: readonly string[] } | undefined
  readonly resource: ScopeKey
}

/**
 * A condition on one request fact that Cedar evaluates before anything else in
 * the policy and that cannot raise an error. The policy can only be satisfied
 * (or fail) when at least one alternative holds.
 */
export interface GuardAlternative {
  /** A set attribute containing a value, a string attribute equal to one, or an optional attribute being present. */
  readonly kind: 'contains' | 'equals' | 'has'
  readonly attr: string
  readonly value: string
}

/** How a policy's conditions use the delegated user (`context.user`). */
export interface UserReads {
  /** Whether there is a user (`context has user`, `context.user is …`). */
  presence: boolean
  /** Which user: `==`, `subject`, `issuer`, membership tested against a User. */
  identity: boolean
  email: boolean
  /** Group memberships (`context.user in ModelGate::UserGroup::"…"`). */
  groups: boolean
  /** The User entity and its groups must be in the request's entities. */
  entity: boolean
}

/** What a set of conditions reads of a request beyond the action. */
export interface Reads {
  /** Context attributes read by name; 'all' when the context record is used as a whole. */
  context: Set<string> | 'all'
  /** The principal's uid (key on the SPIFFE ID) / its entity and ancestors. */
  principalUid: boolean
  principalEntity: boolean
  resourceUid: boolean
  resourceEntity: boolean
  /** `context.model`: its uid / the model entity, its provider and groups. */
  modelUid: boolean
  modelEntity: boolean
  user: UserReads
  /** Something this analysis cannot follow (an entity reached other than from the request's own entities): send every request entity and key on every request fact. */
  full: boolean
}

export interface PolicyAnalysis {
  readonly scope: PolicyScope
  /** Alternatives of the guard, when the policy has one. */
  readonly guard: readonly GuardAlternative[] | undefined
  /**
   * The policy is satisfied whenever its scope and guard hold, and cannot
   * fail: it has no conditions, or a single `when` that is its guard.
   */
  readonly decidedByIndex: boolean
  readonly reads: Reads
}

/** Context attributes modelgate always sends, by shape: a guard may only test these (reading them never fails). */
const SET_ATTRS: ReadonlySet<string> = new Set(['dataClasses', 'detectors', 'tools'])
const STRING_ATTRS: ReadonlySet<string> = new Set(['api', 'tenant', 'purpose', 'clientApp', 'region'])
const OPTIONAL_ATTRS: ReadonlySet<string> = new Set(['user', 'maxTokens'])

export function emptyReads(): Reads {
  return {
    context: new Set(),
    principalUid: false,
    principalEntity: false,
    resourceUid: false,
    resourceEntity: false,
    modelUid: false,
    modelEntity: false,
    user: { presence: false, identity: false, email: false, groups: false, entity: false },
    full: false,
  }
}

/** Adds `b` into `a`. */
export function mergeReads(a: Reads, b: Reads): void {
  if (a.context !== 'all') {
    if (b.context === 'all') a.context = 'all'
    else for (const c of b.context) a.context.add(c)
  }
  a.principalUid ||= b.principalUid
  a.principalEntity ||= b.principalEntity
  a.resourceUid ||= b.resourceUid
  a.resourceEntity ||= b.resourceEntity
  a.modelUid ||= b.modelUid
  a.modelEntity ||= b.modelEntity
  a.user.presence ||= b.user.presence
  a.user.identity ||= b.user.identity
  a.user.email ||= b.user.email
  a.user.groups ||= b.user.groups
  a.user.entity ||= b.user.entity
  a.full ||= b.full
}

export function analysePolicy(p: PolicyJson): PolicyAnalysis {
  const reads = emptyReads()
  for (const c of p.conditions) walk(c.body, 'value', reads)
  const first = p.conditions[0]
  const guard = first && first.kind === 'when' ? guardOf(leftmostConjunct(first.body)) : undefined
  const decidedByIndex = p.conditions.length === 0 || (p.conditions.length === 1 && first!.kind === 'when' && guardOf(first!.body) !== undefined)
  return {
    scope: { principal: scopeKey(p.principal), action: actionScope(p.action), resource: scopeKey(p.resource) },
    guard,
    decidedByIndex,
    reads,
  }
}

/** The policy with an unconstrained scope and no annotations: what a slice evaluates. */
export function withoutScope(p: PolicyJson): PolicyJson {
  return { effect: p.effect, principal: { op: 'All' }, action: { op: 'All' }, resource: { op: 'All' }, conditions: p.conditions }
}

function scopeKey(c: PolicyJson['principal']): ScopeKey {
  switch (c.op) {
    case 'All':
      return '*'
    case '==':
      if (!('entity' in c)) throw new Error('template slots are not supported')
      return '=' + uidKey(plainUid(c.entity))
    case 'in':
      if (!('entity' in c)) throw new Error('template slots are not supported')
      return '<' + uidKey(plainUid(c.entity))
    case 'is':
      if (c.in && !('entity' in c.in)) throw new Error('template slots are not supported')
      return ':' + c.entity_type + (c.in && 'entity' in c.in ? '<' + uidKey(plainUid(c.in.entity)) : '')
  }
}

function actionScope(c: PolicyJson['action']): PolicyScope['action'] {
  if (c.op === 'All') return undefined
  if (c.op === '==') {
    if (!('entity' in c)) throw new Error('template slots are not supported')
    return { op: '==', uids: [uidKey(plainUid(c.entity))] }
  }
  return { op: 'in', uids: ('entities' in c ? c.entities : [c.entity]).map((u) => uidKey(plainUid(u))) }
}

/** The lookup keys a request entity matches: its own uid, its ancestors, its type. */
export function scopeLookupKeys(uid: { type: string; id: string }, ancestors: readonly string[]): string[] {
  const own = uidKey(uid)
  const keys = ['*', '=' + own, '<' + own, ':' + uid.type, ':' + uid.type + '<' + own]
  for (const a of ancestors) keys.push('<' + a, ':' + uid.type + '<' + a)
  return keys
}

// ---- guards ------------------------------------------------------------------

function leftmostConjunct(e: Expr): Expr {
  let x = e
  for (let and = op(x, '&&'); and; and = op(x, '&&')) x = and.left
  return x
}

/** The alternatives of a guard, or undefined when `e` is not one. */
function guardOf(e: Expr): GuardAlternative[] | undefined {
  const or = op(e, '||')
  if (or) {
    const l = guardOf(or.left)
    const r = l && guardOf(or.right)
    return l && r ? [...l, ...r] : undefined
  }
  const contains = op(e, 'contains')
  if (contains) {
    const attr = contextAttr(contains.left)
    const v = stringValue(contains.right)
    return attr !== undefined && SET_ATTRS.has(attr) && v !== undefined ? [{ kind: 'contains', attr, value: v }] : undefined
  }
  const any = op(e, 'containsAny')
  if (any) {
    const attr = contextAttr(any.left)
    const set = op(any.right, 'Set')
    if (attr === undefined || !SET_ATTRS.has(attr) || !set) return undefined
    const values = set.map(stringValue)
    if (values.some((v) => v === undefined)) return undefined
    return (values as string[]).map((value) => ({ kind: 'contains', attr, value }))
  }
  const eq = op(e, '==')
  if (eq) {
    const [attr, v] = contextAttr(eq.left) !== undefined ? [contextAttr(eq.left), stringValue(eq.right)] : [contextAttr(eq.right), stringValue(eq.left)]
    return attr !== undefined && STRING_ATTRS.has(attr) && v !== undefined ? [{ kind: 'equals', attr, value: v }] : undefined
  }
  const has = op(e, 'has')
  if (has && op(has.left, 'Var') === 'context' && typeof has.attr === 'string' && OPTIONAL_ATTRS.has(has.attr)) return [{ kind: 'has', attr: has.attr, value: '' }]
  return undefined
}

/** `context.<attr>` → attr. */
function contextAttr(e: Expr): string | undefined {
  const dot = op(e, '.')
  return dot && op(dot.left, 'Var') === 'context' ? dot.attr : undefined
}

function stringValue(e: Expr): string | undefined {
  const v = op(e, 'Value')
  return typeof v === 'string' ? v : undefined
}

// ---- reads -------------------------------------------------------------------

type Root = 'principal' | 'resource' | 'model' | 'user'

/** Where an expression sits: a value flowing anywhere, an operand of `==`/`!=`, the left of `is`, either side of `in`, or the entity an attribute is read from. */
type Position = 'value' | 'eq' | 'is' | 'inRight' | { readonly inLeft: Expr } | { readonly deref: string }

function walk(e: Expr, pos: Position, r: Reads): void {
  const dot = op(e, '.')
  const has = op(e, 'has')
  const v = op(e, 'Var')
  if (typeof pos === 'object' && v === undefined && !dot && !has) {
    // An entity looked into (or tested for membership) that is not one of the
    // request's own: a literal, a computed value. Only the whole entity slice
    // answers that as the whole set would.
    r.full = true
    pos = 'value'
  }
  if (op(e, 'Value') !== undefined || op(e, 'Slot') !== undefined) return
  if (v !== undefined) return useVar(v, pos, r)
  if (dot) return readAttr(dot.left, [dot.attr], false, pos, r)
  if (has) return readAttr(has.left, Array.isArray(has.attr) ? has.attr : [has.attr], true, pos, r)
  const inOp = op(e, 'in')
  if (inOp) {
    walk(inOp.left, { inLeft: inOp.right }, r)
    walk(inOp.right, 'inRight', r)
    return
  }
  const is = op(e, 'is')
  if (is) {
    if (is.in !== undefined) {
      walk(is.left, { inLeft: is.in }, r)
      walk(is.in, 'inRight', r)
    } else walk(is.left, 'is', r)
    return
  }
  const eq = op(e, '==') ?? op(e, '!=')
  if (eq) {
    walk(eq.left, 'eq', r)
    walk(eq.right, 'eq', r)
    return
  }
  const set = op(e, 'Set')
  if (set) {
    // The right of `in` may be a set of entities; each element is compared, not looked into.
    for (const x of set) walk(x, pos === 'inRight' ? 'inRight' : 'value', r)
    return
  }
  const tag = op(e, 'getTag') ?? op(e, 'hasTag')
  if (tag) {
    walk(tag.left, { deref: '' }, r)
    walk(tag.right, 'value', r)
    return
  }
  const args = operands(e)
  if (args === undefined) return readEverything(r)
  // Arithmetic, comparisons, boolean operators, like, if-then-else, records,
  // set methods, extension functions: their operands are values.
  for (const child of args) walk(child, 'value', r)
}

/** `left.attr…` or `left has attr…`, where the result sits at `pos`. */
function readAttr(left: Expr, attrs: readonly string[], isHas: boolean, pos: Position, r: Reads): void {
  if (op(left, 'Var') === 'context') {
    const name = attrs[0]!
    if (r.context !== 'all') r.context.add(name)
    const rest = attrs.length > 1 ? ({ deref: attrs[1]! } as const) : undefined
    if (name === 'user') {
      if (rest) useRoot('user', rest, r)
      else if (isHas) r.user.presence = true
      else useRoot('user', pos, r)
    } else if (name === 'model') {
      if (rest) useRoot('model', rest, r)
      else if (!isHas) useRoot('model', pos, r)
    } else if (name === 'actor') {
      // The acting agent travels with the user's entities: send them all.
      if (!isHas) r.full = true
    } else if (rest || (!isHas && typeof pos === 'object')) r.full = true
    return
  }
  // The attribute's value is itself looked into: only a model's provider is
  // sure to be among the request's entities (it is the model's parent).
  if (!isHas && typeof pos === 'object' && !(attrs.length === 1 && attrs[0] === 'provider' && isModelish(left))) r.full = true
  // Reading an attribute of an entity: the entity itself must be present.
  walk(left, { deref: attrs[0]! }, r)
}

/** `resource` or `context.model`: a model whose provider travels with it. */
function isModelish(e: Expr): boolean {
  return op(e, 'Var') === 'resource' || contextAttr(e) === 'model'
}

function useVar(name: string, pos: Position, r: Reads): void {
  switch (name) {
    case 'principal':
    case 'resource':
      return useRoot(name, pos, r)
    case 'context':
      // The context as a whole (compared, put in a set, …): every attribute matters.
      r.context = 'all'
      r.user.presence = r.user.identity = r.user.email = r.user.groups = true
      r.modelUid = true
      if (typeof pos === 'object') r.full = true
      return
    default:
      // `action`: its uid is always part of the key and its groups come from the schema.
      if (typeof pos === 'object' && 'deref' in pos) r.full = true
  }
}

function useRoot(root: Root, pos: Position, r: Reads): void {
  const deep = pos === 'value' || typeof pos === 'object'
  if (root === 'user') {
    const u = r.user
    u.presence = true
    if (pos === 'eq' || pos === 'inRight') u.identity = true
    else if (pos === 'is') {
      // The type is always User: whether there is one is all that matters.
    } else if (typeof pos === 'object' && 'inLeft' in pos) {
      u.groups = u.entity = true
      // Membership of a User literal (or of something computed) also depends on which user it is.
      if (!onlyLiteralsOf(pos.inLeft, (t) => t !== ENTITY.User)) u.identity = true
    } else if (typeof pos === 'object' && 'deref' in pos) {
      u.entity = true
      if (pos.deref === 'email') u.email = true
      else if (pos.deref === 'subject' || pos.deref === 'issuer') u.identity = true
      else u.identity = u.email = u.groups = true
    } else u.identity = u.email = u.groups = u.entity = true
    return
  }
  if (root === 'principal') {
    r.principalUid = true
    if (deep) r.principalEntity = true
  } else if (root === 'resource') {
    r.resourceUid = true
    if (deep) r.resourceEntity = true
  } else {
    r.modelUid = true
    if (deep) r.modelEntity = true
  }
}

/** Everything: an expression this analysis does not know. */
function readEverything(r: Reads): void {
  r.context = 'all'
  r.principalUid = r.principalEntity = r.resourceUid = r.resourceEntity = r.modelUid = r.modelEntity = true
  r.user = { presence: true, identity: true, email: true, groups: true, entity: true }
  r.full = true
}

/** True when `e` is a literal entity or a set of them whose types all satisfy `ok`. */
function onlyLiteralsOf(e: Expr, ok: (type: string) => boolean): boolean {
  const v = op(e, 'Value') as { __entity?: { type: string } } | null | undefined
  if (v !== undefined) return !!v && typeof v === 'object' && !!v.__entity && ok(v.__entity.type)
  const set = op(e, 'Set')
  return !!set && set.every((x) => onlyLiteralsOf(x, ok))
}

/** The operands of an expression node not handled above; undefined for a shape this analysis does not know. */
function operands(e: Expr): Expr[] | undefined {
  const entries = Object.entries(e as Record<string, unknown>)
  if (entries.length !== 1) return undefined
  const [name, v] = entries[0]!
  if (name === 'Record') return Object.values(v as Record<string, Expr>)
  if (name === 'if-then-else') {
    const n = v as { if: Expr; then: Expr; else: Expr }
    return [n.if, n.then, n.else]
  }
  if (name === 'like') return [(v as { left: Expr }).left]
  if (name === '!' || name === 'neg' || name === 'isEmpty') return [(v as { arg: Expr }).arg]
  if (BINARY.has(name)) {
    const n = v as { left: Expr; right: Expr }
    return [n.left, n.right]
  }
  // An extension function call: its arguments.
  if (Array.isArray(v)) return v as Expr[]
  return undefined
}

const BINARY = new Set(['&&', '||', '<', '<=', '>', '>=', '+', '-', '*', 'contains', 'containsAll', 'containsAny'])

/** The EST's operator payloads, by operator. */
interface Ops {
  Value: unknown
  Var: string
  Slot: string
  '&&': { left: Expr; right: Expr }
  '||': { left: Expr; right: Expr }
  '==': { left: Expr; right: Expr }
  '!=': { left: Expr; right: Expr }
  in: { left: Expr; right: Expr }
  contains: { left: Expr; right: Expr }
  containsAny: { left: Expr; right: Expr }
  getTag: { left: Expr; right: Expr }
  hasTag: { left: Expr; right: Expr }
  '.': { left: Expr; attr: string }
  has: { left: Expr; attr: string | string[] }
  is: { left: Expr; entity_type: string; in?: Expr }
  Set: Expr[]
}

/** The payload of `e` when its operator is `name`. */
function op<K extends keyof Ops>(e: Expr, name: K): Ops[K] | undefined {
  return typeof e === 'object' && e !== null && Object.prototype.hasOwnProperty.call(e, name) ? (e as unknown as Record<K, Ops[K]>)[name] : undefined
}
