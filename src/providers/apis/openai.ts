/**
 * What the OpenAI APIs share (and Azure OpenAI with them): message content,
 * a prompt or input of strings or tokens, a `tool_choice`, and usage counted
 * as `prompt_tokens` and `completion_tokens` (chat, completions, embeddings).
 */
import type { JsonPath } from '../types.ts'
import { safeIndex, type UsageShape } from './api.ts'
import { invalid, isObj, pathString } from './fields.ts'

/** Usage in chat completions, completions and embeddings (embeddings count input only). */
export const PROMPT_USAGE: UsageShape = Object.freeze({ wrappers: [], input: ['prompt_tokens'], output: ['completion_tokens'] })

/** OpenAI-style message content: a string or an array of parts. */
export function openaiContent(path: JsonPath, content: unknown): void {
  if (typeof content === 'string' || content === undefined || content === null) return
  if (!Array.isArray(content)) throw invalid(pathString(path), 'must be a string or an array of parts')
  content.forEach((part, i) => {
    if (!isObj(part)) throw invalid(pathString([...path, i]), 'must be an object')
  })
}

/** A `prompt` (completions) or `input` (embeddings): a string, or a non-empty array of strings or token arrays. */
export function promptLike(body: Record<string, unknown>, key: string): void {
  const v = body[key]
  if (typeof v === 'string') return
  if (Array.isArray(v)) {
    if (v.length === 0) throw invalid(key, 'must not be empty')
    v.forEach((p, i) => {
      if (!(typeof p === 'string' || typeof p === 'number' || Array.isArray(p))) throw invalid(`${key}[${i}]`, 'must be a string or tokens')
    })
    return
  }
  throw invalid(key, 'is required and must be a string or an array')
}

const CHAT_CHOICES = new Set(['none', 'auto', 'required'])

/** An OpenAI `tool_choice` (chat and Responses): the object naming a tool, or undefined for none or a mode. */
export function namedToolChoice(choice: unknown): Record<string, unknown> | undefined {
  if (choice === undefined || choice === null) return undefined
  if (typeof choice === 'string') {
    if (!CHAT_CHOICES.has(choice)) throw invalid('tool_choice', 'must be "none", "auto", "required" or a tool')
    return undefined
  }
  if (!isObj(choice)) throw invalid('tool_choice', 'must be "none", "auto", "required" or a tool')
  return choice
}

/**
 * Each choice object of a chunk's `choices`, with its position in the array,
 * the index it names (its position when it names none), and that index as a
 * channel label may print it.
 */
export function eachChoice(o: Record<string, unknown>, fn: (choice: Record<string, unknown>, at: number, index: unknown, printable: string) => void): void {
  if (!Array.isArray(o.choices)) return
  o.choices.forEach((c: unknown, at) => {
    if (!c || typeof c !== 'object') return
    const choice = c as Record<string, unknown>
    const index = typeof choice.index === 'number' ? choice.index : at
    fn(choice, at, index, safeIndex(index, at))
  })
}
