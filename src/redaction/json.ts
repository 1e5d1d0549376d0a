/**
 * Path helpers and the key-name rules of the SSE redactor (stream.ts).
 *
 * Whole-body scans (requests, buffered responses: document.ts) do not use
 * STRUCTURAL_KEYS or isBinaryPayload: they scan every leaf and exempt only by
 * positive identification (exempt.ts).
 */
import type { JsonPath } from '../json/document.ts'

export { formatPath } from '../json/document.ts'

/** Sets a value at a path in a plain JSON structure (mutates). */
export function setAtPath(root: unknown, path: JsonPath, value: unknown): void {
  let cur = root as Record<string | number, unknown>
  for (let k = 0; k < path.length - 1; k++) cur = cur[path[k]!] as Record<string | number, unknown>
  cur[path[path.length - 1]!] = value
}

/**
 * Keys whose string values the SSE redactor treats as protocol structure
 * (enums, ids, model names) and does not scan.
 */
export const STRUCTURAL_KEYS: ReadonlySet<string> = new Set([
  'model',
  'role',
  'type',
  'object',
  'id',
  'tool_call_id',
  'tool_use_id',
  'call_id',
  'item_id',
  'finish_reason',
  'stop_reason',
  'system_fingerprint',
  'service_tier',
  'reasoning_effort',
  'encoding_format',
  'media_type',
  'detail',
  'format',
  'status',
  'event',
  'signature',
])

/** Inline payloads the SSE redactor does not scan (data URLs, long base64 sources). */
export function isBinaryPayload(value: string, path: JsonPath): boolean {
  if (value.startsWith('data:') && value.slice(0, 100).includes(';base64,')) return true
  const last = path[path.length - 1]
  return last === 'data' && path[path.length - 2] === 'source' && value.length > 256
}
