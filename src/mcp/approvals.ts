/**
 * The approval API: modelgate's own JSON endpoint, reached through Envoy
 * over mutual TLS like every other request, and answered by modelgate
 * itself (nothing goes upstream).
 *
 * - `GET /modelgate/v1/approvals`: the pending approvals the caller may
 *   grant (policy allows it `approve` on the tool): id, caller, user,
 *   actor, tool, argument digest, reasons, times. Never the arguments.
 * - `POST /modelgate/v1/approvals/<id>/grant`: grants one. Refused when the
 *   approval is unknown, already granted or used, or expired
 *   (MG_APPROVAL_UNKNOWN), when the approver is the caller who asked
 *   (the same workload, or the same delegated user: MG_APPROVAL_SELF), or
 *   when policy does not let the approver approve that tool
 *   (MG_POLICY_DENIED).
 *
 * A grant is bound to the caller, tool, argument digest and policy set of
 * the refused call, expires after `mcp.approvals.ttlSeconds`, and is used
 * up by the one call it allows (mcp/governance.ts). Every request here is
 * audited like any other, with the approval id, what happened, and the
 * approver.
 */
import { GateError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import type { PolicyEngine } from '../policy/engine.ts'
import { ENTITY } from '../policy/names.ts'
import type { RequestFacts } from '../policy/request.ts'
import { callerClass } from '../policy/request.ts'
import { parseMcpId } from '../providers/tools.ts'
import { pathPart } from '../providers/routes.ts'
import { setMcpRecord, type McpGovernance, type McpRecord } from './governance.ts'
import { MCP_KIND } from '../providers/tools.ts'
import type { ApprovalRecord } from './store.ts'

export const APPROVALS_PATH = '/modelgate/v1/approvals'
const GRANT = /^\/modelgate\/v1\/approvals\/(apr_[0-9a-f-]{36})\/grant$/

/** The approver's facts for an `approve` question on a tool: the approver's identity and user, the approval's digest. */
function approverFacts(ctx: RequestContext, r: ApprovalRecord, hints: McpGovernance['hints']): RequestFacts {
  const id = ctx.out.caller?.workload!
  const u = ctx.out.caller?.user
  const mcp = parseMcpId(r.tool)
  const h = mcp?.tool !== undefined ? hints.get(mcp.server, mcp.tool) : undefined
  return {
    principal: { spiffeId: id.spiffeId, trustDomain: id.trustDomain, namespace: id.namespace ?? '', serviceAccount: id.serviceAccount ?? '' },
    user: u ? { subject: u.subject, issuer: u.issuer, email: u.email ?? '', groups: [...new Set(u.groups)].sort() } : undefined,
    provider: mcp?.server ?? '',
    operation: 'mcp',
    api: 'modelgate.approvals',
    model: '',
    stream: false,
    maxTokens: undefined,
    tools: [{ name: r.tool, type: MCP_KIND, ...(h ? { hints: h } : {}) }],
    dataClasses: [],
    detectors: [],
    tenant: '',
    purpose: '',
    clientApp: '',
    region: '',
    utcHour: new Date(ctx.startedAt).getUTCHours(),
    dayOfWeek: new Date(ctx.startedAt).getUTCDay() === 0 ? 7 : new Date(ctx.startedAt).getUTCDay(),
    ...(u?.actor !== undefined ? { actor: { subject: u.actor } } : {}),
    extra: { callerClass: callerClass(id.path, u), mcpMethod: 'tools/call', argumentsDigest: r.argumentsDigest },
  }
}

function view(r: ApprovalRecord): Record<string, unknown> {
  return {
    id: r.id,
    state: r.state,
    caller: r.caller,
    ...(r.user !== undefined ? { user: r.user } : {}),
    ...(r.actor !== undefined ? { actor: r.actor } : {}),
    tool: r.tool,
    arguments_digest: r.argumentsDigest,
    reasons: r.reasons,
    created_at: new Date(r.createdAt).toISOString(),
    expires_at: new Date(r.expiresAt).toISOString(),
    ...(r.approver !== undefined ? { approver: r.approver } : {}),
  }
}

export function createApprovalStage(opts: { governance: McpGovernance; engine: PolicyEngine; ttlMs: number; now?: () => number }): Stage {
  const { governance, engine } = opts
  const now = opts.now ?? Date.now
  const store = governance.approvals
  const mayApprove = (ctx: RequestContext, r: ApprovalRecord) => {
    return engine.evaluate(approverFacts(ctx, r, governance.hints), { action: 'approve', resource: { type: ENTITY.Tool, id: r.tool } })
  }
  const reply = (ctx: RequestContext, status: number, doc: unknown) => {
    ctx.answer = { status, body: Buffer.from(JSON.stringify(doc)) }
  }
  const record = (ctx: RequestContext, method: string, extra: Partial<McpRecord>): McpRecord => {
    const r: McpRecord = { method, server: '', name: undefined, argumentsDigest: undefined, sessionDataClasses: [], sessionUntrusted: false, ...extra }
    setMcpRecord(ctx, r)
    return r
  }

  return {
    name: 'approvals',
    produces: ['decision'],
    consumes: ['caller'],
    requestHeaders(ctx) {
      const path = pathPart(ctx.path)
      if (path !== APPROVALS_PATH && !path.startsWith(`${APPROVALS_PATH}/`)) return ctx.markIdle('approvals')
      ctx.answeredBy = 'approvals'
      if (!ctx.out.caller?.workload) throw new GateError('MG_IDENTITY_MISSING', { internal: 'the approval API without a caller identity' })
      if (path === APPROVALS_PATH) {
        if (ctx.method !== 'GET') throw new GateError('MG_METHOD_UNSUPPORTED', { details: { method: ctx.method.slice(0, 16) } })
      } else if (!GRANT.test(path)) throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: 'not an approval API path' })
      else if (ctx.method !== 'POST') throw new GateError('MG_METHOD_UNSUPPORTED', { details: { method: ctx.method.slice(0, 16) } })
    },
    async requestBody(ctx) {
      if (ctx.answeredBy !== 'approvals') return
      const path = pathPart(ctx.path)
      const t = now()
      if (path === APPROVALS_PATH) {
        // Pending, unexpired approvals this approver may grant; never their arguments.
        const list = (await store.list()).filter((r) => r.state === 'pending' && r.expiresAt > t && mayApprove(ctx, r).decision === 'allow' && mayApprove(ctx, r).errors.length === 0)
        record(ctx, 'approvals/list', { approvalOutcome: 'listed' })
        return reply(ctx, 200, { approvals: list.map(view) })
      }
      const id = GRANT.exec(path)![1]!
      const rec = record(ctx, 'approvals/grant', { approvalId: id })
      const r = await store.get(id)
      if (!r || r.state !== 'pending' || r.expiresAt <= t) {
        rec.approvalOutcome = !r || r.state !== 'pending' ? 'refused_unknown' : 'refused_expired'
        throw new GateError('MG_APPROVAL_UNKNOWN', { details: { approval_id: id }, internal: !r ? 'no such approval' : r.state !== 'pending' ? `the approval is ${r.state}` : 'the approval expired' })
      }
      rec.name = r.tool
      rec.argumentsDigest = r.argumentsDigest
      const { workload, user } = ctx.need('caller')
      const approver = workload.spiffeId
      const approverUser = user ? `${user.issuer}#${user.subject}` : undefined
      rec.approver = approver
      if (approver === r.caller || (approverUser !== undefined && approverUser === r.user)) {
        rec.approvalOutcome = 'refused_self'
        throw new GateError('MG_APPROVAL_SELF', { details: { approval_id: id }, internal: 'the approver is the caller who asked for the approval' })
      }
      const facts = approverFacts(ctx, r, governance.hints)
      const decided = engine.decide(facts, undefined, [{ action: 'approve', resource: { type: ENTITY.Tool, id: r.tool } }])
      ctx.put('decision', decided.decision)
      if (decided.decision.effect !== 'allow') {
        rec.approvalOutcome = 'refused_policy'
        throw new GateError(decided.code ?? 'MG_POLICY_DENIED', { internal: `${approver} may not approve ${r.tool}` })
      }
      const granted: ApprovalRecord = { ...r, state: 'granted', approver, ...(approverUser !== undefined ? { approverUser } : {}), grantedAt: t, expiresAt: t + opts.ttlMs }
      await store.put(granted)
      rec.approvalOutcome = 'granted'
      reply(ctx, 200, view(granted))
    },
  }
}
