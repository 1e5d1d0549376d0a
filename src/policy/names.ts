/**
 * The Cedar names modelgate produces. policies/modelgate.cedarschema declares
 * them; a schema that lacks any of them is refused at load time, because every
 * request would otherwise fail to evaluate.
 */
import type { Operation } from '../providers/types.ts'

export const NAMESPACE = 'ModelGate'

export const ENTITY = {
  Team: `${NAMESPACE}::Team`,
  Namespace: `${NAMESPACE}::Namespace`,
  Workload: `${NAMESPACE}::Workload`,
  UserGroup: `${NAMESPACE}::UserGroup`,
  User: `${NAMESPACE}::User`,
  Provider: `${NAMESPACE}::Provider`,
  ModelGroup: `${NAMESPACE}::ModelGroup`,
  Model: `${NAMESPACE}::Model`,
  ToolServer: `${NAMESPACE}::ToolServer`,
  Tool: `${NAMESPACE}::Tool`,
  DataClass: `${NAMESPACE}::DataClass`,
} as const

export const ACTION_TYPE = `${NAMESPACE}::Action`

/** Actions modelgate asks about. `use_model` and `generate` are groups policies may scope to. */
export const ACTIONS = ['chat', 'completion', 'responses', 'messages', 'embedding', 'call_tool', 'send_unredacted'] as const
/**
 * Actions a schema may declare (older schemas do not): MCP resources and
 * prompts, and approving a tool call. A question about one the schema lacks
 * is denied.
 */
export const OPTIONAL_ACTIONS = ['read_resource', 'get_prompt', 'approve'] as const
export type ActionName = (typeof ACTIONS)[number] | (typeof OPTIONAL_ACTIONS)[number]
export const ALL_ACTIONS: readonly ActionName[] = [...ACTIONS, ...OPTIONAL_ACTIONS]

/** The model action for each provider operation: one action per operation, named alike. */
export const OPERATION_ACTION: Readonly<Record<Operation, ActionName>> = {
  chat: 'chat',
  completion: 'completion',
  responses: 'responses',
  messages: 'messages',
  embedding: 'embedding',
  // MCP requests are not model questions: the MCP stage asks their own actions (call_tool, read_resource, get_prompt).
  mcp: 'call_tool',
}

/** Entity types whose attributes modelgate derives; entities.json may give them parents only. */
export const DERIVED_TYPES: ReadonlySet<string> = new Set([ENTITY.Workload, ENTITY.Model, ENTITY.Tool, ENTITY.User])

/** Where the engine reads its request-header context attributes from, by default. */
export const DEFAULT_CONTEXT_HEADERS = {
  tenant: 'x-modelgate-tenant',
  purpose: 'x-modelgate-purpose',
  clientApp: 'x-modelgate-client-app',
} as const
