/**
 * The tool map: every way a model request names a tool, read into one list
 * of tools. Policy asks `call_tool` once for each of them, and a response's
 * tool calls are checked against the same list (tools/calls.ts).
 *
 * Where a request names tools:
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
import { GateError } from '../errors.ts'
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

/** Built-in tool types of the OpenAI Responses API the map knows. Chat completions know none (only `web_search_options`). */
export const RESPONSES_BUILTIN_TYPES: ReadonlySet<string> = new Set([
  'web_search',
  'web_search_2025_08_26',
  'web_search_preview',
  'web_search_preview_2025_03_11',
  'file_search',
  'computer',
  'computer_use',
  'computer_use_preview',
  'code_interpreter',
  'image_generation',
  'local_shell',
  'shell',
  'apply_patch',
  'tool_search',
])

/** Anthropic tool types the map knows, besides custom tools and `mcp_toolset`. */
export const ANTHROPIC_BUILTIN_TYPES: ReadonlySet<string> = new Set([
  'bash_20241022',
  'bash_20250124',
  'text_editor_20241022',
  'text_editor_20250124',
  'text_editor_20250429',
  'text_editor_20250728',
  'computer_20241022',
  'computer_20250124',
  'computer_20251124',
  'computer_toolset_20260801',
  'browser_toolset_20260801',
  'memory_20250818',
  'web_search_20250305',
  'web_search_20260209',
  'web_search_20260318',
  'web_fetch_20250910',
  'web_fetch_20260209',
  'web_fetch_20260309',
  'web_fetch_20260318',
  'code_execution_20250522',
  'code_execution_20250825',
  'code_execution_20260120',
  'code_execution_20260521',
  'tool_search_tool_regex_20251119',
  'tool_search_tool_regex',
  'tool_search_tool_bm25_20251119',
  'tool_search_tool_bm25',
  'advisor_20260301',
])

/** The names Anthropic's `server_tool_use` blocks call server tools by, and the tool each belongs to. */
const ANTHROPIC_SERVER_TOOL_NAMES: Readonly<Record<string, string>> = {
  web_search: 'web_search',
  web_fetch: 'web_fetch',
  code_execution: 'code_execution',
  bash_code_execution: 'code_execution',
  text_editor_code_execution: 'code_execution',
  tool_search_tool_regex: 'tool_search',
  tool_search_tool_bm25: 'tool_search',
  advisor: 'advisor',
}

/** The built-in tool an Anthropic `server_tool_use` block's name belongs to (`bash_code_execution` → `code_execution`). */
export function anthropicServerTool(name: string): string {
  return Object.hasOwn(ANTHROPIC_SERVER_TOOL_NAMES, name) ? ANTHROPIC_SERVER_TOOL_NAMES[name]! : canonicalToolName(name)
}

/** The built-in tool a Responses output item of type `<x>_call` runs (`web_search_call` → `web_search`, `computer_call` → `computer`). */
export function responsesCallTool(itemType: string): string {
  return canonicalToolName(itemType.endsWith('_call') ? itemType.slice(0, -'_call'.length) : itemType)
}

// ---- reading a request --------------------------------------------------------

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function invalid(field: string, problem: string): GateError {
  return new GateError('MG_BODY_INVALID', { details: { field, problem }, internal: `${field || 'body'} ${problem}` })
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }
type Entry = Mutable<ToolDefinition> & { name: string; type: string; origin: ToolOrigin; known: boolean; field: string }

/** The tools of one request, collected in the order they are first named. */
class ToolMap {
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

function functionTool(name: string, type: string, field: string): Entry {
  return { name, type, origin: 'function', known: true, field, callName: name }
}

/** A function, custom tool or Anthropic tool name: non-empty, bounded, and never an MCP-like identity. */
function toolName(v: unknown, field: string, missing = 'is required'): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, missing)
  if (v.length > MAX_TOOL_NAME) throw invalid(field, `is longer than ${MAX_TOOL_NAME} characters`)
  // ":" is kept for modelgate's own identities (mcp:…); no provider accepts it in a function name.
  if (v.includes(':')) throw invalid(field, 'must not contain ":"')
  return v
}

function mcpServerName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, 'is required')
  if (v.length > MAX_TOOL_NAME) throw invalid(field, `is longer than ${MAX_TOOL_NAME} characters`)
  if (v.includes('/')) throw invalid(field, 'must not contain "/"')
  return v
}

function mcpToolName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw invalid(field, 'must be a non-empty string')
  if (v.length > MAX_TOOL_NAME) throw invalid(field, `is longer than ${MAX_TOOL_NAME} characters`)
  return v
}

/** The host of an MCP server URL (lower case, without port). */
function urlHost(v: unknown, field: string): string {
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
function toolType(t: Record<string, unknown>, field: string): string | undefined {
  const v = t.type
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string' || v === '') throw invalid(`${field}.type`, 'must be a non-empty string')
  if (v.length > MAX_TOOL_TYPE) throw invalid(`${field}.type`, `is longer than ${MAX_TOOL_TYPE} characters`)
  if (!TOOL_TYPE.test(v)) throw invalid(`${field}.type`, 'must be a type name (letters, digits, "_", ".", "-")')
  return v
}

/** Calls `fn` for each object of an optional array. */
function eachObject(list: unknown, field: string, fn: (o: Record<string, unknown>, field: string) => void): void {
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
function functionName(t: Record<string, unknown>, type: 'function' | 'custom', field: string): string {
  const inner = t[type]
  const nested = isObj(inner) ? inner.name : undefined
  const flat = t.name
  if (nested !== undefined && flat !== undefined && nested !== flat) throw invalid(`${field}.name`, `differs from ${field}.${type}.name`)
  const where = nested !== undefined || isObj(inner) ? `${field}.${type}.name` : `${field}.name`
  return toolName(nested ?? flat, where, `is required for ${type} tools`)
}

const CHAT_CHOICES = new Set(['none', 'auto', 'required'])

/** An OpenAI `tool_choice` (chat and Responses): the object naming a tool, or undefined for none or a mode. */
function namedToolChoice(choice: unknown): Record<string, unknown> | undefined {
  if (choice === undefined || choice === null) return undefined
  if (typeof choice === 'string') {
    if (!CHAT_CHOICES.has(choice)) throw invalid('tool_choice', 'must be "none", "auto", "required" or a tool')
    return undefined
  }
  if (!isObj(choice)) throw invalid('tool_choice', 'must be "none", "auto", "required" or a tool')
  return choice
}

// ---- OpenAI chat completions ----------------------------------------------------------

function chatTools(body: Record<string, unknown>, map: ToolMap): void {
  eachObject(body.tools, 'tools', (t, field) => {
    const type = toolType(t, field) ?? 'function'
    if (type === 'function' || type === 'custom') map.add(functionTool(functionName(t, type, field), type, field))
    // Chat completions have no built-in tool types: any other type is unknown here.
    else map.add({ name: canonicalToolName(type), type, origin: 'builtin', known: false, field })
  })
  eachObject(body.functions, 'functions', (f, field) => map.add(functionTool(toolName(f.name, `${field}.name`, 'is required for function tools'), 'function', field)))
  const search = body.web_search_options
  if (search !== undefined && search !== null) {
    if (!isObj(search)) throw invalid('web_search_options', 'must be an object')
    map.add({ name: canonicalToolName('web_search'), type: 'web_search_options', origin: 'builtin', known: true, field: 'web_search_options' })
  }
  // References last, so that they resolve to the tools declared above.
  const call = body.function_call
  if (call !== undefined && call !== null) {
    if (typeof call === 'string') {
      if (call !== 'none' && call !== 'auto') throw invalid('function_call', 'must be "none", "auto" or {"name"}')
    } else if (isObj(call)) map.referName(toolName(call.name, 'function_call.name'), 'function', 'function_call')
    else throw invalid('function_call', 'must be "none", "auto" or {"name"}')
  }
  const choice = namedToolChoice(body.tool_choice)
  if (choice) chatReference(choice, 'tool_choice', map, true)
}

function chatReference(r: Record<string, unknown>, field: string, map: ToolMap, top: boolean): void {
  const type = toolType(r, field)
  if (type === undefined) throw invalid(`${field}.type`, 'is required')
  if (type === 'allowed_tools' && top) {
    const allowed = r.allowed_tools
    if (!isObj(allowed)) throw invalid(`${field}.allowed_tools`, 'must be an object')
    if (!Array.isArray(allowed.tools)) throw invalid(`${field}.allowed_tools.tools`, 'must be an array')
    eachObject(allowed.tools, `${field}.allowed_tools.tools`, (t, f) => chatReference(t, f, map, false))
  } else if (type === 'function' || type === 'custom') map.referName(functionName(r, type, field), type, field)
  else map.referBuiltin(type, field, false)
}

// ---- OpenAI Responses --------------------------------------------------------------

function responsesTools(list: unknown, field: string, map: ToolMap, inNamespace = false): void {
  eachObject(list, field, (t, f) => {
    const type = toolType(t, f) ?? 'function'
    if (type === 'function' || type === 'custom') map.add(functionTool(functionName(t, type, f), type, f))
    else if (type === 'mcp') responsesMcp(t, f, map)
    else if (type === 'namespace' && !inNamespace) {
      // A namespace groups functions; the model calls each by its own name.
      if (!Array.isArray(t.tools)) throw invalid(`${f}.tools`, 'must be an array')
      responsesTools(t.tools, `${f}.tools`, map, true)
    } else map.add({ name: canonicalToolName(type), type, origin: 'builtin', known: RESPONSES_BUILTIN_TYPES.has(type), field: f })
  })
}

function responsesMcp(t: Record<string, unknown>, field: string, map: ToolMap): void {
  const server = mcpServerName(t.server_label, `${field}.server_label`)
  const host = t.server_url === undefined || t.server_url === null ? undefined : urlHost(t.server_url, `${field}.server_url`)
  const allowed = t.allowed_tools
  let names: unknown[] | undefined
  let namesField = `${field}.allowed_tools`
  if (Array.isArray(allowed)) names = allowed
  else if (isObj(allowed)) {
    // A filter: `tool_names` narrows; `read_only` alone cannot be listed, so each call is decided when it comes.
    if (allowed.tool_names !== undefined && allowed.tool_names !== null) {
      if (!Array.isArray(allowed.tool_names)) throw invalid(`${field}.allowed_tools.tool_names`, 'must be an array')
      names = allowed.tool_names
      namesField = `${field}.allowed_tools.tool_names`
    }
  } else if (allowed !== undefined && allowed !== null) throw invalid(`${field}.allowed_tools`, 'must be an array of tool names or a filter')
  const tools = names?.map((n, i) => ({ name: mcpToolName(n, `${namesField}[${i}]`), field: `${namesField}[${i}]` }))
  map.addMcp(server, host, tools, field)
}

function responsesReference(r: Record<string, unknown>, field: string, map: ToolMap, top: boolean): void {
  const type = toolType(r, field)
  if (type === undefined) throw invalid(`${field}.type`, 'is required')
  if (type === 'allowed_tools' && top) {
    if (!Array.isArray(r.tools)) throw invalid(`${field}.tools`, 'must be an array')
    eachObject(r.tools, `${field}.tools`, (t, f) => responsesReference(t, f, map, false))
  } else if (type === 'function' || type === 'custom') map.referName(functionName(r, type, field), type, field)
  else if (type === 'mcp') {
    const server = mcpServerName(r.server_label, `${field}.server_label`)
    map.referMcp(server, r.name === undefined || r.name === null ? undefined : mcpToolName(r.name, `${field}.name`), field)
  } else map.referBuiltin(type, field, RESPONSES_BUILTIN_TYPES.has(type))
}

/** Input items that hand the model more tools. */
const TOOL_INPUT_ITEMS = new Set(['additional_tools', 'tool_search_output'])

function responsesToolsOf(body: Record<string, unknown>, map: ToolMap): void {
  responsesTools(body.tools, 'tools', map)
  if (Array.isArray(body.input)) {
    body.input.forEach((item, i) => {
      if (isObj(item) && typeof item.type === 'string' && TOOL_INPUT_ITEMS.has(item.type)) responsesTools(item.tools, `input[${i}].tools`, map)
    })
  }
  const choice = namedToolChoice(body.tool_choice)
  if (choice) responsesReference(choice, 'tool_choice', map, true)
}

// ---- Anthropic messages ----------------------------------------------------------------

const ANTHROPIC_CHOICES = new Set(['auto', 'any', 'none'])

function anthropicToolsOf(body: Record<string, unknown>, map: ToolMap): void {
  eachObject(body.mcp_servers, 'mcp_servers', (s, field) => {
    const server = mcpServerName(s.name, `${field}.name`)
    const host = s.url === undefined || s.url === null ? undefined : urlHost(s.url, `${field}.url`)
    const config = s.tool_configuration
    let tools: { name: string; field: string }[] | undefined
    if (config !== undefined && config !== null) {
      if (!isObj(config)) throw invalid(`${field}.tool_configuration`, 'must be an object')
      if (config.enabled === false) tools = []
      else if (config.allowed_tools !== undefined && config.allowed_tools !== null) {
        const list = config.allowed_tools
        if (!Array.isArray(list)) throw invalid(`${field}.tool_configuration.allowed_tools`, 'must be an array')
        tools = list.map((n, i) => ({ name: mcpToolName(n, `${field}.tool_configuration.allowed_tools[${i}]`), field: `${field}.tool_configuration.allowed_tools[${i}]` }))
      }
    }
    map.addMcp(server, host, tools, field)
  })
  eachObject(body.tools, 'tools', (t, field) => {
    const type = toolType(t, field) ?? 'custom'
    if (type === 'custom') map.add(functionTool(toolName(t.name, `${field}.name`), 'custom', field))
    else if (type === 'mcp_toolset') anthropicToolset(t, field, map)
    else {
      const callName = t.name === undefined || t.name === null ? undefined : toolName(t.name, `${field}.name`)
      map.add({ name: canonicalToolName(type), type, origin: 'builtin', known: ANTHROPIC_BUILTIN_TYPES.has(type), field, ...(callName !== undefined ? { callName } : {}) })
    }
  })
  const choice = body.tool_choice
  if (choice === undefined || choice === null) return
  if (!isObj(choice)) throw invalid('tool_choice', 'must be an object')
  const type = toolType(choice, 'tool_choice')
  if (type === 'tool') map.referName(toolName(choice.name, 'tool_choice.name'), 'custom', 'tool_choice')
  else if (type === undefined || !ANTHROPIC_CHOICES.has(type)) throw invalid('tool_choice.type', 'must be "auto", "any", "tool" or "none"')
}

/** `mcp_toolset`: the tools of an `mcp_servers` entry; with `default_config.enabled: false`, only those its `configs` enable. */
function anthropicToolset(t: Record<string, unknown>, field: string, map: ToolMap): void {
  const server = mcpServerName(t.mcp_server_name, `${field}.mcp_server_name`)
  const defaults = t.default_config
  if (defaults !== undefined && defaults !== null && !isObj(defaults)) throw invalid(`${field}.default_config`, 'must be an object')
  const configs = t.configs
  if (configs !== undefined && configs !== null && !isObj(configs)) throw invalid(`${field}.configs`, 'must be an object')
  let tools: { name: string; field: string }[] | undefined
  if (isObj(defaults) && defaults.enabled === false) {
    tools = []
    for (const [name, c] of Object.entries(configs ?? {})) {
      if (isObj(c) && c.enabled === true) tools.push({ name: mcpToolName(name, `${field}.configs`), field: `${field}.configs` })
    }
  }
  map.addMcp(server, undefined, tools, field)
  eachObject(t.tools, `${field}.tools`, (x, f) => map.referMcp(server, mcpToolName(x.name, `${f}.name`), f))
}

/**
 * Every tool a request body names, for a known API (`ParsedRequest.api`).
 * Throws MG_BODY_INVALID, naming the field, for a malformed tool, a name
 * modelgate keeps for itself, one identity with two types, or too many tools.
 */
export function toolsOf(api: string, body: Record<string, unknown>): ToolDefinition[] {
  const map = new ToolMap()
  switch (api) {
    case 'openai.chat_completions':
    case 'azure_openai.chat_completions':
      chatTools(body, map)
      break
    case 'openai.responses':
      responsesToolsOf(body, map)
      break
    case 'anthropic.messages':
      anthropicToolsOf(body, map)
      break
    default:
      return []
  }
  return map.list()
}
