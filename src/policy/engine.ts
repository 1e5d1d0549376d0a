/**
 * The Cedar engine: holds the active (and optional shadow) policy set,
 * indexed once per load; answers questions synchronously through
 * `statefulIsAuthorized` on the slice of the set that can apply to each
 * question (slices.ts); caches answers keyed on the facts that slice reads;
 * reloads on change.
 *
 * Reload is safe for traffic: a new set is read, validated and preparsed into
 * a spare slot while the active one keeps answering; the switch is a single
 * synchronous assignment, so every request sees one whole set. A set that
 * fails validation is refused and the last good one stays active.
 *
 * Evaluation errors deny. Cedar skips a policy whose evaluation errors, which
 * for a forbid would let the request through; modelgate refuses instead
 * (MG_POLICY_ERROR).
 */
import { randomUUID } from 'node:crypto'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import { LRUCache } from 'lru-cache'
import type { ErrorCode } from '../errors.ts'
import type { ParsedRequest } from '../providers/types.ts'
import { silentLogger, type Logger } from '../log.ts'
import type { PolicyDecision, RequestContext } from '../pipeline/context.ts'
import { compilePolicySources, readPolicyDir, readPolicyDirSync, readProblem, type CompiledPolicySet, type PolicyInfo, type PolicySources } from './load.ts'
import { ACTION_TYPE } from './names.ts'
import { formatProblem, PolicyLoadError, type PolicyProblem } from './problems.ts'
import { buildCall, contextOf, EntityGroups, factsFromContext, factsKey, modelQuery, principalUid, toolQueries, unredactedQuery, type CedarQuery, type ContextHeaders, type FactsOptions, type RequestFacts } from './request.ts'
import { decisionKey, sliceEntities, Slicer, withDecided, type Slice } from './slices.ts'
import { watchDirectories, type DirectoryWatcher } from './watch.ts'

export interface PolicyEngineOptions {
  /** The policy directory (schema, *.cedar, entities.json). */
  readonly dir: string
  /** Optional shadow directory: evaluated and recorded, never enforced. Uses the primary schema/entities when it has none. */
  readonly shadowDir?: string | undefined
  /** Reload on change (default false here; the stage turns it on from config). */
  readonly watch?: boolean | undefined
  /** Decision cache entries; 0 disables the cache (default 100000). */
  readonly cacheSize?: number | undefined
  /**
   * Policy slices kept preparsed (default 1024); 0 evaluates every question
   * against the whole set with every request entity (the reference the
   * slices are tested against).
   */
  readonly slices?: number | undefined
  /** Most policies kept preparsed over all slices (default 20000). */
  readonly slicePolicies?: number | undefined
  readonly region?: string | undefined
  readonly contextHeaders?: ContextHeaders | undefined
  readonly reloadDebounceMs?: number | undefined
  readonly pollIntervalMs?: number | undefined
  readonly logger?: Logger | undefined
  /** The request's token estimate, for policies that read `context.inputTokens` or `context.estimatedTokens`. */
  readonly estimate?: FactsOptions['estimate']
}

/** A policy text that names the token estimate's context attributes. */
const ESTIMATE_ATTRS = /\b(?:inputTokens|estimatedTokens)\b/

/** Cedar's answer to one question. */
export interface Evaluation {
  readonly decision: 'allow' | 'deny'
  /** Ids of the determining policies (Cedar's `diagnostics.reason`), sorted. */
  readonly determining: readonly string[]
  /** Evaluation errors, as `policy-id: message`, or the request-level failure; sorted. */
  readonly errors: readonly string[]
  readonly cached: boolean
}

/** One question and its answer, for `explain` and tests. */
export interface QueryResult {
  readonly query: CedarQuery
  readonly evaluation: Evaluation
}

/** A complete decision for a request: the model action and every declared tool. */
export interface DecisionResult {
  readonly decision: PolicyDecision
  /** Set when the decision is a deny: which error code the caller gets. */
  readonly code: Extract<ErrorCode, 'MG_POLICY_DENIED' | 'MG_POLICY_ERROR'> | undefined
  readonly results: readonly QueryResult[]
  /** `send_unredacted` for each data class found, asked when the request is allowed (behind `decision.unredactedClasses`). */
  readonly unredactedResults: readonly QueryResult[]
  readonly shadowResults: readonly QueryResult[] | undefined
}

export interface ReloadStatus {
  readonly at: number
  readonly ok: boolean
  /** The active hash after the attempt. */
  readonly hash: string
  readonly changed: boolean
  readonly problems: readonly PolicyProblem[]
}

type SetRole = 'primary' | 'shadow'

interface ActiveSet {
  readonly set: CompiledPolicySet
  readonly sources: PolicySources
  /** The whole set, preparsed (only when slices are off). */
  readonly policySetId: string
  readonly schemaName: string
  /** Prefix of this set's decision-cache keys. */
  readonly tag: string
  readonly groups: EntityGroups
  readonly slicer: Slicer | undefined
  /** Some policy reads the token estimate: the facts carry it (and the cache keys with it). */
  readonly readsEstimate: boolean
}

/** One request being decided: its facts, and what its questions share. */
interface Asking {
  readonly facts: RequestFacts
  context?: Record<string, unknown>
  factsKey?: string
}

let engineSeq = 0

const DEFAULTS = { cacheSize: 100_000, slices: 1024, slicePolicies: 20_000, reloadDebounceMs: 250, pollIntervalMs: 30_000 }

export class PolicyEngine {
  readonly #opts: PolicyEngineOptions
  readonly #logger: Logger
  readonly #seq = ++engineSeq
  #generation = 0
  readonly #installs: Record<SetRole, number> = { primary: 0, shadow: 0 }
  #primary: ActiveSet
  #shadow: ActiveSet | undefined
  readonly #cache: LRUCache<string, Evaluation> | undefined
  #watcher: DirectoryWatcher | undefined
  #reloading: Promise<ReloadStatus> | undefined
  #again = false
  #lastReload: ReloadStatus | undefined
  readonly #listeners = new Set<(s: ReloadStatus) => void>()
  #closed = false

  /** Loads and compiles the policy set; throws PolicyLoadError listing every problem when it is invalid. */
  constructor(opts: PolicyEngineOptions) {
    this.#opts = opts
    this.#logger = opts.logger ?? silentLogger
    const size = opts.cacheSize ?? DEFAULTS.cacheSize
    this.#cache = size > 0 ? new LRUCache<string, Evaluation>({ max: size }) : undefined

    let sources: PolicySources
    try {
      sources = readPolicyDirSync(opts.dir)
    } catch (err) {
      throw new PolicyLoadError(opts.dir, [readProblem(opts.dir, err)])
    }
    const r = compilePolicySources(sources)
    if (!r.ok) throw new PolicyLoadError(opts.dir, r.problems)
    this.#primary = this.#install('primary', r.set, sources)
    this.#logLoaded('policy set loaded', r.set)

    if (opts.shadowDir) {
      try {
        const shadowSources = readPolicyDirSync(opts.shadowDir, sources)
        const s = compilePolicySources(shadowSources)
        if (s.ok) {
          this.#shadow = this.#install('shadow', s.set, shadowSources)
          this.#logLoaded('shadow policy set loaded', s.set)
        } else this.#logProblems('shadow policy set is invalid; shadow evaluation is off until it is fixed', s.problems)
      } catch (err) {
        this.#logProblems('shadow policy set is unreadable; shadow evaluation is off', [readProblem(opts.shadowDir, err)])
      }
    }

    if (opts.watch) {
      const dirs = [this.#primary.set.dir, ...(opts.shadowDir ? [opts.shadowDir] : [])]
      this.#watcher = watchDirectories(dirs, () => void this.reload(), {
        debounceMs: opts.reloadDebounceMs ?? DEFAULTS.reloadDebounceMs,
        pollIntervalMs: opts.pollIntervalMs ?? DEFAULTS.pollIntervalMs,
        logger: this.#logger,
      })
    }
  }

  /** SHA-256 of the active policy set (schema, policies, entities). Recorded with every decision. */
  get policySetHash(): string {
    return this.#primary.set.hash
  }

  get shadowPolicySetHash(): string | undefined {
    return this.#shadow?.set.hash
  }

  /** The active policies by id. */
  get policies(): ReadonlyMap<string, PolicyInfo> {
    return this.#primary.set.policies
  }

  get shadowPolicies(): ReadonlyMap<string, PolicyInfo> | undefined {
    return this.#shadow?.set.policies
  }

  get activeSet(): CompiledPolicySet {
    return this.#primary.set
  }

  /** The outcome of the last reload attempt (undefined before the first). */
  get lastReload(): ReloadStatus | undefined {
    return this.#lastReload
  }

  get cacheEntries(): number {
    return this.#cache?.size ?? 0
  }

  /** Policy slices of the active set preparsed so far (0 with slices off). */
  get slicesPreparsed(): number {
    return this.#primary.slicer?.preparsed ?? 0
  }

  /** Called after every reload attempt. Returns a function that removes the listener. */
  onReload(listener: (s: ReloadStatus) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** The facts of a live request, with this engine's header names and region. */
  factsFor(ctx: RequestContext, request?: ParsedRequest): RequestFacts {
    const estimate = this.#primary.readsEstimate || this.#shadow?.readsEstimate ? this.#opts.estimate : undefined
    return factsFromContext(ctx, { headers: this.#opts.contextHeaders, region: this.#opts.region, estimate }, request)
  }

  /**
   * Decides a request: the model action, and `call_tool` for each declared
   * tool. Allowed only when every answer allows without errors. When it is
   * allowed, also asks `send_unredacted` for each data class the request
   * carries, so later stages read the answer from the decision
   * (`unredactedClasses`). The shadow set, when there is one, answers the
   * request's own questions for the record.
   */
  decide(facts: RequestFacts, decisionId: string = randomUUID(), asked?: readonly CedarQuery[]): DecisionResult {
    // An MCP request asks its own questions (mcp/): a tool call, a resource, a prompt.
    const queries = asked ? [...asked] : [modelQuery(facts), ...toolQueries(facts)]
    const ask: Asking = { facts }
    const results = queries.map((q) => ({ query: q, evaluation: this.#evaluate(this.#primary, ask, q) }))
    const main = combine(results, this.#primary.set)
    const unredactedResults = main.effect === 'allow' ? facts.dataClasses.map(unredactedQuery).map((q) => ({ query: q, evaluation: this.#evaluate(this.#primary, ask, q) })) : []
    const unredactedClasses = unredactedResults.filter((r) => r.evaluation.decision === 'allow' && r.evaluation.errors.length === 0).map((r) => r.query.resource.id)
    let shadowResults: QueryResult[] | undefined
    let shadow: PolicyDecision['shadow']
    if (this.#shadow) {
      const s = this.#shadow
      shadowResults = queries.map((q) => ({ query: q, evaluation: this.#evaluate(s, ask, q) }))
      const c = combine(shadowResults, s.set)
      shadow = { effect: c.effect, policies: c.policies, errors: c.errors, policySetHash: s.set.hash }
    }
    const decision: PolicyDecision = {
      effect: main.effect,
      decisionId,
      policies: main.policies,
      errors: main.errors,
      policySetHash: this.#primary.set.hash,
      cached: results.every((r) => r.evaluation.cached),
      unredactedClasses,
      ...(main.effect === 'allow' ? { credentials: results[0] ? credentialAnnotations(results[0], this.#primary.set) : [] } : {}),
      ...(main.effect === 'allow' ? approvalReasons(results, this.#primary.set) : {}),
      ...(shadow ? { shadow } : {}),
    }
    return { decision, code: main.code, results, unredactedResults, shadowResults }
  }

  /** Decides a live request (see `decide`). */
  authorize(ctx: RequestContext): DecisionResult {
    return this.decide(this.factsFor(ctx))
  }

  /**
   * Whether policy lets this request send `dataClass` to the provider as is
   * (Action::"send_unredacted" on DataClass::"<dataClass>", same principal
   * and context as the request), with no evaluation errors. Once the policy
   * stage has decided the request this is read from the decision
   * (`unredactedClasses`): a class the decision does not list is redacted.
   * Before that it asks Cedar (cached). False on any error or when the
   * request cannot be described.
   */
  permitsUnredacted(ctx: RequestContext, dataClass: string): boolean {
    const decided = ctx.out.decision
    if (decided?.unredactedClasses !== undefined) return decided.effect === 'allow' && decided.unredactedClasses.includes(dataClass)
    const e = this.evaluateUnredacted(ctx, dataClass)
    return e !== undefined && e.decision === 'allow' && e.errors.length === 0
  }

  /** The full answer behind `permitsUnredacted` (undefined when the request has no identity or parsed body). */
  evaluateUnredacted(ctx: RequestContext, dataClass: string): Evaluation | undefined {
    let facts: RequestFacts
    try {
      facts = this.factsFor(ctx)
    } catch {
      return undefined
    }
    return this.evaluate(facts, unredactedQuery(dataClass))
  }

  /** One question against the active set. */
  evaluate(facts: RequestFacts, q: CedarQuery): Evaluation {
    return this.#evaluate(this.#primary, { facts }, q)
  }

  #evaluate(active: ActiveSet, ask: Asking, q: CedarQuery): Evaluation {
    const f = ask.facts
    let slice: Slice | undefined
    let key: string | undefined
    let evaluation: Evaluation
    try {
      if (active.slicer) {
        slice = active.slicer.select(f, q, active.groups)
        key = `${active.tag}\n${decisionKey(slice, f, q)}`
      } else key = `${active.tag}\n${(ask.factsKey ??= factsKey(f))}\n${q.action}\n${q.resource.type}\n${q.resource.id}`
      const hit = this.#cache?.get(key)
      if (hit) return hit
      const call = slice
        ? {
            principal: principalUid(f),
            action: { type: ACTION_TYPE, id: q.action },
            resource: { type: q.resource.type, id: q.resource.id },
            context: (ask.context ??= contextOf(f, active.set)),
            entities: sliceEntities(slice, f, q, active.groups),
          }
        : buildCall(f, q, active.set)
      const answer = cedar.statefulIsAuthorized({
        principal: call.principal,
        action: call.action,
        resource: call.resource,
        context: call.context as cedar.Context,
        entities: call.entities,
        preparsedPolicySetId: slice ? slice.policySetId : active.policySetId,
        preparsedSchemaName: active.schemaName,
        validateRequest: true,
      })
      if (answer.type === 'success') {
        const { decision, determining } = slice ? withDecided(slice, answer.response.decision, answer.response.diagnostics.reason) : { decision: answer.response.decision, determining: answer.response.diagnostics.reason }
        evaluation = { decision, determining: [...determining].sort(), errors: answer.response.diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`).sort(), cached: false }
      } else evaluation = { decision: 'deny', determining: [], errors: answer.errors.map((e) => `request: ${e.message}`).sort(), cached: false }
    } catch (err) {
      evaluation = { decision: 'deny', determining: [], errors: [`request: ${(err as Error).message}`], cached: false }
    }
    if (key !== undefined) this.#cache?.set(key, { ...evaluation, cached: true })
    return evaluation
  }

  /**
   * Re-reads the policy directory (and the shadow directory) and switches to
   * the new set if it is valid and different. On any problem the active set
   * stays, and the problems are logged with file:line:col. Concurrent calls
   * share one reload; a call during a reload schedules one more.
   */
  reload(): Promise<ReloadStatus> {
    if (this.#closed) return Promise.resolve(this.#status(false, false, []))
    if (this.#reloading) {
      this.#again = true
      return this.#reloading
    }
    const run = async (): Promise<ReloadStatus> => {
      let status: ReloadStatus
      do {
        this.#again = false
        status = await this.#reloadOnce()
      } while (this.#again && !this.#closed)
      return status
    }
    this.#reloading = run().finally(() => {
      this.#reloading = undefined
    })
    return this.#reloading
  }

  async #reloadOnce(): Promise<ReloadStatus> {
    let status: ReloadStatus
    try {
      const sources = await readPolicyDir(this.#opts.dir)
      status = this.#swap('primary', sources)
    } catch (err) {
      const problems = [readProblem(this.#opts.dir, err)]
      this.#logProblems('policy reload failed; keeping the active policy set', problems)
      status = this.#status(false, false, problems)
    }
    if (this.#opts.shadowDir) {
      try {
        const shadowSources = await readPolicyDir(this.#opts.shadowDir, this.#primary.sources)
        this.#swap('shadow', shadowSources)
      } catch (err) {
        this.#logProblems('shadow policy reload failed; keeping the previous shadow set', [readProblem(this.#opts.shadowDir, err)])
      }
    }
    this.#lastReload = status
    for (const l of this.#listeners) {
      try {
        l(status)
      } catch (err) {
        this.#logger.warn('policy reload listener failed', { error: (err as Error).message })
      }
    }
    return status
  }

  #swap(role: SetRole, sources: PolicySources): ReloadStatus {
    const current = role === 'primary' ? this.#primary : this.#shadow
    const r = compilePolicySources(sources)
    if (!r.ok) {
      this.#logProblems(role === 'primary' ? 'policy reload refused; keeping the active policy set' : 'shadow policy reload refused; keeping the previous shadow set', r.problems)
      return this.#status(false, false, r.problems)
    }
    if (current && current.set.hash === r.set.hash) return this.#status(true, false, r.set.warnings)
    if (this.#closed) return this.#status(false, false, [])
    const next = this.#install(role, r.set, sources)
    if (role === 'primary') this.#primary = next
    else this.#shadow = next
    current?.slicer?.release()
    this.#cache?.clear()
    this.#logLoaded(role === 'primary' ? 'policy set reloaded' : 'shadow policy set reloaded', r.set, current?.set.hash)
    return this.#status(true, true, r.set.warnings)
  }

  /**
   * Prepares a compiled set in its role's spare slot (the active set of that
   * role keeps the other): the schema, and either the slice index or, with
   * slices off, the whole set preparsed. Throws only if Cedar refuses what it
   * validated (a bug).
   */
  #install(role: SetRole, set: CompiledPolicySet, sources: PolicySources): ActiveSet {
    const slot = ++this.#installs[role] % 2
    const policySetId = `modelgate-${this.#seq}-${role}-${slot}`
    const schemaName = `${policySetId}-schema`
    const s = cedar.preparseSchema(schemaName, set.schemaText)
    if (s.type === 'failure') throw new Error(`preparseSchema failed: ${s.errors.map((e) => e.message).join('; ')}`)
    const slices = this.#opts.slices ?? DEFAULTS.slices
    const slicer = slices > 0 ? new Slicer(set, { idPrefix: policySetId, maxSlices: slices, maxPolicies: this.#opts.slicePolicies ?? DEFAULTS.slicePolicies }) : undefined
    const p = cedar.preparsePolicySet(policySetId, { staticPolicies: slicer ? {} : set.policyTexts })
    if (p.type === 'failure') throw new Error(`preparsePolicySet failed: ${p.errors.map((e) => e.message).join('; ')}`)
    const readsEstimate = Object.values(set.policyTexts).some((text) => ESTIMATE_ATTRS.test(text))
    return { set, sources, policySetId, schemaName, tag: `${role[0]}${++this.#generation}`, groups: new EntityGroups(set), slicer, readsEstimate }
  }

  #status(ok: boolean, changed: boolean, problems: readonly PolicyProblem[]): ReloadStatus {
    return { at: Date.now(), ok, hash: this.#primary.set.hash, changed, problems }
  }

  #logLoaded(msg: string, set: CompiledPolicySet, previous?: string): void {
    this.#logger.info(msg, { dir: set.dir, hash: set.hash, policies: set.policies.size, entities: set.entities.byKey.size, ...(previous ? { previousHash: previous } : {}) })
    for (const w of set.warnings) this.#logger.warn('policy warning', { problem: formatProblem(w) })
  }

  #logProblems(msg: string, problems: readonly PolicyProblem[]): void {
    this.#logger.error(msg, { problems: problems.filter((p) => p.severity === 'error').map((p) => formatProblem(p)) })
  }

  /** Stops watching. Decisions keep working with the active set. */
  close(): void {
    this.#closed = true
    this.#watcher?.close()
    this.#watcher = undefined
  }
}

interface Combined {
  effect: 'allow' | 'deny'
  policies: { id: string; owner: string | undefined }[]
  errors: string[]
  code: DecisionResult['code']
}

/** The `@credential` annotations of the policies that permitted the model question (distinct, sorted). */
function credentialAnnotations(model: QueryResult, set: CompiledPolicySet): string[] {
  const names = new Set<string>()
  for (const id of model.evaluation.determining) {
    const p = set.policies.get(id)
    const name = p?.effect === 'permit' ? p.annotations.credential : undefined
    if (name !== undefined) names.add(name)
  }
  return [...names].sort()
}

/**
 * The `@requires_approval("reason")` annotations of the permits that allowed
 * the request (distinct, sorted): the call may run only with a human's grant
 * (mcp/approvals.ts).
 */
function approvalReasons(results: readonly QueryResult[], set: CompiledPolicySet): { approval?: readonly string[] } {
  const reasons = new Set<string>()
  for (const r of results) {
    for (const id of r.evaluation.determining) {
      const p = set.policies.get(id)
      const reason = p?.effect === 'permit' ? p.annotations.requires_approval : undefined
      if (reason !== undefined) reasons.add(reason)
    }
  }
  return reasons.size > 0 ? { approval: [...reasons].sort() } : {}
}

/** Folds the answers to a request's questions into one decision. */
function combine(results: readonly QueryResult[], set: CompiledPolicySet): Combined {
  const errors = results.flatMap((r) => r.evaluation.errors)
  const denied = results.filter((r) => r.evaluation.decision === 'deny')
  const allowed = errors.length === 0 && denied.length === 0
  const ids = new Set<string>()
  for (const r of allowed ? results : denied) for (const id of r.evaluation.determining) ids.add(id)
  const policies = [...ids].map((id) => ({ id, owner: set.policies.get(id)?.owner }))
  return { effect: allowed ? 'allow' : 'deny', policies, errors, code: allowed ? undefined : errors.length ? 'MG_POLICY_ERROR' : 'MG_POLICY_DENIED' }
}

