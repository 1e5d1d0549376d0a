/**
 * OpenAI (legacy) completions (`/v1/completions`; Azure OpenAI's
 * `…/completions` under `azure_openai.completions`).
 *
 * Request: a `prompt` (a string, or strings or token arrays) and the output
 * budget `max_tokens`; no tools. Response: `choices[].text` (streamed too),
 * usage as `prompt_tokens` and `completion_tokens`.
 */
import type { ApiRoute } from '../routes.ts'
import type { ParsedRequest } from '../types.ts'
import { none, type DeltaSlot, type ProviderApi } from './api.ts'
import { isObj, optPositiveInt, parsedRequest, requireModel } from './fields.ts'
import { eachChoice, PROMPT_USAGE, promptLike } from './openai.ts'

function parseRequest(body: Record<string, unknown>, route: ApiRoute, providerName: string): ParsedRequest {
  const model = requireModel(body, route.deployment)
  promptLike(body, 'prompt')
  return parsedRequest(route, providerName, body, model, optPositiveInt(body, 'max_tokens'), undefined)
}

/** The generated text of a chunk: each choice's `text`. */
function outputText(obj: Record<string, unknown>): string {
  let out = ''
  if (!Array.isArray(obj.choices)) return out
  for (const c of obj.choices) if (isObj(c) && typeof c.text === 'string') out += c.text
  return out
}

/** The text deltas of a chunk: each choice's `text`, a channel per choice. */
function deltaSlots(o: Record<string, unknown>, out: DeltaSlot[]): void {
  eachChoice(o, (choice, ci, idx, ix) => {
    if (typeof choice.text === 'string') out.push({ channel: `completion.${idx}`, family: `completion.${ix}`, json: false, path: ['choices', ci, 'text'], text: choice.text })
  })
}

export const openaiCompletions: ProviderApi = Object.freeze({
  name: 'openai.completions',
  parseRequest,
  tools: () => [],
  usage: PROMPT_USAGE,
  outputText,
  deltaSlots,
  toolCalls: none,
  toolCallMarkers: [],
  enumerated: {
    object: ['text_completion'],
    finish_reason: ['stop', 'length', 'content_filter'],
  },
})
