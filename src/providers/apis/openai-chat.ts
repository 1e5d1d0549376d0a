/**
 * OpenAI chat completions (`/v1/chat/completions`; Azure OpenAI's
 * `…/chat/completions` under `azure_openai.chat_completions`).
 *
 * Request: `messages[]` (each an object with a `role`, content a string or
 * parts), the output budget (`max_completion_tokens`, `max_tokens`), the
 * tools it names (`tools[]`, `functions[]`, `function_call`, `tool_choice`,
 * `web_search_options`) and, streaming, `stream_options.include_usage`.
 * Response: `choices[].message` or, streamed, `choices[].delta` (content,
 * refusal, reasoning, tool-call arguments), usage as `prompt_tokens` and
 * `completion_tokens` (streamed: a last chunk with no choices, when asked).
 */
import type { JsonDocument, JsonLeaf } from '../../json/document.ts'
import { canonicalToolName, eachObject, functionName, functionTool, toolName, toolType, ToolMap } from '../tools.ts'
import type { ApiRoute } from '../routes.ts'
import type { ParsedRequest, ToolDefinition } from '../types.ts'
import { safeIndex, type DeltaSlot, type ProviderApi, type StreamUsageOption, type ToolCall } from './api.ts'
import { invalid, isObj, optPositiveInt, parsedRequest, requireArray, requireModel } from './fields.ts'
import { eachChoice, namedToolChoice, openaiContent, PROMPT_USAGE } from './openai.ts'

// ---- the request -----------------------------------------------------------------------

function chatMessages(body: Record<string, unknown>): void {
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

function parseRequest(body: Record<string, unknown>, route: ApiRoute, providerName: string): ParsedRequest {
  const model = requireModel(body, route.deployment)
  chatMessages(body)
  const tools = chatToolsOf(body)
  return parsedRequest(route, providerName, body, model, chatMaxTokens(body), tools)
}

function chatToolsOf(body: Record<string, unknown>): ToolDefinition[] {
  const map = new ToolMap()
  chatTools(body, map)
  return map.list()
}

// ---- the tools a request names -------------------------------------------------------

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

/** The position after a member's key, its colon and the blanks around them: where its value starts. */
function valueAfter(text: string, keyEnd: number): number {
  let i = keyEnd
  while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r' || text[i] === ':')) i++
  return i
}

/** The key leaf named `key` in the root object, or in the root's member `inRootMember`, found after `from`. */
function lastKey(doc: JsonDocument, key: string, inRootMember: string | undefined, from: number): JsonLeaf | undefined {
  let found: JsonLeaf | undefined
  for (const l of doc.leaves) {
    if (l.kind !== 'key' || l.value !== key || l.start < from) continue
    const p = l.parent
    if (p === undefined || p.kind !== 'object') continue
    const placed = inRootMember === undefined ? p.parent === undefined : p.key === inRootMember && p.parent !== undefined && p.parent.parent === undefined
    if (placed) found = l
  }
  return found
}

/**
 * `stream_options.include_usage`: whether a streaming request asked for the
 * usage chunk and, when it did not, the edit that asks (the quota stage
 * makes it when a rule counts tokens, and hides the usage from the caller):
 * the whole option added before the root object closes; `null` replaced;
 * `include_usage` added to an option object that lacks it, or its `false`
 * made `true`. (Bodies with a key twice in one object never get here: the
 * parser refuses them.) Any other value of the option is left as it is.
 */
export const CHAT_STREAM_USAGE: StreamUsageOption = Object.freeze({
  of(doc: JsonDocument, stream: boolean): ParsedRequest['streamUsage'] {
    if (!stream) return undefined
    const v = doc.value as Record<string, unknown>
    const so = v.stream_options
    const text = doc.text
    if (so === undefined) {
      const at = text.lastIndexOf('}')
      return { asked: false, ask: { start: at, end: at, text: ',"stream_options":{"include_usage":true}' } }
    }
    if (typeof so === 'object' && so !== null && !Array.isArray(so) && (so as Record<string, unknown>).include_usage === true) return { asked: true }
    const option = lastKey(doc, 'stream_options', undefined, 0)
    if (!option) return { asked: false }
    const at = valueAfter(text, option.end)
    if (so === null) return text.startsWith('null', at) ? { asked: false, ask: { start: at, end: at + 4, text: '{"include_usage":true}' } } : { asked: false }
    if (typeof so !== 'object' || Array.isArray(so) || text[at] !== '{') return { asked: false }
    const include = (so as Record<string, unknown>).include_usage
    if (include === undefined) {
      const inner = valueAfter(text, at + 1)
      return { asked: false, ask: { start: at + 1, end: at + 1, text: text[inner] === '}' ? '"include_usage":true' : '"include_usage":true,' } }
    }
    if (include !== false) return { asked: false }
    const member = lastKey(doc, 'include_usage', 'stream_options', option.end)
    if (!member) return { asked: false }
    const value = valueAfter(text, member.end)
    return text.startsWith('false', value) ? { asked: false, ask: { start: value, end: value + 5, text: 'true' } } : { asked: false }
  },
  /** Asked for usage, the answer ends with a chunk of usage and no choices, and every other chunk carries `usage: null`. */
  withoutUsage(event: Record<string, unknown>): Record<string, unknown> | undefined {
    if (!('usage' in event)) return event
    if (event.usage !== null && Array.isArray(event.choices) && event.choices.length === 0) return undefined
    if (event.usage === null) {
      const { usage: _drop, ...rest } = event
      return rest
    }
    return event
  },
})

// ---- the response ----------------------------------------------------------------------

const DELTA_TEXTS = ['content', 'refusal', 'reasoning_content', 'reasoning'] as const

/** The generated text of a chunk: each choice's delta content, refusal, reasoning and tool-call arguments. */
function outputText(obj: Record<string, unknown>): string {
  let out = ''
  if (!Array.isArray(obj.choices)) return out
  for (const c of obj.choices) {
    if (!isObj(c)) continue
    const d = c.delta
    if (!isObj(d)) continue
    for (const k of DELTA_TEXTS) if (typeof d[k] === 'string') out += d[k] as string
    if (Array.isArray(d.tool_calls)) for (const t of d.tool_calls) if (isObj(t) && isObj(t.function) && typeof t.function.arguments === 'string') out += t.function.arguments
  }
  return out
}

/** The text deltas of a chunk: per choice, its content, refusal and reasoning, and each tool call's arguments (a JSON fragment). */
function deltaSlots(o: Record<string, unknown>, out: DeltaSlot[]): void {
  eachChoice(o, (choice, ci, idx, ix) => {
    const delta = choice.delta as Record<string, unknown> | undefined
    if (!delta || typeof delta !== 'object') return
    for (const f of DELTA_TEXTS) {
      const v = delta[f]
      if (typeof v === 'string') out.push({ channel: `chat.${idx}.${f}`, family: `chat.${ix}.${f}`, json: false, path: ['choices', ci, 'delta', f], text: v })
    }
    if (Array.isArray(delta.tool_calls)) {
      delta.tool_calls.forEach((t: unknown, ti) => {
        const tc = t as { index?: unknown; function?: { arguments?: unknown } }
        const args = tc?.function?.arguments
        if (typeof args === 'string') {
          const tIdx = typeof tc.index === 'number' ? tc.index : ti
          out.push({ channel: `chat.${idx}.tool.${tIdx}`, family: `chat.${ix}.tool.${safeIndex(tIdx, ti)}`, json: true, path: ['choices', ci, 'delta', 'tool_calls', ti, 'function', 'arguments'], text: args })
        }
      })
    }
  })
}

const named = (v: unknown): v is string => typeof v === 'string' && v !== ''

/**
 * Tool calls, where the SDK reads them: `choices[].message` and, streamed,
 * `choices[].delta`: each `tool_calls[]` entry's `function.name` or
 * `custom.name` (every delta that carries a name: the SDK keeps the last
 * one), and the legacy `function_call.name`.
 */
function toolCalls(v: Record<string, unknown>, out: ToolCall[]): void {
  if (!Array.isArray(v.choices)) return
  for (const c of v.choices) {
    if (!isObj(c)) continue
    chatMessage(c.message, out)
    chatMessage(c.delta, out)
  }
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

export const openaiChat: ProviderApi = Object.freeze({
  name: 'openai.chat_completions',
  parseRequest,
  tools: chatToolsOf,
  streamUsage: CHAT_STREAM_USAGE,
  usage: PROMPT_USAGE,
  outputText,
  deltaSlots,
  toolCalls,
  toolCallMarkers: ['_call'],
  enumerated: {
    role: ['system', 'user', 'assistant', 'tool', 'developer', 'function'],
    object: ['chat.completion', 'chat.completion.chunk'],
    finish_reason: ['stop', 'length', 'tool_calls', 'content_filter', 'function_call'],
    detail: ['auto', 'low', 'high'],
    format: ['wav', 'mp3', 'flac', 'opus', 'pcm16', 'aac'],
    reasoning_effort: ['minimal', 'low', 'medium', 'high'],
    service_tier: ['auto', 'default', 'flex', 'priority', 'scale'],
    type: ['text', 'image_url', 'input_audio', 'file', 'refusal', 'function', 'custom', 'json_object', 'json_schema'],
  },
})
