/**
 * Tool calls in model responses, read where the official SDKs read them, and
 * matched to the tools the request named (providers/tools.ts):
 *
 * - OpenAI chat completions: `choices[].message` and, streamed,
 *   `choices[].delta`: each `tool_calls[]` entry's `function.name` or
 *   `custom.name` (every delta that carries a name: the SDK keeps the last
 *   one), and the legacy `function_call.name`;
 * - Anthropic messages: the content blocks of a message (also
 *   `message_start`'s) and `content_block_start`'s block: `tool_use` (by
 *   name, or by `toolset_name` for a toolset's tools), `server_tool_use`
 *   (the server tool its name belongs to) and `mcp_tool_use` (server and tool);
 * - OpenAI Responses: the items of `output` (a response, and the response
 *   `response.*` events carry) and the `item` of `response.output_item.*`
 *   events: `function_call`, `custom_tool_call`, `mcp_call`,
 *   `mcp_approval_request`, and every other `<tool>_call` item
 *   (`web_search_call`, `code_interpreter_call`, …).
 *
 * Every reader runs on every object, whatever the API, so a response shaped
 * like another API's is read too. A call that names no tool (an empty name,
 * as in later stream deltas) is not a call.
 */
import { anthropicServerTool, canonicalToolName, MCP_KIND, mcpServerId, mcpToolId, responsesCallTool } from '../providers/tools.ts'
import type { ToolDefinition } from '../providers/types.ts'

/** A tool call as a response names it. `kind` is what the response calls it (for the record). */
export type ToolCall =
  /** A function or custom tool, or one of Anthropic's tools the request gave a name. */
  | { readonly by: 'name'; readonly name: string; readonly kind: string }
  /** One tool of an Anthropic toolset (`toolset_name`). */
  | { readonly by: 'toolset'; readonly toolset: string; readonly kind: string }
  /** A provider's built-in tool, by its canonical name. */
  | { readonly by: 'builtin'; readonly id: string; readonly kind: string }
  /** A tool of an MCP server. */
  | { readonly by: 'mcp'; readonly server: string; readonly tool: string; readonly kind: string }

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const named = (v: unknown): v is string => typeof v === 'string' && v !== ''

/**
 * What every object that can carry a tool call contains, as text: a call's
 * key or type (`tool_calls`, `function_call`, `*_call`, `tool_use`,
 * `mcp_…`), or a JSON escape of an ASCII character (`\u005f`), which could
 * spell one. Bytes without any of them name no tool call and are not parsed.
 */
const MARKERS = ['_call', 'tool_use', 'mcp_', '\\u00'] as const
const MARKER_BYTES = MARKERS.map((m) => Buffer.from(m, 'latin1'))

/** True when `text` could name a tool call (see MARKERS): cheap, and never false for text that does. */
export function mayNameToolCall(text: Buffer | string): boolean {
  if (typeof text === 'string') return MARKERS.some((m) => text.includes(m))
  return MARKER_BYTES.some((m) => text.indexOf(m) !== -1)
}

/** Adds the tool calls in one parsed response object (a whole response, or one SSE event's data) to `out`. */
export function collectCalls(v: unknown, out: ToolCall[]): void {
  if (!isObj(v)) return
  if (Array.isArray(v.choices)) {
    for (const c of v.choices) {
      if (!isObj(c)) continue
      chatMessage(c.message, out)
      chatMessage(c.delta, out)
    }
  }
  if (Array.isArray(v.content)) anthropicBlocks(v.content, out)
  if (isObj(v.message) && Array.isArray(v.message.content)) anthropicBlocks(v.message.content, out)
  if (isObj(v.content_block)) anthropicBlock(v.content_block, out)
  if (Array.isArray(v.output)) responsesItems(v.output, out)
  if (isObj(v.response) && Array.isArray(v.response.output)) responsesItems(v.response.output, out)
  if (isObj(v.item)) responsesItem(v.item, out)
}

function chatMessage(m: unknown, out: ToolCall[]): void {
  if (!isObj(m)) return
  if (Array.isArray(m.tool_calls)) {
    for (const tc of m.tool_calls) {
      if (!isObj(tc)) continue
      let found = false
      for (const kind of ['function', 'custom'] as const) {
        const o = tc[kind]
        if (isObj(o) && named(o.name)) {
          out.push({ by: 'name', name: o.name, kind })
          found = true
        }
      }
      // A call of another type (not in the chat API today) names a tool the request cannot have declared.
      if (!found && named(tc.type) && tc.type !== 'function' && tc.type !== 'custom') out.push({ by: 'builtin', id: canonicalToolName(tc.type), kind: tc.type })
    }
  }
  if (isObj(m.function_call) && named(m.function_call.name)) out.push({ by: 'name', name: m.function_call.name, kind: 'function' })
}

function anthropicBlocks(blocks: readonly unknown[], out: ToolCall[]): void {
  for (const b of blocks) anthropicBlock(b, out)
}

function anthropicBlock(b: unknown, out: ToolCall[]): void {
  if (!isObj(b) || typeof b.type !== 'string') return
  const type = b.type
  if (type === 'tool_use') {
    if (named(b.toolset_name)) out.push({ by: 'toolset', toolset: b.toolset_name, kind: type })
    else if (named(b.name)) out.push({ by: 'name', name: b.name, kind: type })
  } else if (type === 'server_tool_use') {
    if (named(b.name)) out.push({ by: 'builtin', id: anthropicServerTool(b.name), kind: type })
  } else if (type === 'mcp_tool_use') {
    if (named(b.server_name) && named(b.name)) out.push({ by: 'mcp', server: b.server_name, tool: b.name, kind: MCP_KIND })
  } else if (type.endsWith('_tool_use')) {
    // A kind of call this reader does not know: it names a tool by its type, which the request cannot have declared.
    out.push({ by: 'builtin', id: canonicalToolName(type.slice(0, -'_tool_use'.length)), kind: type })
  }
}

function responsesItems(items: readonly unknown[], out: ToolCall[]): void {
  for (const it of items) responsesItem(it, out)
}

function responsesItem(it: unknown, out: ToolCall[]): void {
  if (!isObj(it) || typeof it.type !== 'string') return
  const type = it.type
  if (type === 'function_call' || type === 'custom_tool_call') {
    if (named(it.name)) out.push({ by: 'name', name: it.name, kind: type })
  } else if (type === 'mcp_call' || type === 'mcp_approval_request') {
    if (named(it.server_label) && named(it.name)) out.push({ by: 'mcp', server: it.server_label, tool: it.name, kind: MCP_KIND })
  } else if (type.endsWith('_call')) out.push({ by: 'builtin', id: responsesCallTool(type), kind: type })
}

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
