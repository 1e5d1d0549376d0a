/** Which API family a request belongs to. */
export type ProviderKind = 'openai' | 'anthropic' | 'azure-openai'

/** What the caller asks the model to do; maps to a Cedar action. */
export type Operation = 'chat' | 'completion' | 'responses' | 'embedding' | 'messages'

/** A path into the request JSON, e.g. ['messages', 0, 'content', 1, 'text']. */
export type JsonPath = readonly (string | number)[]

/** One piece of caller-supplied text that may be sent to the model. */
export interface TextField {
  readonly path: JsonPath
  readonly text: string
  /** The message role when the text belongs to a message (system, user, assistant, tool). */
  readonly role: string | undefined
  /** What the text is: message content, a tool argument, a tool description, an input to embed… */
  readonly kind: 'message' | 'prompt' | 'input' | 'instructions' | 'tool_definition' | 'tool_call' | 'tool_result'
}

export interface ToolDefinition {
  readonly name: string
  readonly type: string
}

/** A provider request, parsed once and shared by every later stage. */
export interface ParsedRequest {
  readonly provider: ProviderKind
  /** The logical provider name from the route (e.g. "openai", "internal-llm"); defaults to `provider`. */
  readonly providerName: string
  readonly operation: Operation
  /** Stable name of the API shape, e.g. "openai.chat_completions", "anthropic.messages". */
  readonly api: string
  readonly model: string
  readonly stream: boolean
  /** Requested output budget (max_tokens / max_completion_tokens / max_output_tokens), if any. */
  readonly maxTokens: number | undefined
  readonly texts: readonly TextField[]
  readonly tools: readonly ToolDefinition[]
  /** The parsed JSON body. Stages that rewrite it must also replace the request body bytes. */
  readonly json: Record<string, unknown>
}

/** Token usage reported by the provider in its response. */
export interface TokenUsage {
  input: number | undefined
  output: number | undefined
}
