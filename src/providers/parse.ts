/**
 * Parsing provider request bodies (OpenAI chat/completions/responses/embeddings,
 * Azure OpenAI, Anthropic messages) into a ParsedRequest: the model, stream
 * flag, output budget and every tool the request names (the tool map,
 * tools.ts), with the shape of the fields that carry them checked. Shape
 * errors are reported with the field that is wrong. Which texts a body carries is not the parser's business: redaction
 * scans every leaf of the body (redaction/document.ts).
 */
import { GateError } from '../errors.ts'
import type { ApiRoute } from './routes.ts'
import { toolsOf } from './tools.ts'
import { parseMcpMessage } from '../mcp/protocol.ts'
import type { JsonPath, ParsedRequest, ToolDefinition } from './types.ts'

const MAX_MODEL_LENGTH = 256

export function pathString(path: JsonPath): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('')
}

function invalid(field: string, problem: string): GateError {
  return new GateError('MG_BODY_INVALID', { details: { field, problem }, internal: `${field || 'body'} ${problem}` })
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function optBool(body: Record<string, unknown>, key: string): boolean {
  const v = body[key]
  if (v === undefined || v === null) return false
  if (typeof v !== 'boolean') throw invalid(key, 'must be a boolean')
  return v
}

function optPositiveInt(body: Record<string, unknown>, key: string): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw invalid(key, 'must be a positive integer')
  return v
}

function requireModel(body: Record<string, unknown>, fallback?: string): string {
  const m = body.model ?? fallback
  if (typeof m !== 'string' || m.trim() === '') throw invalid('model', 'is required and must be a non-empty string')
  if (m.length > MAX_MODEL_LENGTH) throw invalid('model', `is longer than ${MAX_MODEL_LENGTH} characters`)
  return m
}

function requireArray(body: Record<string, unknown>, key: string): unknown[] {
  const v = body[key]
  if (!Array.isArray(v)) throw invalid(key, 'is required and must be an array')
  return v
}

/** OpenAI-style message content: a string or an array of parts. */
function openaiContent(path: JsonPath, content: unknown): void {
  if (typeof content === 'string' || content === undefined || content === null) return
  if (!Array.isArray(content)) throw invalid(pathString(path), 'must be a string or an array of parts')
  content.forEach((part, i) => {
    if (!isObj(part)) throw invalid(pathString([...path, i]), 'must be an object')
  })
}

function chatCompletions(body: Record<string, unknown>): void {
  const messages = requireArray(body, 'messages')
  if (messages.length === 0) throw invalid('messages', 'must not be empty')
  messages.forEach((m, i) => {
    if (!isObj(m)) throw invalid(`messages[${i}]`, 'must be an object')
    if (typeof m.role !== 'string') throw invalid(`messages[${i}].role`, 'is required')
    openaiContent(['messages', i, 'content'], m.content)
  })
}

/**
 * The output budget of a chat completion. `max_completion_tokens` replaced
 * `max_tokens`; a request may carry both, and providers differ in which one
 * they honour, so the larger (most permissive) one is the budget policy and
 * quotas see. Each must be a positive integer.
 */
function chatMaxTokens(body: Record<string, unknown>): number | undefined {
  const a = optPositiveInt(body, 'max_completion_tokens')
  const b = optPositiveInt(body, 'max_tokens')
  return a === undefined ? b : b === undefined ? a : Math.max(a, b)
}

function promptLike(body: Record<string, unknown>, key: string): void {
  const v = body[key]
  if (typeof v === 'string') return
  if (Array.isArray(v)) {
    if (v.length === 0) throw invalid(key, 'must not be empty')
    v.forEach((p, i) => {
      if (!(typeof p === 'string' || typeof p === 'number' || Array.isArray(p))) throw invalid(`${key}[${i}]`, 'must be a string or tokens')
    })
    return
  }
  throw invalid(key, 'is required and must be a string or an array')
}

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

/**
 * Parses a JSON body for a known API route. `json` is the already-decoded JSON
 * value; `providerName` is the logical provider from the route metadata.
 */
export function parseProviderRequest(route: ApiRoute, json: unknown, providerName: string): ParsedRequest {
  if (route.kind === 'mcp') {
    // One JSON-RPC message; the MCP stage decides what it may do.
    const mcp = parseMcpMessage(json)
    return Object.freeze({ provider: 'mcp', providerName, operation: 'mcp', api: route.api, model: '', stream: false, maxTokens: undefined, tools: [], mcp })
  }
  if (!isObj(json)) throw invalid('', 'the body must be a JSON object')
  let tools: ToolDefinition[] = []
  let maxTokens: number | undefined
  let model: string
  switch (route.api) {
    case 'openai.chat_completions':
    case 'azure_openai.chat_completions':
      model = requireModel(json, route.deployment)
      chatCompletions(json)
      tools = toolsOf(route.api, json)
      maxTokens = chatMaxTokens(json)
      break
    case 'openai.completions':
    case 'azure_openai.completions':
      model = requireModel(json, route.deployment)
      promptLike(json, 'prompt')
      maxTokens = optPositiveInt(json, 'max_tokens')
      break
    case 'openai.responses':
      model = requireModel(json)
      responsesInput(json)
      tools = toolsOf(route.api, json)
      maxTokens = optPositiveInt(json, 'max_output_tokens')
      break
    case 'openai.embeddings':
    case 'azure_openai.embeddings':
      model = requireModel(json, route.deployment)
      promptLike(json, 'input')
      break
    case 'anthropic.messages':
      model = requireModel(json)
      maxTokens = optPositiveInt(json, 'max_tokens')
      if (maxTokens === undefined) throw invalid('max_tokens', 'is required for Anthropic messages')
      anthropicMessages(json)
      tools = toolsOf(route.api, json)
      break
    default:
      throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: `no parser for ${route.api}` })
  }
  return Object.freeze({
    provider: route.kind,
    providerName,
    operation: route.operation,
    api: route.api,
    model: route.deployment ?? model,
    stream: optBool(json, 'stream'),
    maxTokens,
    tools: Object.freeze(tools),
  })
}
