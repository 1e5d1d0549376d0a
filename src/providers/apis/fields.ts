/**
 * The field readers every provider API module uses: a refusal naming the
 * field, and the checks of fields whose shape is the same in every API
 * (`model`, `stream`, a positive integer budget, a required array).
 */
import { GateError } from '../../errors.ts'
import type { ApiRoute } from '../routes.ts'
import type { JsonPath, ParsedRequest, ToolDefinition } from '../types.ts'

const MAX_MODEL_LENGTH = 256

export const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** A path as a refusal names it: `messages[0].content[1]`. */
export function pathString(path: JsonPath): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('')
}

/** MG_BODY_INVALID naming the field that is wrong and how. */
export function invalid(field: string, problem: string): GateError {
  return new GateError('MG_BODY_INVALID', { details: { field, problem }, internal: `${field || 'body'} ${problem}` })
}

export function optBool(body: Record<string, unknown>, key: string): boolean {
  const v = body[key]
  if (v === undefined || v === null) return false
  if (typeof v !== 'boolean') throw invalid(key, 'must be a boolean')
  return v
}

export function optPositiveInt(body: Record<string, unknown>, key: string): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw invalid(key, 'must be a positive integer')
  return v
}

/** The body's `model`, or (Azure OpenAI) the deployment the path names when the body has none. */
export function requireModel(body: Record<string, unknown>, fallback?: string): string {
  const m = body.model ?? fallback
  if (typeof m !== 'string' || m.trim() === '') throw invalid('model', 'is required and must be a non-empty string')
  if (m.length > MAX_MODEL_LENGTH) throw invalid('model', `is longer than ${MAX_MODEL_LENGTH} characters`)
  return m
}

export function requireArray(body: Record<string, unknown>, key: string): unknown[] {
  const v = body[key]
  if (!Array.isArray(v)) throw invalid(key, 'is required and must be an array')
  return v
}

const NO_TOOLS: readonly ToolDefinition[] = Object.freeze([])

/**
 * The parsed request of a model API route: `stream` is read last, after the
 * API's own fields, so a body wrong in both is refused for the API's field.
 */
export function parsedRequest(route: ApiRoute, providerName: string, body: Record<string, unknown>, model: string, maxTokens: number | undefined, tools: readonly ToolDefinition[] | undefined): ParsedRequest {
  return Object.freeze({
    provider: route.kind,
    providerName,
    operation: route.operation,
    api: route.api,
    model: route.deployment ?? model,
    stream: optBool(body, 'stream'),
    maxTokens,
    tools: tools === undefined ? NO_TOOLS : Object.freeze(tools),
  })
}
