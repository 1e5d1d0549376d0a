import type { InputMeasure } from '../quotas/measure.ts'

/** Which API family a request belongs to. */
export type ProviderKind = 'openai' | 'anthropic' | 'azure-openai' | 'mcp'

/** What the caller asks the model to do; maps to a Cedar action. */
export type Operation = 'chat' | 'completion' | 'responses' | 'embedding' | 'messages' | 'mcp'

/** A path into the request JSON, e.g. ['messages', 0, 'content', 1, 'text']. */
export type { JsonPath } from '../json/document.ts'

/** How a request names a tool (providers/tools.ts): by its own name, as a provider's built-in, or through an MCP server. */
export type ToolOrigin = 'function' | 'builtin' | 'mcp-server' | 'mcp-tool'

/**
 * One tool a request names, as the tool map (providers/tools.ts) reads it:
 * one `call_tool` question for Cedar. Plain data (it crosses to and from the
 * body inspection workers).
 */
export interface ToolDefinition {
  /** Its identity for Cedar: the id of `ModelGate::Tool` (a function name, a canonical built-in name, `mcp:<server>`, `mcp:<server>/<tool>`). */
  readonly name: string
  /** The type the request declares (`Tool.kind`): `function`, `custom`, `web_search_preview`, `web_search_20250305`, `mcp`, … */
  readonly type: string
  readonly origin?: ToolOrigin
  /**
   * True when the tool map knows the type. Anything else (false or absent) is
   * refused unless `providers.allowedToolTypes` lists the type.
   */
  readonly known?: boolean
  /** Where the request first names it, e.g. `tools[2]`, `function_call`, `mcp_servers[0]`. */
  readonly field?: string
  /** The name a model's call uses for it: function and custom tools, Anthropic's tools with a `name`. */
  readonly callName?: string
  /** MCP servers and their tools: the host of the server's URL, when the request gives one. */
  readonly host?: string
  /** MCP servers: the request lists which of the server's tools may run (each is an `mcp-tool` entry of its own). */
  readonly narrowed?: boolean
  /** MCP tools of a catalogued MCP server: the hints that server declared (mcp/guard.ts), added by the policy stage. */
  readonly hints?: { readonly readOnlyHint?: boolean; readonly destructiveHint?: boolean; readonly idempotentHint?: boolean; readonly openWorldHint?: boolean }
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
  /** The model (for Azure OpenAI: the deployment) the request goes to: an alias the caller used is resolved (providers.catalog.<name>.aliases). */
  readonly model: string
  /** The alias the caller named, when `model` is its target. */
  readonly requestedModel?: string
  /**
   * Where the body's top-level `model` string sits (UTF-16 offsets into the
   * decoded body, quotes included), for the alias rewrite. Absent when the
   * body has none (Azure OpenAI names the deployment in the path).
   */
  readonly modelSpan?: { readonly start: number; readonly end: number }
  readonly stream: boolean
  /**
   * Requested output budget (max_tokens / max_completion_tokens /
   * max_output_tokens), if any; the larger when a chat request carries both.
   */
  readonly maxTokens: number | undefined
  readonly tools: readonly ToolDefinition[]
  /** The input the body carries, measured for quotas (absent when no quota rule limits tokens). */
  readonly input?: InputMeasure
  /**
   * OpenAI chat completions that stream: whether the caller asked for the
   * usage chunk, and, when the body has no `stream_options`, the offset (in
   * the decoded body) of the root object's closing brace.
   */
  /**
   * A streaming request's usage option: whether it asked for the usage the
   * answer reports, and, when it did not, the edit of the decoded body that
   * asks (an insertion or a replacement, UTF-16 offsets), if one can.
   */
  readonly streamUsage?: { readonly asked: boolean; readonly ask?: { readonly start: number; readonly end: number; readonly text: string } }
  /** An MCP request (operation `mcp`): the one JSON-RPC message the POST carries (mcp/protocol.ts). */
  readonly mcp?: McpMessage
}

/**
 * One JSON-RPC message of an MCP POST, as modelgate reads it: plain data (it
 * crosses from the body inspection workers). Never logged: `arguments` is the
 * caller's text.
 */
export interface McpMessage {
  /** `request`, `notification`, or a client's `response` to a server request. */
  readonly kind: 'request' | 'notification' | 'response'
  /** The JSON-RPC id (requests and responses). */
  readonly id?: string | number | null
  /** The method (requests and notifications). */
  readonly method?: string
  /** tools/call and prompts/get: `params.name`; resources/read: `params.uri`. */
  readonly name?: string
  /** tools/call and prompts/get: the canonical JSON of `params.arguments` (keys sorted), `{}` when absent. */
  readonly arguments?: string
  /** SHA-256 (hex) of `arguments`. */
  readonly argumentsDigest?: string
  /** `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 and later). */
  readonly protocolVersion?: string
}

/** Token usage reported by the provider in its response. */
export interface TokenUsage {
  input: number | undefined
  output: number | undefined
}
