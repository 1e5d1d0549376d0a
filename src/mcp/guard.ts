/**
 * MCP governance: what an MCP client may do through modelgate, decided per
 * JSON-RPC message with the same Cedar actions and `Tool` entity as the
 * tools a model request names (providers/tools.ts), so one policy governs a
 * tool whoever asks for it.
 *
 * - tools/call: `call_tool` on `Tool::"mcp:<server>/<tool>"` (the server is
 *   the catalog entry's name; the tool carries the server's `host` and the
 *   hints the server declared in a tools/list result modelgate saw), with
 *   `context.arguments` (canonical JSON) and `context.argumentsDigest`;
 * - resources/read: `read_resource` on `McpResource::"mcp:<server>/<uri>"`;
 * - prompts/get: `get_prompt` on `McpPrompt::"mcp:<server>/<name>"`;
 * - initialize, ping, the list methods, completion/complete,
 *   logging/setLevel, notifications and the client's responses pass (a
 *   tools/list result is filtered to the tools the caller may call); any
 *   other method is refused (MG_MCP_METHOD_UNSUPPORTED).
 *
 * Every decision also sees the agent session (mcp/session.ts) and the
 * caller's class; a permit annotated `@requires_approval("reason")` makes
 * the call wait for a human's grant (mcp/approvals.ts).
 */
import { LRUCache } from 'lru-cache'
import { GateError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { PolicyEngine, QueryResult } from '../policy/engine.ts'
import { ENTITY } from '../policy/names.ts'
import { DEFAULT_HINTS, ENTITY_MCP_PROMPT, ENTITY_MCP_RESOURCE, HINT_NAMES, type CedarQuery, type RequestFacts, type ToolHints } from '../policy/request.ts'
import { MCP_KIND, mcpToolId } from '../providers/tools.ts'
import type { McpMessage } from '../providers/types.ts'
import { checkMcpHeaders } from './protocol.ts'
import type { SessionState } from './store.ts'

/** Methods that pass without a question of their own (their results may still be filtered). */
export const PASSING_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'prompts/list',
  'completion/complete',
  'logging/setLevel',
])

/** The question a message asks, or undefined when it asks none. Throws for methods modelgate does not authorise. */
export function mcpQuery(msg: McpMessage, server: string): CedarQuery | undefined {
  if (msg.kind === 'response') return undefined
  const method = msg.method!
  if (msg.kind === 'notification' && method.startsWith('notifications/')) return undefined
  if (msg.kind === 'request') {
    if (method === 'tools/call') return { action: 'call_tool', resource: { type: ENTITY.Tool, id: mcpToolId(server, msg.name!) } }
    if (method === 'resources/read') return { action: 'read_resource', resource: { type: ENTITY_MCP_RESOURCE, id: mcpToolId(server, msg.name!) } }
    if (method === 'prompts/get') return { action: 'get_prompt', resource: { type: ENTITY_MCP_PROMPT, id: mcpToolId(server, msg.name!) } }
    if (PASSING_METHODS.has(method)) return undefined
  }
  throw new GateError('MG_MCP_METHOD_UNSUPPORTED', { details: { method: /^[A-Za-z0-9_/.-]{1,64}$/.test(method) ? method : '[omitted]' }, internal: `MCP ${msg.kind} ${method.slice(0, 64)} is not authorised by modelgate` })
}


/**
 * Remembers the hints servers declared for their tools (tools/list results),
 * bounded. A hint the server left out takes the protocol's default;
 * `destructiveHint` and `idempotentHint` mean something only for a tool
 * that is not read-only, so a read-only tool is never destructive.
 */
export class ToolHintsCache {
  readonly #cache: LRUCache<string, ToolHints>
  constructor(max: number) {
    this.#cache = new LRUCache({ max })
  }
  /** What the server declared, or the defaults when modelgate has not seen the tool listed. */
  get(server: string, tool: string): ToolHints {
    return this.#cache.get(`${server}\n${tool}`) ?? DEFAULT_HINTS
  }
  /** From a tool's `annotations`: boolean hints, the defaults for the rest. */
  learn(server: string, tool: string, annotations: unknown): ToolHints {
    const declared: Record<string, boolean> = {}
    if (annotations && typeof annotations === 'object' && !Array.isArray(annotations)) {
      for (const h of HINT_NAMES) {
        const v = (annotations as Record<string, unknown>)[h]
        if (typeof v === 'boolean') declared[h] = v
      }
    }
    const readOnly = declared.readOnlyHint ?? false
    const hints: ToolHints = {
      readOnlyHint: readOnly,
      destructiveHint: readOnly ? false : (declared.destructiveHint ?? true),
      idempotentHint: readOnly ? true : (declared.idempotentHint ?? false),
      openWorldHint: declared.openWorldHint ?? true,
    }
    this.#cache.set(`${server}\n${tool}`, hints)
    return hints
  }
}

/** Whether a tool's results are untrusted content: open world unless its server said otherwise (the protocol's default is true). */
export function isOpenWorld(hints: ToolHints | undefined): boolean {
  return hints?.openWorldHint !== false
}

export interface McpFactsInput {
  readonly base: RequestFacts
  readonly msg: McpMessage
  readonly server: string
  readonly host: string
  readonly hints: ToolHints | undefined
  readonly session: SessionState | undefined
  readonly maxArgumentsBytes: number
}

/** The facts of an MCP question: the request's own, with the tool (for tools/call) and the MCP context attributes. */
export function mcpFacts(i: McpFactsInput, toolName: string | undefined = i.msg.method === 'tools/call' ? i.msg.name : undefined): RequestFacts {
  const tools = toolName === undefined ? [] : [{ name: mcpToolId(i.server, toolName), type: MCP_KIND, host: i.host, ...(i.hints ? { hints: i.hints } : {}) }]
  const args = i.msg.arguments
  // The message's own question carries its arguments; a listed tool's (tools/list) has none.
  const own = i.msg.method === 'tools/call' ? toolName === i.msg.name : toolName === undefined
  const extra: Record<string, unknown> = {
    ...(i.base.extra ?? {}),
    mcpMethod: toolName !== undefined ? 'tools/call' : i.msg.method,
    arguments: own && args !== undefined && Buffer.byteLength(args) <= i.maxArgumentsBytes ? args : undefined,
    argumentsDigest: own ? i.msg.argumentsDigest : undefined,
    sessionDataClasses: i.session ? [...i.session.dataClasses] : undefined,
    sessionUntrusted: i.session ? i.session.untrusted : undefined,
  }
  return { ...i.base, tools, extra }
}

/** Records the call_tool answers of an MCP request for the audit trail. */
export function recordMcpToolAnswers(ctx: RequestContext, results: readonly QueryResult[]): void {
  for (const r of results) {
    if (r.query.action !== 'call_tool') continue
    const ok = r.evaluation.decision === 'allow' && r.evaluation.errors.length === 0
    ctx.toolDecisions.push({ tool: r.query.resource.id, kind: MCP_KIND, phase: 'request', effect: ok ? 'allow' : 'deny' })
  }
}

/** Checks the message's headers and answers the question it asks (with the session's facts). */
export function decideMcp(engine: PolicyEngine, ctx: RequestContext, input: Omit<McpFactsInput, 'base'>): { facts: RequestFacts; results: readonly QueryResult[]; decision: ReturnType<PolicyEngine['decide']> } {
  checkMcpHeaders(ctx.requestHeaders, input.msg)
  const query = mcpQuery(input.msg, input.server)
  const facts = mcpFacts({ ...input, base: engine.factsFor(ctx) })
  const decision = engine.decide(facts, undefined, query ? [query] : [])
  return { facts, results: decision.results, decision }
}
