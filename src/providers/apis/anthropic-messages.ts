/**
 * Anthropic messages (`/v1/messages`).
 *
 * Request: `system` (a string or text blocks), `messages[]` (each with the
 * role `user` or `assistant`, content a string or blocks), the required
 * output budget `max_tokens`, and the tools it names (`tools[]`: custom
 * tools, client and server tools by their dated `type`, `mcp_toolset`;
 * `tool_choice: {type: "tool", name}`; `mcp_servers[]`). Response: a
 * message whose `content` blocks include `tool_use`, `server_tool_use` and
 * `mcp_tool_use`; streamed as events (`message_start` carrying the message,
 * `content_block_start`, `content_block_delta` with text, thinking or
 * partial JSON, `message_delta` with the final usage), usage as
 * `input_tokens` and `output_tokens`.
 */
import { canonicalToolName, eachObject, functionTool, MCP_KIND, mcpServerName, mcpToolName, toolName, toolType, ToolMap, urlHost } from '../tools.ts'
import type { ApiRoute } from '../routes.ts'
import type { JsonPath, ParsedRequest, ToolDefinition } from '../types.ts'
import { safeIndex, type DeltaSlot, type ProviderApi, type ToolCall, type UsageShape } from './api.ts'
import { invalid, isObj, optPositiveInt, parsedRequest, pathString, requireArray, requireModel } from './fields.ts'

// ---- the request -----------------------------------------------------------------------

function anthropicContent(path: JsonPath, content: unknown): void {
  if (typeof content === 'string') return
  if (!Array.isArray(content)) throw invalid(pathString(path), 'must be a string or an array of content blocks')
  content.forEach((block, i) => {
    if (!isObj(block)) throw invalid(pathString([...path, i]), 'must be an object')
  })
}

function anthropicMessages(body: Record<string, unknown>): void {
  const system = body.system
  if (system !== undefined && system !== null && typeof system !== 'string' && !Array.isArray(system)) throw invalid('system', 'must be a string or an array of text blocks')
  const messages = requireArray(body, 'messages')
  if (messages.length === 0) throw invalid('messages', 'must not be empty')
  messages.forEach((m, i) => {
    if (!isObj(m)) throw invalid(`messages[${i}]`, 'must be an object')
    if (m.role !== 'user' && m.role !== 'assistant') throw invalid(`messages[${i}].role`, 'must be "user" or "assistant"')
    anthropicContent(['messages', i, 'content'], m.content)
  })
}

function parseRequest(body: Record<string, unknown>, route: ApiRoute, providerName: string): ParsedRequest {
  const model = requireModel(body)
  const maxTokens = optPositiveInt(body, 'max_tokens')
  if (maxTokens === undefined) throw invalid('max_tokens', 'is required for Anthropic messages')
  anthropicMessages(body)
  return parsedRequest(route, providerName, body, model, maxTokens, toolsOf(body))
}

// ---- the tools a request names ------------------------------------------------------

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

function toolsOf(body: Record<string, unknown>): ToolDefinition[] {
  const map = new ToolMap()
  anthropicToolsOf(body, map)
  return map.list()
}

// ---- the response ----------------------------------------------------------------------

/** Usage in a message, and in the message `message_start` carries. */
const USAGE: UsageShape = Object.freeze({ wrappers: ['message'], input: ['input_tokens'], output: ['output_tokens'] })

const DELTA_TEXTS = ['text', 'thinking', 'partial_json'] as const

/** The generated text of an event: a `content_block_delta`'s text, thinking or partial JSON. */
function outputText(obj: Record<string, unknown>): string {
  let out = ''
  if (obj.type === 'content_block_delta' && isObj(obj.delta)) {
    const d = obj.delta
    for (const k of DELTA_TEXTS) if (typeof d[k] === 'string') out += d[k] as string
  }
  return out
}

/** The text deltas of an event: a content block's text, thinking and partial JSON (a JSON fragment), a channel each per block. */
function deltaSlots(o: Record<string, unknown>, out: DeltaSlot[]): void {
  const type = o.type
  if (type === 'content_block_delta' && o.delta && typeof o.delta === 'object') {
    const d = o.delta as Record<string, unknown>
    const idx = typeof o.index === 'number' ? o.index : 0
    const ix = safeIndex(idx, 0)
    if (typeof d.text === 'string') out.push({ channel: `block.${idx}.text`, family: `block.${ix}.text`, json: false, path: ['delta', 'text'], text: d.text })
    if (typeof d.partial_json === 'string') out.push({ channel: `block.${idx}.json`, family: `block.${ix}.json`, json: true, path: ['delta', 'partial_json'], text: d.partial_json })
    if (typeof d.thinking === 'string') out.push({ channel: `block.${idx}.thinking`, family: `block.${ix}.thinking`, json: false, path: ['delta', 'thinking'], text: d.thinking })
  } else if (type === 'content_block_start' && o.content_block && typeof o.content_block === 'object') {
    const b = o.content_block as Record<string, unknown>
    const idx = typeof o.index === 'number' ? o.index : 0
    const ix = safeIndex(idx, 0)
    if (typeof b.text === 'string') out.push({ channel: `block.${idx}.text`, family: `block.${ix}.text`, json: false, path: ['content_block', 'text'], text: b.text })
    if (typeof b.thinking === 'string') out.push({ channel: `block.${idx}.thinking`, family: `block.${ix}.thinking`, json: false, path: ['content_block', 'thinking'], text: b.thinking })
  }
}

const named = (v: unknown): v is string => typeof v === 'string' && v !== ''

/**
 * Tool calls: the content blocks of a message (also `message_start`'s) and
 * `content_block_start`'s block: `tool_use` (by name, or by `toolset_name`
 * for a toolset's tools), `server_tool_use` (the server tool its name
 * belongs to) and `mcp_tool_use` (server and tool).
 */
function toolCalls(v: Record<string, unknown>, out: ToolCall[]): void {
  if (Array.isArray(v.content)) anthropicBlocks(v.content, out)
  if (isObj(v.message) && Array.isArray(v.message.content)) anthropicBlocks(v.message.content, out)
  if (isObj(v.content_block)) anthropicBlock(v.content_block, out)
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

export const anthropicMessagesApi: ProviderApi = Object.freeze({
  name: 'anthropic.messages',
  parseRequest,
  tools: toolsOf,
  usage: USAGE,
  outputText,
  deltaSlots,
  toolCalls,
  toolCallMarkers: ['tool_use', 'mcp_'],
  enumerated: {
    role: ['user', 'assistant'],
    stop_reason: ['end_turn', 'max_tokens', 'stop_sequence', 'tool_use', 'pause_turn', 'refusal'],
    service_tier: ['auto', 'standard_only'],
    media_type: ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf', 'text/plain'],
    type: [
      // message content blocks, tool choices, thinking and cache control
      'text',
      'image',
      'document',
      'file',
      'base64',
      'url',
      'custom',
      'tool_use',
      'tool_result',
      'thinking',
      'redacted_thinking',
      'message',
      'ephemeral',
      'auto',
      'any',
      'none',
      'tool',
      'enabled',
      'disabled',
      'error',
      // stream events and their deltas
      'message_start',
      'message_delta',
      'message_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'ping',
      'text_delta',
      'input_json_delta',
      'thinking_delta',
      'signature_delta',
    ],
  },
})
