/** Which API family a request belongs to. */
export type ProviderKind = 'openai' | 'anthropic' | 'azure-openai'

/** What the caller asks the model to do; maps to a Cedar action. */
export type Operation = 'chat' | 'completion' | 'responses' | 'embedding' | 'messages'

/** A path into the request JSON, e.g. ['messages', 0, 'content', 1, 'text']. */
export type { JsonPath } from '../json/document.ts'

export interface ToolDefinition {
  readonly name: string
  readonly type: string
}

/**
 * A provider request, parsed once and shared by every later stage: a small,
 * structured-clone friendly summary (the body itself stays in ctx.requestBody).
 */
export interface ParsedRequest {
  readonly provider: ProviderKind
  /** The logical provider name from the route (e.g. "openai", "internal-llm"); defaults to `provider`. */
  readonly providerName: string
  readonly operation: Operation
  /** Stable name of the API shape, e.g. "openai.chat_completions", "anthropic.messages". */
  readonly api: string
  readonly model: string
  readonly stream: boolean
  /**
   * Requested output budget (max_tokens / max_completion_tokens /
   * max_output_tokens), if any; the larger when a chat request carries both.
   */
  readonly maxTokens: number | undefined
  readonly tools: readonly ToolDefinition[]
}

/** Token usage reported by the provider in its response. */
export interface TokenUsage {
  input: number | undefined
  output: number | undefined
}
