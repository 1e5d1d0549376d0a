/**
 * The policy stage: authorises each request with Cedar in the request-body
 * phase, after the provider stage parsed the body and the redaction scan
 * reported the data classes it found (they are part of the Cedar context).
 * It records the decision on `ctx.out.decision` (the audit stage writes it out;
 * the server puts its id in the denial body) and refuses with
 * MG_POLICY_DENIED, or MG_POLICY_ERROR when evaluation failed.
 */
import { resolveConfigPath, type Config } from '../config/config.ts'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ToolDefinition } from '../providers/types.ts'
import type { Stage } from '../pipeline/stage.ts'
import { PolicyEngine, type QueryResult } from './engine.ts'
import type { ParsedRequest } from '../providers/types.ts'
import { compileEstimator } from '../quotas/estimate.ts'
import type { RequestFacts } from './request.ts'

export interface PolicyStage extends Stage {
  readonly name: 'policy'
  /** The engine behind the stage: `permitsUnredacted` for redaction, `policySetHash`, `reload()`, `close()`. */
  readonly engine: PolicyEngine
}

/** Builds the engine from configuration (paths resolve against the config file's directory). Throws PolicyLoadError when the set is invalid. */
export function createPolicyEngine(config: Config, deps: { logger: Logger }): PolicyEngine {
  const p = config.policy
  return new PolicyEngine({
    dir: resolveConfigPath(config, p.dir),
    shadowDir: p.shadowDir ? resolveConfigPath(config, p.shadowDir) : undefined,
    watch: p.watch,
    cacheSize: p.cacheSize,
    reloadDebounceMs: p.reloadDebounceMs,
    pollIntervalMs: p.pollIntervalSeconds * 1000,
    region: p.region,
    contextHeaders: p.contextHeaders,
    logger: deps.logger.child({ component: 'policy' }),
    estimate: tokenEstimate(config),
  })
}

/** The token estimate quotas reserve with (quotas/estimate.ts), for `context.inputTokens` and `context.estimatedTokens`. */
function tokenEstimate(config: Config): (req: ParsedRequest) => { input: number; output: number } {
  const e = compileEstimator(config.quotas.estimation)
  return (req) => ({ input: e.input(req), output: e.outputReserve(req) })
}

/** The `call_tool` answers of a request's decision, for the audit trail. */
function recordToolAnswers(ctx: RequestContext, results: readonly QueryResult[]): void {
  const tools = ctx.out.request?.tools ?? []
  for (const r of results) {
    if (r.query.action !== 'call_tool') continue
    const ok = r.evaluation.decision === 'allow' && r.evaluation.errors.length === 0
    const kind = tools.find((t) => t.name === r.query.resource.id)?.type ?? 'function'
    ctx.toolDecisions.push({ tool: r.query.resource.id, kind, phase: 'request', effect: ok ? 'allow' : 'deny' })
  }
}

/** Decides MCP requests (mcp/governance.ts): their questions are not a model's. */
export interface McpAuthorizer {
  authorize(ctx: RequestContext): void | Promise<void>
  /**
   * The hints a catalogued MCP server declared for a tool a model request
   * names (same server name and host), so hint policies judge it as they
   * judge the MCP client's call.
   */
  hintsFor?(tool: ToolDefinition): ToolDefinition['hints'] | undefined
  /** A model request in an agent session (the session header): its facts with what entered the session so far. */
  sessionFacts?(ctx: RequestContext, facts: RequestFacts): RequestFacts | Promise<RequestFacts>
}

export function createPolicyStage(config: Config, deps: { logger: Logger; engine?: PolicyEngine; mcp?: McpAuthorizer }): PolicyStage {
  const engine = deps.engine ?? createPolicyEngine(config, deps)
  const logger = deps.logger.child({ stage: 'policy' })
  return {
    name: 'policy',
    produces: ['decision', 'facts'],
    consumes: ['caller', 'request'],
    engine,
    requestBody(ctx: RequestContext): void | Promise<void> {
      const request = ctx.out.request
      if (!request) throw new GateError('MG_POLICY_ERROR', { internal: 'the request reached policy without a parsed provider request' })
      if (!ctx.out.caller) throw new GateError('MG_POLICY_ERROR', { internal: 'the request reached policy without a caller identity' })
      if (request.operation === 'mcp') {
        if (!deps.mcp) throw new GateError('MG_POLICY_ERROR', { internal: 'an MCP request, and no MCP authorizer in the pipeline' })
        return deps.mcp.authorize(ctx)
      }
      const hintsFor = deps.mcp?.hintsFor
      // MCP tools a model request names are decided with the hints their servers declared.
      const asked =
        hintsFor && request.tools.some((t) => t.origin === 'mcp-tool')
          ? {
              ...request,
              tools: request.tools.map((t) => {
                const hints = t.origin === 'mcp-tool' ? hintsFor(t) : undefined
                return hints ? { ...t, hints } : t
              }),
            }
          : request
      const facts = engine.factsFor(ctx, asked)
      const session = deps.mcp?.sessionFacts?.(ctx, facts) ?? facts
      if (session instanceof Promise) return session.then((f) => decideModel(ctx, f))
      return decideModel(ctx, session)
    },
  }

  /** Decides a model request: the model, every tool it names, the classes it may send unredacted. */
  function decideModel(ctx: RequestContext, facts: RequestFacts): void {
    ctx.put('facts', facts)
    const { decision, code, results } = engine.decide(facts)
    ctx.put('decision', decision)
    recordToolAnswers(ctx, results)
    // A model request has no way to wait for a person: a permit that requires approval refuses it (MCP calls get an approval id).
    if (decision.effect === 'allow' && decision.approval) {
      throw new GateError('MG_APPROVAL_REQUIRED', { details: { reason: decision.approval.join('; ') }, internal: 'a permit of the request requires approval, which model requests cannot get' })
    }
    if (decision.effect === 'allow') return
    const internal =
      code === 'MG_POLICY_ERROR'
        ? `policy evaluation failed: ${decision.errors.join('; ')}`
        : decision.policies.length
          ? `denied by ${decision.policies.map((p) => p.id).join(', ')}`
          : 'no policy permits the request'
    logger.debug('request denied by policy', { requestId: ctx.id, decisionId: decision.decisionId, code, reason: internal })
    throw new GateError(code ?? 'MG_POLICY_DENIED', { internal })
  }
}
