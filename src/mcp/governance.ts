/**
 * MCP governance assembled: the authorizer the policy stage hands MCP
 * requests to, the `mcp` stage that filters tools/list results, and the
 * `mcp-session` stage that records what entered each agent session.
 *
 * The agent session: the MCP session id (2025-06-18, 2025-11-25) or the
 * configured session header (`x-modelgate-session`), always bound to the
 * caller (SPIFFE ID, user and actor), so another caller naming the same id
 * has a session of its own. What entered it (the data classes redaction
 * found in tool results, resources and prompts; whether an open-world tool's
 * result entered) is in the context of every later decision in it.
 */
import { randomUUID } from 'node:crypto'
import type { McpConfig } from '../config/sections/mcp.ts'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import type { PolicyEngine } from '../policy/engine.ts'
import type { McpAuthorizer } from '../policy/stage.ts'
import type { RequestFacts } from '../policy/request.ts'
import { mcpToolId, parseMcpId } from '../providers/tools.ts'
import type { McpMessage } from '../providers/types.ts'
import { sha256Hex } from './protocol.ts'
import { decideMcp, isOpenWorld, mcpFacts, recordMcpToolAnswers, ToolHintsCache } from './guard.ts'
import { memoryApprovalStore, memorySessionStore, unavailable, type ApprovalRecord, type ApprovalStore, type SessionState, type SessionStore } from './store.ts'

/** What the audit trail records of an MCP request (mcp/ fills it; audit/ writes it). */
export interface McpRecord {
  readonly method: string | undefined
  readonly server: string
  name: string | undefined
  argumentsDigest: string | undefined
  /** The session's data classes as the decision saw them. */
  readonly sessionDataClasses: readonly string[]
  readonly sessionUntrusted: boolean
  /** Approval: the id asked for or used, what happened to it, and who granted it. */
  approvalId?: string
  approvalOutcome?: 'required' | 'used' | 'replayed' | 'expired' | 'policy_changed' | 'listed' | 'granted' | 'refused_unknown' | 'refused_expired' | 'refused_self' | 'refused_policy'
  approver?: string
  /** tools/list: how many tools the result listed and how many the caller was shown. */
  listed?: number
  shown?: number
}

const RECORD = Symbol('mcp.record')
const STATE = Symbol('mcp.state')
/** A model request in an agent session: its session key. */
const MODEL_SESSION = Symbol('mcp.model-session')
const ENTERED = Symbol('mcp.entered')

interface McpState {
  readonly msg: McpMessage
  readonly sessionKey: string | undefined
  readonly facts: RequestFacts
  readonly chunks: Buffer[]
  bytes: number
  allowed: boolean
}

/** Sets the MCP audit facts of a request (the approval API records its own). */
export function setMcpRecord(ctx: RequestContext, record: McpRecord): void {
  ctx.local(RECORD, () => record)
}

/** The MCP audit facts of a request, if it was an MCP request modelgate decided. */
export function mcpRecordOf(ctx: RequestContext): McpRecord | undefined {
  return ctx.local<McpRecord | undefined>(RECORD, () => undefined)
}

/** The offset just past the last blank line (the end of the last complete SSE event) in `buf`, or 0. */
export function lastEventEnd(buf: Buffer): number {
  for (let i = buf.length - 1; i > 0; i--) {
    if (buf[i] !== 0x0a) continue
    if (buf[i - 1] === 0x0a) return i + 1
    if (buf[i - 1] === 0x0d && i >= 3 && buf[i - 2] === 0x0a) return i + 1
    if (buf[i - 1] === 0x0d && i >= 3 && buf[i - 2] === 0x0d) return i + 1
  }
  return 0
}

export interface McpGovernanceOptions {
  readonly engine: PolicyEngine
  readonly config: McpConfig
  readonly logger: Logger
  /** Most bytes of a tools/list result held to filter it (server.maxBodyBytes). */
  readonly maxBytes: number
  /** The catalogued MCP servers: name → the host of their upstream URL. */
  readonly servers?: ReadonlyMap<string, string>
  readonly sessions?: SessionStore
  readonly approvals?: ApprovalStore
  readonly now?: () => number
}

export interface McpGovernance {
  readonly authorizer: McpAuthorizer
  /** Before redaction-apply: filters tools/list results. */
  readonly stage: Stage
  /** Last: records what entered each agent session. */
  readonly sessionStage: Stage
  readonly hints: ToolHintsCache
  readonly sessions: SessionStore
  readonly approvals: ApprovalStore
}

/** The caller a session or an approval is bound to: SPIFFE ID, user and actor. */
export function callerKey(ctx: RequestContext): string {
  const u = ctx.out.caller?.user
  return JSON.stringify([ctx.out.caller?.workload.spiffeId ?? '', u ? `${u.issuer}#${u.subject}` : '', u?.actor ?? ''])
}

export function createMcpGovernance(opts: McpGovernanceOptions): McpGovernance {
  const { engine, config, logger } = opts
  const now = opts.now ?? Date.now
  const hints = new ToolHintsCache(config.hintsCacheSize)
  const sessions = opts.sessions ?? memorySessionStore({ maxSessions: config.sessions.maxSessions, ttlMs: config.sessions.ttlSeconds * 1000 })
  const approvals = opts.approvals ?? memoryApprovalStore({ maxEntries: config.approvals.maxEntries })
  const sessionHeader = config.sessions.header

  const sessionKeyOf = (ctx: RequestContext): string | undefined => {
    const id = ctx.requestHeaders.get('mcp-session-id') ?? ctx.requestHeaders.get(sessionHeader)
    if (id === undefined || id === '' || id.length > 256) return undefined
    return sha256Hex(`${callerKey(ctx)}\n${id}`)
  }

  /** A call whose permit requires approval: a grant for exactly this call is used up, else one is asked for. */
  const approve = async (ctx: RequestContext, msg: McpMessage, record: McpRecord, facts: RequestFacts, reasons: readonly string[], policySetHash: string): Promise<void> => {
    const tool = facts.tools[0]?.name ?? ''
    const digest = msg.argumentsDigest ?? ''
    const caller = callerKey(ctx)
    const binding = sha256Hex(`${caller}\n${tool}\n${digest}`)
    const existing = await approvals.byBinding(binding)
    const t = now()
    if (existing?.state === 'granted') {
      // Taken in one step: of calls using one grant at once (through any replica) one gets it. The grant read above may
      // have been used between the read and the take, so only a record still granted when taken allows the call.
      const taken = await approvals.take(existing.id)
      if (taken) await approvals.put({ ...taken, state: 'used' })
      if (taken?.state === 'granted' && taken.expiresAt > t && taken.policySetHash === policySetHash) {
        record.approvalId = taken.id
        record.approvalOutcome = 'used'
        if (taken.approver !== undefined) record.approver = taken.approver
        return
      }
      // A grant that cannot be used is used up now; a new approval is asked for below.
      record.approvalOutcome = taken?.state !== 'granted' ? 'replayed' : taken.expiresAt <= t ? 'expired' : 'policy_changed'
    } else if (existing?.state === 'used') record.approvalOutcome = 'replayed'
    let pending = existing?.state === 'pending' && existing.expiresAt > t && existing.policySetHash === policySetHash ? existing : undefined
    if (!pending) {
      const u = ctx.out.caller?.user
      pending = {
        id: `apr_${randomUUID()}`,
        binding,
        caller: ctx.out.caller?.workload.spiffeId ?? '',
        user: u ? `${u.issuer}#${u.subject}` : undefined,
        actor: u?.actor,
        tool,
        argumentsDigest: digest,
        reasons,
        policySetHash,
        createdAt: t,
        expiresAt: t + config.approvals.ttlSeconds * 1000,
        state: 'pending',
      } satisfies ApprovalRecord
      await approvals.put(pending)
    }
    record.approvalId = pending.id
    record.approvalOutcome ??= 'required'
    throw new GateError('MG_APPROVAL_REQUIRED', {
      details: { approval_id: pending.id, reason: reasons.join('; '), expires_at: new Date(pending.expiresAt).toISOString() },
      internal: `${tool} needs an approval (${record.approvalOutcome})`,
    })
  }

  const authorizer: McpAuthorizer = {
    sessionFacts(ctx, facts) {
      const key = sessionKeyOf(ctx)
      if (key === undefined) return facts
      ctx.local(MODEL_SESSION, () => key)
      const withSession = (s: SessionState | undefined): RequestFacts => ({ ...facts, extra: { ...(facts.extra ?? {}), sessionDataClasses: s ? [...s.dataClasses] : [], sessionUntrusted: s?.untrusted ?? false } })
      const s = sessions.get(key)
      return s instanceof Promise ? s.then(withSession) : withSession(s)
    },
    hintsFor(tool) {
      const id = parseMcpId(tool.name)
      if (!id || id.tool === undefined) return undefined
      const host = opts.servers?.get(id.server)
      // Only a label that names a catalogued server, at that server's host, is that server.
      return host !== undefined && tool.host === host ? hints.get(id.server, id.tool) : undefined
    },
    async authorize(ctx) {
      const msg = ctx.out.request?.mcp
      const provider = ctx.out.target?.provider
      if (!msg || !provider) throw new GateError('MG_POLICY_ERROR', { internal: 'an MCP request without its message or server' })
      const sessionKey = sessionKeyOf(ctx)
      const session: SessionState | undefined = sessionKey ? await sessions.get(sessionKey) : undefined
      const server = provider.name
      const toolHints = msg.method === 'tools/call' ? hints.get(server, msg.name!) : undefined
      // Recorded first, so a refused message (headers, method) is in the audit trail with what it asked.
      const record: McpRecord = {
        method: msg.method,
        server,
        name: msg.name,
        argumentsDigest: msg.argumentsDigest,
        sessionDataClasses: session?.dataClasses ?? [],
        sessionUntrusted: session?.untrusted ?? false,
      }
      ctx.local(RECORD, () => record)
      const { facts, results, decision } = decideMcp(engine, ctx, { msg, server, host: provider.upstream.host, hints: toolHints, session, maxArgumentsBytes: config.maxArgumentsBytes })
      const state: McpState = { msg, sessionKey, facts, chunks: [], bytes: 0, allowed: false }
      ctx.local<McpState>(STATE, () => state)
      ctx.put('decision', decision.decision)
      recordMcpToolAnswers(ctx, results)
      if (decision.decision.effect !== 'allow') {
        const d = decision.decision
        throw new GateError(decision.code ?? 'MG_POLICY_DENIED', {
          internal: decision.code === 'MG_POLICY_ERROR' ? `policy evaluation failed: ${d.errors.join('; ')}` : d.policies.length ? `denied by ${d.policies.map((p) => p.id).join(', ')}` : 'no policy permits the request',
        })
      }
      if (decision.decision.approval) await approve(ctx, msg, record, facts, decision.decision.approval, decision.decision.policySetHash)
      state.allowed = true
    },
  }

  /** tools/list results: the tools the caller may call, the hints of every listed tool remembered. */
  const filterList = (ctx: RequestContext, state: McpState, message: Record<string, unknown>): boolean => {
    const result = message.result as Record<string, unknown> | undefined
    if (!result || typeof result !== 'object' || !Array.isArray(result.tools)) return false
    const { name: server, upstream } = ctx.need('target').provider
    const kept: unknown[] = []
    for (const t of result.tools as unknown[]) {
      if (!t || typeof t !== 'object' || typeof (t as { name?: unknown }).name !== 'string') continue
      const name = (t as { name: string }).name
      const h = hints.learn(server, name, (t as { annotations?: unknown }).annotations)
      const facts = mcpFacts({ base: state.facts, msg: state.msg, server, host: upstream.host, hints: h, session: undefined, maxArgumentsBytes: 0 }, name)
      const withSession = { ...facts, extra: { ...facts.extra, sessionDataClasses: state.facts.extra?.sessionDataClasses, sessionUntrusted: state.facts.extra?.sessionUntrusted } }
      const e = engine.evaluate(withSession, { action: 'call_tool', resource: { type: 'ModelGate::Tool', id: mcpToolId(server, name) } })
      if (e.decision === 'allow' && e.errors.length === 0) kept.push(t)
    }
    const record = mcpRecordOf(ctx)
    if (record) {
      record.listed = (result.tools as unknown[]).length
      record.shown = kept.length
    }
    result.tools = kept
    return true
  }

  const rewriteJson = (ctx: RequestContext, state: McpState, text: string): string | undefined => {
    let message: unknown
    try {
      message = JSON.parse(text)
    } catch {
      return undefined
    }
    if (!message || typeof message !== 'object' || Array.isArray(message)) return undefined
    return filterList(ctx, state, message as Record<string, unknown>) ? JSON.stringify(message) : undefined
  }

  /** Each SSE event's data that is a tools/list result, filtered; everything else as it was. */
  const rewriteSse = (ctx: RequestContext, state: McpState, text: string): string => {
    const events = text.split(/\r?\n\r?\n/)
    return events
      .map((ev) => {
        const lines = ev.split(/\r?\n/)
        const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
        if (data.length === 0) return ev
        const rewritten = rewriteJson(ctx, state, data.join('\n'))
        if (rewritten === undefined) return ev
        return [...lines.filter((l) => !l.startsWith('data:')), `data: ${rewritten}`].join('\n')
      })
      .join('\n\n')
  }

  /**
   * Writes the session. A store that answers later is waited for before the
   * bytes go on, and one that fails ends the exchange (fail closed: a later
   * call must never be decided without what entered).
   */
  const remember = (key: string, classes: Iterable<string>, untrusted: boolean): void | Promise<void> => {
    const r = sessions.record(key, classes, untrusted)
    if (!r) return
    return unavailable('agent session store', () =>
      r.catch((err: unknown) => {
        logger.error('agent session could not be recorded; the exchange is refused', { error: (err as Error).message })
        throw err
      }),
    )
  }

  const stage: Stage = {
    name: 'mcp',
    consumes: ['caller', 'target', 'request'],
    responseBody(ctx, chunk) {
      const state = ctx.local<McpState | undefined>(STATE, () => undefined)
      if (!state || state.msg.method !== 'tools/list') return ctx.markIdle('mcp')
      if ((ctx.responseStatus ?? 0) >= 300) return
      // Held (bounded) and filtered before any of it leaves: a JSON result whole, an SSE stream event by event.
      state.bytes += chunk.data.length
      if (state.bytes > opts.maxBytes) throw new GateError('MG_RESPONSE_BLOCKED', { internal: `a tools/list result larger than ${opts.maxBytes} bytes cannot be filtered` })
      state.chunks.push(chunk.data)
      if (ctx.responseStreaming && !chunk.end) {
        // Complete events go on now; the unfinished one waits for its blank line.
        const held = Buffer.concat(state.chunks)
        const cut = lastEventEnd(held)
        state.chunks.length = 0
        if (cut < held.length) state.chunks.push(held.subarray(cut))
        state.bytes = held.length - cut
        chunk.data = cut === 0 ? Buffer.alloc(0) : Buffer.from(rewriteSse(ctx, state, held.subarray(0, cut).toString('utf8')), 'utf8')
        return
      }
      if (!chunk.end) {
        chunk.data = Buffer.alloc(0)
        return
      }
      const text = Buffer.concat(state.chunks).toString('utf8')
      state.chunks.length = 0
      const out = ctx.responseStreaming || text.trimStart().startsWith('event:') || text.trimStart().startsWith('data:') ? rewriteSse(ctx, state, text) : (rewriteJson(ctx, state, text) ?? text)
      chunk.data = Buffer.from(out, 'utf8')
    },
  }

  /** What this request has put into its session so far (so the store is written only when something new entered). */
  interface Entered {
    readonly classes: Set<string>
    untrusted: boolean
  }

  /**
   * Adds what entered the session: called after redaction has scanned the
   * request, and each response chunk, before those bytes are released, so a
   * next call in the session is decided knowing them however fast it comes.
   */
  const enter = (ctx: RequestContext, key: string, directions: 'both' | 'response', untrusted: boolean): void | Promise<void> => {
    const entered = ctx.local<Entered>(ENTERED, () => ({ classes: new Set(), untrusted: false }))
    const fresh: string[] = []
    for (const f of ctx.findings) {
      if (directions === 'response' && f.direction !== 'response') continue
      if (!entered.classes.has(f.dataClass)) {
        entered.classes.add(f.dataClass)
        fresh.push(f.dataClass)
      }
    }
    const newlyUntrusted = untrusted && !entered.untrusted
    if (fresh.length === 0 && !newlyUntrusted) return
    entered.untrusted ||= untrusted
    return remember(key, fresh, untrusted)
  }

  /** What enters a session from this request, or undefined when it is in none (or was refused). */
  const sessionOf = (ctx: RequestContext): { key: string; directions: 'both' | 'response'; untrusted: boolean } | undefined => {
    if (ctx.denial) return undefined
    const model = ctx.local<string | undefined>(MODEL_SESSION, () => undefined)
    // A model request: its prompt's data classes and its answer's.
    if (model !== undefined) return { key: model, directions: 'both', untrusted: false }
    const state = ctx.local<McpState | undefined>(STATE, () => undefined)
    if (!state || !state.allowed || !state.sessionKey) return undefined
    const method = state.msg.method
    if (method !== 'tools/call' && method !== 'resources/read' && method !== 'prompts/get') return undefined
    // A tool's, resource's or prompt's result; an open-world tool's is untrusted content.
    return { key: state.sessionKey, directions: 'response', untrusted: method === 'tools/call' && isOpenWorld(hints.get(ctx.need('target').provider.name, state.msg.name!)) }
  }

  /** Last in the pipeline, after redaction: records what entered the session before any of it leaves. */
  const sessionStage: Stage = {
    name: 'mcp-session',
    consumes: ['caller', 'target'],
    requestBody(ctx) {
      // In no session and not MCP: nothing will enter a session from this request.
      if (ctx.local<string | undefined>(MODEL_SESSION, () => undefined) === undefined && ctx.local<McpState | undefined>(STATE, () => undefined) === undefined) return ctx.markIdle('mcp-session')
      const s = sessionOf(ctx)
      if (s && s.directions === 'both') return enter(ctx, s.key, s.directions, false)
    },
    responseBody(ctx) {
      const s = sessionOf(ctx)
      if (s) return enter(ctx, s.key, s.directions, s.untrusted)
    },
  }

  return { authorizer, stage, sessionStage, hints, sessions, approvals }
}
