/**
 * Parsing provider request bodies (OpenAI chat/completions/responses/embeddings,
 * Azure OpenAI, Anthropic messages) into a ParsedRequest: the model, stream
 * flag, output budget, every caller-supplied text with its JSON path, and the
 * tool definitions. Shape errors are reported with the field that is wrong.
 */
import { GateError } from '../errors.ts'
import type { ApiRoute } from './routes.ts'
import type { JsonPath, ParsedRequest, TextField, ToolDefinition } from './types.ts'

/** Bounds that keep hostile bodies from costing more than their size. */
const MAX_DEPTH = 32
const MAX_TEXTS = 100_000
const MAX_MODEL_LENGTH = 256

class Collector {
  readonly texts: TextField[] = []
  add(path: JsonPath, text: unknown, kind: TextField['kind'], role: string | undefined): void {
    if (typeof text !== 'string' || text.length === 0) return
    if (this.texts.length >= MAX_TEXTS) throw invalid('', `more than ${MAX_TEXTS} text fields`)
    this.texts.push({ path, text, kind, role })
  }
  /** Every string leaf under a value (tool arguments given as objects). */
  addLeaves(path: JsonPath, value: unknown, kind: TextField['kind'], role: string | undefined, depth = 0): void {
    if (depth > MAX_DEPTH) throw invalid(pathString(path), 'is nested too deeply')
    if (typeof value === 'string') this.add(path, value, kind, role)
    else if (Array.isArray(value)) value.forEach((v, i) => this.addLeaves([...path, i], v, kind, role, depth + 1))
    else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) this.addLeaves([...path, k], v, kind, role, depth + 1)
    }
  }
}

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
function openaiContent(c: Collector, path: JsonPath, content: unknown, role: string | undefined, kind: TextField['kind']): void {
  if (typeof content === 'string') return c.add(path, content, kind, role)
  if (Array.isArray(content)) {
    content.forEach((part, i) => {
      if (!isObj(part)) throw invalid(pathString([...path, i]), 'must be an object')
      if (typeof part.text === 'string') c.add([...path, i, 'text'], part.text, kind, role)
      if (typeof part.output === 'string') c.add([...path, i, 'output'], part.output, 'tool_result', role)
    })
    return
  }
  if (content !== undefined && content !== null) throw invalid(pathString(path), 'must be a string or an array of parts')
}

function openaiTools(c: Collector, body: Record<string, unknown>): ToolDefinition[] {
  const out: ToolDefinition[] = []
  const tools = body.tools
  if (tools === undefined || tools === null) return out
  if (!Array.isArray(tools)) throw invalid('tools', 'must be an array')
  tools.forEach((t, i) => {
    if (!isObj(t)) throw invalid(`tools[${i}]`, 'must be an object')
    const fn = isObj(t.function) ? t.function : t
    const name = fn.name
    const type = typeof t.type === 'string' ? t.type : 'function'
    if (type === 'function' && (typeof name !== 'string' || name === '')) throw invalid(`tools[${i}].name`, 'is required for function tools')
    out.push({ name: typeof name === 'string' ? name : type, type })
    const base: JsonPath = isObj(t.function) ? ['tools', i, 'function'] : ['tools', i]
    c.add([...base, 'description'], fn.description, 'tool_definition', undefined)
  })
  return out
}

function chatCompletions(c: Collector, body: Record<string, unknown>): void {
  const messages = requireArray(body, 'messages')
  if (messages.length === 0) throw invalid('messages', 'must not be empty')
  messages.forEach((m, i) => {
    if (!isObj(m)) throw invalid(`messages[${i}]`, 'must be an object')
    if (typeof m.role !== 'string') throw invalid(`messages[${i}].role`, 'is required')
    const role = m.role
    openaiContent(c, ['messages', i, 'content'], m.content, role, role === 'tool' ? 'tool_result' : 'message')
    if (Array.isArray(m.tool_calls)) {
      m.tool_calls.forEach((tc, j) => {
        if (isObj(tc) && isObj(tc.function)) c.add(['messages', i, 'tool_calls', j, 'function', 'arguments'], tc.function.arguments, 'tool_call', role)
      })
    }
    // The deprecated single function call that predates tool_calls; still accepted by the API.
    if (isObj(m.function_call)) c.add(['messages', i, 'function_call', 'arguments'], m.function_call.arguments, 'tool_call', role)
  })
}

function promptLike(c: Collector, body: Record<string, unknown>, key: string, kind: TextField['kind']): void {
  const v = body[key]
  if (typeof v === 'string') return c.add([key], v, kind, undefined)
  if (Array.isArray(v)) {
    if (v.length === 0) throw invalid(key, 'must not be empty')
    v.forEach((p, i) => {
      if (typeof p === 'string') c.add([key, i], p, kind, undefined)
      else if (!(typeof p === 'number' || Array.isArray(p))) throw invalid(`${key}[${i}]`, 'must be a string or tokens')
    })
    return
  }
  throw invalid(key, 'is required and must be a string or an array')
}

function responsesInput(c: Collector, body: Record<string, unknown>): void {
  c.add(['instructions'], body.instructions, 'instructions', 'system')
  const input = body.input
  if (typeof input === 'string') return c.add(['input'], input, 'message', 'user')
  if (!Array.isArray(input)) throw invalid('input', 'is required and must be a string or an array of items')
  input.forEach((item, i) => {
    if (!isObj(item)) throw invalid(`input[${i}]`, 'must be an object')
    const role = typeof item.role === 'string' ? item.role : undefined
    // The output is a string or, in newer API versions, a list of content parts.
    if (item.type === 'function_call_output') openaiContent(c, ['input', i, 'output'], item.output, 'tool', 'tool_result')
    else if (item.type === 'function_call') c.add(['input', i, 'arguments'], item.arguments, 'tool_call', 'assistant')
    else openaiContent(c, ['input', i, 'content'], item.content, role, 'message')
  })
}

function anthropicContent(c: Collector, path: JsonPath, content: unknown, role: string | undefined): void {
  if (typeof content === 'string') return c.add(path, content, 'message', role)
  if (!Array.isArray(content)) throw invalid(pathString(path), 'must be a string or an array of content blocks')
  content.forEach((block, i) => {
    if (!isObj(block)) throw invalid(pathString([...path, i]), 'must be an object')
    const p: JsonPath = [...path, i]
    switch (block.type) {
      case 'text':
        return c.add([...p, 'text'], block.text, 'message', role)
      case 'tool_use':
        return c.addLeaves([...p, 'input'], block.input, 'tool_call', role)
      case 'document':
        return anthropicDocument(c, p, block, role)
      case 'tool_result':
        if (typeof block.content === 'string') return c.add([...p, 'content'], block.content, 'tool_result', role)
        if (Array.isArray(block.content)) {
          block.content.forEach((b, j) => {
            if (isObj(b)) c.add([...p, 'content', j, 'text'], b.text, 'tool_result', role)
          })
        }
        return
      default:
        return
    }
  })
}

/** A document block: a plain-text source (and the title and context) is text the model reads. */
function anthropicDocument(c: Collector, p: JsonPath, block: Record<string, unknown>, role: string | undefined): void {
  c.add([...p, 'title'], block.title, 'message', role)
  c.add([...p, 'context'], block.context, 'message', role)
  const source = block.source
  if (!isObj(source)) return
  if (source.type === 'text') c.add([...p, 'source', 'data'], source.data, 'message', role)
  else if (source.type === 'content') {
    if (typeof source.content === 'string') c.add([...p, 'source', 'content'], source.content, 'message', role)
    else if (Array.isArray(source.content)) source.content.forEach((b, j) => isObj(b) && c.add([...p, 'source', 'content', j, 'text'], b.text, 'message', role))
  }
}

function anthropicMessages(c: Collector, body: Record<string, unknown>): ToolDefinition[] {
  const system = body.system
  if (typeof system === 'string') c.add(['system'], system, 'instructions', 'system')
  else if (Array.isArray(system)) system.forEach((b, i) => isObj(b) && c.add(['system', i, 'text'], b.text, 'instructions', 'system'))
  else if (system !== undefined && system !== null) throw invalid('system', 'must be a string or an array of text blocks')
  const messages = requireArray(body, 'messages')
  if (messages.length === 0) throw invalid('messages', 'must not be empty')
  messages.forEach((m, i) => {
    if (!isObj(m)) throw invalid(`messages[${i}]`, 'must be an object')
    if (m.role !== 'user' && m.role !== 'assistant') throw invalid(`messages[${i}].role`, 'must be "user" or "assistant"')
    anthropicContent(c, ['messages', i, 'content'], m.content, m.role)
  })
  const tools: ToolDefinition[] = []
  if (body.tools !== undefined && body.tools !== null) {
    if (!Array.isArray(body.tools)) throw invalid('tools', 'must be an array')
    body.tools.forEach((t, i) => {
      if (!isObj(t) || typeof t.name !== 'string' || t.name === '') throw invalid(`tools[${i}].name`, 'is required')
      tools.push({ name: t.name, type: typeof t.type === 'string' ? t.type : 'custom' })
      c.add(['tools', i, 'description'], t.description, 'tool_definition', undefined)
    })
  }
  return tools
}

/**
 * Parses a JSON body for a known API route. `json` is the already-decoded JSON
 * value; `providerName` is the logical provider from the route metadata.
 */
export function parseProviderRequest(route: ApiRoute, json: unknown, providerName: string): ParsedRequest {
  if (!isObj(json)) throw invalid('', 'the body must be a JSON object')
  const c = new Collector()
  let tools: ToolDefinition[] = []
  let maxTokens: number | undefined
  let model: string
  switch (route.api) {
    case 'openai.chat_completions':
    case 'azure_openai.chat_completions':
      model = requireModel(json, route.deployment)
      chatCompletions(c, json)
      tools = openaiTools(c, json)
      maxTokens = optPositiveInt(json, 'max_completion_tokens') ?? optPositiveInt(json, 'max_tokens')
      break
    case 'openai.completions':
    case 'azure_openai.completions':
      model = requireModel(json, route.deployment)
      promptLike(c, json, 'prompt', 'prompt')
      maxTokens = optPositiveInt(json, 'max_tokens')
      break
    case 'openai.responses':
      model = requireModel(json)
      responsesInput(c, json)
      tools = openaiTools(c, json)
      maxTokens = optPositiveInt(json, 'max_output_tokens')
      break
    case 'openai.embeddings':
    case 'azure_openai.embeddings':
      model = requireModel(json, route.deployment)
      promptLike(c, json, 'input', 'input')
      break
    case 'anthropic.messages':
      model = requireModel(json)
      maxTokens = optPositiveInt(json, 'max_tokens')
      if (maxTokens === undefined) throw invalid('max_tokens', 'is required for Anthropic messages')
      tools = anthropicMessages(c, json)
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
    texts: Object.freeze(c.texts),
    tools: Object.freeze(tools),
    json,
  })
}
