/**
 * What one provider API's module knows of its wire format (one module per
 * API under this folder, found by name through the registry, index.ts):
 *
 * - the request: its fields checked and read into the parsed request (the
 *   model, `stream`, the output budget, every tool it names), refusals
 *   naming the field that is wrong, and, where the API has one, the option
 *   that asks a stream for its usage;
 * - the response: where a body or one stream event reports the model and
 *   token usage, the generated text of a stream event (and where it sits,
 *   for the SSE redactor's channels), and the tool calls it makes;
 * - the protocol values of its bodies that are not free text (the values
 *   each enumerated field can take), which redaction leaves unscanned.
 *
 * Azure OpenAI speaks the OpenAI formats: its `azure_openai.*` names reuse
 * the OpenAI modules. MCP is not a model API: src/mcp reads it.
 */
import type { JsonDocument } from '../../json/document.ts'
import type { ApiRoute } from '../routes.ts'
import type { JsonPath, ParsedRequest, TokenUsage, ToolDefinition } from '../types.ts'

/** What a response reports: the model that answered and the tokens it counted. */
export interface ResponseFacts {
  model: string | undefined
  usage: TokenUsage
}

/**
 * Where an API's responses report usage: the keys of the `usage` object's
 * input and output counts, and the key of the object a stream event wraps
 * the response in (Anthropic's `message_start`: `message`; Responses events:
 * `response`). The `model` is always the object's own `model`.
 */
export interface UsageShape {
  readonly wrappers: readonly string[]
  readonly input: readonly string[]
  readonly output: readonly string[]
}

/** A text delta of one stream event: its channel (key, and a printable family), whether it is a JSON fragment, and its path. */
export interface DeltaSlot {
  readonly channel: string
  readonly family: string
  readonly json: boolean
  readonly path: JsonPath
  readonly text: string
}

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

/**
 * An API whose streams report usage only when the request asks: whether a
 * request asked, the edit that asks, and how the events the answer then
 * carries look to a caller that did not ask.
 */
export interface StreamUsageOption {
  /**
   * For a streaming request: whether it asked for usage and, when it did
   * not, the edit of the decoded body that asks. Undefined for a request
   * that does not stream.
   */
  of(doc: JsonDocument, stream: boolean): ParsedRequest['streamUsage']
  /**
   * An event of an answer whose caller did not ask, as that caller sees it:
   * undefined to drop it (the usage chunk), a copy without what was added
   * (a `usage: null`), or the event itself.
   */
  withoutUsage(event: Record<string, unknown>): Record<string, unknown> | undefined
}

export interface ProviderApi {
  /** The API name routes give it (`ParsedRequest.api`), e.g. `openai.chat_completions`. */
  readonly name: string
  /**
   * Checks a request body (a JSON object) and reads it into the parsed
   * request; MG_BODY_INVALID names the first field that is wrong.
   */
  parseRequest(body: Record<string, unknown>, route: ApiRoute, providerName: string): ParsedRequest
  /** Every tool the body names (the tool map, providers/tools.ts); none for an API without tools. */
  tools(body: Record<string, unknown>): ToolDefinition[]
  /** The API's option that asks a stream for its usage, when it has one. */
  readonly streamUsage?: StreamUsageOption
  /** Where its responses report usage. */
  readonly usage: UsageShape
  /** The generated text of one stream event (the output quotas count), '' for none. */
  outputText(event: Record<string, unknown>): string
  /** Adds the text deltas of one stream event, by channel, to `out`. */
  deltaSlots(event: Record<string, unknown>, out: DeltaSlot[]): void
  /** Adds the tool calls one response object (a whole response, or one event) makes to `out`. */
  toolCalls(obj: Record<string, unknown>, out: ToolCall[]): void
  /**
   * Text every object of this API that can carry a tool call contains (a
   * call's key or type): bytes without any of them are not parsed for calls.
   */
  readonly toolCallMarkers: readonly string[]
  /** The values each enumerated field of its bodies and events can take (protocol structure, not free text). */
  readonly enumerated: Readonly<Record<string, readonly string[]>>
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined)
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * Folds one JSON object (a whole response or one stream event) into the
 * facts, reading usage where `shape` says: the object's `model`, then the
 * first wrapped response it carries, then its own `usage` (the first input
 * and output key that holds a count).
 */
export function absorbUsage(shape: UsageShape, facts: ResponseFacts, obj: unknown): void {
  if (!isObj(obj)) return
  if (typeof obj.model === 'string') facts.model = obj.model
  for (const w of shape.wrappers) {
    const inner = obj[w]
    if (isObj(inner)) {
      absorbUsage(shape, facts, inner)
      break
    }
  }
  const u = obj.usage
  if (isObj(u)) {
    const input = firstCount(u, shape.input)
    const output = firstCount(u, shape.output)
    if (input !== undefined) facts.usage.input = input
    if (output !== undefined) facts.usage.output = output
  }
}

function firstCount(u: Record<string, unknown>, keys: readonly string[]): number | undefined {
  for (const k of keys) {
    const n = num(u[k])
    if (n !== undefined) return n
  }
  return undefined
}

/** A small non-negative integer as printed; anything else (response text) is not printed. */
export function safeIndex(v: unknown, fallback: number): string {
  const n = typeof v === 'number' ? v : fallback
  return Number.isInteger(n) && n >= 0 && n < 10000 ? String(n) : '?'
}

/** Reads nothing: for APIs without tool calls or stream text. */
export function none(): void {}
