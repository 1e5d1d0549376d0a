/**
 * The tool map: every way a model request names a tool, read into one list
 * of tools. Policy asks `call_tool` once for each of them, and a response's
 * tool calls are checked against the same list (tools/calls.ts).
 *
 * Where a request names tools (each API's module under providers/apis/
 * reads its own places into a ToolMap):
 * - OpenAI chat completions (and Azure OpenAI): `tools[]` (function, custom,
 *   any other type), the legacy `functions[]`, `function_call: {name}`,
 *   `tool_choice` (a function, a custom tool, `allowed_tools`, a built-in
 *   type) and `web_search_options`;
 * - OpenAI Responses: `tools[]` with every built-in type, `namespace` groups
 *   of functions and `mcp` servers (`server_label`, `server_url`,
 *   `allowed_tools`), `tool_choice`, and the tools `additional_tools` and
 *   `tool_search_output` input items add;
 * - Anthropic messages: `tools[]` (custom tools, client and server tools by
 *   their dated `type`, `mcp_toolset`), `tool_choice: {type: "tool", name}`
 *   and `mcp_servers[]` (`name`, `url`, `tool_configuration.allowed_tools`).
 *
 * What Cedar sees (the `Tool` entity's id and its `kind`):
 * - a function or custom tool by its name, kind `function` or `custom`;
 * - a provider's built-in tool by a canonical name that does not change with
 *   the dated version (canonicalToolName: `web_search` for
 *   `web_search_preview`, `web_search_2025_08_26` and Anthropic's
 *   `web_search_20250305`), kind the declared type;
 * - an MCP server as `mcp:<server>` and one of its tools as
 *   `mcp:<server>/<tool>`, kind `mcp`, with the server URL's host. The
 *   server name is the request's own label for it (`server_label`,
 *   `mcp_servers[].name`); it may not contain "/", MCP tool names may
 *   (SEP-986), so the first "/" separates the two. An MCP gateway route can
 *   name the tools it authorises the same way.
 *
 * A tool named twice collapses to one entry; one identity named with two
 * different types is refused (Cedar answers once per identity), as is a
 * request naming more than MAX_TOOLS tools. Types the map does not know are
 * kept with `known: false`: the provider stage refuses them unless the
 * configuration allows them (`providers.allowedToolTypes`).
 */
import { invalid, isObj } from './apis/fields.ts'
import type { ToolDefinition, ToolOrigin } from './types.ts'

/** Most distinct tools one request may name: each is a policy question. */
export const MAX_TOOLS = 256
/** Longest tool, MCP server or MCP tool name accepted. */
export const MAX_TOOL_NAME = 256
/** Longest tool type accepted. */
export const MAX_TOOL_TYPE = 128
/** The kind of MCP servers and their tools. */
export const MCP_KIND = 'mcp'
const MCP_PREFIX = 'mcp:'

/** The identity of an MCP server: `mcp:<server>`. */
export function mcpServerId(server: string): string {
  return `${MCP_PREFIX}${server}`
}

/** The identity of a tool of an MCP server: `mcp:<server>/<tool>`. */
export function mcpToolId(server: string, tool: string): string {
  return `${MCP_PREFIX}${server}/${tool}`
}

/** The server (and tool) an MCP identity names; undefined when `id` is not an MCP identity. */
export function parseMcpId(id: string): { readonly server: string; readonly tool: string | undefined } | undefined {
  if (!id.startsWith(MCP_PREFIX)) return undefined
  const rest = id.slice(MCP_PREFIX.length)
  const slash = rest.indexOf('/')
  return slash === -1 ? { server: rest, tool: undefined } : { server: rest.slice(0, slash), tool: rest.slice(slash + 1) }
}

/** A version date at the end of a tool type: Anthropic's `_20250305`, OpenAI's `_2025_08_26`. */
const DATE_SUFFIX = /_(?:\d{8}|\d{4}_\d{2}_\d{2})$/

/** Tool families that are one tool under another name. */
const FAMILY_ALIASES: Readonly<Record<string, string>> = {
  web_search_preview: 'web_search',
  computer_use_preview: 'computer',
  computer_use: 'computer',
  computer_toolset: 'computer',
  browser_toolset: 'browser',
  tool_search_tool_regex: 'tool_search',
  tool_search_tool_bm25: 'tool_search',
}

/**
 * The canonical name of a built-in tool type: the type without its version
 * date, then the family's own name (`web_search_preview_2025_03_11` →
 * `web_search`, `computer_use_preview` → `computer`, `text_editor_20250728`
 * → `text_editor`).
 */
export function canonicalToolName(type: string): string {
  const family = type.replace(DATE_SUFFIX, '')
  return Object.hasOwn(FAMILY_ALIASES, family) ? FAMILY_ALIASES[family]! : family
}

// ---- reading a request --------------------------------------------------------

type Mutable<T> = { -readonly [K in keyof T]: T[K] }
export type Entry = Mutable<ToolDefinition> & { name: string; type: string; origin: ToolOrigin; known: boolean; field: string }

/** The tools of one request, collected in the order they are first named. */
export class ToolMap {
  readonly #byId = new Map<string, Entry>()
  readonly #byCall = new Map<string, Entry>()

  /** A tool the request declares. */
  add(e: Entry): void {
    const seen = this.#byId.get(e.name)
    if (!seen) {
      if (this.#byId.size >= MAX_TOOLS) throw invalid(e.field, `is one tool more than the ${MAX_TOOLS} a request may name`)
      this.#byId.set(e.name, e)
      if (e.callName !== undefined) this.#call(e.callName, e)
      return
    }
    // The same tool named again: one question, whatever else the new mention adds.
    if (seen.type !== e.type) throw invalid(e.field, `names the same tool as ${seen.field} with another type`)
    if (e.host !== undefined) {
      if (seen.host === undefined) seen.host = e.host
      else if (seen.host !== e.host) throw invalid(e.field, `names the same MCP server as ${seen.field} with another URL`)
    }
    if (e.narrowed) seen.narrowed = true
    if (e.callName !== undefined && seen.callName === undefined) {
      seen.callName = e.callName
      this.#call(e.callName, seen)
    } else if (e.callName !== undefined && e.callName !== seen.callName) throw invalid(e.field, `names the same tool as ${seen.field} by another name`)
  }

  #call(name: string, e: Entry): void {
    const other = this.#byCall.get(name)
    if (other && other !== e) throw invalid(e.field, `is called by the same name as ${other.field}`)
    this.#byCall.set(name, e)
  }

  /** A function or custom tool named by a reference (tool_choice, function_call): the declared tool of that name, or a tool of its own. */
  referName(name: string, type: string, field: string): void {
    if (this.#byCall.has(name)) return
    this.add(functionTool(name, type, field))
  }

  /** A built-in named by a reference: the declared tool of that identity, or a tool of its own. */
  referBuiltin(type: string, field: string, known: boolean): void {
    const id = canonicalToolName(type)
    if (this.#byId.has(id)) return
    this.add({ name: id, type, origin: 'builtin', known, field })
  }

  /** An MCP server, with the tools the request narrows it to (undefined: not narrowed). */
  addMcp(server: string, host: string | undefined, tools: readonly { name: string; field: string }[] | undefined, field: string): void {
    this.add({ name: mcpServerId(server), type: MCP_KIND, origin: 'mcp-server', known: true, field, ...(host !== undefined ? { host } : {}), ...(tools ? { narrowed: true } : {}) })
    for (const t of tools ?? []) this.add({ name: mcpToolId(server, t.name), type: MCP_KIND, origin: 'mcp-tool', known: true, field: t.field })
  }

  /** An MCP server (and one of its tools) named by a reference. */
  referMcp(server: string, tool: string | undefined, field: string): void {
    if (!this.#byId.has(mcpServerId(server))) this.addMcp(server, undefined, undefined, field)
    if (tool !== undefined) this.add({ name: mcpToolId(server, tool), type: MCP_KIND, origin: 'mcp-tool', known: true, field })
  }

  /** The tools, each MCP tool carrying its server's host. */
  list(): ToolDefinition[] {
    const out: ToolDefinition[] = []
    for (const e of this.#byId.values()) {
      if (e.origin === 'mcp-tool') {
        const host = this.#byId.get(mcpServerId(parseMcpId(e.name)!.server))?.host
        if (host !== undefined) e.host = host
      }
      out.push(e)
    }
    return out
  }
}

export function functionTool(name: string, type: string, field: string): Entry {
  return { name, type, origin: 'function', known: true, field, callName: name }
}

/** A function, custom tool or Anthropic tool name: non-empty, bounded, and never an MCP-like identity. */
export function toolName(v: unknown, field: string, missing = 'is required'): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, missing)
  if (v.length > MAX_TOOL_NAME) throw invalid(field, `is longer than ${MAX_TOOL_NAME} characters`)
  // ":" is kept for modelgate's own identities (mcp:…); no provider accepts it in a function name.
  if (v.includes(':')) throw invalid(field, 'must not contain ":"')
  return v
}

export function mcpServerName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, 'is required')
  if (v.length > MAX_TOOL_NAME) throw invalid(field, `is longer than ${MAX_TOOL_NAME} characters`)
  if (v.includes('/')) throw invalid(field, 'must not contain "/"')
  return v
}

export function mcpToolName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, 'must be a non-empty string')
  if (v.length > MAX_TOOL_NAME) throw invalid(field, `is longer than ${MAX_TOOL_NAME} characters`)
  return v
}

/** The host of an MCP server URL (lower case, without port). */
export function urlHost(v: unknown, field: string): string {
  if (typeof v !== 'string') throw invalid(field, 'must be a URL')
  let url: URL
  try {
    url = new URL(v)
  } catch {
    throw invalid(field, 'must be a URL')
  }
  if (url.hostname === '') throw invalid(field, 'must be a URL with a host')
  return url.hostname
}

/** What a tool type may be made of: every provider's types are such names (and so is `providers.allowedToolTypes`). */
const TOOL_TYPE = /^[A-Za-z0-9_.-]+$/

/** The declared type of a tool or reference, or undefined when it has none. */
export function toolType(t: Record<string, unknown>, field: string): string | undefined {
  const v = t.type
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string' || v === '') throw invalid(`${field}.type`, 'must be a non-empty string')
  if (v.length > MAX_TOOL_TYPE) throw invalid(`${field}.type`, `is longer than ${MAX_TOOL_TYPE} characters`)
  if (!TOOL_TYPE.test(v)) throw invalid(`${field}.type`, 'must be a type name (letters, digits, "_", ".", "-")')
  return v
}

/** Calls `fn` for each object of an optional array. */
export function eachObject(list: unknown, field: string, fn: (o: Record<string, unknown>, field: string) => void): void {
  if (list === undefined || list === null) return
  if (!Array.isArray(list)) throw invalid(field, 'must be an array')
  list.forEach((o, i) => {
    if (!isObj(o)) throw invalid(`${field}[${i}]`, 'must be an object')
    fn(o, `${field}[${i}]`)
  })
}

/**
 * The name of a function or custom tool: in the type's own object (chat:
 * `function.name`, `custom.name`) or beside the type (Responses: `name`).
 * Both present and different is refused: providers differ in which one they read.
 */
export function functionName(t: Record<string, unknown>, type: 'function' | 'custom', field: string): string {
  const inner = t[type]
  const nested = isObj(inner) ? inner.name : undefined
  const flat = t.name
  if (nested !== undefined && flat !== undefined && nested !== flat) throw invalid(`${field}.name`, `differs from ${field}.${type}.name`)
  const where = nested !== undefined || isObj(inner) ? `${field}.${type}.name` : `${field}.name`
  return toolName(nested ?? flat, where, `is required for ${type} tools`)
}
