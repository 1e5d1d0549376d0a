/**
 * OpenAI embeddings (`/v1/embeddings`; Azure OpenAI's `…/embeddings` under
 * `azure_openai.embeddings`).
 *
 * Request: an `input` (a string, or strings or token arrays); no output
 * budget, no tools, no stream. Response: a list of vectors, usage as
 * `prompt_tokens` (input only).
 */
import type { ApiRoute } from '../routes.ts'
import type { ParsedRequest } from '../types.ts'
import { none, type ProviderApi } from './api.ts'
import { parsedRequest, requireModel } from './fields.ts'
import { PROMPT_USAGE, promptLike } from './openai.ts'

function parseRequest(body: Record<string, unknown>, route: ApiRoute, providerName: string): ParsedRequest {
  const model = requireModel(body, route.deployment)
  promptLike(body, 'input')
  return parsedRequest(route, providerName, body, model, undefined, undefined)
}

export const openaiEmbeddings: ProviderApi = Object.freeze({
  name: 'openai.embeddings',
  parseRequest,
  tools: () => [],
  usage: PROMPT_USAGE,
  outputText: () => '',
  deltaSlots: none,
  toolCalls: none,
  toolCallMarkers: [],
  enumerated: {
    object: ['list', 'embedding'],
    encoding_format: ['float', 'base64'],
  },
})
