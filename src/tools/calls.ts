/**
 * Tool calls in model responses matched to the tools the request named
 * (providers/tools.ts). Where a response names its calls is each API's own
 * knowledge (providers/apis/: `toolCalls`), read where the official SDKs
 * read them; every API's reader runs on every object, so a response shaped
 * like another API's is read too (collectCalls). A call that names no tool
 * (an empty name, as in later stream deltas) is not a call.
 */
import { canonicalToolName, MCP_KIND, mcpServerId, mcpToolId } from '../providers/tools.ts'
import type { ToolCall } from '../providers/apis/index.ts'
import type { ToolDefinition } from '../providers/types.ts'

export type { ToolCall }

/** A call matched to the request's tools: the `Tool` id policy is asked about, and whether the request named the tool. */
export interface ResolvedCall {
  readonly id: string
  readonly kind: string
  readonly declared: boolean
}

/** The tools a request named, indexed the ways responses call them. */
export class DeclaredTools {
  readonly #byId = new Map<string, ToolDefinition>()
  readonly #byCall = new Map<string, ToolDefinition>()

  constructor(tools: readonly ToolDefinition[]) {
    for (const t of tools) {
      this.#byId.set(t.name, t)
      if (t.callName !== undefined) this.#byCall.set(t.callName, t)
    }
  }

  resolve(call: ToolCall): ResolvedCall {
    switch (call.by) {
      case 'name': {
        const t = this.#byCall.get(call.name)
        return t ? { id: t.name, kind: t.type, declared: true } : { id: call.name, kind: call.kind, declared: false }
      }
      case 'toolset': {
        const t = this.#byId.get(canonicalToolName(call.toolset))
        return t?.origin === 'builtin' ? { id: t.name, kind: t.type, declared: true } : { id: canonicalToolName(call.toolset), kind: call.kind, declared: false }
      }
      case 'builtin': {
        const t = this.#byId.get(call.id)
        return t?.origin === 'builtin' ? { id: t.name, kind: t.type, declared: true } : { id: call.id, kind: call.kind, declared: false }
      }
      case 'mcp': {
        // A tool of a server the request names; when the request lists the server's tools, one of those.
        const server = this.#byId.get(mcpServerId(call.server))
        const id = mcpToolId(call.server, call.tool)
        const declared = server?.origin === 'mcp-server' && (server.narrowed !== true || this.#byId.get(id)?.origin === 'mcp-tool')
        return { id, kind: MCP_KIND, declared }
      }
    }
  }
}
