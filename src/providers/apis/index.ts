/**
 * The provider API modules, by the API name routes give them
 * (`ApiRoute.api`, `ParsedRequest.api`): `apiFor(name)` is the one module
 * that knows that API's wire format (api.ts). Azure OpenAI's
 * `azure_openai.*` names are the OpenAI modules under another name (chat
 * without the stream-usage option, which Azure's older API versions refuse).
 *
 * Responses are read by every module's readers, not only the route's own:
 * a route's upstream may answer in another API's shape (an OpenAI-compatible
 * server, a misconfigured provider), and what such an answer says must
 * still be counted, scanned and checked for tool calls. The readers below
 * run each module's reader in one fixed order (legacy completions before
 * chat, Anthropic before Responses), so where two shapes meet in one object
 * the result does not depend on the route.
 */
import { GateError } from '../../errors.ts'
import type { ApiRoute } from '../routes.ts'
import type { ToolDefinition } from '../types.ts'
import { absorbUsage, type DeltaSlot, type ProviderApi, type ResponseFacts, type ToolCall, type UsageShape } from './api.ts'
import { anthropicMessagesApi } from './anthropic-messages.ts'
import { openaiChat } from './openai-chat.ts'
import { openaiCompletions } from './openai-completions.ts'
import { openaiEmbeddings } from './openai-embeddings.ts'
import { openaiResponses } from './openai-responses.ts'

export type { DeltaSlot, ProviderApi, ResponseFacts, StreamUsageOption, ToolCall, UsageShape } from './api.ts'

/** Every model API module, in the order responses are read. */
const MODULES: readonly ProviderApi[] = [openaiCompletions, openaiChat, openaiEmbeddings, anthropicMessagesApi, openaiResponses]

/** An OpenAI module under its Azure OpenAI name. */
function azure(api: ProviderApi, name: string): ProviderApi {
  const { streamUsage: _omitted, ...rest } = api
  return Object.freeze({ ...rest, name })
}

const BY_NAME: ReadonlyMap<string, ProviderApi> = new Map([
  ...MODULES.map((m) => [m.name, m] as const),
  ['azure_openai.chat_completions', azure(openaiChat, 'azure_openai.chat_completions')],
  ['azure_openai.completions', azure(openaiCompletions, 'azure_openai.completions')],
  ['azure_openai.embeddings', azure(openaiEmbeddings, 'azure_openai.embeddings')],
])

/** The names of every model API a module reads. */
export const API_NAMES: readonly string[] = Object.freeze([...BY_NAME.keys()])

/** The module of an API name, or undefined when no module reads it. */
export function findApi(name: string): ProviderApi | undefined {
  return BY_NAME.get(name)
}

/** The module of an API name; MG_ROUTE_UNSUPPORTED for a name no module reads. */
export function apiFor(name: string): ProviderApi {
  const api = BY_NAME.get(name)
  if (!api) throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: `no provider API module reads ${JSON.stringify(name.slice(0, 64))}; known: ${API_NAMES.join(', ')}` })
  return api
}

/** The module of a route's API; undefined for an MCP route (src/mcp reads those). */
export function modelApiFor(route: ApiRoute): ProviderApi | undefined {
  return route.kind === 'mcp' ? undefined : apiFor(route.api)
}

/**
 * Every tool a request body names, for a known API (`ParsedRequest.api`).
 * Throws MG_BODY_INVALID, naming the field, for a malformed tool, a name
 * modelgate keeps for itself, one identity with two types, or too many tools.
 */
export function toolsOf(api: string, body: Record<string, unknown>): ToolDefinition[] {
  return apiFor(api).tools(body)
}

// ---- responses, whatever their API -------------------------------------------------

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function merged(pick: (u: UsageShape) => readonly string[]): readonly string[] {
  return Object.freeze([...new Set(MODULES.flatMap((m) => pick(m.usage)))])
}

/** Where any API's responses report usage: each module's keys, in module order. */
const ANY_USAGE: UsageShape = Object.freeze({ wrappers: merged((u) => u.wrappers), input: merged((u) => u.input), output: merged((u) => u.output) })

/** Folds one JSON object (a whole response or one SSE event) of any API into the facts. */
export function absorbResponseObject(facts: ResponseFacts, obj: unknown): void {
  absorbUsage(ANY_USAGE, facts, obj)
}

/** The generated text in one streamed event of any API ('' for none). */
export function streamedText(obj: unknown): string {
  if (!isObj(obj)) return ''
  let out = ''
  for (const m of MODULES) out += m.outputText(obj)
  return out
}

/** The text deltas of one stream event of any API, by channel. */
export function deltaSlots(o: Record<string, unknown>): DeltaSlot[] {
  const out: DeltaSlot[] = []
  for (const m of MODULES) m.deltaSlots(o, out)
  return out
}

/** Adds the tool calls in one parsed response object of any API (a whole response, or one SSE event's data) to `out`. */
export function collectCalls(v: unknown, out: ToolCall[]): void {
  if (!isObj(v)) return
  for (const m of MODULES) m.toolCalls(v, out)
}

/**
 * What every object that can carry a tool call contains, as text: each
 * module's call keys and types, and a JSON escape of an ASCII character
 * (`\u005f`), which could spell one. Bytes without any of them name no tool
 * call and are not parsed.
 */
export const TOOL_CALL_MARKERS: readonly string[] = Object.freeze([...new Set([...MODULES.flatMap((m) => m.toolCallMarkers), '\\u00'])])
const MARKER_BYTES = TOOL_CALL_MARKERS.map((m) => Buffer.from(m, 'latin1'))

/** True when `text` could name a tool call (see TOOL_CALL_MARKERS): cheap, and never false for text that does. */
export function mayNameToolCall(text: Buffer | string): boolean {
  if (typeof text === 'string') return TOOL_CALL_MARKERS.some((m) => text.includes(m))
  return MARKER_BYTES.some((m) => text.indexOf(m) !== -1)
}

/** Values the models list OpenAI-compatible servers answer carries (no model API of its own). */
const MODELS_LIST: Readonly<Record<string, readonly string[]>> = { object: ['model', 'list'] }

/** The values each enumerated field can take in any API's bodies and events: every module's, together. */
export const ENUMERATED_VALUES: Readonly<Record<string, ReadonlySet<string>>> = (() => {
  const out: Record<string, Set<string>> = {}
  for (const table of [...MODULES.map((m) => m.enumerated), MODELS_LIST]) {
    for (const [field, values] of Object.entries(table)) {
      const set = (out[field] ??= new Set())
      for (const v of values) set.add(v)
    }
  }
  return Object.freeze(out)
})()
