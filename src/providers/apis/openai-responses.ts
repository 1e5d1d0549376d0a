/**
 * OpenAI Responses (`/v1/responses`).
 *
 * Request: `input` (a string or items), the output budget
 * `max_output_tokens`, and the tools it names (`tools[]` with every
 * built-in type, `namespace` groups, `mcp` servers, `tool_choice`, and the
 * tools `additional_tools` and `tool_search_output` input items add).
 * Response: `output[]` items (`function_call`, `mcp_call`, `<tool>_call`…),
 * streamed as `response.*` events (`response.output_text.delta`, the
 * response itself in `response.created`/`response.completed`), usage as
 * `input_tokens` and `output_tokens`.
 */
import { canonicalToolName, eachObject, functionName, functionTool, MCP_KIND, mcpServerName, mcpToolName, toolType, ToolMap, urlHost } from '../tools.ts'
import type { ApiRoute } from '../routes.ts'
import type { ParsedRequest, ToolDefinition } from '../types.ts'
import type { DeltaSlot, ProviderApi, ToolCall, UsageShape } from './api.ts'
import { invalid, isObj, optPositiveInt, parsedRequest, requireModel } from './fields.ts'
import { namedToolChoice, openaiContent } from './openai.ts'

// ---- the request -----------------------------------------------------------------------

function responsesInput(body: Record<string, unknown>): void {
  const input = body.input
  if (typeof input === 'string') return
  if (!Array.isArray(input)) throw invalid('input', 'is required and must be a string or an array of items')
  input.forEach((item, i) => {
    if (!isObj(item)) throw invalid(`input[${i}]`, 'must be an object')
    // The output is a string or, in newer API versions, a list of content parts.
    if (item.type === 'function_call_output') openaiContent(['input', i, 'output'], item.output)
    else if (item.type !== 'function_call') openaiContent(['input', i, 'content'], item.content)
  })
}

function parseRequest(body: Record<string, unknown>, route: ApiRoute, providerName: string): ParsedRequest {
  const model = requireModel(body, route.deployment)
  responsesInput(body)
  const tools = responsesToolsOf(body)
  return parsedRequest(route, providerName, body, model, optPositiveInt(body, 'max_output_tokens'), tools)
}

// ---- the tools a request names ------------------------------------------------------

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

function responsesToolsOf(body: Record<string, unknown>): ToolDefinition[] {
  const map = new ToolMap()
  responsesTools(body.tools, 'tools', map)
  if (Array.isArray(body.input)) {
    body.input.forEach((item, i) => {
      if (isObj(item) && typeof item.type === 'string' && TOOL_INPUT_ITEMS.has(item.type)) responsesTools(item.tools, `input[${i}].tools`, map)
    })
  }
  const choice = namedToolChoice(body.tool_choice)
  if (choice) responsesReference(choice, 'tool_choice', map, true)
  return map.list()
}

// ---- the response ----------------------------------------------------------------------

/** The built-in tool a Responses output item of type `<x>_call` runs (`web_search_call` → `web_search`, `computer_call` → `computer`). */
export function responsesCallTool(itemType: string): string {
  return canonicalToolName(itemType.endsWith('_call') ? itemType.slice(0, -'_call'.length) : itemType)
}

/** Usage in a response, and in the response its events carry. */
const USAGE: UsageShape = Object.freeze({ wrappers: ['response'], input: ['input_tokens'], output: ['output_tokens'] })

/** The generated text of an event: the `delta` of `response.*.delta` events (text, refusal, arguments, reasoning summary). */
function outputText(obj: Record<string, unknown>): string {
  const type = obj.type
  if (typeof type === 'string' && type.startsWith('response.') && type.endsWith('.delta') && typeof obj.delta === 'string') return obj.delta
  return ''
}

/** The event types of a Responses stream (the `type` values enumerated below). */
const EVENT_TYPES = [
  'response.created',
  'response.in_progress',
  'response.completed',
  'response.failed',
  'response.incomplete',
  'response.output_item.added',
  'response.output_item.done',
  'response.content_part.added',
  'response.content_part.done',
  'response.output_text.delta',
  'response.output_text.done',
  'response.refusal.delta',
  'response.refusal.done',
  'response.function_call_arguments.delta',
  'response.function_call_arguments.done',
  'response.reasoning_summary_text.delta',
  'response.reasoning_summary_text.done',
] as const
const KNOWN_EVENTS: ReadonlySet<string> = new Set(EVENT_TYPES)

/** The text delta of a `*.delta` event: a channel per item, content part and event type; arguments are JSON fragments. */
function deltaSlots(o: Record<string, unknown>, out: DeltaSlot[]): void {
  const type = o.type
  if (typeof type !== 'string' || !type.endsWith('.delta') || typeof o.delta !== 'string') return
  const item = typeof o.item_id === 'string' ? o.item_id : String(o.output_index ?? 0)
  const part = typeof o.content_index === 'number' ? o.content_index : 0
  // The event type is the provider's text: printed only when it is one this module knows.
  const kind = KNOWN_EVENTS.has(type) ? type.slice('response.'.length, -'.delta'.length) : 'delta'
  out.push({ channel: `responses.${item}.${part}.${type}`, family: `responses.${kind}`, json: type.includes('arguments'), path: ['delta'], text: o.delta })
}

const named = (v: unknown): v is string => typeof v === 'string' && v !== ''

/**
 * Tool calls: the items of `output` (a response, and the response the
 * `response.*` events carry) and the `item` of `response.output_item.*`
 * events: `function_call`, `custom_tool_call`, `mcp_call`,
 * `mcp_approval_request`, and every other `<tool>_call` item.
 */
function toolCalls(v: Record<string, unknown>, out: ToolCall[]): void {
  if (Array.isArray(v.output)) responsesItems(v.output, out)
  if (isObj(v.response) && Array.isArray(v.response.output)) responsesItems(v.response.output, out)
  if (isObj(v.item)) responsesItem(v.item, out)
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

export const openaiResponses: ProviderApi = Object.freeze({
  name: 'openai.responses',
  parseRequest,
  tools: responsesToolsOf,
  usage: USAGE,
  outputText,
  deltaSlots,
  toolCalls,
  toolCallMarkers: ['_call', 'mcp_'],
  enumerated: {
    role: ['system', 'user', 'assistant', 'developer'],
    object: ['response'],
    status: ['completed', 'in_progress', 'incomplete', 'failed', 'queued', 'cancelled'],
    detail: ['auto', 'low', 'high'],
    service_tier: ['auto', 'default', 'flex', 'priority', 'scale'],
    type: [
      'text',
      'input_text',
      'input_image',
      'input_audio',
      'input_file',
      'output_text',
      'output_audio',
      'refusal',
      'message',
      'function',
      'custom',
      'function_call',
      'function_call_output',
      'reasoning',
      'summary_text',
      'json_object',
      'json_schema',
      'error',
      ...EVENT_TYPES,
    ],
  },
})
